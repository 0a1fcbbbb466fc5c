/**
 * `auditsink verify --jobs N`: worker threads check records (hashes, parsing, producer signatures) while the
 * main thread keeps the ordered checks. Whatever N, the findings, their order, the JSON report and the exit
 * code are those of one thread; a stopped run ends its workers.
 */
import { pbkdf2 } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, cp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { runVerify, type VerifyResult } from "@auditsink/cli";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { objectFiles } from "../embedded/helpers.ts";
import { cli, sinkWithProducer, tempDir } from "./helpers.ts";

const pbkdf2Async = promisify(pbkdf2);

const STREAMS = ["agents.demo", "agents.other"];
const BATCHES = 6;
const EVENTS_PER_BATCH = 15;

let sink: EmbeddedSink;
let dataDir: string;
let verifierKey: string;

const segmentsDir = (dir: string, stream: string) => join(dir, "objects/streams", stream, "segments");
const segmentFiles = (dir: string, stream: string) => objectFiles(dir, `streams/${stream}/segments/`);

async function writable(path: string): Promise<string> {
  await chmod(path, 0o644);
  return path;
}

/** A copy of the data directory with several kinds of damage, in both streams. */
async function damagedCopy(): Promise<string> {
  const copy = join(await tempDir(), "damaged");
  await cp(dataDir, copy, { recursive: true });
  const demo = await segmentFiles(copy, "agents.demo");
  const other = await segmentFiles(copy, "agents.other");
  // A changed event: its producer signature, the next record's link and the signed roots no longer agree.
  const changed = await writable(demo[1]!);
  const text = await readFile(changed, "utf8");
  await writeFile(changed, text.replace('"gen_ai.tool.name":"search"', '"gen_ai.tool.name":"delete"'));
  // A line that is not a record.
  const garbled = await writable(demo[3]!);
  await writeFile(garbled, `${await readFile(garbled, "utf8")}not a record\n`);
  // A removed segment (a gap) and a cut one (no final newline).
  await rm(other[2]!, { force: true });
  await truncate(await writable(other[4]!), (await readFile(other[4]!)).length - 1);
  // An object the layout does not know.
  await writeFile(join(segmentsDir(copy, "agents.other"), "notes.txt"), "hello");
  return copy;
}

const withoutJobs = ({ jobs: _jobs, ...rest }: VerifyResult) => rest;

beforeAll(async () => {
  const work = await tempDir();
  const started = await sinkWithProducer(work, "jobs-bot");
  ({ sink, dataDir, verifierKey } = started);
  for (const stream of STREAMS) {
    for (let b = 0; b < BATCHES; b++) {
      const events = join(work, `${stream}-${b}.jsonl`);
      const lines = Array.from({ length: EVENTS_PER_BATCH }, (_, i) =>
        JSON.stringify({
          type: "ai.agent.tool_call",
          id: `${stream}-${b}-${i}`,
          data: { "gen_ai.tool.name": "search" },
        }),
      );
      await writeFile(events, lines.join("\n"));
      const sent = await cli([
        "send",
        "--url",
        sink.url,
        "--key",
        started.keyFile,
        "--stream",
        stream,
        "--sink-key",
        verifierKey,
        "--source",
        "agent://jobs-bot",
        events,
      ]);
      expect(sent.code, sent.err).toBe(0);
    }
  }
  await sink.close();
});

afterAll(async () => {
  await sink?.close();
});

describe("verify --jobs", () => {
  it("reports exactly what one thread reports, in the same order, on a log with several kinds of damage", async () => {
    // Prepare
    const copy = await damagedCopy();
    const verify = (jobs: number) => runVerify(copy, { keys: [verifierKey], jobs });
    // Act
    const serial = await verify(1);
    const parallel = await verify(2);
    const wide = await verify(3); // more workers than cores: digests finish out of order
    // Assess
    expect(serial.jobs).toBe(1);
    expect(parallel.jobs).toBe(2);
    expect(wide.jobs).toBe(3);
    const codes = new Set(
      [...serial.archive, ...serial.streams.flatMap((s) => s.failures)].map((f) => f.code),
    );
    for (const code of [
      "producer-signature-invalid",
      "chain-broken",
      "record-malformed",
      "checkpoint-root-mismatch",
      "segment-gap",
      "segment-truncated",
      "unexpected-object",
    ]) {
      expect(codes).toContain(code);
    }
    expect(JSON.stringify(withoutJobs(parallel))).toBe(JSON.stringify(withoutJobs(serial)));
    expect(JSON.stringify(withoutJobs(wide))).toBe(JSON.stringify(withoutJobs(serial)));
  }, 60_000); // four verifications, two of them starting worker threads that load core through tsx: ~10 s loaded

  it("gives the same JSON report and exit status from the command line", async () => {
    // Prepare
    const copy = await damagedCopy();
    const verify = (jobs: string) =>
      cli(["verify", copy, "--verifier-key", verifierKey, "--jobs", jobs, "--json"]);
    // Act
    const serial = await verify("1");
    const parallel = await verify("2");
    const clean = await cli(["verify", dataDir, "--verifier-key", verifierKey, "--jobs", "2", "--json"]);
    // Assess
    expect(serial.code).toBe(1);
    expect(parallel.code).toBe(1);
    expect(clean.code, clean.out).toBe(0);
    const report = (out: string) => withoutJobs(JSON.parse(out) as VerifyResult);
    expect(report(parallel.out)).toEqual(report(serial.out));
    expect(JSON.parse(clean.out)).toMatchObject({ ok: true, jobs: 2, producerSignatures: true });
  }, 60_000); // three verifications, two starting worker threads that load core through tsx: ~8 s loaded

  it("stops when its signal is aborted, rejecting with the reason, and ends its workers first", async () => {
    // Prepare: OS threads of this process, after a run on one thread has started everything else it uses.
    const threads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))![1]);
    await runVerify(dataDir, { keys: [verifierKey], jobs: 1 });
    // libuv starts its threadpool threads lazily: start all of them now, so none appears during the run below.
    await Promise.all(Array.from({ length: 16 }, () => pbkdf2Async("x", "y", 20_000, 32, "sha256")));
    const before = threads();
    const controller = new AbortController();
    const reason = new Error("the sink is shutting down");
    let segments = 0;
    let during = 0;
    // Act: abort as soon as the first segment has been checked.
    const run = runVerify(
      dataDir,
      { keys: [verifierKey], jobs: 2, signal: controller.signal },
      {
        start: () => {},
        stop: () => {},
        update: () => {
          if (++segments > 1) return;
          during = threads();
          controller.abort(reason);
        },
      },
    );
    // Assess
    await expect(run).rejects.toBe(reason);
    expect(segments).toBe(1);
    expect(during).toBeGreaterThanOrEqual(before + 2);
    // A terminated worker's OS thread is joined just after its terminate() resolves: allow it a moment.
    await expect.poll(threads, { timeout: 5_000, interval: 50 }).toBeLessThanOrEqual(before);
  });

  it("refuses a job count below 1", async () => {
    const r = await cli(["verify", dataDir, "--verifier-key", verifierKey, "--jobs", "0"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--jobs must be at least 1/);
  });
});

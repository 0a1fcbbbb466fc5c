/**
 * The embedded sink's verification sweep at size: what a full sweep costs per event on the sink's own thread, how
 * long a SIGTERM in the middle of one takes to end the process, and that the sweep then resumes at its cursor.
 *
 *   npm run bench:sweep                 → 200,000 producer-signed 1 KB records; writes bench/results/sweep.json
 *   RECORDS=50000 npm run bench:sweep   → a quicker run (KEEP=1 keeps the data directory)
 *
 * 1. Writes a data directory as the sink lays it out (bench/archive.ts: segments of 100 records — the sink's
 *    segments at batch 100 — each with its signed checkpoint) and a verifier state at its end, so incremental runs
 *    have nothing old to read and the sweep is the only verification work.
 * 2. Starts the sink (`serve.ts`, a process of its own) with the sweep unthrottled (one slice, share 1) and reads
 *    `auditsink_verifier_records_total{mode="sweep"}` from /metrics until half the records are swept: the rate
 *    between two samples is the sweep's cost per event on one thread.
 * 3. Sends SIGTERM and times it to the process's exit; reads the saved cursor.
 * 4. Starts the sink again (timed to listening), waits for the sweep to finish from the cursor, and checks that it
 *    swept only what was left.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPair, KeyObjectSigner } from "@auditsink/core";
import { writeArchive } from "./archive.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const RECORDS = Number(process.env.RECORDS ?? 200_000);
const SEGMENT = 100;
const STREAM = "bench";
const DEPLOYMENT = "auditsink.bench/sweep";

interface Sink {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
}

function startSink(data: string, env: Record<string, string>): Promise<Sink> {
  return new Promise((resolveStart, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "packages/local/src/serve.ts", data, "0"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, AUDITSINK_QUIET: "1", ...env },
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening (http:\/\/\S+)/.exec(out);
      if (m) resolveStart({ child, url: m[1]!, exited });
    });
    child.once("exit", (code) => reject(new Error(`the sink exited (${code}) before listening`)));
  });
}

async function swept(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/auditsink_verifier_records_total\{mode="sweep"\} (\d+)/.exec(text)?.[1] ?? 0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function savedState(data: string): {
  sweep?: { startedAt: string; cursor?: { stream: string; state?: { size: number } } };
} {
  return JSON.parse(readFileSync(join(data, "verifier-state.json"), "utf8"));
}

const work = mkdtempSync(join(tmpdir(), "auditsink-bench-sweep-"));
const data = join(work, "data");
try {
  process.stderr.write(`generating ${RECORDS} records in ${data}\n`);
  const sinkKey = generateKeyPair("ecdsa-p256");
  const written = await writeArchive(data, {
    records: RECORDS,
    segment: SEGMENT,
    stream: STREAM,
    deployment: DEPLOYMENT,
    signer: new KeyObjectSigner(DEPLOYMENT, sinkKey.privateKey, sinkKey.publicKey),
    producer: generateKeyPair("ed25519"),
    signing: "event",
    batch: 100,
    filler: "x".repeat(360),
  });
  mkdirSync(join(data, "keys"), { recursive: true });
  writeFileSync(
    join(data, "keys", "checkpoint-key.pem"),
    sinkKey.privateKey.export({ format: "pem", type: "pkcs8" }),
    { mode: 0o600 },
  );
  writeFileSync(
    join(data, "verifier-state.json"),
    JSON.stringify({ version: 2, states: { [STREAM]: written.end } }),
  );
  const env = {
    AUDITSINK_VERIFY_INTERVAL: "3600",
    AUDITSINK_VERIFY_SWEEP_SLICE_MS: "3600000",
    AUDITSINK_VERIFY_SWEEP_SHARE: "1",
  };

  process.stderr.write("first start (builds the head and the dedup entries from the segments)\n");
  let t = performance.now();
  let sink = await startSink(data, env);
  const firstStartSeconds = (performance.now() - t) / 1000;

  // The sweep's rate on one thread, between two samples once it is under way.
  while ((await swept(sink.url)) === 0) await sleep(200);
  const a = { records: await swept(sink.url), at: performance.now() };
  while ((await swept(sink.url)) < RECORDS / 2) await sleep(200);
  const b = { records: await swept(sink.url), at: performance.now() };
  const recordsPerSecond = ((b.records - a.records) * 1000) / (b.at - a.at);
  const load = loadavg()[0]!;

  process.stderr.write("SIGTERM in the middle of the sweep\n");
  t = performance.now();
  sink.child.kill("SIGTERM");
  const code = await sink.exited;
  const sigtermSeconds = (performance.now() - t) / 1000;
  const cursor = savedState(data).sweep?.cursor;
  if (code !== 0 || cursor?.stream !== STREAM)
    throw new Error(`unexpected exit ${code} or cursor ${JSON.stringify(cursor)}`);

  process.stderr.write("restart; the sweep resumes at its cursor\n");
  t = performance.now();
  sink = await startSink(data, env);
  const restartSeconds = (performance.now() - t) / 1000;
  while (savedState(data).sweep !== undefined || (await swept(sink.url)) === 0) await sleep(200);
  const resumedRecords = await swept(sink.url);
  t = performance.now();
  sink.child.kill("SIGTERM");
  await sink.exited;
  const idleSigtermSeconds = (performance.now() - t) / 1000;

  const perEventMicroseconds = 1e6 / recordsPerSecond;
  const result = {
    benchmark: "sweep",
    date: new Date().toISOString(),
    command: `RECORDS=${RECORDS} npm run bench:sweep`,
    machine: { cpus: cpus().length, model: cpus()[0]?.model },
    node: process.version,
    loadAverage1m: Math.round(load * 100) / 100,
    records: RECORDS,
    segmentRecords: SEGMENT,
    archiveBytes: written.bytes,
    producerSignatures: "one Ed25519 signature per event, each verified again by the sweep",
    firstStartSeconds: Math.round(firstStartSeconds * 100) / 100,
    sweep: {
      recordsPerSecond: Math.round(recordsPerSecond),
      perEventMicroseconds: Math.round(perEventMicroseconds),
      description: "one slice, share 1: the sweep's cost on the sink's one thread",
      atDefaultShare: {
        share: 0.1,
        secondsPerMillionEvents: Math.round(perEventMicroseconds / 0.1),
      },
    },
    sigterm: {
      duringSweepSeconds: Math.round(sigtermSeconds * 1000) / 1000,
      cursorAt: cursor.state?.size ?? 0,
      afterRestartSeconds: Math.round(restartSeconds * 100) / 100,
      resumedSweptRecords: resumedRecords,
      resumedSweptOnlyTheRest: resumedRecords === RECORDS - (cursor.state?.size ?? 0),
      idleSeconds: Math.round(idleSigtermSeconds * 1000) / 1000,
    },
  };
  const out = join(ROOT, "bench", "results", "sweep.json");
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
}

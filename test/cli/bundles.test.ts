/**
 * Evidence bundles whose window starts after record 0 (the normal case), tampered bundles, receipts that are
 * not receipts, and a large report through a real pipe (issue 10, items 5, 6 and 7): every problem is a coded
 * finding with exit status 1, never exit 2 without a code, never a crash, never cut short.
 */
import { spawnSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { VerifyResult } from "@auditsink/cli";
import { AuditClient } from "@auditsink/client";
import {
  checkConsistency,
  openCheckpoint,
  parseVerifierKey,
  type Receipt,
  verifyReceipt,
} from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI } from "../built.ts";
import { objectFile } from "../embedded/helpers.ts";
import {
  cli,
  proveInclusion,
  sendToolCall,
  sinkWithProducer,
  tempDir,
  verifyReport,
  writableCopy,
} from "./helpers.ts";

const STREAM = "agents.window";
let sink: EmbeddedSink;
let dataDir: string;
let fingerprint: string;
let verifierKey: string;
let keyFile: string;
/** A bundle of records 3…5 of six, one per segment: its window starts at record 3. */
let bundle: string;

const verifyJson = (source: string, ...extra: string[]) => verifyReport(source, fingerprint, ...extra);

const codesOf = (report: VerifyResult) => [
  ...report.archive.map((f) => `${f.code} ${f.at}`),
  ...report.streams.flatMap((s) => s.failures.map((f) => `${f.code} ${f.at}`)),
  ...report.receipts.failures.map((f) => `${f.code} ${f.at}`),
];

async function editJson(path: string, edit: (value: Record<string, never>) => unknown): Promise<void> {
  const value = JSON.parse(await readFile(path, "utf8"));
  await writeFile(path, JSON.stringify(edit(value) ?? value));
}

beforeAll(async () => {
  const work = await tempDir();
  const started = await sinkWithProducer(work, "window-bot");
  ({ sink, dataDir, fingerprint, verifierKey, keyFile } = started);
  let from = "";
  for (let n = 0; n < 6; n++) {
    if (n === 3) {
      await new Promise((r) => setTimeout(r, 20));
      from = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 20));
    }
    await sendToolCall(started, STREAM, "agent://window-bot", `call-${n}`);
  }
  bundle = join(await tempDir(), "bundle");
  const exported = await cli(["export", dataDir, "--stream", STREAM, "--from", from, "--out", bundle]);
  expect(exported.code).toBe(0);
});

afterAll(async () => {
  await sink.close();
});

describe("a bundle whose window starts after record 0", () => {
  it("verifies clean, counting the receipts it checked", async () => {
    const { code, report } = await verifyJson(bundle);
    expect(code).toBe(0);
    expect(report.streams[0]).toMatchObject({
      stream: STREAM,
      from: 3,
      records: 3,
      receipts: 3,
      failures: [],
    });
    expect(report.receipts).toEqual({ given: 3, checked: 3, notChecked: 0, failures: [] });
  });

  it("is readable with tail: exactly its records, from its first one", async () => {
    const r = await cli(["tail", bundle, "--stream", STREAM, "--from", "0", "--json"]);
    expect(r.code).toBe(0);
    const lines = r.out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { index: number; record: { event: { id: string } } });
    expect(lines.map((l) => [l.index, l.record.event.id])).toEqual([
      [3, "call-3"],
      [4, "call-4"],
      [5, "call-5"],
    ]);
  });

  it("proves inclusion of its records (by index and by event) and consistency between its checkpoints", async () => {
    const trusted = [parseVerifierKey(verifierKey)];
    const byIndex = await proveInclusion(bundle, STREAM, 4, fingerprint);
    const byEvent = await cli([
      "prove",
      "inclusion",
      bundle,
      "--stream",
      STREAM,
      "--event-source",
      "agent://window-bot",
      "--event-id",
      "call-5",
      "--fingerprint",
      fingerprint,
    ]);
    const consistency = await cli([
      "prove",
      "consistency",
      bundle,
      "--stream",
      STREAM,
      "--from",
      "4",
      "--to",
      "6",
      "--fingerprint",
      fingerprint,
    ]);
    const before = await proveInclusion(bundle, STREAM, 1, fingerprint);
    expect([byIndex.code, byEvent.code, consistency.code]).toEqual([0, 0, 0]);
    for (const r of [byIndex, byEvent]) {
      expect(verifyReceipt(JSON.parse(r.out) as Receipt, { trusted }).ok).toBe(true);
    }
    expect((JSON.parse(byEvent.out) as Receipt).index).toBe(5);
    const p = JSON.parse(consistency.out);
    const a = openCheckpoint(p.older, trusted);
    const b = openCheckpoint(p.newer, trusted);
    expect(a.ok && b.ok && checkConsistency(a.checkpoint, b.checkpoint, p.proof).ok).toBe(true);
    expect(before.code).toBe(2);
    expect(before.err).toContain("holds records 3…5");
  });
});

describe("a bundle of more records than a tile holds", () => {
  it("verifies with no warning: a bundle carries no tiles, so none is missing from it", async () => {
    const client = await AuditClient.create({
      endpoint: sink.url,
      producerKey: createPrivateKey(await readFile(keyFile)),
      sinkKey: verifierKey,
      stream: "agents.tiled",
      source: "agent://tiled-bot",
    });
    await Promise.all(
      Array.from({ length: 300 }, (_, i) => client.send({ type: "ai.agent.step", id: `s-${i}` })),
    );
    await client.close();
    const whole = join(await tempDir(), "bundle");
    expect((await cli(["export", dataDir, "--stream", "agents.tiled", "--out", whole])).code).toBe(0);
    const { code, report } = await verifyJson(whole);
    expect(code).toBe(0);
    expect(report.streams[0]).toMatchObject({
      stream: "agents.tiled",
      records: 300,
      failures: [],
      warnings: [],
    });
    expect(report.warnings).toBe(0);
    // The data directory holds the stream's first tile and entry bundle: verified there, not missing.
    const stored = await verifyJson(dataDir, "--stream", "agents.tiled");
    expect(stored.report.streams[0]).toMatchObject({ records: 300, failures: [], warnings: [] });
  });
});

describe("a tampered bundle", () => {
  it("with a changed manifest start size fails with bundle-manifest-invalid (exit 1, not 2)", async () => {
    const copy = await writableCopy(bundle);
    await editJson(join(copy, "manifest.json"), (m) => {
      (m.start as unknown as { size: number }).size = 2;
    });
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(codesOf(report)).toEqual([
      "bundle-manifest-invalid manifest.json#/start/frontier",
      "bundle-manifest-invalid manifest.json#/start/size",
    ]);
  });

  it("with a start moved consistently (size, segments and frontier) fails the chain and names the left-out segment", async () => {
    const copy = await writableCopy(bundle);
    await editJson(join(copy, "manifest.json"), (m) => {
      const start = m.start as unknown as { size: number; frontier: string[] };
      start.size = 4;
      start.frontier = ["00".repeat(32)];
      (m.segments as unknown as { first: number }).first = 4;
      (m.records as unknown as { first: number }).first = 4;
    });
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(codesOf(report)).toEqual(
      expect.arrayContaining([
        "chain-broken 4",
        `bundle-object-unexpected streams/${STREAM}/segments/00000000000000000003`,
      ]),
    );
  });

  it("with a manifest that is not JSON fails with bundle-manifest-invalid", async () => {
    const copy = await writableCopy(bundle);
    await writeFile(join(copy, "manifest.json"), "{ not json");
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(codesOf(report)).toEqual(["bundle-manifest-invalid manifest.json"]);
  });

  it("without proofs/inclusion.json fails with bundle-proof-missing", async () => {
    const copy = await writableCopy(bundle);
    await rm(join(copy, "proofs/inclusion.json"));
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(codesOf(report)).toEqual([
      "bundle-proof-missing proofs/inclusion.json",
      "bundle-proof-missing 3",
      "bundle-proof-missing 5",
    ]);
  });

  it("with its consistency proofs emptied, or removed, fails with bundle-proof-missing", async () => {
    const emptied = await writableCopy(bundle);
    await writeFile(join(emptied, "proofs/consistency.json"), '{"proofs": []}');
    const removed = await writableCopy(bundle);
    await rm(join(removed, "proofs/consistency.json"));
    const a = await verifyJson(emptied);
    const b = await verifyJson(removed);
    expect([a.code, b.code]).toEqual([1, 1]);
    expect(codesOf(a.report)).toEqual([
      "bundle-proof-missing 3..4",
      "bundle-proof-missing 4..5",
      "bundle-proof-missing 5..6",
    ]);
    expect(codesOf(b.report)).toEqual(["bundle-proof-missing proofs/consistency.json"]);
  });

  it("with a consistency proof's hashes emptied fails with bundle-proof-invalid", async () => {
    const copy = await writableCopy(bundle);
    await editJson(join(copy, "proofs/consistency.json"), (f) => {
      for (const p of f.proofs as unknown as { proof: string[] }[]) p.proof = [];
    });
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(codesOf(report)).toEqual([
      "bundle-proof-invalid 3..4",
      "bundle-proof-invalid 4..5",
      "bundle-proof-invalid 5..6",
    ]);
  });

  it("with extra files in its objects reports each of them", async () => {
    const copy = await writableCopy(bundle);
    const objects = join(copy, "objects");
    await writeFile(join(objects, `streams/${STREAM}/notes.txt`), "hello");
    await mkdir(join(objects, "keys"));
    await writeFile(join(objects, "keys/injected.json"), "{}");
    await writeFile(join(objects, "keys/0badc0de.json"), "{}");
    await cp(
      objectFile(dataDir, `streams/${STREAM}/segments/00000000000000000000`),
      join(objects, `streams/${STREAM}/segments/00000000000000000000`),
    );
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(codesOf(report).sort()).toEqual([
      "bundle-object-unexpected keys/0badc0de.json",
      `bundle-object-unexpected streams/${STREAM}/segments/00000000000000000000`,
      "unexpected-object keys/injected.json",
      `unexpected-object streams/${STREAM}/notes.txt`,
    ]);
  });
});

describe("receipts given to verify", () => {
  it("reports a receipt without checkpoint, and entries that are not receipts, as receipt-malformed", async () => {
    // Prepare: a JSON lines file — a good receipt, one without checkpoint, a number, a line that is not JSON.
    const good = JSON.parse((await proveInclusion(dataDir, STREAM, 1, fingerprint)).out) as Receipt;
    const { checkpoint: _dropped, ...noCheckpoint } = good;
    const file = join(await tempDir(), "receipts.jsonl");
    await writeFile(file, [JSON.stringify(good), JSON.stringify(noCheckpoint), "42", "{oops"].join("\n"));
    // Act
    const r = await cli(["verify", dataDir, "--fingerprint", fingerprint, "--receipts", file, "--json"]);
    const text = await cli(["verify", dataDir, "--fingerprint", fingerprint, "--receipts", file]);
    // Assess
    expect(r.code).toBe(1);
    const report = JSON.parse(r.out) as VerifyResult;
    expect(report.receipts).toMatchObject({ given: 4, checked: 1, notChecked: 0 });
    expect(report.receipts.failures.map((f) => [f.code, f.at])).toEqual([
      ["receipt-malformed", `${file}:2`],
      ["receipt-malformed", `${file}:3`],
      ["receipt-malformed", `${file}:4`],
    ]);
    expect(report.streams.find((s) => s.stream === STREAM)).toMatchObject({ receipts: 1, failures: [] });
    expect(text.code).toBe(1);
    expect(text.out).toContain("receipts: 4 given, 1 checked against the log, 0 not checked, 3 not receipts");
  });

  it("reports receipts for a stream the store no longer holds as receipt-not-in-log", async () => {
    // Prepare: a receipt of the stream, then the stream's objects and head deleted.
    const good = (await proveInclusion(dataDir, STREAM, 2, fingerprint)).out;
    const copy = await writableCopy(dataDir);
    await rm(join(copy, `objects/streams/${STREAM}`), { recursive: true });
    await rm(join(copy, `heads/${STREAM}.json`), { force: true });
    const file = join(await tempDir(), "receipts.json");
    await writeFile(file, `[${good}]`);
    // Act
    const { code, report } = await verifyJson(copy, "--receipts", file);
    // Assess
    expect(code).toBe(1);
    expect(report.archive.filter((f) => f.stream === STREAM).map((f) => [f.code, f.at])).toEqual([
      ["stream-missing", undefined],
      ["receipt-not-in-log", 2],
    ]);
    expect(report.receipts).toMatchObject({ given: 1, checked: 1, notChecked: 0 });
  });

  it("counts receipts of streams left out with --stream as not checked", async () => {
    const good = (await proveInclusion(dataDir, STREAM, 0, fingerprint)).out;
    const file = join(await tempDir(), "receipts.json");
    await writeFile(file, good);
    const { code, report } = await verifyJson(dataDir, "--receipts", file, "--stream", "_system");
    expect(code).toBe(0);
    expect(report.receipts).toEqual({ given: 1, checked: 0, notChecked: 1, failures: [] });
  });
});

describe("verify --json through a pipe", () => {
  it("delivers the whole report to a slow reader when the exit status is 1", async () => {
    // Prepare: a copy with 600 stray objects, so the report (one failure each) is far beyond a pipe's 64 KiB.
    const copy = await writableCopy(dataDir);
    for (let i = 0; i < 600; i++) await writeFile(join(copy, `objects/streams/${STREAM}/stray-${i}`), "x");
    const dir = await tempDir();
    const out = join(dir, "report.json");
    const done = join(dir, "exit-status");
    // The reader starts reading only once the writer has exited (or after 8 s): an exit that does not wait
    // for stdout to drain leaves everything past the pipe's buffer unwritten.
    const script = `("$0" "$1" verify "$2" --fingerprint "$3" --json; echo $? > "$4") | { i=0; while [ ! -f "$4" ] && [ $i -lt 80 ]; do sleep 0.1; i=$((i+1)); done; cat > "$5"; }`;
    // Act
    const r = spawnSync("sh", ["-c", script, process.execPath, CLI, copy, fingerprint, done, out], {
      encoding: "utf8",
    });
    // Assess
    expect(r.status).toBe(0);
    expect((await readFile(done, "utf8")).trim()).toBe("1");
    const text = await readFile(out, "utf8");
    expect(text.length).toBeGreaterThan(65_536);
    const report = JSON.parse(text) as VerifyResult;
    expect(report.failures).toBe(600);
  }, 90_000);
});

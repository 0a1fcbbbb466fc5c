/**
 * Core throughput on one core: append (canonicalize + hash + chain + Merkle) and verify, for 1 KB events in
 * batches of 100, against plain SHA-256 over the same segment bytes in the same run (the physical floor).
 *
 *   npm run bench:core            → prints a table and writes bench/results/core.json
 *   RECORDS=200000 npm run bench:core
 */

import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import {
  admit,
  buildRecords,
  checkpointKey,
  encodeSegment,
  Frontier,
  generateKeyPair,
  KeyObjectSigner,
  type StreamReport,
  StreamVerifier,
  segmentKey,
  signCheckpoint,
  ZERO_HASH,
} from "@auditsink/core";
import { benchEvent } from "./events.ts";

const RECORDS = Number(process.env.RECORDS ?? 100_000);
const BATCH = 100;
const STREAM = "bench";
const DEPLOYMENT = "auditsink.bench/core";

// One producer-signed event of about 1 KB, varied per record so no hash is repeated.
const { privateKey } = generateKeyPair("ed25519");
const filler = "x".repeat(620);
const event = (i: number) => benchEvent(i, privateKey, filler);

const signer = (() => {
  const k = generateKeyPair("ecdsa-p256");
  return new KeyObjectSigner(DEPLOYMENT, k.privateKey, k.publicKey);
})();

async function main() {
  const events = Array.from({ length: RECORDS }, (_, i) => ({ event: event(i), producer: "bench" }));

  // Append: admit (RFC 8785 once, event hash), build records (SHA-256 + prev link), extend the Merkle frontier, take the batch's root,
  // encode the segment: everything the sink does per batch except I/O and the signature.
  const segments: { key: string; bytes: Buffer }[] = [];
  const roots: { size: number; root: Buffer; head: Buffer }[] = [];
  let prev = ZERO_HASH;
  const frontier = new Frontier();
  const t0 = process.hrtime.bigint();
  for (let first = 0; first < RECORDS; first += BATCH) {
    const records = buildRecords(
      STREAM,
      first,
      prev,
      "2026-11-24T12:00:00.000Z",
      events.slice(first, first + BATCH).map(({ event, producer }) => admit(event, producer)),
    );
    for (const r of records) frontier.append(r.leaf);
    prev = records[records.length - 1]!.hash;
    roots.push({ size: frontier.size, root: frontier.root(), head: prev });
    segments.push({ key: segmentKey(STREAM, first), bytes: encodeSegment(records) });
  }
  const appendSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

  // One signed checkpoint per batch, as the sink makes them; timed apart because it is per batch, not per record.
  const checkpoints: { key: string; text: string }[] = [];
  const t1 = process.hrtime.bigint();
  for (const { size, root, head } of roots) {
    const text = await signCheckpoint(
      { origin: `${DEPLOYMENT}/${STREAM}`, size, root, head, time: "2026-11-24T12:00:00.000Z" },
      signer,
    );
    checkpoints.push({ key: checkpointKey(STREAM, size), text });
  }
  const signSeconds = Number(process.hrtime.bigint() - t1) / 1e9;

  // Verify, records only: hash every record, parse it, check index and prev link, rebuild the tree.
  const recordsOnly = new StreamVerifier(STREAM, { trusted: [signer.key], deployment: DEPLOYMENT });
  const t2 = process.hrtime.bigint();
  for (const s of segments) recordsOnly.addSegment(s.key, s.bytes);
  const verifySeconds = Number(process.hrtime.bigint() - t2) / 1e9;
  expectClean(recordsOnly.finish(), true);

  // Verify, complete: also every checkpoint's signature and its root against the rebuilt tree.
  const full = new StreamVerifier(STREAM, { trusted: [signer.key], deployment: DEPLOYMENT });
  const t3 = process.hrtime.bigint();
  for (const c of checkpoints) full.addCheckpoint(c.key, c.text);
  for (const s of segments) full.addSegment(s.key, s.bytes);
  const fullSeconds = Number(process.hrtime.bigint() - t3) / 1e9;
  expectClean(full.finish(), false);

  // The floor: SHA-256 over the same segment bytes, one streaming hash per segment (like sha256sum per file).
  const t4 = process.hrtime.bigint();
  for (const s of segments) createHash("sha256").update(s.bytes).digest();
  const sha256Seconds = Number(process.hrtime.bigint() - t4) / 1e9;

  const bytes = segments.reduce((a, s) => a + s.bytes.length, 0);
  const result = {
    benchmark: "core",
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    records: RECORDS,
    batch: BATCH,
    avgRecordBytes: Math.round(bytes / RECORDS),
    appendRecordsPerSecond: Math.round(RECORDS / appendSeconds),
    checkpointSignaturesPerSecond: Math.round(checkpoints.length / signSeconds),
    verifyRecordsPerSecond: Math.round(RECORDS / verifySeconds),
    verifyWithCheckpointsRecordsPerSecond: Math.round(RECORDS / fullSeconds),
    sha256RecordsPerSecond: Math.round(RECORDS / sha256Seconds),
    sha256MBPerSecond: Math.round(bytes / sha256Seconds / 1e6),
    verifyMBPerSecond: Math.round(bytes / verifySeconds / 1e6),
    ratioVerifyToSha256: Number((sha256Seconds / verifySeconds).toFixed(3)),
    goalRatio: 0.5,
  };
  const out = join(import.meta.dirname, "results", "core.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.table(result);
  console.log(`wrote ${out}`);
}

function expectClean(report: StreamReport, unsigned: boolean) {
  if (report.records !== RECORDS || report.failures.length > 0 || report.warnings.length > 0 !== unsigned) {
    throw new Error(`verifier saw ${report.records} records: ${JSON.stringify(report.failures.slice(0, 3))}`);
  }
}

await main();

/**
 * `auditsink verify` throughput on an exported evidence bundle, against `sha256sum` over the same files in the
 * same run (the floor: reading and hashing every byte once).
 *
 *   npm run bench:verify                 → 1,000,000 records of 1 KB; writes bench/results/verify.json
 *   RECORDS=100000 npm run bench:verify  → a quicker run (KEEP=1 keeps the data directory and bundle)
 *
 * 1. Writes a data directory the way the sink lays it out (segments of 10,000 producer-signed records, a signed
 *    checkpoint per segment, producers.json, the verifier key) with core's buildRecords/encodeSegment/signCheckpoint.
 * 2. `auditsink export` turns it into an evidence bundle (whole stream).
 * 3. Times `sha256sum` over the bundle's object files, then `auditsink verify <bundle> --json`, once with producer
 *    signatures re-verified (the default) and once with --no-producer-signatures. Each is a fresh process, as
 *    an auditor would run it; the page cache is warmed first so both read from memory.
 * 4. The same for a log whose producer signed every 100 events as one batch (batch-signed envelopes,
 *    docs/FORMAT.md §3b): `auditsink verify` with producer signatures, against `sha256sum` over that bundle.
 *    (BATCH_SIGNED=0 skips it.)
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  admit,
  buildRecords,
  checkpointKey,
  encodeSegment,
  Frontier,
  formatVerifierKey,
  generateKeyPair,
  KeyObjectSigner,
  keyFingerprint,
  type SignedEvent,
  segmentKey,
  signBatch,
  signCheckpoint,
  spkiDer,
  ZERO_HASH,
} from "@auditsink/core";
import { benchEvent, benchUnsignedEvent } from "./events.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const RECORDS = Number(process.env.RECORDS ?? 1_000_000);
const SEGMENT = 10_000;
const STREAM = "bench";
const DEPLOYMENT = "auditsink.bench/verify";
const MAIN = join(ROOT, "packages/cli/src/main.ts");

const producer = generateKeyPair("ed25519");
const sinkKey = generateKeyPair("ecdsa-p256");
const signer = new KeyObjectSigner(DEPLOYMENT, sinkKey.privateKey, sinkKey.publicKey);
// About 1 KB per stored record (the record wraps the event with stream, index, prev hash, producer, signature).
const filler = "x".repeat(360);
/** A batch-signed event carries its membership (~470 bytes at batch 100): no filler keeps its record near 1 KB. */
const BATCH = 100;
const BATCH_SIGNED = process.env.BATCH_SIGNED !== "0";

type Signing = "event" | "batch";

/** Events first … first+n−1, signed per event or in batches of BATCH (aligned to index 0). */
function signedEvents(first: number, n: number, signing: Signing): SignedEvent[] {
  if (signing === "event")
    return Array.from({ length: n }, (_, i) => benchEvent(first + i, producer.privateKey, filler));
  const events: SignedEvent[] = [];
  for (let at = first; at < first + n; at += BATCH) {
    const size = Math.min(BATCH, first + n - at);
    const unsigned = Array.from({ length: size }, (_, i) => benchUnsignedEvent(at + i, ""));
    events.push(...signBatch(unsigned, producer.privateKey));
  }
  return events;
}

function write(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

async function makeDataDir(data: string, signing: Signing): Promise<number> {
  const frontier = new Frontier();
  let prev = ZERO_HASH;
  let bytes = 0;
  for (let first = 0; first < RECORDS; first += SEGMENT) {
    const n = Math.min(SEGMENT, RECORDS - first);
    const received = new Date(Date.UTC(2026, 10, 24, 12, 0, 0, first / 100)).toISOString();
    const events = signedEvents(first, n, signing).map((e) => admit(e, "bench-agent"));
    const records = buildRecords(STREAM, first, prev, received, events);
    const segment = encodeSegment(records);
    bytes += segment.length;
    write(join(data, "objects", segmentKey(STREAM, first)), segment);
    for (const r of records) frontier.append(r.leaf);
    prev = records[records.length - 1]!.hash;
    const cp = {
      origin: `${DEPLOYMENT}/${STREAM}`,
      size: frontier.size,
      root: frontier.root(),
      head: prev,
      time: received,
    };
    write(join(data, "objects", checkpointKey(STREAM, frontier.size)), await signCheckpoint(cp, signer));
    if (first % 100_000 === 0) process.stderr.write(`  generated ${first + n} records\n`);
  }
  write(join(data, "sink.json"), JSON.stringify({ deployment: DEPLOYMENT }));
  write(join(data, "keys", "verifier-key.txt"), `${formatVerifierKey(signer.key)}\n`);
  const now = new Date().toISOString();
  write(
    join(data, "producers.json"),
    JSON.stringify({
      producers: [
        {
          id: "bench-agent",
          streams: [STREAM],
          createdAt: now,
          keys: [
            {
              keyId: keyFingerprint(producer.publicKey),
              publicKey: spkiDer(producer.publicKey).toString("base64"),
              algorithm: "ed25519",
              createdAt: now,
            },
          ],
        },
      ],
    }),
  );
  return bytes;
}

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

function timed(cmd: string, args: string[]): { seconds: number; stdout: string; status: number | null } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 1 << 30,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, stdout: r.stdout, status: r.status };
}

const cli = (args: string[]) => timed(process.execPath, ["--import", "tsx", MAIN, ...args]);

const fingerprint = keyFingerprint(signer.key.publicKey);

/** Writes the data directory, exports it as a bundle, and times sha256sum over the bundle's objects. */
async function prepare(work: string, signing: Signing) {
  const data = join(work, `data-${signing}`);
  const bundle = join(work, `bundle-${signing}`);
  process.stderr.write(`generating ${RECORDS} records (${signing}-signed) in ${data}\n`);
  await makeDataDir(data, signing);
  process.stderr.write("exporting the evidence bundle\n");
  const exported = cli([
    "export",
    data,
    "--stream",
    STREAM,
    "--out",
    bundle,
    "--fingerprint",
    fingerprint,
    "--json",
  ]);
  if (exported.status !== 0) throw new Error(`export failed (${exported.status})`);
  const objectFiles = files(join(bundle, "objects"));
  const bytes = objectFiles.reduce((n, f) => n + statSync(f).size, 0);
  spawnSync("sha256sum", objectFiles, { stdio: "ignore" }); // warm the page cache for both contenders
  process.stderr.write("timing sha256sum\n");
  const sha = timed("sha256sum", objectFiles);
  if (sha.status !== 0) throw new Error("sha256sum failed");
  return { bundle, bytes, files: objectFiles.length, sha, exported };
}

const rateOf = (bytes: number, s: number) => ({
  seconds: Number(s.toFixed(3)),
  recordsPerSecond: Math.round(RECORDS / s),
  megabytesPerSecond: Number((bytes / s / 1e6).toFixed(1)),
});

async function main() {
  const work = mkdtempSync(join(tmpdir(), "auditsink-bench-verify-"));
  try {
    const { bundle, bytes, files: fileCount, sha, exported } = await prepare(work, "event");

    const verifyRun = (bundle: string, extra: string[]) => {
      const r = cli(["verify", bundle, "--fingerprint", fingerprint, "--json", ...extra]);
      const report = JSON.parse(r.stdout) as { ok: boolean; streams: { records: number }[] };
      if (r.status !== 0 || !report.ok) throw new Error(`verify did not pass (${r.status})`);
      return { seconds: r.seconds, records: report.streams[0]!.records };
    };
    process.stderr.write("timing auditsink verify --no-producer-signatures\n");
    const integrity = verifyRun(bundle, ["--no-producer-signatures"]);
    process.stderr.write("timing auditsink verify (producer signatures re-verified)\n");
    const full = verifyRun(bundle, []);
    let batchSigned: Record<string, unknown> | undefined;
    if (BATCH_SIGNED) {
      const b = await prepare(work, "batch");
      process.stderr.write("timing auditsink verify (batch-signed producer signatures re-verified)\n");
      const run = verifyRun(b.bundle, []);
      batchSigned = {
        description: `auditsink verify <bundle> (default) over a log whose producer signed every ${BATCH} events once (batch-signed envelopes, FORMAT.md §3b): one Ed25519 verification per batch (cached), membership (entry hash + inclusion path) per record`,
        recordBytes: Math.round(b.bytes / RECORDS),
        bundleBytes: b.bytes,
        sha256sum: rateOf(b.bytes, b.sha.seconds),
        ...rateOf(b.bytes, run.seconds),
        ratioToSha256sum: Number((b.sha.seconds / run.seconds).toFixed(3)),
      };
    }
    const rate = (s: number) => rateOf(bytes, s);
    const result = {
      benchmark: "verify",
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      // Other processes on the machine slow both contenders, not always equally: keep the load with the numbers.
      loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
      records: RECORDS,
      recordBytes: Math.round(bytes / RECORDS),
      bundleBytes: bytes,
      files: fileCount,
      sha256sum: rate(sha.seconds),
      verify: {
        description:
          "auditsink verify <bundle> --no-producer-signatures: hash chain, Merkle roots, checkpoint signatures, receipts, consistency proofs (one fresh process, startup included)",
        ...rate(integrity.seconds),
        ratioToSha256sum: Number((sha.seconds / integrity.seconds).toFixed(3)),
      },
      verifyWithProducerSignatures: {
        description:
          "auditsink verify <bundle> (default): the above plus one Ed25519 verification per record",
        ...rate(full.seconds),
        ratioToSha256sum: Number((sha.seconds / full.seconds).toFixed(3)),
      },
      ...(batchSigned ? { verifyWithBatchSignedProducerSignatures: batchSigned } : {}),
      goal: { ratioToSha256sum: 0.5, batchSignedRatioToSha256sum: 0.3 },
      boundedBy:
        "two cores: worker threads hash and parse segments (core digestSegment: SHA-256, leaf hash, JSON.parse, producer signatures) while the main thread receives the digests (structured clone) and does the ordered checks (chain links, Merkle frontier, checkpoint roots); producer signatures add one Ed25519 verify and one RFC 8785 canonicalization per record",
      export: { seconds: Number(exported.seconds.toFixed(3)) },
    };
    const out = join(ROOT, "bench/results/verify.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    if (process.env.KEEP) process.stderr.write(`kept ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
}

await main();

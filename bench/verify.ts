/**
 * `auditsink verify` throughput on an exported evidence bundle, against `sha256sum` over the same files in the
 * same run (the floor: reading and hashing every byte once).
 *
 *   npm run bench:verify                 → 1,000,000 records of 1 KB; writes bench/results/verify.json
 *   RECORDS=100000 npm run bench:verify  → a quicker run (KEEP=1 keeps the data directories and bundles)
 *   WORK=<dir> npm run bench:verify      → generates and exports into <dir> only once; later runs with the same
 *                                          <dir> (and RECORDS) time the same bundles again, to compare two versions
 *
 * 1. Writes a data directory the way the sink lays it out (segments of 10,000 producer-signed records, a signed
 *    checkpoint per segment, producers.json, the verifier key) with core's buildRecords/encodeSegment/signCheckpoint.
 * 2. `auditsink export` turns it into an evidence bundle (whole stream). Every `auditsink` here is the compiled CLI
 *    (built first), as installed.
 * 3. Times `sha256sum` over the bundle's object files, then `auditsink verify <bundle> --json` without and with
 *    producer signatures (`--no-producer-signatures`, the default), each on one thread (in-process) and with one
 *    worker per core. Each is a fresh process, as an auditor would run it; the page cache is warmed first so every
 *    contender reads from memory. The result keeps the load average seen before each run: the machine is shared.
 * 4. The same for a log whose producer signed every 100 events as one batch (batch-signed envelopes,
 *    docs/FORMAT.md §3b), with producer signatures, against `sha256sum` over that bundle (BATCH_SIGNED=0 skips it).
 * 5. `verdicts`: each goal against its best run, and what bounds it — the CPU per record of a `--jobs 1` run taken
 *    again under the V8 profiler (bench/cpu-profile.ts; not timed), by category, against sha256sum's per record.
 */

import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPair, KeyObjectSigner, keyFingerprint } from "@auditsink/core";
import { type Signing, writeArchive } from "./archive.ts";
import { CATEGORIES, type Category, largestCosts, summarizeProfile } from "./cpu-profile.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const RECORDS = Number(process.env.RECORDS ?? 1_000_000);
const SEGMENT = 10_000;
const STREAM = "bench";
const DEPLOYMENT = "auditsink.bench/verify";
/** The compiled CLI, as an auditor runs it once installed (`npm run build` first: no TypeScript loader at start). */
const BIN = join(ROOT, "packages/cli/bin/auditsink.js");

const producer = generateKeyPair("ed25519");
const sinkKey = generateKeyPair("ecdsa-p256");
const signer = new KeyObjectSigner(DEPLOYMENT, sinkKey.privateKey, sinkKey.publicKey);
// About 1 KB per stored record (the record wraps the event with stream, index, prev hash, producer, signature).
const filler = "x".repeat(360);
/** A batch-signed event carries its membership (~470 bytes at batch 100): no filler keeps its record near 1 KB. */
const BATCH = 100;
const BATCH_SIGNED = process.env.BATCH_SIGNED !== "0";

const makeDataDir = async (data: string, signing: Signing) =>
  (
    await writeArchive(data, {
      records: RECORDS,
      segment: SEGMENT,
      stream: STREAM,
      deployment: DEPLOYMENT,
      signer,
      producer,
      signing,
      batch: BATCH,
      filler,
    })
  ).bytes;

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

const cli = (args: string[]) => timed(process.execPath, [BIN, ...args]);

/**
 * `auditsink verify --jobs 1` once more under the V8 profiler (not timed: the profiler slows it): where one thread's
 * time per record goes, by category, with the functions that take most.
 */
function profiled(bundle: string, producerSignatures: boolean) {
  const dir = mkdtempSync(join(tmpdir(), "auditsink-verify-profile-"));
  try {
    const args = ["verify", bundle, "--fingerprint", fingerprint, "--json", "--jobs", "1"];
    if (!producerSignatures) args.push("--no-producer-signatures");
    const r = timed(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${dir}`, BIN, ...args]);
    if (r.status !== 0) throw new Error(`profiled verify failed (${r.status})`);
    const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error("verify wrote no CPU profile");
    const summary = summarizeProfile(join(dir, file), 0, Number.MAX_SAFE_INTEGER);
    const busyUs = ((summary.sampledMs * 1000) / RECORDS) * (1 - summary.idleShare);
    return {
      command: `node --cpu-prof ${args.join(" ").replace(bundle, "<bundle>")}`,
      busyUsPerRecord: Number(busyUs.toFixed(1)),
      idleShare: summary.idleShare,
      usPerRecord: Object.fromEntries(
        CATEGORIES.map((c) => [c, Number((summary.busyShare[c] * busyUs).toFixed(1))]),
      ) as Record<Category, number>,
      top: summary.top.slice(0, 8),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface VerifyRun {
  command: string;
  jobs: number;
  seconds: number;
  ratioToSha256sum: number;
}

/** A goal against its best run, and what bounds it (the profiled one-thread cost per record against sha256sum's). */
function verdict(
  goal: string,
  target: number,
  runs: readonly VerifyRun[],
  sha: { seconds: number },
  profile: ReturnType<typeof profiled>,
) {
  const best = [...runs].sort((a, b) => b.ratioToSha256sum - a.ratioToSha256sum)[0]!;
  const one = runs.find((r) => r.jobs === 1)!;
  const shaUs = (sha.seconds * 1e6) / RECORDS;
  const largest = largestCosts(profile.usPerRecord);
  const met = best.ratioToSha256sum >= target;
  return {
    goal,
    target,
    run: best.command,
    measured: best.ratioToSha256sum,
    met,
    bound: met
      ? "met"
      : `CPU per record: sha256sum reads and hashes a record in ${shaUs.toFixed(2)} µs; verify on one thread takes ${((one.seconds * 1e6) / RECORDS).toFixed(1)} µs (under the profiler ${profile.busyUsPerRecord} µs busy: ${largest}), so ${target} of sha256sum needs ${(shaUs / target).toFixed(1)} µs per record on all cores together; with ${best.jobs} jobs it took ${((best.seconds * 1e6) / RECORDS).toFixed(1)} µs`,
  };
}

const fingerprint = keyFingerprint(signer.key.publicKey);

/**
 * The bundle of a log signed per event or in batches, in <work>/bundle-<signing>: generated and exported unless
 * WORK already holds it. Times sha256sum over its objects (page cache warmed first).
 */
async function prepare(work: string, signing: Signing) {
  const data = join(work, `data-${signing}`);
  const bundle = join(work, `bundle-${signing}`);
  let exportSeconds: number | undefined;
  if (process.env.WORK && existsSync(join(bundle, "manifest.json"))) {
    process.stderr.write(`timing the bundle already in ${bundle}\n`);
    const manifest = JSON.parse(readFileSync(join(bundle, "manifest.json"), "utf8")) as {
      keyFingerprints: string[];
    };
    if (manifest.keyFingerprints[0] !== fingerprint)
      throw new Error(`${bundle} was signed by another run's key`);
  } else {
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
    exportSeconds = Number(exported.seconds.toFixed(3));
  }
  const objectFiles = files(join(bundle, "objects"));
  const bytes = objectFiles.reduce((n, f) => n + statSync(f).size, 0);
  spawnSync("sha256sum", objectFiles, { stdio: "ignore" }); // warm the page cache for every contender
  process.stderr.write("timing sha256sum\n");
  const shaLoad = loadavg()[0]!;
  const sha = timed("sha256sum", objectFiles);
  if (sha.status !== 0) throw new Error("sha256sum failed");
  return { bundle, bytes, files: objectFiles.length, sha, shaLoad, exportSeconds };
}

const rateOf = (bytes: number, s: number) => ({
  seconds: Number(s.toFixed(3)),
  recordsPerSecond: Math.round(RECORDS / s),
  megabytesPerSecond: Number((bytes / s / 1e6).toFixed(1)),
});

async function main() {
  process.stderr.write("building the CLI\n");
  if (spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: "inherit" }).status !== 0)
    throw new Error("npm run build failed");
  const work = process.env.WORK ?? mkdtempSync(join(tmpdir(), "auditsink-bench-verify-"));
  mkdirSync(work, { recursive: true });
  try {
    const cores = availableParallelism();
    const jobsList = [...new Set([1, cores])];
    const verifyRun = (
      prepared: Awaited<ReturnType<typeof prepare>>,
      producerSignatures: boolean,
      jobs: number,
    ) => {
      const extra = ["--jobs", String(jobs), ...(producerSignatures ? [] : ["--no-producer-signatures"])];
      process.stderr.write(`timing auditsink verify ${extra.join(" ")}\n`);
      const load = loadavg()[0]!;
      const r = cli(["verify", prepared.bundle, "--fingerprint", fingerprint, "--json", ...extra]);
      const report = JSON.parse(r.stdout) as { ok: boolean; streams: { records: number }[] };
      if (r.status !== 0 || !report.ok) throw new Error(`verify did not pass (${r.status})`);
      if (report.streams[0]!.records !== RECORDS) throw new Error("verify did not walk every record");
      return {
        command: `auditsink verify <bundle> ${extra.join(" ")}`,
        jobs,
        producerSignatures,
        loadAverage1mBefore: Number(load.toFixed(2)),
        ...rateOf(prepared.bytes, r.seconds),
        ratioToSha256sum: Number((prepared.sha.seconds / r.seconds).toFixed(3)),
      };
    };
    const perEvent = await prepare(work, "event");
    const runs = [false, true].flatMap((signatures) =>
      jobsList.map((jobs) => verifyRun(perEvent, signatures, jobs)),
    );
    process.stderr.write("profiling auditsink verify --jobs 1 --no-producer-signatures\n");
    const unsignedProfile = profiled(perEvent.bundle, false);
    const verdicts = [
      verdict(
        "without producer signatures: ≥ 0.5 of sha256sum",
        0.5,
        runs.filter((r) => !r.producerSignatures),
        perEvent.sha,
        unsignedProfile,
      ),
    ];
    let batchSigned: Record<string, unknown> | undefined;
    if (BATCH_SIGNED) {
      const b = await prepare(work, "batch");
      const verify = jobsList.map((jobs) => verifyRun(b, true, jobs));
      process.stderr.write("profiling auditsink verify --jobs 1 on the batch-signed log\n");
      const profile = profiled(b.bundle, true);
      verdicts.push(
        verdict("batch-signed producer signatures: ≥ 0.3 of sha256sum", 0.3, verify, b.sha, profile),
      );
      batchSigned = {
        description: `a log whose producer signed every ${BATCH} events once (batch-signed envelopes, FORMAT.md §3b): one Ed25519 verification per batch (cached), membership (entry hash + inclusion path) per record`,
        recordBytes: Math.round(b.bytes / RECORDS),
        bundleBytes: b.bytes,
        sha256sum: { loadAverage1mBefore: Number(b.shaLoad.toFixed(2)), ...rateOf(b.bytes, b.sha.seconds) },
        verify,
        profile,
      };
    }
    const result = {
      benchmark: "verify",
      date: new Date().toISOString(),
      command: "npm run bench:verify",
      machine: { cpus: cpus().length, model: cpus()[0]?.model },
      node: process.version,
      records: RECORDS,
      recordBytes: Math.round(perEvent.bytes / RECORDS),
      bundleBytes: perEvent.bytes,
      files: perEvent.files,
      producerSignatures: "one Ed25519 signature per event",
      sha256sum: {
        loadAverage1mBefore: Number(perEvent.shaLoad.toFixed(2)),
        ...rateOf(perEvent.bytes, perEvent.sha.seconds),
      },
      verify: runs,
      ...(batchSigned ? { batchSigned } : {}),
      goal: { withoutProducerSignatures: 0.5, withBatchSignedProducerSignatures: 0.3 },
      profile: unsignedProfile,
      verdicts,
      ...(perEvent.exportSeconds !== undefined ? { export: { seconds: perEvent.exportSeconds } } : {}),
    };
    const out = join(ROOT, "bench/results/verify.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.table([
      { run: "sha256sum", ratio: 1, "MB/s": result.sha256sum.megabytesPerSecond },
      ...runs.map((r) => ({ run: r.command, ratio: r.ratioToSha256sum, "MB/s": r.megabytesPerSecond })),
      ...((batchSigned?.verify as typeof runs | undefined) ?? []).map((r) => ({
        run: `batch-signed: ${r.command}`,
        ratio: r.ratioToSha256sum,
        "MB/s": r.megabytesPerSecond,
      })),
    ]);
    for (const v of verdicts) console.log(`${v.goal}: ${v.measured} — ${v.bound}`);
    console.log(`wrote ${out}`);
  } finally {
    if (!process.env.KEEP && !process.env.WORK) rmSync(work, { recursive: true, force: true });
  }
}

await main();

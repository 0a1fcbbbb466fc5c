/**
 * How long the writer takes to build the tiles of a stream written without them (an upgraded data directory, or
 * one run with `--tiles off`): docs/EMBEDDED.md §Tiles quotes this figure per million records.
 *
 *   npm run bench:tiles                 → 200,000 records of ~0.5 KB in segments of 10,000; writes
 *                                         bench/results/tiles-backfill.json
 *   RECORDS=1000000 npm run bench:tiles → the figure at a million records directly
 *
 * 1. Writes a data directory as the sink lays it out (bench/archive.ts), without tiles.
 * 2. Times core's TileWriter over the embedded store (LocalObjectStore: each tile a read-only file, fsynced),
 *    exactly what a writer does between commits: load (binary search for the first missing bundle), then `step`
 *    until it reaches the stream's size — reading each segment, hashing, storing every full tile and bundle.
 * 3. Times it again on the finished directory: the next start's load alone (what every restart costs).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPair, KeyObjectSigner, TileWriter } from "@auditsink/core";
import { LocalObjectStore } from "@auditsink/local";
import { writeArchive } from "./archive.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const RECORDS = Number(process.env.RECORDS ?? 200_000);
const SEGMENT = 10_000;
const STREAM = "agents.bench";

const work = mkdtempSync(join(tmpdir(), "auditsink-bench-tiles-"));
try {
  const key = generateKeyPair("ecdsa-p256");
  const deployment = "auditsink.bench/tiles";
  const { bytes } = await writeArchive(work, {
    records: RECORDS,
    segment: SEGMENT,
    stream: STREAM,
    deployment,
    signer: new KeyObjectSigner(deployment, key.privateKey, key.publicKey),
    producer: generateKeyPair("ed25519"),
    signing: "event",
    batch: 100,
    filler: "x".repeat(200),
  });
  const tmp = join(work, "tmp");
  mkdirSync(tmp, { recursive: true });
  const objects = new LocalObjectStore(join(work, "objects"), tmp);
  const load = loadavg()[0]!;
  let started = performance.now();
  const writer = new TileWriter(objects, STREAM);
  await writer.load(RECORDS);
  let steps = 0;
  while (await writer.step(RECORDS)) steps++;
  const seconds = (performance.now() - started) / 1000;
  started = performance.now();
  const again = new TileWriter(objects, STREAM);
  await again.load(RECORDS);
  const restartLoadMs = performance.now() - started;
  const tiles = (await objects.list(`streams/${STREAM}/tile/`)).length;
  const result = {
    benchmark: "tiles-backfill",
    date: new Date().toISOString(),
    records: RECORDS,
    segmentRecords: SEGMENT,
    segmentBytes: bytes,
    steps: steps + 1,
    tilesStored: tiles,
    seconds: Number(seconds.toFixed(2)),
    recordsPerSecond: Math.round(RECORDS / seconds),
    secondsPerMillionRecords: Number(((seconds * 1_000_000) / RECORDS).toFixed(1)),
    restartLoadMs: Number(restartLoadMs.toFixed(1)),
    loadAverageBefore: Number(load.toFixed(2)),
    note: "one core's work: the writer reads back one segment per step between commits; the machine is shared (load average before the run)",
  };
  console.log(JSON.stringify(result, null, 2));
  writeFileSync(join(ROOT, "bench/results/tiles-backfill.json"), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

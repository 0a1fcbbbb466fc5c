/**
 * `auditsink export`: writes an evidence bundle (layout in bundle.ts) for one stream and a window of received
 * times. It reads the stream once, in segment order, building the Merkle tree with core's MerkleTree to cut
 * the inclusion and consistency proofs; it checks nothing itself — `auditsink verify <bundle>` does, with core.
 */
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  checkpointKey,
  checkpointPrefix,
  Frontier,
  formatVerifierKey,
  inTimeWindow,
  MerkleTree,
  parseStoreKey,
  type Receipt,
  readSegment,
  segmentPrefix,
  TIME_BOUND,
  toHex,
  ZERO_HASH,
} from "@auditsink/core";
import { BUNDLE_FORMAT, type BundleManifest, type ConsistencyFile } from "./bundle.ts";
import { CliError } from "./errors.ts";
import { bundleReadme } from "./readme.ts";
import { openSource } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";
import { noteKeyFingerprint, resolveTrust, type TrustOptions } from "./trust.ts";

export interface ExportOptions extends TrustOptions {
  stream: string;
  out: string;
  /**
   * Window of received times, as `GET /v1/events?receivedSince=&receivedUntil=` defines it (core inTimeWindow):
   * RFC 3339, inclusive `from`, exclusive `to`; absent ends are open.
   */
  from?: string;
  to?: string;
  /** Inclusion proofs for every record of the window (default: every record up to 1,000, else first and last). */
  allProofs?: boolean;
  s3?: S3ReadOptions;
  onSegment?: (records: number) => void;
}

export interface ExportResult {
  out: string;
  manifest: BundleManifest;
  files: number;
  bytes: number;
  inclusionProofs: number;
  consistencyProofs: number;
}

const PROOF_ALL_LIMIT = 1000;

function toInstant(text: string | undefined, what: string): string | undefined {
  if (text === undefined) return undefined;
  if (!TIME_BOUND.test(text) || Number.isNaN(Date.parse(text)))
    throw new CliError(
      "usage",
      `--${what} ${text} is not an RFC 3339 date and time (for example 2026-11-28T00:00:00Z)`,
    );
  return new Date(text).toISOString();
}

interface Kept {
  index: number;
  hash: Buffer;
  source: string;
  id: string;
}

export async function exportBundle(location: string, options: ExportOptions): Promise<ExportResult> {
  const from = toInstant(options.from, "received-since");
  const to = toInstant(options.to, "received-until");
  const source = await openSource(location, options.s3);
  const trust = await resolveTrust(options, source.offeredKeys, true);
  const existing = await readdir(options.out).catch(() => []);
  if (existing.length > 0) throw new CliError("usage", `${options.out} exists and is not empty`);
  const stream = options.stream;
  const store = source.store;

  // 1. Walk every segment in order: the tree (for proofs), the window's first and last segment, the frontier
  //    and head hash at the first one.
  const tree = MerkleTree.empty();
  const frontier = new Frontier();
  let lastHash = ZERO_HASH;
  let segFirst: number | undefined;
  let segEnd = 0;
  const segmentEnds: number[] = [];
  let recFirst: number | undefined;
  let recEnd = 0;
  let start: BundleManifest["start"] | undefined;
  const kept: Kept[] = [];
  let keptLast: Kept | undefined;
  let windowCount = 0;
  const segmentKeys = (await store.list(segmentPrefix(stream))).filter(
    (k) => parseStoreKey(k)?.kind === "segments",
  );
  if (segmentKeys.length === 0)
    throw new CliError("not-found", `stream ${stream} has no segments in ${location}`);
  for (const key of segmentKeys) {
    const first = parseStoreKey(key)!.n;
    const bytes = await store.get(key);
    // A listed segment that cannot be read would silently shorten the bundle: refuse instead.
    if (!bytes) throw new CliError("source-unreadable", `segment ${key} is listed but cannot be read`);
    const records = readSegment(bytes);
    const inWindow = records.filter((r) =>
      inTimeWindow(r.record.received, { ...(from ? { since: from } : {}), ...(to ? { until: to } : {}) }),
    );
    if (inWindow.length > 0 && segFirst === undefined) {
      segFirst = first;
      start = {
        size: frontier.size,
        headHash: toHex(lastHash),
        frontier: frontier.hashes.map(toHex),
        checkpointSize: 0,
      };
    }
    for (const r of records) {
      tree.append(r.leaf);
      if (segFirst === undefined) frontier.append(r.leaf);
      lastHash = r.hash;
    }
    for (const r of inWindow) {
      const k = { index: r.record.index, hash: r.hash, source: r.record.event.source, id: r.record.event.id };
      recFirst ??= k.index;
      recEnd = k.index + 1;
      windowCount++;
      if (options.allProofs || kept.length < PROOF_ALL_LIMIT) kept.push(k);
      keptLast = k;
    }
    if (inWindow.length > 0) segEnd = first + records.length;
    segmentEnds.push(first + records.length);
    options.onSegment?.(tree.size);
  }
  if (segFirst === undefined || recFirst === undefined || !start) {
    throw new CliError("not-found", `stream ${stream} has no records received in the window`);
  }

  // 2. The checkpoints: every one from the window's first segment up to the first that covers its last.
  const sizes = (await store.list(checkpointPrefix(stream)))
    .map((k) => parseStoreKey(k))
    .filter((k) => k?.kind === "checkpoints")
    .map((k) => k!.n);
  const coveredBy = sizes.find((s) => s >= segEnd && s <= tree.size);
  if (coveredBy === undefined) {
    throw new CliError(
      "not-found",
      `no signed checkpoint covers record ${segEnd - 1} of ${stream} yet (the store holds ${tree.size} records, its newest checkpoint is of size ${sizes[sizes.length - 1] ?? 0}); export again after the next checkpoint`,
    );
  }
  // The bundle holds every record the covering checkpoint signs, so the verifier can recompute its root: when no
  // checkpoint ends exactly at the window's last segment (a crash before signing, repaired later), the segments
  // up to the covering one come too.
  segEnd = segmentEnds.find((end) => end >= coveredBy) ?? segEnd;
  const bundled = sizes.filter((s) => s >= segFirst! && s <= coveredBy && s > 0);

  // 3. Copy the objects byte for byte.
  let files = 0;
  let bytesOut = 0;
  const put = async (rel: string, data: Uint8Array | string) => {
    const path = join(options.out, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
    files++;
    bytesOut += typeof data === "string" ? Buffer.byteLength(data) : data.length;
  };
  for (const key of segmentKeys) {
    const n = parseStoreKey(key)!.n;
    if (n < segFirst || n >= segEnd) continue;
    const bytes = await store.get(key);
    if (bytes) await put(join("objects", key), bytes);
  }
  const coverText = Buffer.from((await store.get(checkpointKey(stream, coveredBy)))!).toString("utf8");
  for (const size of bundled) {
    const key = checkpointKey(stream, size);
    const bytes = await store.get(key);
    if (bytes) await put(join("objects", key), bytes);
  }

  // 4. Proofs: receipts for the window's records against the covering checkpoint, consistency between
  //    successive bundled checkpoints.
  const proven = options.allProofs || windowCount <= PROOF_ALL_LIMIT ? kept : [kept[0]!, keptLast!];
  const receipts: Receipt[] = proven.map((k) => ({
    stream,
    index: k.index,
    recordHash: toHex(k.hash),
    source: k.source,
    id: k.id,
    checkpoint: coverText,
    inclusionProof: tree.inclusionProof(k.index, coveredBy).map(toHex),
  }));
  const consistency: ConsistencyFile = { proofs: [] };
  for (let i = 1; i < bundled.length; i++) {
    const m = bundled[i - 1]!;
    const n = bundled[i]!;
    consistency.proofs.push({ from: m, to: n, proof: tree.consistencyProof(m, n).map(toHex) });
  }
  await put(join("proofs", "inclusion.json"), `${JSON.stringify({ receipts }, null, 1)}\n`);
  await put(join("proofs", "consistency.json"), `${JSON.stringify(consistency, null, 1)}\n`);

  // 5. Keys, manifest, README.
  const vkeys = trust.trusted.map(formatVerifierKey);
  await put(
    join("keys", "verifier-keys.txt"),
    `# Checkpoint keys of ${source.deployment ?? "the deployment"} (C2SP verifier key strings). Pin them out of band.\n${vkeys.join("\n")}\n`,
  );
  if (source.producers) {
    await put(
      join("keys", "producers.json"),
      `${JSON.stringify({ producers: source.producers }, null, 2)}\n`,
    );
  }
  const deployment = source.deployment ?? coverText.split("\n")[0]!.slice(0, -(stream.length + 1));
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: 1,
    deployment,
    stream,
    createdAt: new Date().toISOString(),
    window: { ...(from ? { from } : {}), ...(to ? { to } : {}) },
    records: { first: recFirst, end: recEnd },
    segments: { first: segFirst, end: segEnd },
    start,
    coveredBy,
    keyFingerprints: trust.trusted.map(noteKeyFingerprint),
  };
  await put("manifest.json", `${JSON.stringify(manifest, null, 2)}\n`);
  await put("README.md", bundleReadme(manifest, receipts.length, consistency.proofs.length));
  return {
    out: options.out,
    manifest,
    files,
    bytes: bytesOut,
    inclusionProofs: receipts.length,
    consistencyProofs: consistency.proofs.length,
  };
}

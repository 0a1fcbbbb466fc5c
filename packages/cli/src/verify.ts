/**
 * `auditsink verify`: fetch through a read-only store and verify with core (verifyStoredStream, which feeds
 * core's StreamVerifier; checkConsistency for bundled consistency proofs). Nothing here re-implements a check;
 * this file only chooses what to read, whom to trust, where to resume, and collects the findings.
 */

import { readFile, rename, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import {
  checkpointPrefix,
  type Finding,
  keyFingerprint,
  parseStoreKey,
  type StreamReport,
  type VerifierState,
  verifyStoredStream,
} from "@auditsink/core";
import { checkBundle, manifestFindings, readBundleReceipts } from "./bundleCheck.ts";
import { DigestPool } from "./DigestPool.ts";
import { CliError } from "./errors.ts";
import { type ReceiptEntry, readReceiptEntries, sortReceipts } from "./receipts.ts";
import { openSource, type Source } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";
import { noteKeyFingerprint, resolveTrust, type TrustOptions } from "./trust.ts";

export interface VerifyCommandOptions extends TrustOptions {
  /** Only these streams (default: every stream in the source). */
  streams?: readonly string[];
  /** Incremental verification: resume each stream from this file's state and save the new state to it. */
  stateFile?: string;
  /** Ignore the state file's positions (verify from record 0), still saving the new state. */
  full?: boolean;
  /** A file of receipts (JSON array, {"receipts": [...]}, or JSON lines) to check against the log. */
  receiptsFile?: string;
  /** Re-verify producer signatures when the source has producer keys (default true). */
  producerSignatures?: boolean;
  /** Worker threads that hash and parse segments (default: one per core; 1 = on the main thread only). */
  threads?: number;
  s3?: S3ReadOptions;
}

export interface VerifyProgress {
  start(stream: string, total: number): void;
  update(records: number): void;
  stop(): void;
}

export interface StreamResult extends Omit<StreamReport, "failures"> {
  failures: Finding<string>[];
  /** Record index verification started from (0 unless resumed from a state file). */
  from: number;
  /** Receipts checked against this stream's records. */
  receipts: number;
}

export interface VerifyResult {
  ok: boolean;
  source: { kind: Source["kind"]; location: string; deployment?: string };
  trust: { how: string; fingerprints: string[] };
  producerSignatures: boolean;
  /** Threads that hashed and parsed segments (1 when workers were not used). */
  threads: number;
  streams: StreamResult[];
  /**
   * Receipts given (`--receipts` and a bundle's proofs/inclusion.json): how many entries, how many were checked
   * against the log, how many were not (their stream was left out with `--stream`, or a bundle's manifest is
   * unusable), and a `receipt-malformed` failure for every entry that is not a receipt.
   */
  receipts: { given: number; checked: number; notChecked: number; failures: Finding<string>[] };
  failures: number;
  warnings: number;
}

interface StateFile {
  version: 1;
  streams: Record<string, VerifierState>;
}

async function readState(path: string): Promise<StateFile> {
  try {
    const state = JSON.parse(await readFile(path, "utf8")) as StateFile;
    if (state.version !== 1 || typeof state.streams !== "object") throw new Error("not a state file");
    return state;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, streams: {} };
    throw new CliError("usage", `${path} is not a verifier state file`, { cause: e });
  }
}

async function writeState(path: string, state: StateFile): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(tmp, path);
}

/** The newest checkpoint size stored for a stream: the progress bar's total. */
async function storedSize(source: Source, stream: string): Promise<number> {
  const keys = await source.store.list(checkpointPrefix(stream));
  return parseStoreKey(keys[keys.length - 1] ?? "")?.n ?? 0;
}

export async function runVerify(
  location: string,
  options: VerifyCommandOptions = {},
  progress?: VerifyProgress,
): Promise<VerifyResult> {
  const source = await openSource(location, options.s3);
  const trust = await resolveTrust(options, source.offeredKeys, source.kind === "data-dir");
  const state =
    options.stateFile && source.kind !== "bundle" ? await readState(options.stateFile) : undefined;
  const entries: ReceiptEntry[] = options.receiptsFile ? await readReceiptEntries(options.receiptsFile) : [];
  const bundle = source.bundle;
  // A bundle's inclusion proofs are receipts: core checks each against the pinned keys and the bundled records.
  const bundleProofs = bundle ? await readBundleReceipts(bundle) : undefined;
  const given = sortReceipts(entries);
  const bundled = sortReceipts(bundleProofs?.entries ?? []);
  const receipts = [...given.receipts, ...bundled.receipts];
  const checkProducers = options.producerSignatures !== false && source.producerKeys !== undefined;
  // The sink signs its own _system events with its checkpoint key: a trusted key is a known producer key too.
  const producerKeys = new Map(source.producerKeys);
  for (const k of trust.trusted) producerKeys.set(keyFingerprint(k.publicKey), k.publicKey);
  const selected = options.streams?.length ? [...new Set(options.streams)] : undefined;
  const stored = bundle ? (bundle.stream ? [bundle.stream] : []) : await source.streams();
  // Without --stream, a receipt's stream is verified even when the store has nothing of it: its records are
  // then missing (receipt-not-in-log), which is what an auditor holding that receipt must learn.
  let streams = selected ?? [...new Set([...stored, ...receipts.map((r) => r.stream)])].sort();
  if (bundle && selected) streams = streams.filter((s) => s === bundle.stream);
  // A bundle without a usable manifest has no authenticated start for anything: only its problems are reported.
  if (bundle && !bundle.manifest) streams = [bundle.stream];
  const results: StreamResult[] = [];
  const pool = await DigestPool.start(
    options.threads ?? availableParallelism(),
    checkProducers ? producerKeys : undefined,
  );
  try {
    for (const stream of streams) {
      const ofBundle = bundle !== undefined && stream === bundle.stream;
      const streamReceipts = receipts.filter((r) => r.stream === stream);
      if (ofBundle && !bundle.manifest) {
        // Without a usable manifest there is no authenticated place to start from: report only what is wrong.
        results.push(unverified(stream, [...manifestFindings(bundle), ...(bundleProofs?.findings ?? [])]));
        continue;
      }
      const manifest = ofBundle ? bundle.manifest : undefined;
      const bundleStart = manifest && manifest.start.size > 0 ? manifest.start : undefined;
      const resumed = options.full ? undefined : state?.streams[stream];
      const from = bundleStart ?? resumed;
      // Read the head before the walk: the sink writes segments before it moves the head, so a head read first
      // can never be ahead of what the walk then finds.
      const head = await source.head(stream);
      if (progress) progress.start(stream, await storedSize(source, stream));
      let report: StreamReport;
      try {
        report = await verifyStoredStream(
          source.store,
          stream,
          {
            trusted: trust.trusted,
            ...(source.deployment ? { deployment: source.deployment } : {}),
            ...(from ? { from } : {}),
            ...(head ? { head } : {}),
            receipts: streamReceipts,
            ...(checkProducers ? { producerKeys } : {}),
          },
          {
            onSegment: (records) => progress?.update(records),
            ...(pool ? { digest: (bytes: Uint8Array) => pool.digest(bytes) } : {}),
          },
        );
      } finally {
        progress?.stop();
      }
      const result: StreamResult = {
        ...report,
        failures: [...report.failures],
        from: from?.size ?? 0,
        receipts: streamReceipts.length,
      };
      if (manifest) {
        result.failures.push(...(bundleProofs?.findings ?? []));
        await checkBundle(source, manifest, trust.trusted, result, bundled.receipts);
      }
      results.push(result);
      if (state && result.failures.length === 0) state.streams[stream] = report.state;
    }
  } finally {
    pool?.close();
  }
  if (state && options.stateFile) await writeState(options.stateFile, state);
  const malformed = [...given.malformed, ...bundled.malformed];
  const checked = results.reduce((n, r) => n + r.receipts, 0);
  const failures = results.reduce((n, r) => n + r.failures.length, 0) + malformed.length;
  return {
    ok: failures === 0,
    source: {
      kind: source.kind,
      location,
      ...(source.deployment ? { deployment: source.deployment } : {}),
    },
    trust: { how: trust.how, fingerprints: trust.trusted.map(noteKeyFingerprint) },
    producerSignatures: checkProducers,
    threads: pool?.threads ?? 1,
    streams: results,
    receipts: {
      given: entries.length + (bundleProofs?.entries.length ?? 0),
      checked,
      notChecked: receipts.length - checked,
      failures: malformed,
    },
    failures,
    warnings: results.reduce((n, r) => n + r.warnings.length, 0),
  };
}

/** The result for a stream that could not be walked (a bundle whose manifest is unusable). */
function unverified(stream: string, failures: Finding<string>[]): StreamResult {
  return {
    stream,
    records: 0,
    segments: 0,
    checkpoints: 0,
    failures,
    warnings: [],
    state: { size: 0, headHash: "0".repeat(64), frontier: [], checkpointSize: 0 },
    from: 0,
    receipts: 0,
  };
}

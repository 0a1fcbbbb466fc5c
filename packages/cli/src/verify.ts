/**
 * `auditsink verify`: one run of core's runVerification over a read-only source (checkConsistency for bundled
 * consistency proofs). Nothing here re-implements a check or orchestrates the walk; this file only chooses what
 * to read, whom to trust (trust.ts), where to resume, and prints the findings.
 */

import { readFile, rename, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import {
  checkpointPrefix,
  type Finding,
  keyFingerprint,
  parseStoreKey,
  runVerification,
  type StreamReport,
  VerificationStoppedError,
  type VerifierState,
  type WitnessPolicy,
  witnessPolicy,
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
  /**
   * Files of receipts to check against the log: each a JSON array, {"receipts": [...]}, JSON lines, or one
   * c2sp.org/tlog-proof (as GET /v1/receipts?format=tlog-proof serves it).
   */
  receiptsFiles?: readonly string[];
  /** Re-verify producer signatures when the source has producer keys (default true). */
  producerSignatures?: boolean;
  /**
   * Worker threads that check records — hashes, parsing, producer signatures — (default: one per core; 1 = all on
   * the main thread). The ordered checks (chain, Merkle tree, checkpoints) stay on the main thread; the findings
   * are the same for any number.
   */
  jobs?: number;
  /** Stops the run: it rejects with the signal's reason, and the workers are ended at once. */
  signal?: AbortSignal;
  s3?: S3ReadOptions;
  /**
   * A witness policy: each stream's checkpoints must be cosigned by `quorum` (default: all) of these witness
   * verifier keys within `maxLagSeconds` (default 300) of being signed (docs/TRANSPARENCY.md §3).
   */
  witnesses?: { verifierKeys: readonly string[]; quorum?: number; maxLagSeconds?: number };
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
  /** How the checkpoint keys were chosen (core's TrustBasis), from where, and which they are. */
  trust: { how: string; detail: string; fingerprints: string[]; firstUse?: boolean };
  /** Findings about the archive as a whole: objects outside any stream, streams missing or unrecorded. */
  archive: Finding<string>[];
  producerSignatures: boolean;
  /** Worker threads that checked records (1: all on the main thread). */
  jobs: number;
  streams: StreamResult[];
  /**
   * Receipts given (`--receipts` and a bundle's proofs/inclusion.json): how many entries, how many were checked
   * against the log, how many were not (their stream was left out with `--stream`, or a bundle's manifest is
   * unusable), and a `receipt-malformed` failure for every entry that is not a receipt.
   */
  receipts: { given: number; checked: number; notChecked: number; failures: Finding<string>[] };
  /** The witness policy checked, if any: its quorum and witness names. */
  witnessPolicy?: { quorum: number; witnesses: string[] };
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
  let policy: WitnessPolicy | undefined;
  try {
    policy = options.witnesses
      ? witnessPolicy(options.witnesses.verifierKeys, options.witnesses.quorum)
      : undefined;
  } catch (e) {
    throw new CliError("usage", `--witness: ${(e as Error).message}`, { cause: e });
  }
  const source = await openSource(location, options.s3);
  // Never the source's own key by itself (docs/FORMAT.md §2): pinned, fingerprint, or trust on first use.
  const trust = await resolveTrust(options, source.offeredKeys, false, location);
  const state =
    options.stateFile && source.kind !== "bundle" ? await readState(options.stateFile) : undefined;
  const entries: ReceiptEntry[] = [];
  for (const file of options.receiptsFiles ?? []) entries.push(...(await readReceiptEntries(file)));
  const bundle = source.bundle;
  // A bundle's inclusion proofs are receipts: core checks each against the pinned keys and the bundled records.
  const bundleProofs = bundle ? await readBundleReceipts(bundle) : undefined;
  const given = sortReceipts(entries);
  const bundled = sortReceipts(bundleProofs?.entries ?? []);
  const receipts = [...given.receipts, ...bundled.receipts];
  const checkProducers = options.producerSignatures !== false && source.producerKeys !== undefined;
  let jobs = 1;
  // The sink signs its own _system events with its checkpoint key: a trusted key is a known producer key too.
  const producerKeys = new Map(source.producerKeys);
  for (const k of trust.trusted) producerKeys.set(keyFingerprint(k.publicKey), k.publicKey);
  const selected = options.streams?.length ? [...new Set(options.streams)] : undefined;
  // A bundle is one stream's window. Without --stream, the streams its receipts name are asked for too (the
  // store holding none of them is then reported: stream-missing, and each such receipt the first FORMAT.md §9
  // check it fails, receipt-not-in-log when it passes the others).
  let streams = selected;
  if (bundle) {
    streams = selected
      ? selected.filter((s) => s === bundle.stream)
      : [...new Set([bundle.stream, ...receipts.map((r) => r.stream)])].filter(Boolean);
  }
  const manifest = bundle?.manifest;
  let report: Awaited<ReturnType<typeof runVerification>> | undefined;
  if (!bundle || manifest) {
    const pool = DigestPool.start(
      options.jobs ?? availableParallelism(),
      checkProducers ? producerKeys : undefined,
    );
    jobs = pool?.threads ?? 1;
    try {
      const bundleStart =
        manifest && manifest.start.size > 0 ? { [manifest.stream]: manifest.start } : undefined;
      const incremental = bundleStart ?? (options.full ? undefined : state?.streams);
      report = await runVerification(
        {
          objects: source.store,
          ...(source.deployment ? { deployment: source.deployment } : {}),
          ...(source.heads ? { heads: source.heads } : {}),
        },
        {
          keys: trust.trusted,
          basis: trust.how === "source-own-key" ? "pinned" : trust.how,
          detail: trust.detail,
        },
        {
          mode: incremental ? "incremental" : "full",
          ...(incremental ? { states: incremental } : {}),
          ...(streams ? { streams } : {}),
          ...(checkProducers ? { producerKeys } : {}),
          receipts,
          // Every key against the layout: in a full run of the whole source (a deliberate full verification) and
          // always for a bundle, one stream's window whose objects are checked against the layout, not the set of
          // streams. An incremental run reads only what is new.
          layout: Boolean(bundle) || (!options.streams?.length && !incremental),
          // A bundle carries no tiles (FORMAT.md §13): nothing to fetch, and their absence says nothing.
          ...(bundle ? { streamSet: false, tiles: false } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
          ...(policy
            ? {
                witnesses: {
                  policy,
                  ...(options.witnesses?.maxLagSeconds !== undefined
                    ? { maxLagSeconds: options.witnesses.maxLagSeconds }
                    : {}),
                },
              }
            : {}),
          progress: {
            onStream: async (stream: string) => progress?.start(stream, await storedSize(source, stream)),
            onStreamDone: () => progress?.stop(),
            onSegment: (records: number) => progress?.update(records),
            ...(pool ? { digest: (bytes: Uint8Array) => pool.digest(bytes, options.signal) } : {}),
          },
        },
      );
    } catch (e) {
      // Stopped by the signal: this one-off run keeps no positions, so it rejects with the reason itself.
      throw e instanceof VerificationStoppedError ? e.cause : e;
    } finally {
      await pool?.close();
    }
  }
  const results: StreamResult[] = [];
  const receiptsOf = (stream: string) => receipts.filter((r) => r.stream === stream);
  for (const r of report?.streams ?? []) {
    const from =
      report?.mode === "incremental"
        ? ((manifest && r.stream === manifest.stream ? manifest.start : state?.streams[r.stream])?.size ?? 0)
        : 0;
    const result: StreamResult = {
      ...r,
      failures: [...r.failures],
      from,
      receipts: receiptsOf(r.stream).length,
    };
    if (manifest && r.stream === manifest.stream) {
      result.failures.push(...(bundleProofs?.findings ?? []));
      await checkBundle(source, manifest, trust.trusted, result, bundled.receipts);
    }
    results.push(result);
  }
  // Without a usable manifest there is no authenticated place to start from: report only what is wrong.
  if (bundle && !manifest)
    results.push(unverified(bundle.stream, [...manifestFindings(bundle), ...(bundleProofs?.findings ?? [])]));
  if (state && options.stateFile) {
    for (const r of results) if (r.failures.length === 0) state.streams[r.stream] = r.state;
    await writeState(options.stateFile, state);
  }
  const archive = report?.archive ?? [];
  // A receipt was checked when its stream was walked, or found missing from the store (reported in `archive`).
  const missing = new Set(archive.filter((f) => f.code === "stream-missing").map((f) => f.stream));
  const checked = receipts.filter(
    (r) => results.some((s) => s.stream === r.stream) || missing.has(r.stream),
  ).length;
  const malformed = [...given.malformed, ...bundled.malformed];
  const failures = archive.length + results.reduce((n, r) => n + r.failures.length, 0) + malformed.length;
  return {
    ok: failures === 0,
    source: {
      kind: source.kind,
      location,
      ...(source.deployment ? { deployment: source.deployment } : {}),
    },
    trust: {
      how: trust.how,
      detail: trust.detail,
      fingerprints: trust.trusted.map(noteKeyFingerprint),
      ...(trust.firstUse ? { firstUse: true } : {}),
    },
    archive,
    producerSignatures: checkProducers,
    jobs,
    streams: results,
    receipts: {
      given: entries.length + (bundleProofs?.entries.length ?? 0),
      checked,
      notChecked: receipts.length - checked,
      failures: malformed,
    },
    ...(policy
      ? { witnessPolicy: { quorum: policy.quorum, witnesses: policy.witnesses.map((w) => w.name) } }
      : {}),
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

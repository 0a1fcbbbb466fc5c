/**
 * `auditsink verify`: one run of core's runVerification over a read-only source (checkConsistency for bundled
 * consistency proofs). Nothing here re-implements a check or orchestrates the walk; this file only chooses what
 * to read, whom to trust (trust.ts), where to resume, and prints the findings.
 */

import { readFile, rename, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import {
  checkConsistency,
  checkpointKey,
  checkpointPrefix,
  type Finding,
  keyFingerprint,
  openCheckpoint,
  parseStoreKey,
  type Receipt,
  runVerification,
  type StreamReport,
  type VerifierState,
} from "@auditsink/core";
import type { ConsistencyFile } from "./bundle.ts";
import { DigestPool } from "./DigestPool.ts";
import { CliError } from "./errors.ts";
import { openSource, type Source } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";
import { noteKeyFingerprint, resolveTrust, type TrustOptions } from "./trust.ts";

/** Findings only the CLI can make, about an evidence bundle as a whole (docs/CLI.md lists them). */
export type BundleFailureCode = "bundle-not-covered" | "bundle-proof-invalid";

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
}

export interface VerifyResult {
  ok: boolean;
  source: { kind: Source["kind"]; location: string; deployment?: string };
  /** How the checkpoint keys were chosen (core's TrustBasis), from where, and which they are. */
  trust: { how: string; detail: string; fingerprints: string[]; firstUse?: boolean };
  /** Findings about the archive as a whole: objects outside any stream, streams missing or unrecorded. */
  archive: Finding<string>[];
  producerSignatures: boolean;
  /** Threads that hashed and parsed segments (1 when workers were not used). */
  threads: number;
  streams: StreamResult[];
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

export async function readReceipts(path: string): Promise<Receipt[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new CliError("usage", `cannot read receipts file ${path}`, { cause });
  }
  try {
    const trimmed = text.trim();
    if (trimmed.startsWith("[")) return JSON.parse(trimmed) as Receipt[];
    if (trimmed.startsWith("{") && !trimmed.includes("\n")) {
      const one = JSON.parse(trimmed) as { receipts?: Receipt[] } & Receipt;
      return one.receipts ?? [one];
    }
    const whole = (() => {
      try {
        return JSON.parse(trimmed) as { receipts?: Receipt[] };
      } catch {
        return undefined;
      }
    })();
    if (whole?.receipts) return whole.receipts;
    return trimmed
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Receipt);
  } catch (cause) {
    throw new CliError(
      "usage",
      `${path} holds no receipts (JSON array, {"receipts": [...]}, or JSON lines)`,
      {
        cause,
      },
    );
  }
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
  // Never the source's own key by itself (docs/FORMAT.md §2): pinned, fingerprint, or trust on first use.
  const trust = await resolveTrust(options, source.offeredKeys, false, location);
  const state =
    options.stateFile && source.kind !== "bundle" ? await readState(options.stateFile) : undefined;
  const receipts = options.receiptsFile ? await readReceipts(options.receiptsFile) : [];
  // A bundle's inclusion proofs are receipts: core checks each against the pinned keys and the bundled records.
  if (source.bundle)
    receipts.push(...(await readReceipts(join(source.bundle.dir, "proofs", "inclusion.json"))));
  const checkProducers = options.producerSignatures !== false && source.producerKeys !== undefined;
  // The sink signs its own _system events with its checkpoint key: a trusted key is a known producer key too.
  const producerKeys = new Map(source.producerKeys);
  for (const k of trust.trusted) producerKeys.set(keyFingerprint(k.publicKey), k.publicKey);
  const bundle = source.bundle;
  let streams = options.streams?.length ? [...options.streams] : undefined;
  if (bundle) streams = (streams ?? [bundle.stream]).filter((s) => s === bundle.stream);
  const pool = await DigestPool.start(
    options.threads ?? availableParallelism(),
    checkProducers ? producerKeys : undefined,
  );
  let report: Awaited<ReturnType<typeof runVerification>>;
  try {
    const bundleStart = bundle && bundle.start.size > 0 ? { [bundle.stream]: bundle.start } : undefined;
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
        ...(bundle ? { streamSet: false } : {}),
        progress: {
          onStream: async (stream: string) => progress?.start(stream, await storedSize(source, stream)),
          onStreamDone: () => progress?.stop(),
          onSegment: (records: number) => progress?.update(records),
          ...(pool ? { digest: (bytes: Uint8Array) => pool.digest(bytes) } : {}),
        },
      },
    );
  } finally {
    pool?.close();
  }
  const results: StreamResult[] = [];
  for (const r of report.streams) {
    const from =
      report.mode === "incremental" ? ((bundle ? bundle.start : state?.streams[r.stream])?.size ?? 0) : 0;
    const result: StreamResult = { ...r, failures: [...r.failures], from };
    if (bundle) await checkBundle(source, trust.trusted, result);
    results.push(result);
  }
  if (state && options.stateFile) {
    for (const r of results) if (r.failures.length === 0) state.streams[r.stream] = r.state;
    await writeState(options.stateFile, state);
  }
  const failures = report.archive.length + results.reduce((n, r) => n + r.failures.length, 0);
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
    archive: report.archive,
    producerSignatures: checkProducers,
    threads: pool?.threads ?? 1,
    streams: results,
    failures,
    warnings: results.reduce((n, r) => n + r.warnings.length, 0),
  };
}

/**
 * What a bundle must show beyond a clean walk: a verified checkpoint covers every bundled record (else the
 * starting frontier and the records are unauthenticated), and its consistency proofs hold.
 */
async function checkBundle(
  source: Source,
  trusted: Parameters<typeof openCheckpoint>[1],
  result: StreamResult,
): Promise<void> {
  const bundle = source.bundle!;
  const fail = (code: BundleFailureCode, at: number | string, message: string) =>
    result.failures.push({ code, stream: bundle.stream, at, message });
  const needed = Math.max(bundle.records.end, bundle.coveredBy);
  if (result.state.checkpointSize < needed) {
    fail(
      "bundle-not-covered",
      needed,
      `no verified checkpoint covers the bundle's records up to ${needed} (newest verified: ${result.state.checkpointSize})`,
    );
  }
  let file: ConsistencyFile = { proofs: [] };
  try {
    file = JSON.parse(
      await readFile(join(bundle.dir, "proofs", "consistency.json"), "utf8"),
    ) as ConsistencyFile;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      fail("bundle-proof-invalid", "proofs/consistency.json", "proofs/consistency.json is not JSON");
    }
  }
  for (const p of file.proofs) {
    const open = async (size: number) => {
      const bytes = await source.store.get(checkpointKey(bundle.stream, size));
      return bytes ? openCheckpoint(Buffer.from(bytes).toString("utf8"), trusted) : undefined;
    };
    const older = await open(p.from);
    const newer = await open(p.to);
    if (!older?.ok || !newer?.ok) {
      fail(
        "bundle-proof-invalid",
        `${p.from}..${p.to}`,
        `consistency proof ${p.from}→${p.to}: a checkpoint is missing or does not verify`,
      );
      continue;
    }
    const verdict = checkConsistency(older.checkpoint, newer.checkpoint, p.proof);
    if (!verdict.ok)
      fail(
        "bundle-proof-invalid",
        `${p.from}..${p.to}`,
        `consistency proof ${p.from}→${p.to}: ${verdict.detail}`,
      );
  }
}

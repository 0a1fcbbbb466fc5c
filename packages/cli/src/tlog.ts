/**
 * `auditsink tlog check`: read any c2sp.org/tlog-tiles log — an auditsink stream's `/tlog/<stream>/` URL, a
 * Tessera log, a directory copy — with core's TlogReader: verify the checkpoint with pinned keys, prove chosen
 * entries included and, with a state file, prove the log consistent with the checkpoint seen last time (a
 * monitor's loop: run it on a schedule and alert on exit status 1).
 */
import { readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { DirectoryTlogSource, HttpTlogSource } from "@auditsink/client";
import {
  parseVerifierKey,
  TlogError,
  type TlogErrorCode,
  TlogReader,
  type TlogSource,
} from "@auditsink/core";
import { replaceFile } from "@auditsink/local";
import { CliError } from "./errors.ts";

export interface TlogCheckOptions {
  /** Pinned verifier key strings (`<name>+<id>+<base64>`); at least one. */
  verifierKeys: readonly string[];
  /** The log's origin (default: the first key's name, which tlog-checkpoint says SHOULD be the origin). */
  origin?: string;
  /** Entries to read and prove included. */
  entries?: readonly number[];
  /**
   * A file holding the checkpoint seen last time: the new one must be consistent with it, and replaces it when
   * everything checked. Absent file: this is the first visit.
   */
  state?: string;
}

export interface TlogCheckResult {
  ok: boolean;
  origin: string;
  size?: number;
  /** Base64 root of the verified checkpoint. */
  root?: string;
  /** Name of the pinned key whose signature verified. */
  verifiedBy?: string;
  entries: { index: number; entry: string }[];
  consistency?: { from: number; to: number; proofHashes: number };
  failure?: { code: TlogErrorCode; message: string; path?: string };
}

/** Failures that mean the log cannot be read or the question is wrong, not that the log misbehaved: exit 2. */
const NOT_A_FINDING: ReadonlySet<TlogErrorCode> = new Set(["unavailable", "out-of-range"]);

function sourceFor(location: string): TlogSource {
  if (/^https?:\/\//.test(location)) return new HttpTlogSource(location);
  return new DirectoryTlogSource(location);
}

export async function checkTlog(location: string, options: TlogCheckOptions): Promise<TlogCheckResult> {
  if (options.verifierKeys.length === 0)
    throw new CliError("usage", "give the log's verifier key with --key");
  let verifiers: ReturnType<typeof parseVerifierKey>[];
  try {
    verifiers = options.verifierKeys.map((k) => parseVerifierKey(k));
  } catch (e) {
    throw new CliError("usage", `--key: ${(e as Error).message}`, { cause: e });
  }
  if (!/^https?:\/\//.test(location)) {
    const info = await stat(location).catch(() => undefined);
    if (!info?.isDirectory())
      throw new CliError("source-unreadable", `${location} is not a directory or URL`);
  }
  const origin = options.origin ?? verifiers[0]!.name;
  const reader = new TlogReader(sourceFor(location), { origin, verifiers });
  const result: TlogCheckResult = { ok: false, origin, entries: [] };
  try {
    const cp = await reader.checkpoint();
    Object.assign(result, { size: cp.size, root: cp.root.toString("base64"), verifiedBy: cp.key.name });
    for (const index of options.entries ?? []) {
      const entry = await reader.entry(index, cp);
      result.entries.push({ index, entry: Buffer.from(entry).toString("hex") });
    }
    if (options.state) {
      const previous = await readFile(options.state, "utf8").catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw new CliError("source-unreadable", `cannot read ${options.state}: ${e.message}`, { cause: e });
      });
      if (previous !== undefined) {
        const older = reader.openCheckpoint(previous);
        const proof = await reader.proveConsistency(older, cp);
        result.consistency = { from: older.size, to: cp.size, proofHashes: proof.length };
      }
      await replaceFile(dirname(options.state), options.state, cp.signed, 0o644);
    }
    result.ok = true;
  } catch (e) {
    if (!(e instanceof TlogError)) throw e;
    if (e.code === "out-of-range") throw new CliError("usage", e.message, { cause: e });
    if (NOT_A_FINDING.has(e.code)) throw new CliError("source-unreadable", e.message, { cause: e });
    result.failure = { code: e.code, message: e.message, ...(e.path ? { path: e.path } : {}) };
  }
  return result;
}

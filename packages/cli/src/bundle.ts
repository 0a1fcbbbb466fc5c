/**
 * Evidence bundles: what `auditsink export` writes for one stream and time window, and `auditsink verify`
 * checks offline. Layout:
 *
 *   README.md                    how an auditor checks it
 *   manifest.json                what the bundle holds (BundleManifest)
 *   keys/verifier-keys.txt       the deployment's checkpoint keys (C2SP verifier key strings) — pin out of band
 *   keys/producers.json          producer public keys, to re-verify every producer signature
 *   objects/streams/<stream>/…   the stored segments holding the window and the signed checkpoints covering
 *                                them, byte for byte as the sink stored them
 *   proofs/inclusion.json        receipts (record hash, signed checkpoint, RFC 9162 inclusion proof) for
 *                                records of the window
 *   proofs/consistency.json      RFC 9162 consistency proofs between the bundle's successive checkpoints
 *
 * A window that does not start at record 0 carries the Merkle frontier (compact range) at its first segment:
 * the records after it recompute the root of every later checkpoint only if the frontier is the true one, so
 * the signed checkpoint that covers the last record authenticates the frontier too.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { VerifierState } from "@auditsink/core";
import { CliError } from "./errors.ts";

export const BUNDLE_FORMAT = "auditsink-evidence-bundle";

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: 1;
  deployment: string;
  stream: string;
  createdAt: string;
  /** The requested window of `received` times (RFC 3339), absent ends being open. */
  window: { from?: string; to?: string };
  /** Indexes [first, end) of the records whose received time lies in the window. */
  records: { first: number; end: number };
  /** Indexes [first, end) the bundled segments hold (whole segments around the window). */
  segments: { first: number; end: number };
  /** Verifier state at segments.first (size, head record hash, Merkle frontier). */
  start: VerifierState;
  /** Size of the newest bundled checkpoint, which covers segments.end. */
  coveredBy: number;
  /** Fingerprints (hex SHA-256 of DER SPKI) of the keys in keys/verifier-keys.txt. */
  keyFingerprints: string[];
}

export interface ConsistencyFile {
  proofs: { from: number; to: number; proof: string[] }[];
}

export async function readBundleManifest(dir: string): Promise<BundleManifest | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, "manifest.json"), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError("source-unreadable", `cannot read ${dir}/manifest.json`, { cause: e });
  }
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(text) as BundleManifest;
  } catch (cause) {
    throw new CliError("source-unreadable", `${dir}/manifest.json is not JSON`, { cause });
  }
  if (manifest.format !== BUNDLE_FORMAT || manifest.version !== 1) {
    throw new CliError("source-unreadable", `${dir}/manifest.json is not an ${BUNDLE_FORMAT} version 1`);
  }
  return manifest;
}

/**
 * `auditsink verify-proof`: checks a receipt kept as a c2sp.org/tlog-proof file (docs/FORMAT.md §9a) offline,
 * with nothing but the file, the pinned checkpoint key and, when given, the record it is about: the checkpoint's
 * signature (lines by other keys, such as witness cosignatures, are ignored), its origin, the inclusion proof,
 * and that the record's RFC 8785 hash, stream and index are the ones proven. Core's verifyTlogProof does the
 * checks (the receipt checks of FORMAT.md §9, in their order).
 */
import { readFile } from "node:fs/promises";
import {
  canonicalBytes,
  keyFingerprint,
  parseStrictJson,
  type ReceiptFailureCode,
  sha256,
  toHex,
  verifyTlogProof,
} from "@auditsink/core";
import { CliError } from "./errors.ts";
import { resolveTrust, type TrustOptions } from "./trust.ts";

export interface VerifyProofOptions extends Omit<TrustOptions, "fingerprints" | "trustOnFirstUse"> {
  /**
   * The record the proof is about: a JSON file holding the stored record (a segment line, or the `record` of
   * GET /v1/streams/{stream}/records, whose `{index, recordHash, record}` wrapper is also accepted).
   */
  recordFile?: string;
  /** Expected deployment name: the checkpoint origin must be `<deployment>/<stream>`. */
  deployment?: string;
}

export interface VerifyProofResult {
  ok: boolean;
  file: string;
  /** The first check that failed (FORMAT.md §9 order), and why. */
  failure?: { code: ReceiptFailureCode; detail: string };
  /** What the proof says, once it parsed. */
  proof?: {
    stream: string;
    index: number;
    recordHash: string;
    source: string;
    id: string;
    origin?: string;
    size?: number;
  };
  /** Whether the record was given and checked, or only the record hash the proof carries was proven. */
  record: "checked" | "not-given";
  /** Fingerprints (SHA-256 of the DER SPKI) of the pinned keys. */
  trusted: string[];
}

async function recordHashOf(file: string): Promise<{ hash: string; stream: unknown; index: unknown }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (cause) {
    throw new CliError("source-unreadable", `cannot read the record ${file}`, { cause });
  }
  let value: unknown;
  try {
    value = parseStrictJson(bytes, { maxDepth: 128, name: () => file });
  } catch (cause) {
    throw new CliError("usage", `${file} is not a JSON record`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new CliError("usage", `${file} is not a JSON record (an object)`);
  const wrapped = value as { v?: unknown; record?: unknown };
  const record = (wrapped.v === undefined && typeof wrapped.record === "object" ? wrapped.record : value) as {
    stream?: unknown;
    index?: unknown;
  };
  // Record hash = SHA-256 of the record's RFC 8785 bytes (FORMAT.md §5), whatever the file's formatting.
  return { hash: toHex(sha256(canonicalBytes(record))), stream: record?.stream, index: record?.index };
}

export async function verifyProofFile(file: string, options: VerifyProofOptions): Promise<VerifyProofResult> {
  if (!options.keyFiles?.length && !options.keys?.length)
    throw new CliError(
      "untrusted",
      "pin the sink's checkpoint key: --verifier-key <key> or --trusted-keys <file> (a proof carries no key of its own)",
    );
  const trust = await resolveTrust(options, [], false, file);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    throw new CliError("source-unreadable", `cannot read ${file}`, { cause });
  }
  const record = options.recordFile ? await recordHashOf(options.recordFile) : undefined;
  const verdict = verifyTlogProof(text, {
    trusted: trust.trusted,
    ...(options.deployment ? { deployment: options.deployment } : {}),
    ...(record ? { recordHash: record.hash } : {}),
  });
  const r = verdict.receipt;
  let failure = verdict.ok ? undefined : { code: verdict.code, detail: verdict.detail };
  // The hash binds the record's stream and index too; said plainly when a record of another position is given.
  if (!failure && r && record && (record.stream !== r.stream || record.index !== r.index)) {
    failure = {
      code: "receipt-record-mismatch",
      detail: `the record is #${String(record.index)} of ${String(record.stream)}, the proof is about #${r.index} of ${r.stream}`,
    };
  }
  if (failure?.code === "receipt-record-mismatch" && record?.hash !== r?.recordHash) {
    failure.detail += ` (the record file hashes to ${record?.hash}; give the stored record, not the event)`;
  }
  return {
    ok: failure === undefined,
    file,
    ...(failure ? { failure } : {}),
    ...(r
      ? {
          proof: {
            stream: r.stream,
            index: r.index,
            recordHash: r.recordHash,
            source: r.source,
            id: r.id,
            ...(verdict.ok ? { origin: verdict.checkpoint.origin, size: verdict.checkpoint.size } : {}),
          },
        }
      : {}),
    record: record ? "checked" : "not-given",
    trusted: trust.trusted.map((k) => keyFingerprint(k.publicKey)),
  };
}

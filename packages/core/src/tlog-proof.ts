/**
 * Receipts as c2sp.org/tlog-proof (docs/FORMAT.md §9a): the same evidence as the JSON receipt (§9) in the
 * ecosystem's text form, stored as `<name>.tlog-proof`:
 *
 *   c2sp.org/tlog-proof@v1\n
 *   extra <base64 of the RFC 8785 JSON {"id","recordHash","source","stream"}>\n
 *   index <record index, decimal>\n
 *   <base64 inclusion proof hash>\n        zero or more, from the leaf's sibling up (RFC 6962 §2.1.1)
 *   \n
 *   <the signed checkpoint note, verbatim: log signature and any witness cosignatures>
 *
 * The tlog entry is the 32-byte record hash (leaf = SHA-256(0x00 || record hash), FORMAT.md §5), so a generic
 * tlog-proof verifier checks inclusion with the `recordHash` of the extra data, or with the hash of a record it
 * holds. The extra data is not authenticated by itself (tlog-proof says so): `recordHash` is, through the
 * inclusion proof; `stream` through the checkpoint's origin; `source` and `id` only through a record held.
 */
import { z } from "zod";
import { FormatError } from "./errors.ts";
import { BASE64, canonicalBytes, fromBase64, hashFromHex, toHex } from "./hash.ts";
import { formatPath, parseStrictJson } from "./json.ts";
import {
  type ParsedReceipt,
  parseReceipt,
  type Receipt,
  type ReceiptCheck,
  type ReceiptVerdict,
  verifyReceipt,
} from "./receipt.ts";

export const TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1";

/** What auditsink carries in the `extra` line: the receipt's members the other lines do not hold. */
export interface TlogProofExtra {
  stream: string;
  recordHash: string;
  source: string;
  id: string;
}

/** A parsed tlog-proof: every line, not yet verified. */
export interface TlogProof {
  /** The decoded `extra` line, when there is one (opaque bytes to tlog-proof). */
  extra?: Buffer;
  index: number;
  /** The inclusion proof, leaf's sibling first. */
  proof: Buffer[];
  /** The checkpoint note, verbatim (ends with "\n"). */
  checkpoint: string;
}

/** Longest proof text accepted (a checkpoint with many cosignatures is a few KiB; 53 hashes are 2.4 KiB). */
export const MAX_TLOG_PROOF_BYTES = 64 * 1024;
/** An inclusion proof in a tree of at most 2^53 − 1 leaves has at most 53 hashes. */
const MAX_PROOF_HASHES = 53;
const INDEX = /^(0|[1-9]\d{0,15})$/;

/** Formats a tlog-proof (c2sp.org/tlog-proof: lines separated by "\n", the checkpoint verbatim at the end). */
export function formatTlogProof(p: TlogProof): string {
  const lines = [TLOG_PROOF_HEADER];
  if (p.extra !== undefined) lines.push(`extra ${p.extra.toString("base64")}`);
  lines.push(`index ${p.index}`, ...p.proof.map((h) => h.toString("base64")), "");
  return `${lines.join("\n")}\n${p.checkpoint}`;
}

/**
 * Parses a tlog-proof strictly: the header, an optional `extra` line of canonical base64, `index` as a decimal
 * without leading zeros, 32-byte hashes in canonical base64, an empty line, then the checkpoint (whose note and
 * body the receipt checks parse). Throws FormatError("bad-tlog-proof") naming what is wrong.
 */
export function parseTlogProof(text: string): TlogProof {
  const bad = (message: string, cause?: unknown) =>
    new FormatError("bad-tlog-proof", `tlog-proof: ${message}`, cause === undefined ? undefined : { cause });
  if (typeof text !== "string") throw bad("is not text");
  if (text.length > MAX_TLOG_PROOF_BYTES) throw bad(`is longer than ${MAX_TLOG_PROOF_BYTES} bytes`);
  const blank = text.indexOf("\n\n");
  if (blank < 0) throw bad("has no empty line before the checkpoint");
  const lines = text.slice(0, blank).split("\n");
  const checkpoint = text.slice(blank + 2);
  if (lines.shift() !== TLOG_PROOF_HEADER) throw bad(`the first line must be ${TLOG_PROOF_HEADER}`);
  let extra: Buffer | undefined;
  if (lines[0]?.startsWith("extra ")) {
    const value = lines.shift()!.slice("extra ".length);
    if (value === "" || !BASE64.test(value)) throw bad("the extra line is not base64");
    try {
      extra = fromBase64(value, "extra");
    } catch (e) {
      throw bad("the extra line is not canonical base64", e);
    }
  }
  const indexLine = lines.shift();
  const index = indexLine?.startsWith("index ") ? indexLine.slice("index ".length) : undefined;
  if (index === undefined || !INDEX.test(index) || !Number.isSafeInteger(Number(index)))
    throw bad("the line after the header (and extra) must be index <decimal without leading zeros>");
  if (lines.length > MAX_PROOF_HASHES) throw bad(`more than ${MAX_PROOF_HASHES} proof hashes`);
  const proof = lines.map((line, i) => {
    let hash: Buffer;
    try {
      hash = fromBase64(line, `proof hash ${i + 1}`);
    } catch (e) {
      throw bad(`proof line ${i + 1} is not canonical base64`, e);
    }
    if (hash.length !== 32) throw bad(`proof line ${i + 1} is not a 32-byte hash`);
    return hash;
  });
  if (checkpoint === "" || !checkpoint.endsWith("\n"))
    throw bad("the checkpoint is missing or not newline-terminated");
  return { ...(extra ? { extra } : {}), index: Number(index), proof, checkpoint };
}

const ExtraSchema = z.object({
  stream: z.string().min(1),
  recordHash: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
  source: z.string(),
  id: z.string(),
});

/** The tlog-proof of a receipt: its checkpoint, index and inclusion proof, and its other members as `extra`. */
export function receiptTlogProof(receipt: Receipt): string {
  const extra: TlogProofExtra = {
    stream: receipt.stream,
    recordHash: receipt.recordHash,
    source: receipt.source,
    id: receipt.id,
  };
  return formatTlogProof({
    extra: canonicalBytes(extra),
    index: receipt.index,
    proof: receipt.inclusionProof.map((h, i) => hashFromHex(h, `inclusionProof[${i}]`)),
    checkpoint: receipt.checkpoint,
  });
}

/**
 * The receipt a tlog-proof holds, for core's receipt checks (verifyReceipt, and a log's verify run). Never
 * throws: anything that is not auditsink's tlog-proof (no extra line, extra that is not JSON of the shape above,
 * any other member ignored and never copied) is a `detail`.
 */
export function tlogProofReceipt(text: unknown): ParsedReceipt {
  let parsed: TlogProof;
  try {
    parsed = parseTlogProof(text as string);
  } catch (e) {
    if (e instanceof FormatError) return { ok: false, detail: e.message };
    throw e;
  }
  if (!parsed.extra)
    return {
      ok: false,
      detail: "tlog-proof: no extra line (auditsink's carries the stream and record hash)",
    };
  let value: unknown;
  try {
    // As the sink reads any JSON: UTF-8 without replacement, no duplicate members, bounded nesting.
    value = parseStrictJson(parsed.extra, { maxDepth: 2, name: (path) => formatPath("extra", path) });
  } catch (e) {
    return { ok: false, detail: `tlog-proof: the extra data is not strict JSON (${(e as Error).message})` };
  }
  const extra = ExtraSchema.safeParse(value);
  if (!extra.success) {
    const issue = extra.error.issues[0];
    const field = issue?.path.map(String).join(".");
    return {
      ok: false,
      detail: `tlog-proof extra: ${field ? `${field}: ` : ""}${issue?.message ?? "not an object"}`,
    };
  }
  return parseReceipt({
    ...extra.data,
    index: parsed.index,
    checkpoint: parsed.checkpoint,
    inclusionProof: parsed.proof.map(toHex),
  });
}

/**
 * Verifies a tlog-proof as a receipt (FORMAT.md §9 checks, in their order): pure and total, a text that is not
 * auditsink's tlog-proof is `receipt-malformed`. Checkpoint signature lines by keys not trusted (witness
 * cosignatures) are ignored, as by every checkpoint check.
 */
export function verifyTlogProof(text: unknown, check: ReceiptCheck): ReceiptVerdict & { receipt?: Receipt } {
  const parsed = tlogProofReceipt(text);
  if (!parsed.ok) return { ok: false, code: "receipt-malformed", detail: parsed.detail };
  return { ...verifyReceipt(parsed.receipt, check), receipt: parsed.receipt };
}

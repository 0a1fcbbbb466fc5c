/**
 * Receipts: what the sink returns for every accepted event, verifiable offline with the sink's public key.
 * A receipt binds (stream, index, record hash) to a signed checkpoint through an RFC 9162 inclusion proof.
 */

import { z } from "zod";
import { type Checkpoint, type CheckpointVerdict, openCheckpoint, originFor } from "./checkpoint.ts";
import { type Hash, hashFromHex } from "./hash.ts";
import { leafHash, verifyConsistency, verifyInclusion } from "./merkle.ts";
import type { NoteKey } from "./note.ts";

export interface Receipt {
  stream: string;
  index: number;
  /** Hex SHA-256 of the record's RFC 8785 bytes. */
  recordHash: string;
  /** The event's `source` and `id`, so a producer can match receipts to what it sent. */
  source: string;
  id: string;
  /** A signed checkpoint (signed-note text) whose tree contains the record. */
  checkpoint: string;
  /** Hex hashes of the inclusion proof of leaf `index` in the checkpoint's tree (RFC 9162 §2.1.3). */
  inclusionProof: string[];
}

const HEX_HASH = /^[0-9a-f]{64}$/;

/** The shape of §9 of docs/FORMAT.md; extra members are ignored, never copied (no `__proto__` surprises). */
const ReceiptSchema = z.object({
  stream: z.string().min(1),
  index: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  recordHash: z.string().regex(HEX_HASH, "must be 64 lowercase hex digits"),
  source: z.string(),
  id: z.string(),
  checkpoint: z.string().min(1),
  inclusionProof: z.array(z.string().regex(HEX_HASH, "must be 64 lowercase hex digits")),
});

export type ParsedReceipt = { ok: true; receipt: Receipt } | { ok: false; detail: string };

/**
 * Checks that an untrusted value (a line of a receipts file, a member of a bundle's proofs) is a receipt, and
 * returns a fresh object holding only the receipt's members. Never throws.
 */
export function parseReceipt(value: unknown): ParsedReceipt {
  const parsed = ReceiptSchema.safeParse(value);
  if (parsed.success) return { ok: true, receipt: parsed.data };
  return { ok: false, detail: firstIssue(parsed.error, "not a receipt") };
}

/** The first problem zod found, with the path to it. */
function firstIssue(error: z.ZodError, fallback: string): string {
  const issue = error.issues[0];
  const field = issue?.path.map(String).join(".");
  return `${field ? `${field}: ` : ""}${issue?.message ?? fallback}`;
}

/**
 * One receipt of a compact answer (docs/FORMAT.md §9b): a receipt without the members its batch shares. Its
 * `inclusionProof` is the part of the proof below the subtree holding every receipt of the batch.
 */
export type CompactReceipt = Pick<Receipt, "index" | "recordHash" | "source" | "id" | "inclusionProof">;

/**
 * A batch's receipts in compact form (docs/FORMAT.md §9b): the stream, the checkpoint and the end of the
 * inclusion proof every receipt shares are written once. Receipt k in full is `receipts[k]` with `stream`,
 * `checkpoint` and `inclusionProof = receipts[k].inclusionProof ++ sharedProof` (expandReceipts).
 */
export interface CompactReceipts {
  stream: string;
  checkpoint: string;
  sharedProof: string[];
  receipts: CompactReceipt[];
}

/**
 * The compact form of receipts that share a stream and a checkpoint (the receipts of one request always do:
 * one group commit). `sharedProof` is the longest run of hashes every proof ends with, so expanding gives back
 * exactly the receipts given. Throws on receipts that share no checkpoint: the sink never answers so.
 */
export function compactReceipts(receipts: readonly Receipt[]): CompactReceipts {
  const first = receipts[0];
  if (!first) throw new Error("no receipts to compact");
  for (const r of receipts) {
    if (r.stream !== first.stream || r.checkpoint !== first.checkpoint)
      throw new Error("receipts of one answer must share their stream and checkpoint");
  }
  const shortest = Math.min(...receipts.map((r) => r.inclusionProof.length));
  let shared = 0;
  while (shared < shortest) {
    const at = (r: Receipt) => r.inclusionProof[r.inclusionProof.length - 1 - shared];
    const hash = at(first);
    if (!receipts.every((r) => at(r) === hash)) break;
    shared++;
  }
  return {
    stream: first.stream,
    checkpoint: first.checkpoint,
    sharedProof: first.inclusionProof.slice(first.inclusionProof.length - shared),
    receipts: receipts.map((r) => ({
      index: r.index,
      recordHash: r.recordHash,
      source: r.source,
      id: r.id,
      inclusionProof: r.inclusionProof.slice(0, r.inclusionProof.length - shared),
    })),
  };
}

const hexHashes = z.array(z.string().regex(HEX_HASH, "must be 64 lowercase hex digits"));

/** The shape of §9b: a receipts answer in compact form. Extra members are ignored, never copied. */
const CompactReceiptsSchema = z.object({
  stream: ReceiptSchema.shape.stream,
  checkpoint: ReceiptSchema.shape.checkpoint,
  sharedProof: hexHashes,
  receipts: z.array(
    ReceiptSchema.pick({ index: true, recordHash: true, source: true, id: true, inclusionProof: true }),
  ),
});

/** Receipt k of a compact answer in the full form of §9 (what a holder keeps and verifies). */
export function expandReceipts(compact: CompactReceipts): Receipt[] {
  return compact.receipts.map((r) => ({
    stream: compact.stream,
    index: r.index,
    recordHash: r.recordHash,
    source: r.source,
    id: r.id,
    checkpoint: compact.checkpoint,
    inclusionProof: [...r.inclusionProof, ...compact.sharedProof],
  }));
}

/**
 * The receipts of an untrusted submission answer (`POST …/events`), in either form: full (`receipts` of §9
 * receipts) or compact (§9b, told apart by its `checkpoint` member). Returns full receipts, each still to be
 * verified (verifyReceipt); the shape of a compact answer is checked here. Never throws.
 */
export function receiptsOfAnswer(
  body: unknown,
): { ok: true; receipts: unknown[] } | { ok: false; detail: string } {
  if (typeof body !== "object" || body === null || !Array.isArray((body as { receipts?: unknown }).receipts))
    return { ok: false, detail: "the answer has no receipts array" };
  if (!Object.hasOwn(body, "checkpoint"))
    return { ok: true, receipts: (body as { receipts: unknown[] }).receipts };
  const parsed = CompactReceiptsSchema.safeParse(body);
  if (!parsed.success)
    return { ok: false, detail: `compact receipts: ${firstIssue(parsed.error, "not compact receipts")}` };
  return { ok: true, receipts: expandReceipts(parsed.data) };
}

/**
 * Failure codes of one receipt, in the order its checks run (docs/FORMAT.md §9): a receipt gets the code of
 * the first check it fails and no other. `receipt-malformed` (shape), `receipt-record-mismatch` (the holder's
 * record), `receipt-checkpoint-invalid` (signature with a pinned key), `receipt-origin-mismatch`,
 * `receipt-inclusion-invalid`; checked against a store, then `receipt-not-in-log` and `receipt-inconsistent`
 * (core verify.ts).
 */
export type ReceiptFailureCode =
  | "receipt-malformed"
  | "receipt-checkpoint-invalid"
  | "receipt-origin-mismatch"
  | "receipt-inclusion-invalid"
  | "receipt-record-mismatch"
  | "receipt-inconsistent";

export type ReceiptVerdict =
  | { ok: true; checkpoint: Checkpoint }
  | { ok: false; code: ReceiptFailureCode; detail: string };

export interface ReceiptCheck {
  trusted: readonly NoteKey[];
  /** The deployment name (origin prefix) expected; when given, the checkpoint origin must be `<deployment>/<stream>`. */
  deployment?: string;
  /** Hex record hash the holder expects (for example recomputed from the record it has). */
  recordHash?: string;
  /**
   * Checkpoints already opened with these same `trusted` keys, by their signed text: receipts that share a
   * checkpoint (a batch's do) have its signatures verified once. The caller owns it and bounds its life.
   */
  opened?: Map<string, CheckpointVerdict>;
}

/**
 * Verifies a receipt: checkpoint signature by a trusted key, origin, and the inclusion proof. Pure and total:
 * anything that is not a receipt (for example one without `checkpoint`) is `receipt-malformed`, never thrown.
 */
export function verifyReceipt(untrusted: Receipt, check: ReceiptCheck): ReceiptVerdict {
  const shape = parseReceipt(untrusted);
  if (!shape.ok) return { ok: false, code: "receipt-malformed", detail: shape.detail };
  const receipt = shape.receipt;
  let recordHash: Hash;
  let proof: Hash[];
  try {
    recordHash = hashFromHex(receipt.recordHash, "recordHash");
    proof = receipt.inclusionProof.map((h, i) => hashFromHex(h, `inclusionProof[${i}]`));
    if (!Number.isSafeInteger(receipt.index) || receipt.index < 0)
      throw new Error("index is not a natural number");
  } catch (e) {
    return { ok: false, code: "receipt-malformed", detail: (e as Error).message };
  }
  if (check.recordHash !== undefined && check.recordHash !== receipt.recordHash) {
    return {
      ok: false,
      code: "receipt-record-mismatch",
      detail: "the record hash differs from the record held",
    };
  }
  let opened = check.opened?.get(receipt.checkpoint);
  if (!opened) {
    opened = openCheckpoint(receipt.checkpoint, check.trusted);
    check.opened?.set(receipt.checkpoint, opened);
  }
  if (!opened.ok) return { ok: false, code: "receipt-checkpoint-invalid", detail: opened.detail };
  const cp = opened.checkpoint;
  // Without a deployment name given, the one the signing key speaks for (its name, FORMAT.md §2).
  if (cp.origin !== originFor(check.deployment ?? opened.deployment, receipt.stream)) {
    return {
      ok: false,
      code: "receipt-origin-mismatch",
      detail: `checkpoint origin ${cp.origin} is not for stream ${receipt.stream}`,
    };
  }
  if (!verifyInclusion(receipt.index, cp.size, leafHash(recordHash), proof, cp.root)) {
    return {
      ok: false,
      code: "receipt-inclusion-invalid",
      detail: `inclusion proof does not place record ${receipt.index} in the tree of size ${cp.size}`,
    };
  }
  return { ok: true, checkpoint: cp };
}

/**
 * Witness check: is `newer` an extension of `older` (same log, no rollback, no fork)? Needs a consistency
 * proof from older.size to newer.size, hex hashes as served by the sink (empty from size 0 or between equal sizes).
 */
export function checkConsistency(
  older: Checkpoint,
  newer: Checkpoint,
  proofHex: readonly string[],
): ReceiptVerdict {
  if (older.origin !== newer.origin) {
    return { ok: false, code: "receipt-origin-mismatch", detail: "checkpoints are from different logs" };
  }
  if (newer.size < older.size) {
    return {
      ok: false,
      code: "receipt-inconsistent",
      detail: `log rolled back from size ${older.size} to ${newer.size}`,
    };
  }
  if (newer.size === older.size && !newer.root.equals(older.root)) {
    return {
      ok: false,
      code: "receipt-inconsistent",
      detail: `two different roots for size ${older.size}: a fork`,
    };
  }
  let proof: Hash[];
  try {
    proof = proofHex.map((h, i) => hashFromHex(h, `consistencyProof[${i}]`));
  } catch (e) {
    return { ok: false, code: "receipt-malformed", detail: (e as Error).message };
  }
  if (!verifyConsistency(older.size, newer.size, older.root, newer.root, proof)) {
    return {
      ok: false,
      code: "receipt-inconsistent",
      detail: `checkpoint of size ${newer.size} is not an extension of size ${older.size}: a fork or rewrite`,
    };
  }
  return { ok: true, checkpoint: newer };
}

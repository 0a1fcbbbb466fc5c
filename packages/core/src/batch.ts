/**
 * Batch-signed envelopes (docs/FORMAT.md §3b). A producer signs one commitment to a whole batch — the RFC 9162
 * Merkle root of its events' entry hashes, under its own signing context — and every event carries, in
 * `sigbatch`, its position, the batch size and its inclusion path. Each event therefore still proves on its own,
 * offline, that this producer signed exactly it, while producer and verifiers make one signature operation per
 * batch instead of one per event.
 */
import type { KeyObject } from "node:crypto";
import { FormatError } from "./errors.ts";
import type { SignedEvent, UnsignedEvent } from "./event.ts";
import { canonicalBytes, type Hash, jcsOrdered, sha256, toHex } from "./hash.ts";
import { type EcdsaEncoding, keyFingerprint, signBytes, verifyBytes, verifyBytesAsync } from "./keys.ts";
import { LruMap } from "./lru.ts";
import {
  inclusionProofLength,
  inclusionProofRanges,
  type LeafRange,
  leafHash,
  MerkleTree,
  rootFromInclusionProof,
} from "./merkle.ts";

/**
 * Domain separation: what a producer key signs for a batch can never be taken for an event's signing bytes
 * (`auditsink-event-v1\n…`) or the reverse.
 */
export const BATCH_SIGNATURE_CONTEXT = "auditsink-batch-v1\n";

/** Most events one signed batch may hold (2^16), so an inclusion path has at most 16 hashes. */
export const MAX_SIGNED_BATCH_EVENTS = 65_536;

/**
 * `sigbatch` = position "." size "." path: decimal integers without leading zeros, then the path's hashes as
 * lowercase hex, concatenated. The ranges and the path length are checked by parseSigbatch.
 */
export const SIGBATCH = /^(0|[1-9][0-9]{0,4})\.([1-9][0-9]{0,4})\.((?:[0-9a-f]{64}){0,16})$/;

/** Where one event sits in the batch its producer signed. */
export interface BatchMembership {
  position: number;
  size: number;
  /** RFC 9162 §2.1.3.1 PATH(position, D[0:size]). */
  path: Hash[];
}

/**
 * Parses a `sigbatch` value; undefined unless it has exactly the one form FORMAT.md §3b allows: position < size ≤
 * MAX_SIGNED_BATCH_EVENTS and exactly as many path hashes as PATH(position, size) has. So one membership has one text.
 */
export function parseSigbatch(value: unknown): BatchMembership | undefined {
  if (typeof value !== "string") return undefined;
  const m = SIGBATCH.exec(value);
  if (!m) return undefined;
  const position = Number(m[1]);
  const size = Number(m[2]);
  const hex = m[3]!;
  if (size > MAX_SIGNED_BATCH_EVENTS || position >= size) return undefined;
  if (hex.length / 64 !== inclusionProofLength(position, size)) return undefined;
  const path: Hash[] = [];
  for (let i = 0; i < hex.length; i += 64) path.push(Buffer.from(hex.slice(i, i + 64), "hex"));
  return { position, size, path };
}

export function formatSigbatch({ position, size, path }: BatchMembership): string {
  return `${position}.${size}.${path.map(toHex).join("")}`;
}

/** The bytes a batch commits to for one event: JCS of the event without `signature` and `sigbatch`. */
export function batchEntryBytes(event: UnsignedEvent): Buffer {
  const { signature: _signature, sigbatch: _sigbatch, ...entry } = event;
  return canonicalBytes(entry);
}

/** leaf(e) of FORMAT.md §3b: the RFC 9162 leaf hash of the entry's hash. */
function entryLeaf(entry: Uint8Array): Hash {
  return leafHash(sha256(entry));
}

/** What the producer signs for a batch (FORMAT.md §3b): context, key id, batch size and root, one per line. */
export function batchSigningBytes(keyId: string, size: number, root: Hash): Buffer {
  return Buffer.from(`${BATCH_SIGNATURE_CONTEXT}${keyId}\n${size}\n${toHex(root)}\n`, "utf8");
}

/**
 * The batch signing bytes an event's membership leads to: its entry hash is the leaf at `position`, its path
 * gives the root. Undefined when `sigbatch` or `sigkeyid` is not of its form (the event then cannot verify).
 * `entry` is batchEntryBytes(event), passed in so callers holding the event's canonical bytes need not
 * canonicalize again.
 */
export function batchCommitment(event: SignedEvent, entry: Uint8Array): Buffer | undefined {
  const membership = parseSigbatch(event.sigbatch);
  if (!membership || typeof event.sigkeyid !== "string") return undefined;
  const root = rootFromInclusionProof(
    membership.position,
    membership.size,
    entryLeaf(entry),
    membership.path,
  );
  return batchSigningBytes(event.sigkeyid, membership.size, root);
}

/**
 * Signs events as one batch with a producer's private key: one signature over the Merkle root of their entry
 * hashes, and each event gets `sigkeyid`, its `sigbatch` membership and that signature. Throws
 * FormatError("bad-batch") for an empty batch, one above MAX_SIGNED_BATCH_EVENTS, or two events with one `source` +
 * `id` (their memberships would be two signed envelopes of one event, and either could be submitted first).
 * @example
 *   const [a, b] = signBatch([toolCall, policyDecision], producerKey);
 */
export function signBatch(events: readonly UnsignedEvent[], privateKey: KeyObject): SignedEvent[] {
  if (events.length === 0 || events.length > MAX_SIGNED_BATCH_EVENTS) {
    throw new FormatError(
      "bad-batch",
      `a signed batch holds 1–${MAX_SIGNED_BATCH_EVENTS} events, not ${events.length}`,
    );
  }
  const sigkeyid = keyFingerprint(privateKey);
  const ids = new Set<string>();
  const tree = MerkleTree.empty();
  const entries = events.map((event) => {
    const id = `${event.source}\u0000${event.id}`;
    if (ids.has(id)) {
      throw new FormatError("bad-batch", `event ${event.source} ${event.id} appears twice in one batch`);
    }
    ids.add(id);
    const { signature: _signature, sigbatch: _sigbatch, ...rest } = event;
    const entry = jcsOrdered<UnsignedEvent>(rest, { sigkeyid });
    tree.append(entryLeaf(canonicalBytes(entry)));
    return entry;
  });
  const size = entries.length;
  const signature = signBytes(privateKey, batchSigningBytes(sigkeyid, size, tree.root())).toString("base64");
  return entries.map(
    (entry, position) =>
      jcsOrdered<UnsignedEvent>(entry, {
        sigbatch: formatSigbatch({ position, size, path: tree.inclusionProof(position) }),
        signature,
      }) as SignedEvent,
  );
}

/**
 * Verdicts on batch signatures, keyed by everything a verdict depends on — the public key, the signed batch
 * commitment (context, key id, size, root), the signature and the accepted ECDSA encodings — so each batch's
 * signature is checked once however many of its events arrive, at ingest or in a verification run. Bounded: the
 * least recently used verdict goes first, so memory never grows with the log. A pending asynchronous check is
 * held as its promise, so events of one batch arriving together share it.
 */
export class BatchSignatureCache {
  private readonly verdicts: LruMap<string, boolean | Promise<boolean>>;

  constructor(readonly capacity = 4096) {
    this.verdicts = new LruMap(capacity);
  }

  get size(): number {
    return this.verdicts.size;
  }

  get(key: string): boolean | Promise<boolean> | undefined {
    return this.verdicts.get(key);
  }

  set(key: string, verdict: boolean | Promise<boolean>): void {
    this.verdicts.set(key, verdict);
  }

  /** Replaces a settled promise by its value (only if it is still the entry). */
  settle(key: string, pending: Promise<boolean>, verdict: boolean): void {
    if (this.verdicts.peek(key) === pending) this.verdicts.set(key, verdict);
  }
}

/** The cache every verification shares unless given its own (one per process, or per worker thread). */
export const batchSignatureCache = new BatchSignatureCache();

/** The verdict belongs to the key itself (its fingerprint, computed from it), not to the id an event claims. */
function cacheKey(key: KeyObject, message: Buffer, signature: string, encoding: EcdsaEncoding): string {
  return `${keyFingerprint(key)} ${encoding} ${signature} ${message.toString("utf8")}`;
}

/**
 * Checks one batch-signed event: its membership leads to a batch commitment that `publicKey` signed. The batch
 * signature is verified at most once per cache entry; the membership (a few hashes) is checked for every event.
 * `entry` is batchEntryBytes(event), or the commitment batchCommitments found for it. Never throws for a bad
 * event: returns false.
 */
export function verifyBatchMember(
  event: SignedEvent,
  entry: Uint8Array | BatchCommitment,
  publicKey: KeyObject,
  signature: Uint8Array,
  encoding: EcdsaEncoding = "any",
  cache: BatchSignatureCache = batchSignatureCache,
): boolean {
  const message = commitmentOrUndefined(event, entry);
  if (!message) return false;
  const key = cacheKey(publicKey, message, event.signature, encoding);
  const known = cache.get(key);
  if (typeof known === "boolean") return known;
  const verdict = verifyBytes(publicKey, message, signature, encoding);
  cache.set(key, verdict);
  return verdict;
}

/** verifyBatchMember with the signature checked on libuv's threadpool; concurrent events of a batch share it. */
export function verifyBatchMemberAsync(
  event: SignedEvent,
  entry: Uint8Array | BatchCommitment,
  publicKey: KeyObject,
  signature: Uint8Array,
  encoding: EcdsaEncoding,
  cache: BatchSignatureCache = batchSignatureCache,
): Promise<boolean> {
  const message = commitmentOrUndefined(event, entry);
  if (!message) return Promise.resolve(false);
  const key = cacheKey(publicKey, message, event.signature, encoding);
  const known = cache.get(key);
  if (known !== undefined) return Promise.resolve(known);
  const pending = verifyBytesAsync(publicKey, message, signature, encoding);
  cache.set(key, pending);
  void pending.then((verdict) => cache.settle(key, pending, verdict));
  return pending;
}

/** An event's batch commitment found by batchCommitments, in place of its entry: its path is not walked again. */
export interface BatchCommitment {
  commitment: Buffer;
}

function commitmentOrUndefined(event: SignedEvent, entry: Uint8Array | BatchCommitment): Buffer | undefined {
  if ("commitment" in entry) return entry.commitment;
  try {
    return batchCommitment(event, entry);
  } catch (e) {
    if (e instanceof FormatError) return undefined;
    throw e;
  }
}

/**
 * The batch commitments (batchSigningBytes) of the batch-signed events among `events` whose whole batch is there
 * — a request's events at ingest, a stored request in a segment — reached with one tree per batch instead of one
 * inclusion path per event: the tree is built from the batch's entries as signBatch builds it, and an event whose
 * `sigbatch` is exactly the position, size and PATH that tree gives it leads to that tree's root, as its own path
 * would. Returned by index into `events`, for verifyEventSignature(Async)'s `commitment`; an event not in the map
 * (no complete batch, a `sigbatch` that differs, an entry that cannot be had) is checked on its own path.
 * `entryOf` gives an event's batchEntryBytes (undefined when it cannot: that batch is left out).
 */
export function batchCommitments(
  events: readonly (SignedEvent | undefined)[],
  entryOf: (event: SignedEvent, i: number) => Uint8Array | undefined = (event) => batchEntryBytes(event),
): Map<number, Buffer> {
  const batches = new Map<string, { keyId: string; size: number; members: number[] }>();
  events.forEach((event, i) => {
    if (typeof event?.sigbatch !== "string" || typeof event.sigkeyid !== "string") return;
    const m = SIGBATCH_HEAD.exec(event.sigbatch);
    if (!m) return;
    const size = Number(m[2]);
    // Events of one batch carry one signature: a batch is known by key id, size and signature.
    const id = `${event.sigkeyid} ${size} ${String(event.signature)}`;
    const batch = batches.get(id) ?? { keyId: event.sigkeyid, size, members: [] };
    batches.set(id, batch);
    batch.members.push(i);
  });
  const commitments = new Map<number, Buffer>();
  for (const { keyId, size, members } of batches.values()) {
    if (size > MAX_SIGNED_BATCH_EVENTS || members.length !== size) continue;
    // Each position once: the members are the whole batch, in the order of their positions.
    const byPosition: number[] = new Array(size);
    for (const i of members) byPosition[Number(SIGBATCH_HEAD.exec(events[i]!.sigbatch!)![1])] = i;
    let whole = true;
    for (let position = 0; position < size; position++) whole &&= byPosition[position] !== undefined;
    if (!whole) continue;
    // The tree signBatch builds, over the same leaves: its PATH texts are the ones a signer wrote.
    const tree = MerkleTree.empty();
    for (const i of byPosition) {
      let entry: Uint8Array | undefined;
      try {
        entry = entryOf(events[i]!, i);
      } catch {
        entry = undefined; // an entry that cannot be canonicalized: the event's own check reports it
      }
      if (!entry) break;
      tree.append(entryLeaf(entry));
    }
    if (tree.size !== size) continue;
    const commitment = batchSigningBytes(keyId, size, tree.root());
    // formatSigbatch of each PATH, with each subtree's hash and hex made once: most are in many paths.
    const hex = new Map<number, string>();
    const hexOf = ([lo, hi]: LeafRange): string => {
      const id = lo * (MAX_SIGNED_BATCH_EVENTS + 1) + hi;
      const known = hex.get(id) ?? toHex(tree.subtree(lo, hi));
      hex.set(id, known);
      return known;
    };
    byPosition.forEach((i, position) => {
      const path = inclusionProofRanges(position, size).map(hexOf).join("");
      if (events[i]!.sigbatch === `${position}.${size}.${path}`) commitments.set(i, commitment);
    });
  }
  return commitments;
}

/** A `sigbatch` value's position and size (the rest is compared whole with the path the batch's tree gives). */
const SIGBATCH_HEAD = /^(0|[1-9][0-9]{0,4})\.([1-9][0-9]{0,4})\./;

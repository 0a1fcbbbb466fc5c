/**
 * Verification, once: recompute everything a stream's write-once objects claim, with nothing but the objects
 * and the trusted public keys (invariant 5). Pure: callers fetch, then feed a StreamVerifier in key order
 * (checkpoints first, then segments) and read the report. It never stops at the first failure.
 *
 * Every failure code is listed, with its meaning, in docs/FORMAT.md §Failure codes.
 */
import type { KeyObject } from "node:crypto";
import { type Checkpoint, openCheckpoint, originFor } from "./checkpoint.ts";
import { type SignedEvent, verifyEventSignature } from "./event.ts";
import { HASH_SIZE, type Hash, hashFromHex, sha256, toHex, ZERO_HASH } from "./hash.ts";
import { Frontier, leafHash } from "./merkle.ts";
import type { NoteKey } from "./note.ts";
import type { Head } from "./ports.ts";
import { type Receipt, type ReceiptFailureCode, verifyReceipt } from "./receipt.ts";
import { type AuditRecord, parseRecordLine, parseStoreKey, splitSegment } from "./record.ts";

export type FailureCode =
  | "unexpected-object"
  | "segment-gap"
  | "segment-overlap"
  | "segment-empty"
  | "segment-truncated"
  | "record-malformed"
  | "record-stream-mismatch"
  | "record-index-mismatch"
  | "chain-broken"
  | "producer-signature-invalid"
  | "producer-key-unknown"
  | "checkpoint-malformed"
  | "checkpoint-unknown-key"
  | "checkpoint-signature-invalid"
  | "checkpoint-key-mismatch"
  | "checkpoint-origin-mismatch"
  | "checkpoint-fork"
  | "checkpoint-root-mismatch"
  | "checkpoint-head-mismatch"
  | "checkpoint-beyond-log"
  | "head-rollback"
  | "head-ahead"
  | "head-mismatch"
  | "receipt-not-in-log"
  | ReceiptFailureCode;

export type WarningCode = "tail-unsigned" | "no-checkpoint" | "head-behind";

export interface Finding<C extends string = FailureCode> {
  code: C;
  stream: string;
  /** The record index, tree size or object key the finding is about. */
  at?: number | string;
  message: string;
}

/** Where an incremental verification resumes: everything below `size` was verified before. */
export interface VerifierState {
  size: number;
  headHash: string;
  frontier: string[];
  /** Size of the newest checkpoint verified so far (0 when none). */
  checkpointSize: number;
}

export interface VerifyOptions {
  trusted: readonly NoteKey[];
  /** Expected deployment name: checkpoint origins must be `<deployment>/<stream>`. */
  deployment?: string;
  /** Resume from an earlier report's state instead of from the empty log. */
  from?: VerifierState;
  /** Receipts to check against the log (for example those a producer kept). */
  receipts?: readonly Receipt[];
  /** The head store's value, to catch a head rolled back behind the newest checkpoint. */
  head?: Head;
  /** When given, re-verify every producer signature with these keys (by key id). */
  producerKeys?: ReadonlyMap<string, KeyObject>;
}

export interface StreamReport {
  stream: string;
  records: number;
  segments: number;
  checkpoints: number;
  failures: Finding[];
  warnings: Finding<WarningCode>[];
  state: VerifierState;
}

export class StreamVerifier {
  private readonly failures: Finding[] = [];
  private readonly warnings: Finding<WarningCode>[] = [];
  private readonly checkpoints = new Map<number, Checkpoint>();
  private readonly frontier: Frontier;
  private lastHash: Hash;
  private expectedIndex: number;
  private segments = 0;
  private checkpointCount = 0;
  private readonly startSize: number;
  /** Sizes whose root we must remember (receipts), and indexes whose record hash we must remember. */
  private readonly wantRoots = new Map<number, Hash | undefined>();
  private readonly wantHashes = new Map<number, Hash | undefined>();

  constructor(
    readonly stream: string,
    private readonly options: VerifyOptions,
  ) {
    const from = options.from;
    this.frontier = from
      ? new Frontier(
          from.size,
          from.frontier.map((h) => hashFromHex(h, "frontier")),
        )
      : new Frontier();
    this.lastHash = from ? hashFromHex(from.headHash, "head hash") : ZERO_HASH;
    this.expectedIndex = from?.size ?? 0;
    this.startSize = from?.size ?? 0;
    for (const r of options.receipts ?? []) {
      this.wantHashes.set(r.index, undefined);
      const opened = openCheckpoint(r.checkpoint, options.trusted);
      if (opened.ok) this.wantRoots.set(opened.checkpoint.size, undefined);
    }
    if (options.head && options.head.size > 0) this.wantHashes.set(options.head.size - 1, undefined);
  }

  private fail(code: FailureCode, at: number | string | undefined, message: string): void {
    this.failures.push({ code, stream: this.stream, ...(at !== undefined ? { at } : {}), message });
  }

  /** Records walked so far (including any the incremental start skipped). */
  get recordsSeen(): number {
    return this.frontier.size;
  }

  /** An object under the stream's prefix that is neither a segment nor a checkpoint key. */
  addUnexpected(key: string): void {
    this.fail("unexpected-object", key, `object ${key} does not belong to the store layout`);
  }

  /** Feeds one stored checkpoint object (all of them before the first segment). */
  addCheckpoint(key: string, text: string): void {
    this.checkpointCount++;
    const parsedKey = parseStoreKey(key);
    const opened = openCheckpoint(text, this.options.trusted);
    if (!opened.ok) {
      this.fail(opened.code, key, `checkpoint ${key}: ${opened.detail}`);
      return;
    }
    const cp = opened.checkpoint;
    if (!parsedKey || parsedKey.n !== cp.size) {
      this.fail("checkpoint-key-mismatch", key, `checkpoint ${key} holds size ${cp.size}`);
      return;
    }
    const origin = this.options.deployment ? originFor(this.options.deployment, this.stream) : undefined;
    if (origin ? cp.origin !== origin : !cp.origin.endsWith(`/${this.stream}`)) {
      this.fail(
        "checkpoint-origin-mismatch",
        key,
        `checkpoint ${key} has origin ${cp.origin}, not one for stream ${this.stream}`,
      );
      return;
    }
    const other = this.checkpoints.get(cp.size);
    if (other && !other.root.equals(cp.root)) {
      this.fail("checkpoint-fork", cp.size, `two signed checkpoints of size ${cp.size} with different roots`);
      return;
    }
    if (cp.size < this.startSize) return;
    this.checkpoints.set(cp.size, cp);
    if (cp.size === this.startSize) this.checkRoot(cp.size);
  }

  /**
   * Feeds one segment object, in ascending key order: its bytes, or its digestSegment(bytes) made elsewhere
   * (for example on a worker thread, so that hashing and parsing run on every core).
   */
  addSegment(key: string, segment: Uint8Array | SegmentDigest): void {
    this.segments++;
    const parsedKey = parseStoreKey(key);
    if (parsedKey?.kind !== "segments" || parsedKey.stream !== this.stream) {
      this.addUnexpected(key);
      return;
    }
    const first = parsedKey.n;
    if (first > this.expectedIndex) {
      this.fail(
        "segment-gap",
        this.expectedIndex,
        `records ${this.expectedIndex}…${first - 1} are missing before segment ${key}`,
      );
    } else if (first < this.expectedIndex) {
      this.fail(
        "segment-overlap",
        key,
        `segment ${key} starts at ${first}, but records up to ${this.expectedIndex - 1} were already seen`,
      );
    }
    this.expectedIndex = first;
    const digest =
      segment instanceof Uint8Array ? digestSegment(segment, this.options.producerKeys) : segment;
    if (digest.empty) this.fail("segment-empty", key, `segment ${key} is empty`);
    if (digest.truncated) this.fail("segment-truncated", key, `segment ${key} does not end with a newline`);
    const view = (a: Uint8Array, i: number) => Buffer.from(a.buffer, a.byteOffset + i * HASH_SIZE, HASH_SIZE);
    digest.records.forEach((r, i) => {
      this.addRecord(r, view(digest.hashes, i), view(digest.leaves, i));
    });
  }

  private addRecord(r: RecordDigest, hash: Hash, leaf: Hash): void {
    const position = this.frontier.size;
    if ("error" in r) {
      this.fail("record-malformed", position, `record at position ${position}: ${r.error}`);
    } else {
      if (r.stream !== this.stream) {
        this.fail("record-stream-mismatch", r.index, `record ${r.index} names stream ${r.stream}`);
      }
      if (r.index !== this.expectedIndex) {
        this.fail(
          "record-index-mismatch",
          this.expectedIndex,
          `expected record ${this.expectedIndex}, found record ${r.index}`,
        );
      }
      if (r.prev !== toHex(this.lastHash)) {
        this.fail(
          "chain-broken",
          r.index,
          `record ${r.index} does not link the hash of the record before it`,
        );
      }
      if (this.options.producerKeys && r.producer === undefined) {
        this.fail(
          "producer-key-unknown",
          r.index,
          `record ${r.index}: the producer signature was not checked`,
        );
      } else if (r.producer === "unknown-key") {
        this.fail(
          "producer-key-unknown",
          r.index,
          `record ${r.index} is signed by key ${r.keyId}, which is not known`,
        );
      } else if (r.producer === "invalid") {
        this.fail(
          "producer-signature-invalid",
          r.index,
          `record ${r.index}: the producer signature does not verify`,
        );
      }
    }
    this.expectedIndex =
      (!("error" in r) && r.index === this.expectedIndex ? r.index : this.expectedIndex) + 1;
    this.lastHash = hash;
    if (this.wantHashes.has(position)) this.wantHashes.set(position, this.lastHash);
    this.frontier.append(leaf);
    this.checkRoot(this.frontier.size);
  }

  private checkRoot(size: number): void {
    const cp = this.checkpoints.get(size);
    const wantRoot = this.wantRoots.has(size);
    if (!cp && !wantRoot) return;
    const root = this.frontier.root();
    if (wantRoot) this.wantRoots.set(size, root);
    if (!cp) return;
    if (!cp.root.equals(root)) {
      this.fail(
        "checkpoint-root-mismatch",
        size,
        `the signed root for size ${size} differs from the root of the stored records`,
      );
    } else if (cp.head && size > this.startSize && !cp.head.equals(this.lastHash)) {
      this.fail(
        "checkpoint-head-mismatch",
        size,
        `checkpoint ${size} names a head record hash that differs from record ${size - 1}`,
      );
    }
  }

  /** Ends the walk and returns the report. */
  finish(): StreamReport {
    const size = this.frontier.size;
    const sizes = [...this.checkpoints.keys()].sort((a, b) => a - b);
    for (const s of sizes) {
      if (s > size)
        this.fail(
          "checkpoint-beyond-log",
          s,
          `a signed checkpoint covers ${s} records but the store holds ${size}: records were removed`,
        );
    }
    const newest = sizes.filter((s) => s <= size).pop() ?? this.options.from?.checkpointSize ?? 0;
    if (size > 0 && sizes.length === 0 && !this.options.from) {
      this.warnings.push({
        code: "no-checkpoint",
        stream: this.stream,
        message: `no signed checkpoint covers the ${size} records`,
      });
    } else if (size > newest) {
      this.warnings.push({
        code: "tail-unsigned",
        stream: this.stream,
        at: newest,
        message: `records ${newest}…${size - 1} are not yet covered by a signed checkpoint`,
      });
    }
    this.checkHead(size, Math.max(newest, sizes[sizes.length - 1] ?? 0));
    this.checkReceipts(size);
    return {
      stream: this.stream,
      records: size - this.startSize,
      segments: this.segments,
      checkpoints: this.checkpointCount,
      failures: this.failures,
      warnings: this.warnings,
      state: {
        size,
        headHash: toHex(this.lastHash),
        frontier: this.frontier.hashes.map(toHex),
        checkpointSize: newest,
      },
    };
  }

  private checkHead(size: number, newestCheckpoint: number): void {
    const head = this.options.head;
    if (!head) return;
    if (head.size < newestCheckpoint) {
      this.fail(
        "head-rollback",
        head.size,
        `the head (${head.size}) is behind the newest signed checkpoint (${newestCheckpoint})`,
      );
    } else if (head.size > size) {
      this.fail("head-ahead", head.size, `the head claims ${head.size} records but the store holds ${size}`);
    } else if (
      head.size > 0 &&
      this.wantHashes.get(head.size - 1) &&
      toHex(this.wantHashes.get(head.size - 1)!) !== head.headHash
    ) {
      this.fail(
        "head-mismatch",
        head.size,
        `the head's record hash differs from stored record ${head.size - 1}`,
      );
    } else if (head.size < size) {
      this.warnings.push({
        code: "head-behind",
        stream: this.stream,
        at: head.size,
        message: `the head (${head.size}) is behind the store (${size}); the next writer repairs it`,
      });
    }
  }

  private checkReceipts(size: number): void {
    for (const r of this.options.receipts ?? []) {
      const verdict = verifyReceipt(r, {
        trusted: this.options.trusted,
        ...(this.options.deployment ? { deployment: this.options.deployment } : {}),
      });
      if (!verdict.ok) {
        this.fail(verdict.code, r.index, `receipt for record ${r.index}: ${verdict.detail}`);
        continue;
      }
      const stored = this.wantHashes.get(r.index);
      if (r.index >= size || !stored) {
        this.fail(
          "receipt-not-in-log",
          r.index,
          `receipt for record ${r.index}: the store holds no such record`,
        );
      } else if (toHex(stored) !== r.recordHash) {
        this.fail(
          "receipt-not-in-log",
          r.index,
          `receipt for record ${r.index}: the stored record has another hash`,
        );
      } else {
        const logRoot = this.wantRoots.get(verdict.checkpoint.size);
        if (verdict.checkpoint.size > size || (logRoot && !logRoot.equals(verdict.checkpoint.root))) {
          this.fail(
            "receipt-inconsistent",
            r.index,
            `receipt for record ${r.index} carries a checkpoint the log contradicts: a fork`,
          );
        }
      }
    }
  }
}

/** One record line of a segment, hashed and parsed: everything the verifier needs from it. */
export type RecordDigest =
  | {
      stream: string;
      index: number;
      prev: string;
      keyId?: string;
      /** Producer signature check, when keys were given: "ok", "invalid" or "unknown-key". */
      producer?: "ok" | "invalid" | "unknown-key";
    }
  | { error: string };

/** A segment hashed and parsed; plain data (typed arrays, strings), so it crosses worker threads cheaply. */
export interface SegmentDigest {
  records: RecordDigest[];
  /** Record hashes, 32 bytes each, in order. */
  hashes: Uint8Array;
  /** Merkle leaf hashes, 32 bytes each, in order. */
  leaves: Uint8Array;
  empty: boolean;
  truncated: boolean;
}

/**
 * The per-record work of verification that needs nothing from other segments: split lines, SHA-256 each,
 * leaf hash, parse, and (with producerKeys) the producer signature. Pure; StreamVerifier does the rest in order.
 */
export function digestSegment(
  bytes: Uint8Array,
  producerKeys?: ReadonlyMap<string, KeyObject>,
): SegmentDigest {
  const { lines, truncated } = splitSegment(bytes);
  const hashes = new Uint8Array(lines.length * HASH_SIZE);
  const leaves = new Uint8Array(lines.length * HASH_SIZE);
  const records = lines.map((line, i): RecordDigest => {
    const hash = sha256(line);
    hashes.set(hash, i * HASH_SIZE);
    leaves.set(leafHash(hash), i * HASH_SIZE);
    let record: AuditRecord;
    try {
      record = parseRecordLine(line);
    } catch (e) {
      return { error: (e as Error).message };
    }
    const digest: RecordDigest = { stream: record.stream, index: record.index, prev: record.prev };
    if (producerKeys) {
      const event = record.event as SignedEvent;
      const key = producerKeys.get(event.sigkeyid);
      digest.keyId = String(event.sigkeyid);
      digest.producer = !key ? "unknown-key" : verifyEventSignature(event, key) ? "ok" : "invalid";
    }
    return digest;
  });
  return { records, hashes, leaves, empty: bytes.length === 0, truncated };
}

/** Convenience: verify a whole stream given every object under its prefix (key → bytes). */
export function verifyStream(
  stream: string,
  objects: ReadonlyMap<string, Uint8Array>,
  options: VerifyOptions,
): StreamReport {
  const v = new StreamVerifier(stream, options);
  const keys = [...objects.keys()].sort();
  const segments: string[] = [];
  for (const key of keys) {
    const parsed = parseStoreKey(key);
    if (!parsed || parsed.stream !== stream) v.addUnexpected(key);
    else if (parsed.kind === "checkpoints")
      v.addCheckpoint(key, Buffer.from(objects.get(key)!).toString("utf8"));
    else segments.push(key);
  }
  for (const key of segments) v.addSegment(key, objects.get(key)!);
  return v.finish();
}

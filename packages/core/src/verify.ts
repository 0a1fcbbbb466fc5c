/**
 * Verification, once: recompute everything a stream's write-once objects claim, with nothing but the objects
 * and the trusted public keys (invariant 5). Pure: callers fetch, then feed a StreamVerifier in key order
 * (checkpoints first, then segments) and read the report. It never stops at the first failure, and it never
 * throws for anything stored: every stored byte is attacker-controlled, and a finding is the only answer.
 *
 * Every failure code is listed, with its meaning, in docs/FORMAT.md §11 Failure codes; the walk, including how
 * it goes on after a gap or an overlap, is FORMAT.md §11 steps 1–8. Whole-archive runs (every stream, the set of
 * streams, the head store, trust) are run.ts.
 */
import type { KeyObject } from "node:crypto";
import { batchCommitments } from "./batch.ts";
import { type Checkpoint, type CheckpointVerdict, openCheckpoint, originFor } from "./checkpoint.ts";
import { type SignedEvent, SYSTEM_STREAM, verifyEventSignature } from "./event.ts";
import { HASH_SIZE, type Hash, hashFromHex, sha256, toHex, ZERO_HASH } from "./hash.ts";
import { Frontier, leafHash } from "./merkle.ts";
import type { NoteKey } from "./note.ts";
import type { Head } from "./ports.ts";
import { type Receipt, type ReceiptFailureCode, verifyReceipt } from "./receipt.ts";
import { type AuditRecord, parseRecordLine, parseStoreKey, splitSegment, tileKey } from "./record.ts";
import { streamCreatedBy } from "./stream-set.ts";
import {
  BUNDLE_ENTRY_BYTES,
  encodeEntryBundle,
  FULL_TILE_BYTES,
  parseEntryBundle,
  TILE_WIDTH,
  type Tile,
  tileRange,
  tileRoot,
} from "./tiles.ts";

export type FailureCode =
  | "unexpected-object"
  | "segment-gap"
  | "segment-overlap"
  | "segment-empty"
  | "segment-truncated"
  | "record-malformed"
  | "record-gap"
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
  | "head-malformed"
  | "head-checkpoint-invalid"
  | "stream-missing"
  | "stream-unrecorded"
  | "receipt-not-in-log"
  | "witness-policy-unmet"
  | "cosigned-checkpoint-invalid"
  | "tile-mismatch"
  | ReceiptFailureCode;

export type WarningCode = "tail-unsigned" | "no-checkpoint" | "head-behind" | "tiles-missing";

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
  /**
   * `_system` only: every stream whose creation the system stream has recorded so far (FORMAT.md §4), so an
   * incremental run still knows the whole set of streams.
   */
  streams?: string[];
}

export interface VerifyOptions {
  trusted: readonly NoteKey[];
  /** Expected deployment name: checkpoint origins must be `<deployment>/<stream>`. */
  deployment?: string;
  /** Resume from an earlier report's state instead of from the empty log. */
  from?: VerifierState;
  /** Receipts to check against the log (for example those a producer kept). */
  receipts?: readonly Receipt[];
  /**
   * The head store's value, to catch a head rolled back behind the newest checkpoint, ahead of the store, with
   * another record hash or frontier, or holding a checkpoint that forks the log.
   */
  head?: Head;
  /** When given, re-verify every producer signature with these keys (by key id). */
  producerKeys?: ReadonlyMap<string, KeyObject>;
  /**
   * Check the stored tlog tiles the walk completes (default true). False for a source that carries none by design
   * (an evidence bundle, FORMAT.md §13): the walk then neither asks for them nor warns `tiles-missing`.
   */
  tiles?: boolean;
}

export interface StreamReport {
  stream: string;
  records: number;
  segments: number;
  checkpoints: number;
  failures: Finding[];
  warnings: Finding<WarningCode>[];
  state: VerifierState;
  /**
   * The first index whose records could not be placed in the Merkle tree because records before it are
   * missing (a gap): checkpoints above it could not be checked against the records. Absent without a gap.
   */
  gapAt?: number;
  /**
   * The walk stopped before the end of the stream (finish({ partial: true })): nothing about the end of the log
   * (head, receipts, checkpoints beyond it, unsigned tail) was checked, and `state` is where to resume.
   */
  paused?: true;
  /**
   * With a witness policy (VerificationPolicy.witnesses): the newest cosigned checkpoint that meets it, and the
   * witnesses whose cosignatures count. Absent when none does.
   */
  witnessed?: { size: number; witnesses: string[] };
  /**
   * With a head to check (VerifierOptions.head): the newest signed checkpoint's size it was compared with. A head
   * behind it is `head-rollback` — or a head read before the last commits the walk reached, which a head read again
   * settles without walking the stream again (run.ts).
   */
  newestCheckpoint?: number;
}

/** A misuse of StreamVerifier by its caller (never caused by stored bytes). */
export class VerifierUsageError extends Error {
  override readonly name = "VerifierUsageError";
}

export class StreamVerifier {
  private readonly failures: Finding[] = [];
  private readonly warnings: Finding<WarningCode>[] = [];
  /**
   * Checkpoints fed and not yet passed by the walk: a caller that feeds them as the walk reaches them
   * (verifyStoredStream) keeps this to the few ahead of the position, not one per checkpoint of the stream.
   */
  private readonly checkpoints = new Map<number, Checkpoint>();
  /** Checkpoints accepted (at or above the start), the largest size among them, and the largest one passed. */
  private accepted = 0;
  private largestSigned = 0;
  private passedSigned = 0;
  private readonly frontier: Frontier;
  private lastHash: Hash;
  /** The index the next record must have: the walk's position in the stream. */
  private position: number;
  /**
   * Set at the first gap or overlap: the Merkle tree is recomputed only up to here, so checkpoints above it
   * cannot be compared with the records (FORMAT.md §11 step 6).
   */
  private gapAt: number | undefined;
  /** The next record follows missing ones: its `prev` cannot be checked (the record it names is gone). */
  private afterGap = false;
  private segments = 0;
  private checkpointCount = 0;
  private started = false;
  private readonly startSize: number;
  /** Sizes whose root we must remember (receipts), and indexes whose record hash we must remember. */
  private readonly wantRoots = new Map<number, Hash | undefined>();
  private readonly wantHashes = new Map<number, Hash | undefined>();
  /** The checkpoint the head store holds, opened, to be compared with the log like a stored one. */
  private readonly headCheckpoint: Checkpoint | undefined;
  private headFrontier: string[] | undefined;
  private readonly created: Set<string> | undefined;
  /**
   * Full tiles (and bundles) the walk completed and that still await their stored bytes (addTile), each with the
   * root its records give: the caller fetches them after each segment (takeCompletedTiles), so this stays small.
   */
  private completed: { key: string; tile: Tile; root: Hash; bytes?: Buffer }[] = [];
  private readonly tileRootOf = (height: number, node: Hash) => {
    if (height % 8 !== 0 || this.options.tiles === false) return;
    // A perfect subtree of height 8(l+1) ending here is exactly full tile ⌊end / 256^(l+1)⌋ − 1 of level l.
    const level = height / 8 - 1;
    const index = Math.floor((this.frontier.size + 1) / 2 ** height) - 1;
    const root = Buffer.from(node);
    const tile: Tile = { level, index, width: TILE_WIDTH };
    // A level-0 tile and its bundle whose every record this walk read are known byte for byte: compared, not hashed.
    const whole = level === 0 && this.block.filled === TILE_WIDTH;
    const bytes = whole ? Buffer.from(this.block.leaves) : undefined;
    this.completed.push({ key: tileKey(this.stream, tile), tile, root, ...(bytes ? { bytes } : {}) });
    if (level === 0) {
      const bundle: Tile = { level: "entries", index, width: TILE_WIDTH };
      const entries = whole
        ? encodeEntryBundle(
            Array.from({ length: TILE_WIDTH }, (_, i) =>
              this.block.hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE),
            ),
          )
        : undefined;
      this.completed.push({
        key: tileKey(this.stream, bundle),
        tile: bundle,
        root,
        ...(entries ? { bytes: entries } : {}),
      });
    }
  };
  /** The leaves and record hashes of the level-0 tile being walked, as far as this walk read it from its start. */
  private readonly block = {
    leaves: Buffer.alloc(FULL_TILE_BYTES),
    hashes: Buffer.alloc(FULL_TILE_BYTES),
    filled: 0,
  };
  private tilesMissing = 0;
  private firstMissingTile: string | undefined;
  /** The furthest record any stored tile key listed (addListedTile) claims to cover. */
  private listedTilesEnd = 0;
  private listedTileBeyond: string | undefined;

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
    this.position = from?.size ?? 0;
    this.startSize = from?.size ?? 0;
    if (stream === SYSTEM_STREAM) this.created = new Set(from?.streams ?? []);
    for (const r of options.receipts ?? []) {
      if (!Number.isSafeInteger(r?.index)) continue; // reported as receipt-malformed by finish()
      this.wantHashes.set(r.index, undefined);
      const opened =
        typeof r.checkpoint === "string" ? openCheckpoint(r.checkpoint, options.trusted) : undefined;
      if (opened?.ok) this.wantRoots.set(opened.checkpoint.size, undefined);
    }
    const head = options.head;
    if (head && head.size > 0) this.wantHashes.set(head.size - 1, undefined);
    if (head && head.size === this.startSize) this.headFrontier = this.frontier.hashes.map(toHex);
    if (head?.checkpoint !== undefined) {
      const opened =
        typeof head.checkpoint === "string" ? openCheckpoint(head.checkpoint, options.trusted) : undefined;
      if (!opened?.ok || !this.originOk(opened.checkpoint, opened.deployment)) {
        this.fail(
          "head-checkpoint-invalid",
          head.size,
          `the head store's checkpoint is not one signed by a trusted key for this stream${opened && !opened.ok ? `: ${opened.detail}` : ""}`,
        );
      } else {
        this.headCheckpoint = opened.checkpoint;
        if (opened.checkpoint.size > this.startSize) this.wantRoots.set(opened.checkpoint.size, undefined);
      }
    }
  }

  private fail(code: FailureCode, at: number | string | undefined, message: string): void {
    this.failures.push({ code, stream: this.stream, ...(at !== undefined ? { at } : {}), message });
  }

  /**
   * The origin must be `<deployment>/<stream>`; without a deployment name given, the deployment is the name of
   * the one the trusted key that signed speaks for (a key's name is its deployment's name, FORMAT.md §2).
   */
  private originOk(cp: Checkpoint, signedFor: string): boolean {
    return cp.origin === originFor(this.options.deployment ?? signedFor, this.stream);
  }

  /** The walk's position: the number of record positions walked (including any the incremental start skipped). */
  get recordsSeen(): number {
    return this.position;
  }

  /** An object under the stream's prefix that is neither a segment nor a checkpoint key. */
  addUnexpected(key: string): void {
    this.fail("unexpected-object", key, `object ${key} does not belong to the store layout`);
  }

  /**
   * Feeds one stored checkpoint object. Every checkpoint must come before the first segment: a checkpoint
   * smaller than what the walk has passed could no longer be compared with the records, so feeding one late
   * throws VerifierUsageError rather than letting it pass unchecked.
   */
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
    if (!this.originOk(cp, opened.deployment)) {
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
    // Below the start, or the one at the start that the walk resumed from already compared (a sweep's slices).
    if (cp.size < this.startSize || cp.size <= (this.options.from?.checkpointSize ?? -1)) return;
    if (this.started && cp.size < this.position && this.gapAt === undefined) {
      throw new VerifierUsageError(
        `checkpoint ${key} was given after the walk passed size ${cp.size}: feed every checkpoint before the first segment`,
      );
    }
    if (this.headCheckpoint?.size === cp.size && !this.headCheckpoint.root.equals(cp.root)) {
      this.fail(
        "checkpoint-fork",
        cp.size,
        `the head store holds a signed checkpoint of size ${cp.size} whose root differs from the stored one`,
      );
    }
    if (!this.checkpoints.has(cp.size)) this.accepted++;
    this.largestSigned = Math.max(this.largestSigned, cp.size);
    this.checkpoints.set(cp.size, cp);
    if (cp.size === this.position && this.gapAt === undefined) this.checkRoot(cp.size);
  }

  /** A checkpoint fed so far covers more records than the walk has seen. */
  get checkpointsBeyond(): boolean {
    return this.largestSigned > this.position;
  }

  /** Checkpoints held (fed and not yet passed by the walk): what a streaming caller keeps bounded. */
  get checkpointsHeld(): number {
    return this.checkpoints.size;
  }

  /**
   * Feeds one segment object, in ascending key order: its bytes, or its digestSegment(bytes) made elsewhere
   * (for example on a worker thread, so that hashing and parsing run on every core).
   */
  addSegment(key: string, segment: Uint8Array | SegmentDigest): void {
    this.started = true;
    this.segments++;
    const parsedKey = parseStoreKey(key);
    if (parsedKey?.kind !== "segments" || parsedKey.stream !== this.stream) {
      this.addUnexpected(key);
      return;
    }
    // The key names the segment's first index (FORMAT.md §7); the records must agree with it.
    const first = parsedKey.n;
    if (first > this.position) {
      this.gapAt ??= this.position;
      this.afterGap = true;
      this.fail(
        "segment-gap",
        this.position,
        `records ${this.position}…${first - 1} are missing before segment ${key}`,
      );
    } else if (first < this.position) {
      // Positions below this.position are walked twice from here: the Merkle tree cannot be recomputed past it.
      this.gapAt ??= this.position;
      this.fail(
        "segment-overlap",
        key,
        `segment ${key} starts at ${first}, but records up to ${this.position - 1} were already seen`,
      );
    }
    this.position = first;
    const digest =
      segment instanceof Uint8Array ? digestSegment(segment, this.options.producerKeys) : segment;
    if (digest.empty) this.fail("segment-empty", key, `segment ${key} is empty`);
    if (digest.truncated) this.fail("segment-truncated", key, `segment ${key} does not end with a newline`);
    const view = (a: Uint8Array, i: number) => Buffer.from(a.buffer, a.byteOffset + i * HASH_SIZE, HASH_SIZE);
    digest.records.forEach((r, i) => {
      this.addRecord(r, view(digest.hashes, i), view(digest.leaves, i));
    });
    // Checkpoints the walk has passed were compared when it reached them; only their largest size is kept.
    for (const size of this.checkpoints.keys()) {
      if (size >= this.position) continue;
      this.passedSigned = Math.max(this.passedSigned, size);
      this.checkpoints.delete(size);
    }
  }

  private addRecord(r: RecordDigest, hash: Hash, leaf: Hash): void {
    let linked = !this.afterGap;
    this.afterGap = false;
    if ("error" in r) {
      this.fail("record-malformed", this.position, `record at position ${this.position}: ${r.error}`);
    } else {
      if (r.index > this.position && r.prev !== toHex(this.lastHash)) {
        // A record ahead of its position that does not link the record before it: records are missing here.
        // Report the gap once and place this record at its own index (FORMAT.md §11 step 6).
        this.gapAt ??= this.position;
        this.fail("record-gap", this.position, `records ${this.position}…${r.index - 1} are missing`);
        this.position = r.index;
        linked = false;
      } else if (r.index !== this.position) {
        this.fail(
          "record-index-mismatch",
          this.position,
          `expected record ${this.position}, found record ${r.index}`,
        );
      }
      if (r.stream !== this.stream) {
        this.fail(
          "record-stream-mismatch",
          this.position,
          `record ${this.position} names stream ${r.stream}`,
        );
      }
      if (linked && r.prev !== toHex(this.lastHash)) {
        this.fail(
          "chain-broken",
          this.position,
          `record ${this.position} does not link the hash of the record before it`,
        );
      }
      if (r.created !== undefined) this.created?.add(r.created);
      if (this.options.producerKeys && r.producer === undefined) {
        this.fail(
          "producer-key-unknown",
          this.position,
          `record ${this.position}: the producer signature was not checked`,
        );
      } else if (r.producer === "unknown-key") {
        this.fail(
          "producer-key-unknown",
          this.position,
          `record ${this.position} is signed by key ${r.keyId}, which is not known`,
        );
      } else if (r.producer === "invalid") {
        this.fail(
          "producer-signature-invalid",
          this.position,
          `record ${this.position}: the producer signature does not verify`,
        );
      }
    }
    const position = this.position;
    this.position++;
    this.lastHash = hash;
    if (this.wantHashes.has(position)) this.wantHashes.set(position, hash);
    if (this.gapAt !== undefined) return;
    const slot = this.frontier.size % TILE_WIDTH;
    if (slot === 0) this.block.filled = 0;
    if (this.block.filled === slot) {
      this.block.leaves.set(leaf, slot * HASH_SIZE);
      this.block.hashes.set(hash, slot * HASH_SIZE);
      this.block.filled++;
    }
    this.frontier.append(leaf, this.tileRootOf);
    if (this.headFrontier === undefined && this.options.head?.size === this.frontier.size)
      this.headFrontier = this.frontier.hashes.map(toHex);
    this.checkRoot(this.frontier.size);
  }

  private checkRoot(size: number): void {
    const cp = this.checkpoints.get(size);
    const wantRoot = this.wantRoots.has(size);
    if (!cp && !wantRoot) return;
    const root = this.frontier.root();
    if (wantRoot) this.wantRoots.set(size, root);
    if (this.headCheckpoint?.size === size && !this.headCheckpoint.root.equals(root) && !cp) {
      this.fail(
        "checkpoint-fork",
        size,
        `the head store holds a signed checkpoint of size ${size} whose root differs from the stored records`,
      );
    }
    if (!cp) return;
    if (!cp.root.equals(root)) {
      this.fail(
        "checkpoint-root-mismatch",
        size,
        `the signed root for size ${size} differs from the root of the stored records`,
      );
    }
    // Checked on its own: a changed root and a changed head line are two findings (FORMAT.md §11 step 5).
    if (cp.head && size > this.startSize && !cp.head.equals(this.lastHash)) {
      this.fail(
        "checkpoint-head-mismatch",
        size,
        `checkpoint ${size} names a head record hash that differs from record ${size - 1}`,
      );
    }
  }

  /**
   * The full tiles and entry bundles the records walked so far complete (docs/FORMAT.md §14), not yet given to
   * addTile: the caller fetches each key and gives its bytes (or undefined when it is not stored). An
   * incremental walk completes only the tiles ending past its start, so each run checks only new tiles.
   */
  takeCompletedTiles(): string[] {
    return this.completed.map((c) => c.key);
  }

  /**
   * Feeds a stored tile or entry bundle the walk completed (takeCompletedTiles). Its bytes must be exactly the
   * tile its records give (`tile-mismatch` otherwise): compared byte for byte when this walk read all 256 of its
   * records (a level-0 tile or bundle), else checked through its root, which the walk computed anyway: a full
   * tile's 256 hashes (a bundle's 256 entries, as leaves) hash to that root only if they are the ones.
   * A tile not stored (undefined) is a `tiles-missing` warning: tiles are derived data, repaired by the writer.
   */
  addTile(key: string, bytes: Uint8Array | undefined): void {
    const at = this.completed.findIndex((c) => c.key === key);
    if (at < 0) throw new VerifierUsageError(`tile ${key} was not asked for (takeCompletedTiles)`);
    const { tile, root, bytes: expected } = this.completed[at]!;
    this.completed.splice(at, 1);
    if (bytes === undefined) {
      this.tilesMissing++;
      this.firstMissingTile ??= key;
      return;
    }
    let actual: Hash | undefined;
    if (expected) {
      if (expected.equals(bytes)) actual = root;
    } else if (tile.level === "entries") {
      if (bytes.length === TILE_WIDTH * BUNDLE_ENTRY_BYTES) {
        try {
          const entries = parseEntryBundle(bytes);
          if (entries.length === TILE_WIDTH && entries.every((e) => e.length === HASH_SIZE))
            actual = tileRoot(Buffer.concat(entries.map((e) => leafHash(e))));
        } catch {
          actual = undefined; // reported below
        }
      }
    } else if (bytes.length === FULL_TILE_BYTES) actual = tileRoot(bytes);
    if (!actual?.equals(root)) {
      const { start, end } = tileRange(tile);
      this.fail(
        "tile-mismatch",
        key,
        `stored ${tile.level === "entries" ? "entry bundle" : "tile"} ${key} differs from what records ${start}…${end - 1} give`,
      );
    }
  }

  /** A full tile key found under the stream's prefix (a full walk's listing): it must not cover missing records. */
  addListedTile(key: string): void {
    const parsed = parseStoreKey(key);
    if (parsed?.kind !== "tiles") return;
    const { end } = tileRange(parsed.tile);
    if (end > this.listedTilesEnd) {
      this.listedTilesEnd = end;
      this.listedTileBeyond = key;
    }
  }

  /**
   * Ends the walk and returns the report. `partial`: the walk stopped before the end of the stream (a sweep's
   * slice); the checks of the end of the log are left to the walk that reaches it, and the state resumes it.
   */
  finish(options: { partial?: boolean } = {}): StreamReport {
    const end = this.position;
    const treeSize = this.frontier.size;
    const sizes = [...this.checkpoints.keys()].sort((a, b) => a - b);
    const newestSigned = Math.max(
      this.passedSigned,
      sizes.filter((s) => s <= end).pop() ?? this.options.from?.checkpointSize ?? 0,
    );
    // Only a walk without a gap yields a state to resume from; after a gap the report has failures anyway.
    const verifiedCheckpoint = this.gapAt === undefined ? newestSigned : Math.min(newestSigned, this.gapAt);
    const report = (): StreamReport => ({
      stream: this.stream,
      records: end - this.startSize,
      segments: this.segments,
      checkpoints: this.checkpointCount,
      failures: this.failures,
      warnings: this.warnings,
      state: {
        size: treeSize,
        headHash: toHex(this.lastHash),
        frontier: this.frontier.hashes.map(toHex),
        checkpointSize: verifiedCheckpoint,
        ...(this.created ? { streams: [...this.created].sort() } : {}),
      },
      ...(this.gapAt !== undefined ? { gapAt: this.gapAt } : {}),
      ...(options.partial ? { paused: true as const } : {}),
    });
    if (options.partial) return report();
    for (const s of sizes) {
      if (s > end)
        this.fail(
          "checkpoint-beyond-log",
          s,
          `a signed checkpoint covers ${s} records but the store holds ${end}: records were removed`,
        );
    }
    if (this.listedTilesEnd > end) {
      this.fail(
        "tile-mismatch",
        this.listedTileBeyond,
        `stored tile ${this.listedTileBeyond} covers records up to ${this.listedTilesEnd}, but the store holds ${end}`,
      );
    }
    if (this.tilesMissing > 0) {
      this.warnings.push({
        code: "tiles-missing",
        stream: this.stream,
        ...(this.firstMissingTile ? { at: this.firstMissingTile } : {}),
        message: `${this.tilesMissing} full tiles or entry bundles of records walked are not stored yet, the first ${this.firstMissingTile} (the writer stores them; tiles may be off)`,
      });
    }
    if (
      this.headCheckpoint &&
      this.headCheckpoint.size > end &&
      !this.checkpoints.has(this.headCheckpoint.size)
    ) {
      this.fail(
        "checkpoint-beyond-log",
        this.headCheckpoint.size,
        `the head store's signed checkpoint covers ${this.headCheckpoint.size} records but the store holds ${end}: records were removed`,
      );
    }
    if (end > 0 && this.accepted === 0 && !this.options.from) {
      this.warnings.push({
        code: "no-checkpoint",
        stream: this.stream,
        message: `no signed checkpoint covers the ${end} records`,
      });
    } else if (end > newestSigned) {
      this.warnings.push({
        code: "tail-unsigned",
        stream: this.stream,
        at: newestSigned,
        message: `records ${newestSigned}…${end - 1} are not yet covered by a signed checkpoint`,
      });
    }
    const newestCheckpoint = Math.max(newestSigned, this.largestSigned);
    this.checkHead(end, newestCheckpoint);
    this.checkReceipts(end);
    return { ...report(), ...(this.options.head ? { newestCheckpoint } : {}) };
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
    } else if (
      this.headFrontier !== undefined &&
      (head.frontier.length !== this.headFrontier.length ||
        head.frontier.some((h, i) => h !== this.headFrontier![i]))
    ) {
      this.fail(
        "head-mismatch",
        head.size,
        `the head's Merkle frontier differs from the one recomputed from records 0…${head.size - 1}`,
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
    this.failures.push(
      ...checkStreamReceipts(this.stream, this.options.receipts ?? [], this.options, {
        size,
        recordHash: (index) => this.wantHashes.get(index),
        root: (size) => this.wantRoots.get(size),
      }),
    );
  }
}

/** What a walk of a stream recomputed that its receipts are checked against (FORMAT.md §9 checks 6–7). */
export interface ReceiptLog {
  /** The walk's end: the number of records stored. */
  size: number;
  /** The stored record hash at `index`, when the walk kept it. */
  recordHash(index: number): Hash | undefined;
  /** The root the records give for `size`, when the walk kept it. */
  root(size: number): Hash | undefined;
}

/**
 * Checks receipts of one stream in the order of docs/FORMAT.md §9, each getting the code of the first check it
 * fails and no other: checks 1–5 on the receipt alone (verifyReceipt), then 6–7 against `log`. Without a log —
 * the store holds no object of the stream — a receipt that passes 1–5 is `receipt-not-in-log`; one that fails
 * them keeps its own code, so a receipt relabelled with a stream that is gone is still reported for what it is.
 * Pure; never throws (a receipt is caller input of any shape).
 */
export function checkStreamReceipts(
  stream: string,
  receipts: readonly Receipt[],
  check: { trusted: readonly NoteKey[]; deployment?: string },
  log: ReceiptLog | undefined,
): Finding[] {
  const findings: Finding[] = [];
  const fail = (code: FailureCode, r: Receipt, message: string) =>
    findings.push({ code, stream, at: r.index, message: `receipt for record ${r.index}: ${message}` });
  // Receipts of one batch share their checkpoint: its signatures are verified once for all of them.
  const opened = new Map<string, CheckpointVerdict>();
  for (const r of receipts) {
    let verdict: ReturnType<typeof verifyReceipt>;
    try {
      verdict = verifyReceipt(r, {
        trusted: check.trusted,
        opened,
        ...(check.deployment ? { deployment: check.deployment } : {}),
      });
    } catch (e) {
      verdict = { ok: false, code: "receipt-malformed", detail: (e as Error).message };
    }
    if (!verdict.ok) {
      fail(verdict.code, r, verdict.detail);
      continue;
    }
    if (!log) {
      fail("receipt-not-in-log", r, "the stream is not in the store");
      continue;
    }
    const stored = log.recordHash(r.index);
    if (r.index >= log.size || !stored) fail("receipt-not-in-log", r, "the store holds no such record");
    else if (toHex(stored) !== r.recordHash)
      fail("receipt-not-in-log", r, "the stored record has another hash");
    else {
      const logRoot = log.root(verdict.checkpoint.size);
      if (verdict.checkpoint.size > log.size || (logRoot && !logRoot.equals(verdict.checkpoint.root)))
        fail("receipt-inconsistent", r, "it carries a checkpoint the log contradicts: a fork");
    }
  }
  return findings;
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
      /** `_system` only: the stream this record says the sink created (FORMAT.md §4). */
      created?: string;
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
 * Never throws for any bytes: a line that cannot be parsed, or whose event cannot be put in RFC 8785 form to
 * check its signature (a number such as 1e400, a lone surrogate), is a `record-malformed` finding.
 */
export function digestSegment(
  bytes: Uint8Array,
  producerKeys?: ReadonlyMap<string, KeyObject>,
): SegmentDigest {
  const { lines, truncated } = splitSegment(bytes);
  const hashes = new Uint8Array(lines.length * HASH_SIZE);
  const leaves = new Uint8Array(lines.length * HASH_SIZE);
  const events: (SignedEvent | undefined)[] = [];
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
    const created = streamCreatedBy(record);
    if (created !== undefined) digest.created = created;
    events[i] = record.event as SignedEvent;
    return digest;
  });
  if (producerKeys) {
    // A batch-signed request's events are stored together: one tree per batch, not one path per event.
    const commitments = batchCommitments(events);
    // A batch's events share one commitment (and key id and signature): its verdict is theirs.
    const batchVerdicts = new Map<Buffer, boolean>();
    events.forEach((event, i) => {
      const digest = records[i]!;
      if ("error" in digest || !event) return;
      const key = typeof event.sigkeyid === "string" ? producerKeys.get(event.sigkeyid) : undefined;
      digest.keyId = String(event.sigkeyid);
      try {
        const commitment = commitments.get(i);
        let ok = commitment && batchVerdicts.get(commitment);
        if (ok === undefined && key !== undefined) {
          ok = verifyEventSignature(event, key, undefined, commitment);
          if (commitment) batchVerdicts.set(commitment, ok);
        }
        digest.producer = !key ? "unknown-key" : ok ? "ok" : "invalid";
      } catch (e) {
        records[i] = { error: `the event cannot be checked: ${(e as Error).message}` };
      }
    });
  }
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
    else if (parsed.kind === "tiles") continue;
    else if (parsed.kind === "checkpoints")
      v.addCheckpoint(key, Buffer.from(objects.get(key)!).toString("utf8"));
    else if (parsed.kind === "segments") segments.push(key);
  }
  for (const key of segments) {
    v.addSegment(key, objects.get(key)!);
    for (const tile of v.takeCompletedTiles()) v.addTile(tile, objects.get(tile));
  }
  for (const key of keys) if (parseStoreKey(key)?.kind === "tiles") v.addListedTile(key);
  return v.finish();
}

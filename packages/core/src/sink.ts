/**
 * The ingest pipeline, once: validate → authenticate → dedup → sequence → commit → checkpoint → receipts.
 *
 * Commit protocol per stream (docs/ARCHITECTURE.md; DESIGN.md §4), with the write-once store as the commit point:
 *   1. read the head (size n, head hash, frontier) — cached, and repaired from the store on first use;
 *   2. build records n … n+k−1 and their segment;
 *   3. create the segment at segmentKey(stream, n), create-only. If it exists another writer won (or an earlier
 *      attempt crashed after writing it): read it and every later segment, record their dedup entries, move
 *      past them, and start again at 2 — events they already hold become replays. Nothing is orphaned, no
 *      index is skipped;
 *   4. record dedup entries for the new records (and tell the indexer, if any, of the segment);
 *   5. sign the checkpoint for n+k and create it at checkpointKey(stream, n+k);
 *   6. move the head forward with a compare-and-set;
 *   7. return receipts (inclusion proofs against the checkpoint of step 5).
 * A crash anywhere after 3 leaves a segment the head does not know; the next writer repairs it in step 3.
 * Steps overlap where no order is needed: the checkpoint is signed and staged (ObjectStore.stage) while 3 runs and
 * created after 3, beside 4; the head (a cache, HeadStore) follows both.
 *
 * Concurrent submissions to one stream in one process are grouped into one segment (group commit), so one
 * create, one head write and one signature serve many requests.
 */
import { batchCommitments } from "./batch.ts";
import {
  checkpointText,
  openCheckpoint,
  originFor,
  parseCheckpointText,
  signCheckpoint,
} from "./checkpoint.ts";
import { FormatError, IngestError, IntegrityError } from "./errors.ts";
import {
  batchEntryFromCanonical,
  canonicalEvent,
  dedupKey,
  parseSignedEvent,
  type SignedEvent,
  STREAM_NAME,
  SYSTEM_STREAM,
  verifyEventSignatureAsync,
} from "./event.ts";
import { canonicalBytes, type Hash, hashFromHex, sha256, toHex, ZERO_HASH } from "./hash.ts";
import { Frontier, MerkleTree } from "./merkle.ts";
import type { SinkObserver } from "./metrics.ts";
import { parseNote } from "./note.ts";
import type {
  AlertSink,
  Clock,
  DedupEntry,
  DedupStore,
  Head,
  HeadStore,
  ObjectStore,
  ProducerRegistry,
  SegmentIndexer,
  Signer,
  StagedObject,
} from "./ports.ts";
import { systemClock } from "./ports.ts";
import type { Receipt } from "./receipt.ts";
import { buildRecords, checkpointKey, encodeSegment, type SealedRecord, segmentKey } from "./record.ts";
import { StoreTiles, TileCache, type TreeReads, treeReads } from "./store-tiles.ts";
import { readStoredSegment, StreamReader } from "./stream-reader.ts";
import { SYSTEM_PRODUCER, streamCreatedEvent } from "./stream-set.ts";
import { TileWriter } from "./tile-writer.ts";

export interface SinkOptions {
  /**
   * The deployment's name: the signer's key name and the origin prefix. Each stream's checkpoints are signed
   * under the key name `<deployment>/<stream>`, the origin (checkpointKeyFor, FORMAT.md §2).
   */
  deployment: string;
  objects: ObjectStore;
  heads: HeadStore;
  dedup: DedupStore;
  producers: ProducerRegistry;
  signer: Signer;
  clock?: Clock;
  /** Most records one segment may hold when requests are grouped (default 10,000). */
  maxSegmentRecords?: number;
  /**
   * Where the sink reports what it found wrong with its own state (for example `head-mismatch`: a stored head
   * that disagrees with the stored checkpoints, which the writer refuses and repairs from the store).
   */
  alerts?: AlertSink;
  /** Told of commits, checkpoint signatures and producer signature checks (the runtimes' metrics). */
  observer?: SinkObserver;
  /** Told of each segment before the head moves past it (the AWS runtime's event index). */
  indexer?: SegmentIndexer;
  /**
   * Store every stream's full tlog-tiles tiles and entry bundles in the commit step (default true;
   * docs/FORMAT.md §14, tile-writer.ts). Off: nothing under `streams/<stream>/tile/` is written; a later start
   * with tiles on reads back what is missing, in the background.
   */
  tiles?: boolean;
}

/** An authenticated event waiting to be committed. */
export interface Admitted {
  event: SignedEvent;
  producer: string;
  /** canonicalBytes(event). */
  canonical: Buffer;
  key: string;
  eventHash: string;
}

interface Request {
  items: Admitted[];
  resolve: (receipts: Receipt[]) => void;
  reject: (error: unknown) => void;
}

/** A signed checkpoint whose object is staged but not yet created. */
interface StagedCheckpoint {
  size: number;
  /** Its origin, size and root lines: what any checkpoint of this size must begin with. */
  prefix: string;
  /** The signed note. */
  signed: string;
  staged: StagedObject;
}

interface WriterHead {
  size: number;
  hash: Buffer;
  frontier: Frontier;
  checkpoint?: string;
}

export class Sink {
  readonly deployment: string;
  private readonly writers = new Map<string, StreamWriter>();
  private readonly readers = new Map<string, StreamReader>();
  /** What building tiles computed, kept between requests (store-tiles.ts TileCache). */
  private readonly tileCache = new TileCache();

  constructor(readonly options: SinkOptions) {
    if (options.signer.key.name !== options.deployment) {
      throw new Error(
        `signer key name ${options.signer.key.name} must equal the deployment name ${options.deployment}`,
      );
    }
    this.deployment = options.deployment;
  }

  /**
   * Validates, authenticates and commits a batch of events to `stream`, all or nothing: any bad event rejects
   * the whole batch with an IngestError naming it, and nothing is written. Replays of accepted events get
   * their original record back in the receipt; no second record is made.
   */
  async submit(stream: string, events: readonly unknown[]): Promise<Receipt[]> {
    assertStreamName(stream);
    if (events.length === 0)
      throw new IngestError("invalid-request", "events: at least one event is required", "events");
    const parsed = events.map((e, i) => parseSignedEvent(e, `events[${i}]`));
    // Canonical bytes once per event; a batch-signed batch sent whole has its tree built once, not a path per event.
    const canonical = parsed.map((event) => {
      try {
        return canonicalEvent(event);
      } catch {
        return undefined; // authenticate reports it, after the checks that come first
      }
    });
    const commitments = batchCommitments(parsed, (event, i) =>
      canonical[i] ? batchEntryFromCanonical(event, canonical[i]) : undefined,
    );
    // Signatures are checked concurrently on the threadpool; the first failure by position is the one reported.
    const settled = await Promise.allSettled(
      parsed.map((event, i) =>
        this.authenticate(stream, event, `events[${i}]`, {
          canonical: canonical[i],
          commitment: commitments.get(i),
        }),
      ),
    );
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    return this.commit(
      stream,
      settled.map((s) => (s as PromiseFulfilledResult<Admitted>).value),
    );
  }

  /**
   * Checks the producer's key, signature and stream scope. `known`: the event's canonical bytes and its batch
   * commitment (batchCommitments), when the caller has them.
   */
  async authenticate(
    stream: string,
    event: SignedEvent,
    field: string,
    known: { canonical?: Buffer | undefined; commitment?: Buffer | undefined } = {},
  ): Promise<Admitted> {
    const key = await this.options.producers.key(event.sigkeyid);
    if (!key)
      throw new IngestError(
        "unknown-producer",
        `${field}.sigkeyid: no producer has this key`,
        `${field}.sigkeyid`,
      );
    if (key.revoked)
      throw new IngestError("revoked-key", `${field}.sigkeyid: the key was revoked`, `${field}.sigkeyid`);
    const admitted = admit(event, key.producer, field, known.canonical);
    const valid = await verifyEventSignatureAsync(
      event,
      admitted.canonical,
      key.publicKey,
      undefined,
      known.commitment,
    );
    this.options.observer?.producerSignatureChecked?.(valid);
    if (!valid) {
      throw new IngestError(
        "bad-signature",
        event.sigbatch === undefined
          ? `${field}.signature: does not verify with the producer's key`
          : `${field}.signature: the batch signature does not verify with the producer's key for the batch root this event's sigbatch leads to`,
        `${field}.signature`,
      );
    }
    if (!streamAllowed(key.streams, stream)) {
      throw new IngestError(
        "stream-not-allowed",
        `producer ${key.producer} may not write stream ${stream}`,
        "stream",
      );
    }
    return admitted;
  }

  /** Commits already-authenticated events (the sink's own system events use this directly). */
  commit(stream: string, items: readonly Admitted[]): Promise<Receipt[]> {
    let writer = this.writers.get(stream);
    if (!writer) {
      writer = new StreamWriter(this, stream);
      this.writers.set(stream, writer);
    }
    return writer.enqueue([...items]);
  }

  /**
   * Hands records a writer just committed to the stream's reader, if one was opened: a reader nobody asked for
   * is not created, so ingest alone keeps no per-record state (a reader holds its stream's whole Merkle tree).
   */
  follow(stream: string, first: number, records: readonly SealedRecord[]): void {
    this.readers.get(stream)?.add(first, records);
  }

  reader(stream: string): StreamReader {
    let r = this.readers.get(stream);
    if (!r) {
      r = new StreamReader(this.options.objects, stream);
      this.readers.set(stream, r);
    }
    return r;
  }

  /**
   * Proofs, roots and records of a stream up to a committed size, read with bounded work from its stored tiles and
   * segments (store-tiles.ts); from its reader, which holds the whole tree, only when tiles cannot answer.
   */
  tree(stream: string): TreeReads {
    return treeReads(this.tiles(stream), this.options.signer.key, async (size) => {
      const reader = this.reader(stream);
      await reader.ensure(size);
      return reader;
    });
  }

  /** A stream's tlog-tiles resources, read (or built) from the store with bounded work (store-tiles.ts). */
  tiles(stream: string): StoreTiles {
    return new StoreTiles(this.options.objects, stream, this.tileCache);
  }

  /** The stream's stored head and newest checkpoint (a cache; the store may already hold more). */
  head(stream: string): Promise<Head | undefined> {
    return this.options.heads.get(stream);
  }

  /**
   * Stops background work (tiles read back between commits) and waits for every writer's current commit or
   * step: after this, the sink writes nothing more unless asked to commit. Call before closing the ports.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
  }

  /** Resolves once no writer has a commit or a background step (tiles read back) under way. */
  async idle(): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => w.idle()));
  }

  /** Set by close(): writers do no more background work. */
  closed = false;
}

/** Prepares an event for commit: its canonical bytes (computed once, reused for the record) and identity. */
export function admit(
  event: SignedEvent,
  producer: string,
  field = "event",
  canonical = canonicalEvent(event, field),
): Admitted {
  return { event, producer, canonical, key: dedupKey(producer, event), eventHash: toHex(sha256(canonical)) };
}

export function assertStreamName(stream: string): void {
  if (!STREAM_NAME.test(stream)) {
    throw new IngestError(
      "invalid-stream",
      "stream: 1–128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
      "stream",
    );
  }
}

export function streamAllowed(patterns: readonly string[], stream: string): boolean {
  return patterns.some((p) => (p.endsWith("*") ? stream.startsWith(p.slice(0, -1)) : p === stream));
}

class StreamWriter {
  private queue: Request[] = [];
  private running: Promise<void> | undefined;
  private head: WriterHead | undefined;
  private created = false;
  /** Stores full tiles as records are committed; undefined when tiles are off. */
  private readonly tiles: TileWriter | undefined;

  constructor(
    private readonly sink: Sink,
    private readonly stream: string,
  ) {
    if (sink.options.tiles !== false) {
      this.tiles = new TileWriter(sink.options.objects, stream, (code, at, message) =>
        this.alert(code, at, message),
      );
    }
  }

  /** Resolves when the writer has nothing running (its queue drained, no background step under way). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  enqueue(items: Admitted[]): Promise<Receipt[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ items, resolve, reject });
      // drain() always awaits before it can finish, so it is never done before `running` is set.
      this.running ??= this.drain();
    });
  }

  /**
   * Commits what is queued, group by group; when the queue is empty and the stream's tiles are behind its head
   * (a crash between a segment and its tiles, or a store written before tiles), reads back one segment's worth
   * of them (TileWriter.step) and looks at the queue again: a request waits for at most one such step.
   */
  private async drain(): Promise<void> {
    try {
      for (;;) {
        await this.drainQueue();
        const head = this.head;
        if (!head || !this.tiles?.behind(head.size) || this.sink.closed) return;
        try {
          await this.tiles.step(head.size);
        } catch {
          // A store error: the tiles are read back again from the next commit on (nothing is lost by stopping).
          return;
        }
      }
    } finally {
      // Cleared in the same turn as the last look at the queue: a request enqueued after it starts a new drain.
      this.running = undefined;
    }
  }

  private async drainQueue(): Promise<void> {
    while (this.queue.length > 0) {
      const max = this.sink.options.maxSegmentRecords ?? 10_000;
      const group: Request[] = [];
      let count = 0;
      while (this.queue.length > 0 && (group.length === 0 || count + this.queue[0]!.items.length <= max)) {
        const r = this.queue.shift()!;
        group.push(r);
        count += r.items.length;
      }
      try {
        await this.commitGroup(group);
      } catch (e) {
        // The cached head may be stale after a failure anywhere: reload it from the stores next time.
        this.head = undefined;
        for (const r of group) r.reject(e);
      }
    }
  }

  private get o(): SinkOptions {
    return this.sink.options;
  }

  private async commitGroup(group: Request[]): Promise<void> {
    for (;;) {
      const head = this.head ?? (await this.loadHead());
      const pending = await this.classify(group);
      const fresh = pending.fresh;
      if (group.length === 0) return;
      if (fresh.length === 0) {
        await this.answer(group, pending.placed, head, undefined);
        return;
      }
      if (head.size === 0) await this.recordCreation();
      const started = performance.now();
      const received = this.o.clock?.now().toISOString() ?? systemClock.now().toISOString();
      const records = buildRecords(this.stream, head.size, head.hash, received, fresh);
      const tree = MerkleTree.fromFrontier(head.frontier);
      for (const r of records) tree.append(r.leaf);
      const last = records[records.length - 1]!;
      const next: WriterHead = { size: tree.size, hash: last.hash, frontier: tree.frontier() };
      // The checkpoint is signed and staged while the segment is written (their file syncs overlap), but created
      // only after the segment is durable: no checkpoint ever covers records the store could lose.
      const checkpoint = this.stageCheckpoint(next, tree.root());
      checkpoint.catch(() => undefined); // awaited below, or discarded
      let created: boolean;
      try {
        created = await this.o.objects.putIfAbsent(
          segmentKey(this.stream, head.size),
          encodeSegment(records),
        );
      } catch (e) {
        void checkpoint.then(
          (c) => c.staged.discard(),
          () => undefined,
        );
        throw e;
      }
      if (!created) {
        await checkpoint.then(
          (c) => c.staged.discard(),
          () => undefined,
        );
        // Another writer holds index head.size (or our own earlier attempt crashed after writing): catch up.
        this.head = await this.catchUp(head);
        continue;
      }
      // Dedup entries only once the segment is durable (an entry naming a record the store lost would answer a
      // retry with a receipt for nothing), written beside the checkpoint's create; both before the head.
      const [signed] = await Promise.all([
        checkpoint.then((c) => this.storeCheckpoint(c)),
        this.segmentStored(
          head.size,
          records,
          records.map((r, i) => dedupEntry(this.stream, r, fresh[i]!.eventHash)),
        ),
      ]);
      next.checkpoint = signed;
      await this.advanceHead(head.size, next);
      this.head = next;
      this.o.observer?.committed?.(this.stream, records.length, (performance.now() - started) / 1000);
      this.sink.follow(this.stream, head.size, records);
      for (const [i, r] of records.entries())
        pending.placed.set(fresh[i]!.key, { index: r.record.index, hash: r.hash });
      await this.answer(group, pending.placed, next, tree);
      return;
    }
  }

  /**
   * Records this stream's creation in `_system` before its first segment is written, so the log commits to the
   * set of streams (docs/FORMAT.md §4, stream-set.ts). Idempotent: the event's id is fixed per stream, so after a
   * crash between this and the first segment the second attempt is refused by dedup (`id-conflict`) or replayed.
   */
  private async recordCreation(): Promise<void> {
    if (this.stream === SYSTEM_STREAM || this.created) return;
    const event = await streamCreatedEvent(this.o.signer, this.stream, this.o.clock ?? systemClock);
    try {
      await this.sink.commit(SYSTEM_STREAM, [admit(event, SYSTEM_PRODUCER)]);
    } catch (e) {
      if (!(e instanceof IngestError && e.code === "id-conflict")) throw e;
    }
    this.created = true;
  }

  /**
   * Splits the group's events into those already in the stream (replays) and fresh ones. A request reusing an
   * accepted `source`+`id` with other content, or in another stream, is rejected and leaves the group.
   */
  private async classify(group: Request[]): Promise<{
    fresh: Admitted[];
    placed: Map<string, { index: number; hash: Buffer }>;
  }> {
    const existing = await this.o.dedup.getMany([
      ...new Set(group.flatMap((r) => r.items.map((i) => i.key))),
    ]);
    const placed = new Map<string, { index: number; hash: Buffer }>();
    const seen = new Map<string, string>();
    const fresh: Admitted[] = [];
    const kept = group.filter((r) => {
      const conflict = this.conflict(r.items, existing, seen);
      if (conflict) r.reject(conflict);
      else {
        for (const item of r.items) {
          const e = existing.get(item.key);
          if (e) placed.set(item.key, { index: e.index, hash: hashFromHex(e.recordHash, "recordHash") });
          else if (!seen.has(item.key)) {
            seen.set(item.key, item.eventHash);
            fresh.push(item);
          }
        }
      }
      return !conflict;
    });
    group.splice(0, group.length, ...kept);
    return { fresh, placed };
  }

  private conflict(
    items: Admitted[],
    existing: Map<string, DedupEntry>,
    seen: Map<string, string>,
  ): IngestError | undefined {
    const local = new Map(seen);
    for (const item of items) {
      const e = existing.get(item.key);
      const what = `event ${item.event.source} ${item.event.id}`;
      if (e && e.stream !== this.stream)
        return new IngestError("id-conflict", `${what} was already accepted in stream ${e.stream}`, "id");
      const earlier = e?.eventHash ?? local.get(item.key);
      if (earlier !== undefined && earlier !== item.eventHash) {
        return new IngestError("id-conflict", `${what} was already accepted with different content`, "id");
      }
      local.set(item.key, item.eventHash);
    }
    return undefined;
  }

  /**
   * What follows a durable segment, before the head moves past it (a commit's own, or one caught up on): its dedup
   * entries, the runtime's event index, and the tiles it completes.
   */
  private async segmentStored(first: number, records: SealedRecord[], entries: DedupEntry[]): Promise<void> {
    await Promise.all([
      this.o.dedup.putMany(entries, { stream: this.stream, first, records }),
      this.o.indexer?.indexSegment(this.stream, first, records),
      this.tiles?.add(
        first,
        records.map((r) => r.hash),
      ),
    ]);
  }

  /** The head on first use: the stored head if it checks out, repaired from the store (see catchUp). */
  private async loadHead(): Promise<WriterHead> {
    const head = await this.catchUp({ size: 0, hash: ZERO_HASH, frontier: new Frontier() });
    if (this.tiles) {
      // Where the stored tiles end; a short tail (the usual restart: under one tile and a segment) is read back
      // now, so this commit's records continue it; a longer one is read back between commits (drain).
      await this.tiles.load(head.size);
      while (head.size - this.tiles.position <= SHORT_TILE_TAIL && (await this.tiles.step(head.size)));
    }
    this.head = head;
    return head;
  }

  /**
   * Folds every stored segment from head.size onward into the head, recording their dedup entries.
   *
   * The head store is a cache and is never trusted on its word: a stored head ahead of `from` is used only when
   * checkStoredHead finds it agrees with the checkpoint the sink signed at its size. Otherwise the writer
   * refuses it, raises `head-mismatch` and folds the segments from `from` instead (from index 0 on first load:
   * one full read of the stream; later, only what lies past the writer's own verified head). After folding,
   * the result must match any checkpoint stored at its size, or nothing is signed.
   */
  private async catchUp(from: WriterHead): Promise<WriterHead> {
    const stored = await this.o.heads.get(this.stream);
    let head = from;
    if (stored && stored.size > head.size) {
      const problem = await this.checkStoredHead(stored);
      if (problem === undefined) head = headFromStored(stored);
      else
        await this.alert(
          "head-mismatch",
          stored.size,
          `the stored head of ${this.stream} (size ${stored.size}) ${problem}; repairing it from the stored segments`,
        );
    }
    const start = head.size;
    for (;;) {
      const bytes = await this.o.objects.get(segmentKey(this.stream, head.size));
      if (!bytes) break;
      const records = readStoredSegment(this.stream, head.size, bytes);
      const frontier = head.frontier.clone();
      let prev = head.hash;
      for (const [i, r] of records.entries()) {
        if (
          r.record.index !== head.size + i ||
          r.record.prev !== toHex(prev) ||
          r.record.stream !== this.stream
        ) {
          const at = segmentKey(this.stream, head.size);
          const message = `segment ${at} does not continue the stream`;
          await this.alert("store-mismatch", head.size, `${message}; refusing to sign`);
          throw new IntegrityError("stored-object-corrupt", message, { stream: this.stream, at });
        }
        prev = r.hash;
        frontier.append(r.leaf);
      }
      await this.segmentStored(head.size, records, dedupEntriesOf(this.stream, records));
      this.sink.follow(this.stream, head.size, records);
      head = { size: frontier.size, hash: prev, frontier };
    }
    if (head.size > start) {
      const { problem } = await this.checkAgainstCheckpoint(head.size, head.frontier, toHex(head.hash));
      if (problem !== undefined) {
        const message = `the stored segments of ${this.stream} up to ${head.size} ${problem}; refusing to sign`;
        await this.alert("store-mismatch", head.size, message);
        throw new IngestError("unavailable", message);
      }
      await this.advanceHead(stored?.size ?? 0, head);
    }
    return head;
  }

  /**
   * Why a stored head cannot be used, or undefined when it agrees with the checkpoint stored at its size (root
   * of its frontier, head record hash) and with its own checkpoint text. A head without a stored checkpoint of
   * its size (left by a repair after a crash) cannot be checked cheaply and is refused.
   */
  private async checkStoredHead(stored: Head): Promise<string | undefined> {
    let frontier: Frontier;
    try {
      frontier = new Frontier(
        stored.size,
        stored.frontier.map((h) => hashFromHex(h, "frontier")),
      );
      hashFromHex(stored.headHash, "head hash");
    } catch (e) {
      if (e instanceof FormatError) return `is malformed (${e.message})`;
      throw e;
    }
    const checked = await this.checkAgainstCheckpoint(stored.size, frontier, stored.headHash);
    if (!checked.found) return "has no checkpoint of its size to be checked against";
    if (checked.problem !== undefined) return checked.problem;
    if (stored.checkpoint !== undefined) {
      try {
        const cp = parseCheckpointText(parseNote(stored.checkpoint).text);
        const root = frontier.root();
        if (cp.size === stored.size && !cp.root.equals(root)) return "carries a checkpoint with another root";
      } catch (e) {
        if (e instanceof FormatError) return `carries a malformed checkpoint (${e.message})`;
        throw e;
      }
    }
    return undefined;
  }

  /**
   * Compares a tree state with the checkpoint stored at `size`, if there is one: its root and head record
   * hash. A checkpoint that does not verify under the sink's current key is still compared (it may be from an
   * earlier key); one that cannot be parsed is a mismatch.
   */
  private async checkAgainstCheckpoint(
    size: number,
    frontier: Frontier,
    headHash: string,
  ): Promise<{ found: boolean; problem?: string }> {
    const bytes = await this.o.objects.get(checkpointKey(this.stream, size));
    if (!bytes) return { found: false };
    const text = Buffer.from(bytes).toString("utf8");
    const verdict = openCheckpoint(text, [this.o.signer.key]);
    let cp: ReturnType<typeof parseCheckpointText>;
    try {
      cp = verdict.ok ? verdict.checkpoint : parseCheckpointText(parseNote(text).text);
    } catch (e) {
      if (e instanceof FormatError)
        return { found: true, problem: `cannot be checked: checkpoint ${size} is malformed` };
      throw e;
    }
    if (!cp.root.equals(frontier.root()))
      return { found: true, problem: `disagrees with the root of checkpoint ${size}` };
    if (cp.head && toHex(cp.head) !== headHash)
      return { found: true, problem: `disagrees with the head hash of checkpoint ${size}` };
    return { found: true };
  }

  private async alert(code: string, at: number | string, message: string): Promise<void> {
    const time = (this.o.clock ?? systemClock).now().toISOString();
    // Delivery is the alert sink's contract; a failure to alert must not stop the repair.
    await this.o.alerts?.send([{ code, stream: this.stream, at, message, time }]).catch(() => undefined);
  }

  /** Moves the stored head forward to `next`, from wherever it is now; never backward. */
  private async advanceHead(expected: number, next: WriterHead): Promise<void> {
    const value: Head = {
      size: next.size,
      headHash: toHex(next.hash),
      frontier: next.frontier.hashes.map(toHex),
      ...(next.checkpoint ? { checkpoint: next.checkpoint } : {}),
    };
    let current = expected;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (await this.o.heads.advance(this.stream, current, value)) return;
      const now = await this.o.heads.get(this.stream);
      current = now?.size ?? 0;
      if (current >= next.size) return; // someone else already moved it at least this far
    }
  }

  /** Signs and stores the checkpoint for `head`; if one of that size is already stored, returns that one. */
  private async publishCheckpoint(head: WriterHead, root: Buffer): Promise<string> {
    return this.storeCheckpoint(await this.stageCheckpoint(head, root));
  }

  /** Signs the checkpoint for `head` and stages its object (ObjectStore.stage), not yet under its key. */
  private async stageCheckpoint(head: WriterHead, root: Buffer): Promise<StagedCheckpoint> {
    const cp = {
      origin: originFor(this.sink.deployment, this.stream),
      size: head.size,
      root,
      head: head.hash,
      time: (this.o.clock ?? systemClock).now().toISOString(),
    };
    const signed = await signCheckpoint(cp, this.o.signer);
    const bytes = Buffer.from(signed, "utf8");
    const staged = this.o.objects.stage
      ? await this.o.objects.stage(bytes)
      : {
          putIfAbsent: (key: string) => this.o.objects.putIfAbsent(key, bytes),
          discard: async () => undefined,
        };
    const prefix = checkpointText(cp).split("\n").slice(0, 3).join("\n");
    return { size: head.size, prefix, signed, staged };
  }

  /** Creates a staged checkpoint at its key; if one of that size is already stored, returns that one. */
  private async storeCheckpoint(checkpoint: StagedCheckpoint): Promise<string> {
    this.o.observer?.checkpointSigned?.(this.stream);
    const key = checkpointKey(this.stream, checkpoint.size);
    if (await checkpoint.staged.putIfAbsent(key)) return checkpoint.signed;
    const existing = Buffer.from((await this.o.objects.get(key)) ?? []).toString("utf8");
    // The same records give the same root; a stored checkpoint with another root would be a fork.
    if (!existing.startsWith(checkpoint.prefix)) {
      throw new IntegrityError(
        "checkpoint-conflict",
        `checkpoint ${key} already exists with a different root`,
        {
          stream: this.stream,
          at: key,
        },
      );
    }
    return existing;
  }

  /** Resolves each request with receipts against `tree` (fresh commit) or the stream's full tree. */
  private async answer(
    group: Request[],
    placed: Map<string, { index: number; hash: Buffer }>,
    head: WriterHead,
    tree: MerkleTree | undefined,
  ): Promise<void> {
    let checkpoint = head.checkpoint;
    if (!checkpoint && head.size > 0) {
      // Only replays, and the newest records were never checkpointed (a writer crashed after committing). The
      // root comes from the frontier, so repair costs the unsealed tail catchUp read, not the whole stream.
      checkpoint = await this.publishCheckpoint(head, head.frontier.root());
      head.checkpoint = checkpoint;
      await this.advanceHead(head.size, head).catch(() => undefined);
    }
    // A replayed event's record precedes this commit's tree: its proof is read from the stored tiles (bounded
    // reads, Sink.tree), not from a reader holding the whole stream.
    const replayed = new Set<number>();
    for (const r of group)
      for (const item of r.items) {
        const at = placed.get(item.key)!;
        if (!(tree && at.index >= tree.firstSize)) replayed.add(at.index);
      }
    const older = replayed.size > 0 ? this.sink.tree(this.stream) : undefined;
    const proofs = new Map<number, Hash[]>(
      await Promise.all(
        [...replayed].map(async (i) => [i, await older!.inclusionProof(i, head.size)] as const),
      ),
    );
    for (const r of group) {
      r.resolve(
        r.items.map((item) => {
          const at = placed.get(item.key)!;
          const proof =
            tree && at.index >= tree.firstSize
              ? tree.inclusionProof(at.index, head.size)
              : proofs.get(at.index)!;
          return {
            stream: this.stream,
            index: at.index,
            recordHash: toHex(at.hash),
            source: item.event.source,
            id: item.event.id,
            checkpoint: checkpoint!,
            inclusionProof: proof.map(toHex),
          };
        }),
      );
    }
  }
}

/** Records a writer reads back for its tiles before its first commit, rather than between commits. */
const SHORT_TILE_TAIL = 4096;

/** The dedup entries of stored records (what a writer records for a segment it catches up on, or a rebuild). */
export function dedupEntriesOf(stream: string, records: readonly SealedRecord[]): DedupEntry[] {
  return records.map((r) => dedupEntry(stream, r, toHex(sha256(canonicalBytes(r.record.event)))));
}

function headFromStored(stored: Head): WriterHead {
  return {
    size: stored.size,
    hash: hashFromHex(stored.headHash, "head hash"),
    frontier: new Frontier(
      stored.size,
      stored.frontier.map((h) => hashFromHex(h, "frontier")),
    ),
    ...(stored.checkpoint ? { checkpoint: stored.checkpoint } : {}),
  };
}

function dedupEntry(stream: string, r: SealedRecord, eventHash: string): DedupEntry {
  return {
    key: dedupKey(r.record.producer, r.record.event),
    stream,
    index: r.record.index,
    recordHash: toHex(r.hash),
    eventHash,
  };
}

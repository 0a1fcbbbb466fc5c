/**
 * One stream's tlog-tiles resources read from the write-once store, with work bounded per read whatever the
 * stream's length (docs/FORMAT.md §14): what `/tlog/<stream>/` serves, and what the sink's own proofs (the API's
 * proof routes, consistency proofs for witnesses) are computed from through a TlogReader.
 *
 * A full tile or entry bundle is the stored object (tile-writer.ts), and a partial one is its prefix. Where the
 * full one is not stored (past the last full tile, or not written yet: a crash, an upgrade, tiles off) it is built:
 * at level 0, and for entry bundles and record lines, from the ≤ 256 records it covers; at a higher level from
 * the tiles of the level below. Building reads at most `budget` records per request; a request that would need
 * more (a long stream whose tiles were never written) is a StoreError("store-failed") — the caller falls back, or
 * answers 503 until the writer has caught up.
 *
 * What a build computes that cannot change is kept in a TileCache the sink shares between requests: the roots of
 * full tiles (a partial level-1 tile has up to 255 of them, each otherwise a stored tile read and 255 hashes) and
 * the record hashes of the newest level-0 tiles, so a proof against a newer checkpoint reads only the records
 * committed since. Without it, each consistency proof a client asks for after a delivery cost the sink up to
 * 256 tile reads and ~65,000 hashes per level.
 */
import { IntegrityError, StoreError, TlogError } from "./errors.ts";
import { HASH_SIZE, type Hash, sha256 } from "./hash.ts";
import { LruMap } from "./lru.ts";
import { leafHash } from "./merkle.ts";
import type { NoteKey } from "./note.ts";
import type { ObjectStore } from "./ports.ts";
import { type SealedRecord, segmentKey, segmentPrefix, splitSegment, tileKey } from "./record.ts";
import { readStoredSegment, type StreamReader } from "./stream-reader.ts";
import {
  encodeEntryBundle,
  encodeTile,
  parseTilePath,
  TILE_WIDTH,
  type Tile,
  tileRange,
  tileRoot,
} from "./tiles.ts";
import { TlogReader } from "./tlog-reader.ts";

/** Records one request may read to build tiles that are not stored: 64 full level-0 tiles. */
export const TILE_BUILD_BUDGET = 64 * TILE_WIDTH;

/**
 * The first index of the stored segment holding record `index`: segment keys in a window before it are listed,
 * the window growing until one is found (segments are contiguous, so a window wider than a segment finds it).
 */
export async function segmentHolding(
  objects: ObjectStore,
  stream: string,
  index: number,
): Promise<number | undefined> {
  for (let width = TILE_WIDTH; ; width *= 4) {
    const lo = Math.max(0, index - width);
    const keys = await objects.list(segmentPrefix(stream), {
      ...(lo > 0 ? { startAfter: segmentKey(stream, lo - 1) } : {}),
      limit: index - lo + 2,
    });
    let found: number | undefined;
    for (const key of keys) {
      const n = Number(key.slice(-20));
      if (n <= index) found = n;
    }
    if (found !== undefined || lo === 0) return found;
  }
}

/**
 * Bounded memory of what StoreTiles computed from stored records and tiles, for any number of streams: roots of
 * full tiles (`maxRoots`, ~300 bytes each with key and Map entry) and record-hash prefixes of level-0 tiles
 * (`maxRecordTiles`, up to 256 hashes, ~60 KiB each): ~9 MiB at most. Both are facts about records inside
 * signed checkpoints, which never change; the least recently used go first.
 */
export class TileCache {
  private readonly roots: LruMap<string, Hash>;
  private readonly records: LruMap<string, Hash[]>;

  constructor(maxRoots = 16_384, maxRecordTiles = 64) {
    this.roots = new LruMap(maxRoots);
    this.records = new LruMap(maxRecordTiles);
  }

  root(key: string): Hash | undefined {
    return this.roots.get(key);
  }

  setRoot(key: string, root: Hash): void {
    // A copy of its own: a small Buffer may be a view of an 8 KiB pool slab, which keeping it would pin.
    const own = Buffer.alloc(root.length);
    own.set(root);
    this.roots.set(key, own);
  }

  /** The record hashes of a level-0 tile known so far: a prefix of the tile's entries. */
  recordHashes(key: string): readonly Hash[] {
    return this.records.get(key) ?? [];
  }

  setRecordHashes(key: string, hashes: Hash[]): void {
    this.records.set(key, hashes);
  }
}

export class StoreTiles {
  constructor(
    private readonly objects: ObjectStore,
    readonly stream: string,
    private readonly cache = new TileCache(),
    private readonly budget = TILE_BUILD_BUDGET,
  ) {}

  /** The TlogSource read port over this stream (tile and entry-bundle paths; the checkpoint is the caller's). */
  source() {
    return {
      read: async (path: string, maxBytes: number): Promise<Uint8Array | undefined> => {
        const tile = path.startsWith("tile/") ? parseTilePath(path.slice("tile/".length)) : undefined;
        if (!tile) return undefined;
        const bytes = await this.tile(tile);
        if (bytes.length > maxBytes)
          throw new TlogError("too-large", `${path} is longer than ${maxBytes} bytes`, path);
        return bytes;
      },
    };
  }

  /** A tile or entry bundle (full or partial); the records it covers must be stored. */
  tile(tile: Tile): Promise<Uint8Array> {
    return this.build(tile, { left: this.budget });
  }

  /** The record lines of [start, end) (end − start ≤ 256), without their newlines. */
  recordLines(start: number, end: number): Promise<Buffer[]> {
    return this.lines(start, end, { left: this.budget });
  }

  private async build(tile: Tile, budget: { left: number }): Promise<Uint8Array> {
    const stored = await this.objects.get(tileKey(this.stream, { ...tile, width: TILE_WIDTH }));
    const entry = tile.level === "entries" ? 2 + HASH_SIZE : HASH_SIZE;
    if (stored?.length === TILE_WIDTH * entry) return stored.subarray(0, tile.width * entry);
    if (tile.level === "entries" || tile.level === 0) {
      const hashes = await this.recordHashes(tile, budget);
      return tile.level === "entries"
        ? encodeEntryBundle(hashes)
        : encodeTile(hashes.map((h) => leafHash(h)));
    }
    const below: Hash[] = [];
    for (let i = 0; i < tile.width; i++) {
      const child = { level: tile.level - 1, index: tile.index * TILE_WIDTH + i, width: TILE_WIDTH };
      const key = `${this.stream}/${child.level}/${child.index}`;
      let root = this.cache.root(key);
      if (!root) {
        root = tileRoot(await this.build(child, budget));
        this.cache.setRoot(key, root);
      }
      below.push(root);
    }
    return encodeTile(below);
  }

  /** The record hashes a level-0 tile (or its entry bundle) covers: the cached prefix, and the records past it. */
  private async recordHashes(tile: Tile, budget: { left: number }): Promise<Hash[]> {
    const key = `${this.stream}/${tile.index}`;
    const known = this.cache.recordHashes(key);
    if (known.length >= tile.width) return known.slice(0, tile.width);
    const { start, end } = tileRange(tile);
    const hashes = [...known, ...(await this.lines(start + known.length, end, budget)).map((l) => sha256(l))];
    this.cache.setRecordHashes(key, hashes);
    return hashes;
  }

  private async lines(start: number, end: number, budget: { left: number }): Promise<Buffer[]> {
    return (await this.segments(start, end, budget)).flatMap(({ first, lines }) =>
      lines.slice(Math.max(start - first, 0), end - first),
    );
  }

  /**
   * The stored segments holding records [start, end), each with its first index and lines. The records are inside
   * a checkpoint the sink signed, so a segment that is missing or too short is the store contradicting itself
   * (IntegrityError naming it), not an absence.
   */
  async segments(
    start: number,
    end: number,
    budget = { left: this.budget },
  ): Promise<{ first: number; key: string; bytes: Uint8Array; lines: Buffer[] }[]> {
    budget.left -= end - start;
    if (budget.left < 0)
      throw new StoreError(
        "store-failed",
        `the tiles of ${this.stream} around record ${start} are not stored yet; building them would read more than ${this.budget} records`,
      );
    const out: { first: number; key: string; bytes: Uint8Array; lines: Buffer[] }[] = [];
    let first = (await segmentHolding(this.objects, this.stream, start)) ?? 0;
    while (first < end) {
      const key = segmentKey(this.stream, first);
      const bytes = await this.objects.get(key);
      const lines = bytes ? splitSegment(bytes).lines : [];
      if (!bytes || lines.length === 0 || first + lines.length <= start) {
        // No segment starts where the one before ends: that one is too short (changed) — blame it, not the gap.
        const before = bytes ? undefined : out[out.length - 1]?.key;
        const problem = before
          ? `segment ${before} ends at record ${first} and no segment starts there`
          : `segment ${key} ${bytes ? "does not hold them" : "is missing"}`;
        throw new IntegrityError(
          "stored-object-corrupt",
          `records ${start} … ${end - 1} of ${this.stream} are signed but ${problem}`,
          { stream: this.stream, at: before ?? key },
        );
      }
      out.push({ first, key, bytes, lines });
      first += lines.length;
    }
    return out;
  }
}

/** What the sink answers about a stream's tree up to a committed size: proofs, roots and records. */
export interface TreeReads {
  inclusionProof(index: number, size: number): Promise<Hash[]>;
  consistencyProof(m: number, n: number): Promise<Hash[]>;
  root(size: number): Promise<Hash>;
  /** Records [from, to), at most 256 of them. */
  records(from: number, to: number): Promise<SealedRecord[]>;
}

/**
 * A stream's tree read from its stored tiles and segments, with bounded work (O(log n) tiles per proof, the
 * segments holding the records asked for); when the tiles cannot answer within the build budget (tiles off, or
 * not yet written that far), from `fallback` — the stream's reader, which holds the whole tree in memory.
 */
export function treeReads(
  tiles: StoreTiles,
  key: NoteKey,
  fallback: (size: number) => Promise<StreamReader>,
): TreeReads {
  const { stream } = tiles;
  const reader = new TlogReader(tiles.source(), { origin: stream, verifiers: [key], tileCache: 16 });
  const either = async <T>(size: number, fromTiles: () => Promise<T>, fromReader: (r: StreamReader) => T) => {
    try {
      return await fromTiles();
    } catch (e) {
      if (!(e instanceof TlogError || e instanceof StoreError)) throw e;
      return fromReader(await fallback(size));
    }
  };
  return {
    inclusionProof: (index, size) =>
      either(
        size,
        () => reader.inclusionProof(index, size),
        (r) => r.inclusionProof(index, size),
      ),
    consistencyProof: (m, n) =>
      either(
        n,
        () => reader.consistencyProof(m, n),
        (r) => r.consistencyProof(m, n),
      ),
    root: (size) =>
      either(
        size,
        () => reader.treeHash(size),
        (r) => r.root(size),
      ),
    records: async (from, to) =>
      (await tiles.segments(from, to)).flatMap(({ first, bytes }) =>
        readStoredSegment(stream, first, bytes).slice(Math.max(from - first, 0), to - first),
      ),
  };
}

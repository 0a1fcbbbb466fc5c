/**
 * Stores a stream's FULL tlog-tiles tiles (every level) and entry bundles as write-once objects, as the stream's
 * writer commits (core sink.ts), so both runtimes get them (docs/FORMAT.md §14; tiles.ts for the format).
 * Partial tiles are never stored: they are a prefix of the tile that will be full, served from the records.
 *
 * The invariant that makes start-up, crash repair and back-fill one mechanism: tiles are stored in order, and a
 * level-0 tile's entry bundle last of everything that its end completes (fullTilesBetween's order). So the entry
 * bundles present are a prefix 0 … k−1, and every full tile ending at or before 256·k is stored. `load` finds k
 * with a binary search (O(log n) reads); the records from 256·k onward are then read back from the segments in
 * bounded steps (`step`, one segment each) until the writer's position is reached, storing what they complete —
 * a crash between a segment and its tiles, a data directory written before tiles existed, or tiles switched off
 * for a while are all repaired this way, resumably (what is stored is never written again).
 *
 * Memory is bounded: the record hashes past the last full level-0 tile (≤ 255). A tile at level l ≥ 1 is
 * computed when it completes, from the 256 stored tiles at level l−1 below it (one read per 65,536 records at
 * level 1).
 */
import { type Hash, sha256 } from "./hash.ts";
import { leafHash } from "./merkle.ts";
import type { ObjectStore } from "./ports.ts";
import { segmentKey, splitSegment, tileKey } from "./record.ts";
import { segmentHolding } from "./store-tiles.ts";
import {
  encodeEntryBundle,
  encodeTile,
  FULL_TILE_BYTES,
  fullTilesBetween,
  TILE_WIDTH,
  type Tile,
  tileRoot,
} from "./tiles.ts";

/**
 * Told when a stored tile differs from the one the records give, or a stored segment cannot be read back for
 * tiles (never thrown: tiles do not stop ingest; the verifier reports the stored object too).
 */
export type TileAlert = (
  code: "tile-mismatch" | "store-mismatch",
  at: string,
  message: string,
) => Promise<void>;

export class TileWriter {
  /** Every full tile whose range ends at or before this is stored; a multiple of 256. */
  private tiled = 0;
  /** Record hashes of [tiled, tiled + pending.length). */
  private pending: Hash[] = [];
  private loaded = false;
  /** The first index of the next stored segment, when known (it is after every segment this writer added). */
  private nextSegment: number | undefined;
  /** Set when a tile below could not be read: tiles stop here until the writer is loaded again. */
  private stuck = false;

  constructor(
    private readonly objects: ObjectStore,
    private readonly stream: string,
    private readonly alert: TileAlert = async () => undefined,
  ) {}

  /** The next record index the writer needs (every record below it is accounted for). */
  get position(): number {
    return this.tiled + this.pending.length;
  }

  /** Whether records between the position and `size` remain to be read back from the store. */
  behind(size: number): boolean {
    return this.loaded && !this.stuck && this.position < size;
  }

  /**
   * Finds where the stored tiles end for a stream of `size` records: the first missing entry bundle, by binary
   * search (the bundles present are a prefix, see above). Records past it are read back by `step`.
   */
  async load(size: number): Promise<void> {
    let lo = 0;
    let hi = Math.floor(size / TILE_WIDTH);
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const bytes = await this.objects.get(
        tileKey(this.stream, { level: "entries", index: mid, width: TILE_WIDTH }),
      );
      if (bytes) lo = mid + 1;
      else hi = mid;
    }
    this.tiled = lo * TILE_WIDTH;
    this.pending = [];
    this.nextSegment = undefined;
    this.stuck = false;
    this.loaded = true;
  }

  /**
   * Adds records `first` … of the stream (just committed or caught up on) and stores the full tiles they
   * complete. Ignored unless they start at the position (before load, or while records before them are still
   * to be read back by `step`). Throws StoreError when the store fails (the caller's commit fails with it).
   */
  async add(first: number, hashes: readonly Hash[]): Promise<void> {
    if (!this.loaded || this.stuck || first !== this.position || hashes.length === 0) return;
    this.nextSegment = first + hashes.length;
    for (const hash of hashes) {
      this.pending.push(hash);
      if (this.pending.length === TILE_WIDTH) {
        await this.completeLevel0();
        if (this.stuck) return;
      }
    }
  }

  /**
   * One bounded step of reading back records between the position and `size` (one segment): what a writer does
   * between commits while it is behind. Resolves false when nothing is left.
   */
  async step(size: number): Promise<boolean> {
    if (!this.behind(size)) return false;
    const start = this.nextSegment ?? (await segmentHolding(this.objects, this.stream, this.position));
    if (start === undefined) return false;
    const bytes = await this.objects.get(segmentKey(this.stream, start));
    if (!bytes) return false; // not stored (yet): the writer's own commit or the next load goes on from here
    // Only the record hashes are needed: the lines are hashed, not parsed (the chain was checked when the
    // segment was committed or caught up on, and the verifier checks it again).
    const { lines, truncated } = splitSegment(bytes);
    if (truncated) {
      const key = segmentKey(this.stream, start);
      await this.alert(
        "store-mismatch",
        key,
        `segment ${key} does not end with a newline; tiles of ${this.stream} stop until the writer restarts`,
      );
      this.stuck = true;
      return false;
    }
    await this.add(
      this.position,
      lines.slice(this.position - start).map((line) => sha256(line)),
    );
    return this.behind(size);
  }

  /** The level-0 tile of the 256 pending hashes is complete: store it, every tile it completes above, its bundle. */
  private async completeLevel0(): Promise<void> {
    const index = this.tiled / TILE_WIDTH;
    const level0 = encodeTile(this.pending.map((h) => leafHash(h)));
    const built = new Map<string, Buffer>();
    built.set(`0/${index}`, level0);
    built.set(`entries/${index}`, encodeEntryBundle(this.pending));
    const tiles = fullTilesBetween(this.tiled, this.tiled + TILE_WIDTH);
    // Levels above 0, lowest first: each is made of the roots of the 256 tiles below it.
    for (const tile of [...tiles].reverse()) {
      if (tile.level === "entries" || tile.level === 0) continue;
      const below: Buffer[] = [];
      for (let i = 0; i < TILE_WIDTH; i++) {
        const childIndex = tile.index * TILE_WIDTH + i;
        const child =
          built.get(`${tile.level - 1}/${childIndex}`) ??
          (await this.objects.get(
            tileKey(this.stream, { level: tile.level - 1, index: childIndex, width: TILE_WIDTH }),
          ));
        if (!child || child.length !== FULL_TILE_BYTES) {
          const key = tileKey(this.stream, { level: tile.level - 1, index: childIndex, width: TILE_WIDTH });
          await this.alert(
            "tile-mismatch",
            key,
            `tile ${key} is ${child ? "not 8,192 bytes" : "missing"}; tiles of ${this.stream} stop until the writer restarts`,
          );
          this.stuck = true;
          return;
        }
        below.push(tileRoot(child));
      }
      built.set(`${tile.level}/${tile.index}`, encodeTile(below));
    }
    // Stored highest level first and the entry bundle last (see the invariant above).
    for (const tile of tiles) await this.store(tile, built.get(`${tile.level}/${tile.index}`)!);
    this.tiled += TILE_WIDTH;
    this.pending = [];
  }

  private async store(tile: Tile, bytes: Buffer): Promise<void> {
    const key = tileKey(this.stream, tile);
    if (await this.objects.putIfAbsent(key, bytes)) return;
    const stored = await this.objects.get(key);
    if (stored && Buffer.from(stored).equals(bytes)) return;
    await this.alert("tile-mismatch", key, `stored tile ${key} differs from the one its records give`);
  }
}

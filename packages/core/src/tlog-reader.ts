/**
 * Reading any c2sp.org/tlog-tiles log — auditsink's own streams or a log written by other software — through a
 * small read port, so the logic stays pure: verify the checkpoint with pinned keys, read hash tiles and entry
 * bundles, and compute and verify inclusion and consistency proofs from the tiles alone.
 *
 * Nothing fetched is trusted: every hash taken from a tile ends up in a proof that is verified against a
 * checkpoint's signed root (merkle.ts), so a log serving wrong tiles or entries fails the proof. A proof needs
 * O(log n) tiles (at most two per tile level, 256^L hashes per level), never the whole tree.
 */
import { type PlainCheckpoint, parsePlainCheckpoint } from "./checkpoint.ts";
import { FormatError, TlogError } from "./errors.ts";
import { HASH_SIZE, type Hash } from "./hash.ts";
import {
  consistencyProofRanges,
  EMPTY_ROOT,
  inclusionProofRanges,
  type LeafRange,
  leafHash,
  nodeHash,
  splitPoint,
  verifyConsistency,
  verifyInclusion,
} from "./merkle.ts";
import { type Note, type NoteKey, parseNote, verifyNote } from "./note.ts";
import { parseEntryBundle, TILE_WIDTH, tilePath } from "./tiles.ts";

/**
 * The read port: the static resources of one log, by path under its prefix.
 *
 * Paths are those of c2sp.org/tlog-tiles, made by the reader: `checkpoint`, `tile/<L>/<N>[.p/<W>]`,
 * `tile/entries/<N>[.p/<W>]`, with N in the `x001/x234/067` form.
 */
export interface TlogSource {
  /**
   * The bytes of the resource at `path`. Resolves `undefined` when the resource does not exist (HTTP 404 or
   * 410, no such file). Rejects with TlogError("too-large") for a resource longer than `maxBytes` — without
   * reading more than `maxBytes` + 1 bytes of it — and with TlogError("unavailable") for any other failure.
   */
  read(path: string, maxBytes: number): Promise<Uint8Array | undefined>;
}

/** A checkpoint note larger than this is refused (c2sp.org/signed-note: verifiers SHOULD bound a note's size). */
export const MAX_CHECKPOINT_BYTES = 1 << 20;
/** The largest full entry bundle: 256 entries of at most 65,535 bytes, each with its 2-byte length. */
export const MAX_ENTRY_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xffff);

/** A checkpoint that verified with a pinned key and names the expected origin. */
export interface TlogCheckpoint extends PlainCheckpoint {
  /** The signed note as served (keep it to prove consistency from on the next visit). */
  signed: string;
  note: Note;
  /** The pinned key whose signature verified. */
  key: NoteKey;
}

export interface TlogReaderOptions {
  /** The log's checkpoint origin (its first line); a checkpoint with any other origin is refused. */
  origin: string;
  /** The log's pinned checkpoint keys (parseVerifierKey); at least one must have signed. */
  verifiers: readonly NoteKey[];
  /** Largest entry bundle accepted, in bytes (default MAX_ENTRY_BUNDLE_BYTES, the largest tlog-tiles allows). */
  maxEntryBundleBytes?: number;
  /** Tiles kept in memory between calls (default 64, 512 KiB). */
  tileCache?: number;
}

/** The resource path of a tile or bundle under the log's prefix (tiles.ts tilePath is the part below `tile/`). */
function resourcePath(level: number | "entries", index: number, width: number): string {
  return `tile/${tilePath({ level, index, width })}`;
}

/** Hashes stored at tile level `level` for a tree of `size`: one per complete subtree of 256^level leaves. */
function hashesAtLevel(size: number, level: number): number {
  return Math.floor(size / TILE_WIDTH ** level);
}

/** Width of tile `n` at `level` in a tree of `size` (256 when full, 0 when the tree has no such tile). */
function tileWidth(size: number, level: number, n: number): number {
  return Math.max(0, Math.min(TILE_WIDTH, hashesAtLevel(size, level) - n * TILE_WIDTH));
}

/**
 * A reader of one tlog-tiles log.
 *
 * @example
 * const reader = new TlogReader(new HttpTlogSource("https://log.example/tlog/agents/"), {
 *   origin: "log.example/agents",
 *   verifiers: [parseVerifierKey(pinnedKey)],
 * });
 * const cp = await reader.checkpoint();
 * const entry = await reader.entry(42, cp); // entry 42's bytes, proven included in cp
 * await reader.proveConsistency(previouslySeen, cp); // throws TlogError("proof-failed") on a fork
 */
export class TlogReader {
  private readonly tiles = new Map<string, Promise<Buffer>>();
  private readonly maxBundle: number;
  private readonly cacheSize: number;

  constructor(
    private readonly source: TlogSource,
    private readonly options: TlogReaderOptions,
  ) {
    if (options.verifiers.length === 0) throw new TypeError("a TlogReader needs at least one verifier key");
    this.maxBundle = options.maxEntryBundleBytes ?? MAX_ENTRY_BUNDLE_BYTES;
    this.cacheSize = Math.max(1, options.tileCache ?? 64);
  }

  /** Fetches `<prefix>/checkpoint` and opens it (openCheckpoint). */
  async checkpoint(): Promise<TlogCheckpoint> {
    const bytes = await this.read("checkpoint", MAX_CHECKPOINT_BYTES);
    if (!bytes) throw new TlogError("missing", "the log serves no checkpoint", "checkpoint");
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (cause) {
      throw new TlogError("bad-checkpoint", "checkpoint is not valid UTF-8", "checkpoint", { cause });
    }
    return this.openCheckpoint(text);
  }

  /**
   * Opens a signed checkpoint of this log (one just fetched, or one kept from an earlier visit): a
   * c2sp.org/signed-note signed by a pinned key, whose body is a c2sp.org/tlog-checkpoint with this log's
   * origin. Pure.
   */
  openCheckpoint(signed: string): TlogCheckpoint {
    let note: Note;
    let body: PlainCheckpoint;
    try {
      note = parseNote(signed);
      body = parsePlainCheckpoint(note.text);
    } catch (e) {
      if (e instanceof FormatError)
        throw new TlogError("bad-checkpoint", `checkpoint: ${e.message}`, "checkpoint", { cause: e });
      throw e;
    }
    if (body.origin !== this.options.origin)
      throw new TlogError(
        "bad-checkpoint",
        `checkpoint origin is "${body.origin}", not "${this.options.origin}"`,
        "checkpoint",
      );
    const verdict = verifyNote(note, this.options.verifiers);
    if (!verdict.ok) throw new TlogError("checkpoint-not-verified", verdict.detail, "checkpoint");
    return { ...body, signed, note, key: verdict.key };
  }

  /**
   * The first `width` hashes of tile `n` at `level` (a Buffer of width × 32 bytes). Reads the partial tile
   * `.p/<width>` and, if the log no longer serves it, the full tile, whose first `width` hashes it is
   * (c2sp.org/tlog-tiles "Partial Tiles"). Only ask for widths a verified checkpoint's size implies.
   */
  tile(level: number, n: number, width: number): Promise<Buffer> {
    return this.cached(`${level}/${n}`, width, async () => {
      const path = resourcePath(level, n, width);
      let bytes = await this.read(path, TILE_WIDTH * HASH_SIZE);
      let served = width;
      if (!bytes && width < TILE_WIDTH) {
        served = TILE_WIDTH;
        bytes = await this.read(resourcePath(level, n, TILE_WIDTH), TILE_WIDTH * HASH_SIZE);
      }
      if (!bytes) throw new TlogError("missing", `tile ${path} is missing (and so is its full tile)`, path);
      if (bytes.length !== served * HASH_SIZE)
        throw new TlogError(
          "bad-tile",
          `tile ${resourcePath(level, n, served)} has ${bytes.length} bytes, not ${served * HASH_SIZE}`,
          path,
        );
      return Buffer.from(bytes);
    });
  }

  /**
   * The entries of bundle `n` in the tree of `size`, unverified (entry() proves one). The partial bundle falls
   * back to the full one as tiles do.
   */
  async entryBundle(n: number, size: number): Promise<Uint8Array[]> {
    const width = tileWidth(size, 0, n);
    if (width === 0) throw new TlogError("out-of-range", `a tree of size ${size} has no entry bundle ${n}`);
    const path = resourcePath("entries", n, width);
    let bytes = await this.read(path, Math.min(this.maxBundle, width * (2 + 0xffff)));
    let served = width;
    if (!bytes && width < TILE_WIDTH) {
      served = TILE_WIDTH;
      bytes = await this.read(resourcePath("entries", n, TILE_WIDTH), this.maxBundle);
    }
    if (!bytes)
      throw new TlogError("missing", `entry bundle ${path} is missing (and so is its full bundle)`, path);
    let entries: Uint8Array[];
    try {
      entries = parseEntryBundle(bytes);
    } catch (e) {
      if (e instanceof FormatError)
        throw new TlogError("bad-tile", `${path}: ${e.message}`, path, { cause: e });
      throw e;
    }
    if (entries.length !== served)
      throw new TlogError(
        "bad-tile",
        `${path}: entry bundle holds ${entries.length} entries, not ${served}`,
        path,
      );
    return entries.slice(0, width);
  }

  /** Entry `index`'s bytes, proven included in the checkpoint's tree (its hash and the tiles lead to the root). */
  async entry(index: number, checkpoint: PlainCheckpoint): Promise<Uint8Array> {
    this.checkIndex(index, checkpoint.size);
    const [entries, proof] = await Promise.all([
      this.entryBundle(Math.floor(index / TILE_WIDTH), checkpoint.size),
      this.inclusionProof(index, checkpoint.size),
    ]);
    const entry = entries[index % TILE_WIDTH]!;
    if (!verifyInclusion(index, checkpoint.size, leafHash(entry), proof, checkpoint.root))
      throw new TlogError(
        "proof-failed",
        `entry ${index} and the log's tiles do not lead to the root of the checkpoint of size ${checkpoint.size}`,
      );
    return entry;
  }

  /**
   * Proves that `entry` is entry `index` of the checkpoint's tree; returns the RFC 9162 inclusion proof. Throws
   * TlogError("proof-failed") when it is not (or the log's tiles are wrong).
   */
  async proveInclusion(index: number, entry: Uint8Array, checkpoint: PlainCheckpoint): Promise<Hash[]> {
    this.checkIndex(index, checkpoint.size);
    const proof = await this.inclusionProof(index, checkpoint.size);
    if (!verifyInclusion(index, checkpoint.size, leafHash(entry), proof, checkpoint.root))
      throw new TlogError(
        "proof-failed",
        `the entry is not entry ${index} of the checkpoint of size ${checkpoint.size} (or the log's tiles are wrong)`,
      );
    return proof;
  }

  /** MTH(D[0:size]), the root of the tree of `size`, read from its tiles (RFC 9162 §2.1.1). Unverified. */
  treeHash(size: number): Promise<Hash> {
    if (!(Number.isSafeInteger(size) && size > 0))
      throw new TlogError("out-of-range", `no tree hash for size ${size}`);
    return this.rangeHash(0, size, size);
  }

  /** RFC 9162 §2.1.3.1 PATH(index, D[0:size]) read from the tiles of the tree of `size`. Unverified. */
  inclusionProof(index: number, size: number): Promise<Hash[]> {
    this.checkIndex(index, size);
    return this.hashes(inclusionProofRanges(index, size), size);
  }

  /**
   * RFC 9162 §2.1.4.1 PROOF(m, D[0:n]) read from the tiles of the tree of size n (0 ≤ m ≤ n; empty from the empty
   * tree and between equal sizes). Unverified.
   */
  consistencyProof(m: number, n: number): Promise<Hash[]> {
    if (!(Number.isSafeInteger(m) && Number.isSafeInteger(n) && m >= 0 && m <= n))
      throw new TlogError("out-of-range", `no consistency proof from size ${m} to size ${n}`);
    return this.hashes(consistencyProofRanges(m, n), n);
  }

  /**
   * Proves that `older` is a prefix of `newer` (both checkpoints of this log) with a consistency proof read from
   * the tiles of `newer`; returns it. Throws TlogError("proof-failed") when the two are inconsistent — a fork
   * or a rewritten log — and TlogError("out-of-range") when `older` is the larger.
   */
  async proveConsistency(older: PlainCheckpoint, newer: PlainCheckpoint): Promise<Hash[]> {
    if (older.size > newer.size)
      throw new TlogError(
        "out-of-range",
        `checkpoint of size ${older.size} is newer than size ${newer.size}`,
      );
    // The empty tree is a prefix of every tree, and its root is fixed; equal sizes need equal roots.
    if (older.size === 0) {
      if (older.root.equals(EMPTY_ROOT)) return [];
      throw new TlogError("proof-failed", "a checkpoint of size 0 whose root is not the empty tree's");
    }
    if (older.size === newer.size) {
      if (older.root.equals(newer.root)) return [];
      throw new TlogError("proof-failed", `two checkpoints of size ${older.size} with different roots`);
    }
    const proof = await this.consistencyProof(older.size, newer.size);
    if (!verifyConsistency(older.size, newer.size, older.root, newer.root, proof))
      throw new TlogError(
        "proof-failed",
        `the checkpoint of size ${older.size} is not a prefix of the checkpoint of size ${newer.size}`,
      );
    return proof;
  }

  /** MTH of each range, from the tiles of the tree of `size`; every tile is fetched once, concurrently. */
  private hashes(ranges: readonly LeafRange[], size: number): Promise<Hash[]> {
    return Promise.all(ranges.map(([lo, hi]) => this.rangeHash(lo, hi, size)));
  }

  /**
   * MTH(D[lo:hi]) for a proof's range: a complete aligned subtree, or one ending at the tree's ragged right
   * edge, which splits into complete ones as RFC 9162 §2.1.1 defines the tree.
   */
  private async rangeHash(lo: number, hi: number, size: number): Promise<Hash> {
    const n = hi - lo;
    if (2 ** Math.round(Math.log2(n)) !== n || lo % n !== 0) {
      const k = splitPoint(n);
      const [left, right] = await Promise.all([
        this.rangeHash(lo, lo + k, size),
        this.rangeHash(lo + k, hi, size),
      ]);
      return nodeHash(left, right);
    }
    // A complete subtree of height h = 8L + r: 2^r consecutive hashes of tile level L, all in one tile, hashed
    // up r levels (c2sp.org/tlog-tiles: "the Merkle Tree levels between those expressed by the tile hashes
    // are reconstructed by hashing").
    const height = Math.round(Math.log2(n));
    const level = Math.floor(height / 8);
    const count = 2 ** (height % 8);
    const first = lo / TILE_WIDTH ** level;
    const tileIndex = Math.floor(first / TILE_WIDTH);
    const tile = await this.tile(level, tileIndex, tileWidth(size, level, tileIndex));
    let row: Hash[] = [];
    for (let i = first % TILE_WIDTH; i < (first % TILE_WIDTH) + count; i++)
      row.push(tile.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    while (row.length > 1) {
      const next: Hash[] = [];
      for (let i = 0; i < row.length; i += 2) next.push(nodeHash(row[i]!, row[i + 1]!));
      row = next;
    }
    return row[0]!;
  }

  private checkIndex(index: number, size: number): void {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size))
      throw new TlogError("out-of-range", `index ${index} is not in a tree of size ${size}`);
  }

  /**
   * Tile bytes by key, widest first: a cached tile at least `width` wide answers with its prefix (a partial
   * tile is a prefix of every wider one). Concurrent asks share one read; a failed read is not kept.
   */
  private async cached(key: string, width: number, load: () => Promise<Buffer>): Promise<Buffer> {
    const hit = this.tiles.get(key);
    if (hit) {
      const bytes = await hit.catch(() => undefined);
      if (bytes && bytes.length >= width * HASH_SIZE) return bytes.subarray(0, width * HASH_SIZE);
    }
    const pending = load();
    this.tiles.delete(key);
    this.tiles.set(key, pending);
    pending.catch(() => {
      if (this.tiles.get(key) === pending) this.tiles.delete(key);
    });
    while (this.tiles.size > this.cacheSize) this.tiles.delete(this.tiles.keys().next().value!);
    return (await pending).subarray(0, width * HASH_SIZE);
  }

  private async read(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    try {
      const bytes = await this.source.read(path, maxBytes);
      if (bytes && bytes.length > maxBytes)
        throw new TlogError("too-large", `${path} is longer than ${maxBytes} bytes`, path);
      return bytes;
    } catch (e) {
      if (e instanceof TlogError) throw e;
      throw new TlogError("unavailable", `reading ${path} failed: ${(e as Error).message}`, path, {
        cause: e,
      });
    }
  }
}

/**
 * c2sp.org/tlog-tiles: tile and entry-bundle paths, the geometry of a tiled tree, entry bundles and tile bytes.
 * Pure; the writer that stores tiles is tile-writer.ts, the verifier's checks are in verify.ts.
 *
 * auditsink's tlog-tiles entry is the 32-byte record hash (docs/FORMAT.md §14): a tiles client hashes an entry
 * as an RFC 6962 leaf, H(0x00 || entry), which is exactly auditsink's Merkle leaf (FORMAT.md §5), so the root it
 * recomputes from tiles is the root every checkpoint signs.
 *
 * Tiles are of height 8 (256 hashes). Level 0 holds leaf hashes; entry i of tile n at level l is
 * MTH(D[(256n + i)·256^l : (256n + i + 1)·256^l]) (tlog-tiles §Merkle Tree). A level-l tile that is full is the
 * perfect subtree whose root is entry (n mod 256) of tile ⌊n/256⌋ at level l+1.
 */
import { FormatError } from "./errors.ts";
import { HASH_SIZE, type Hash } from "./hash.ts";
import { nodeHash } from "./merkle.ts";

/** Hashes per full tile, and entries per full bundle. */
export const TILE_WIDTH = 256;
/** Bytes of a full hash tile (tlog-tiles: "exactly 256 hashes wide, or 8,192 bytes"). */
export const FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE;
/** Bytes of one entry in a bundle: a big-endian uint16 length (32) and the 32-byte record hash. */
export const BUNDLE_ENTRY_BYTES = 2 + HASH_SIZE;
/** tlog-tiles allows levels 0 … 63. */
export const MAX_TILE_LEVEL = 63;

/**
 * A hash tile (`level` 0 … 63) or an entry bundle (`level` "entries"), `index` within its level, `width` 1 … 256
 * (256 = full; anything less is the partial tile `.p/<width>`).
 */
export interface Tile {
  level: number | "entries";
  index: number;
  width: number;
}

/** tlog-tiles `<N>`: zero-padded 3-digit elements, all but the last prefixed with `x` (1234067 → x001/x234/067). */
export function formatTileIndex(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`tile index ${n} is not a natural number`);
  let rest = n;
  let out = String(rest % 1000).padStart(3, "0");
  while (rest >= 1000) {
    rest = Math.floor(rest / 1000);
    out = `x${String(rest % 1000).padStart(3, "0")}/${out}`;
  }
  return out;
}

/** The tile's path below the log's `tile/` prefix: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`. */
export function tilePath(tile: Tile): string {
  if (!Number.isInteger(tile.width) || tile.width < 1 || tile.width > TILE_WIDTH)
    throw new RangeError(`tile width ${tile.width} is not 1 … ${TILE_WIDTH}`);
  const partial = tile.width < TILE_WIDTH ? `.p/${tile.width}` : "";
  return `${tile.level}/${formatTileIndex(tile.index)}${partial}`;
}

const LEVEL = /^(0|[1-9][0-9]?|entries)$/;
const WIDTH = /^[1-9][0-9]{0,2}$/;
const ELEMENT = /^x?[0-9]{3}$/;

/**
 * Parses a path below `tile/` strictly: exactly the form tilePath writes (no leading zeros in `<L>` or `<W>`, no
 * `x000/` prefix, W 1 … 255), so each tile has one path. Undefined for anything else.
 */
export function parseTilePath(path: string): Tile | undefined {
  if (path.length > 64) return undefined;
  const parts = path.split("/");
  const levelText = parts.shift()!;
  if (!LEVEL.test(levelText)) return undefined;
  const level = levelText === "entries" ? "entries" : Number(levelText);
  if (level !== "entries" && level > MAX_TILE_LEVEL) return undefined;
  let width = TILE_WIDTH;
  const last = parts.length - 1;
  if (last >= 1 && parts[last - 1]!.endsWith(".p")) {
    if (!WIDTH.test(parts[last]!)) return undefined;
    width = Number(parts[last]);
    if (width >= TILE_WIDTH) return undefined;
    parts[last - 1] = parts[last - 1]!.slice(0, -2);
    parts.pop();
  }
  if (parts.length === 0 || parts.length > 6) return undefined;
  let index = 0;
  for (const [i, element] of parts.entries()) {
    if (!ELEMENT.test(element) || element.startsWith("x") !== i < parts.length - 1) return undefined;
    index = index * 1000 + Number(element.slice(-3));
  }
  if (!Number.isSafeInteger(index)) return undefined;
  const tile: Tile = { level, index, width };
  return tilePath(tile) === path ? tile : undefined;
}

/** Leaves covered by one hash of a level-`level` tile (entry bundles: 1). */
const span = (level: number | "entries") => TILE_WIDTH ** (level === "entries" ? 0 : level);

/** The first leaf a tile covers, and one past the last leaf its `width` hashes cover. */
export function tileRange(tile: Tile): { start: number; end: number } {
  const s = span(tile.level);
  const start = tile.index * TILE_WIDTH * s;
  return { start, end: start + tile.width * s };
}

/**
 * The full tiles that exist at `newSize` but not at `oldSize`, at every level, each level's in index order and
 * levels from the highest down, each level-0 tile followed by its entry bundle. A writer that stores them in
 * this order leaves the store with every tile below a stored entry bundle (TileWriter relies on it).
 */
export function fullTilesBetween(oldSize: number, newSize: number): Tile[] {
  const out: Tile[] = [];
  for (let level = 0; TILE_WIDTH ** (level + 1) <= newSize; level++) {
    const per = TILE_WIDTH ** (level + 1);
    const from = Math.floor(oldSize / per);
    const to = Math.floor(newSize / per);
    const tiles: Tile[] = [];
    for (let index = from; index < to; index++) {
      tiles.push({ level, index, width: TILE_WIDTH });
      if (level === 0) tiles.push({ level: "entries", index, width: TILE_WIDTH });
    }
    out.unshift(...tiles);
  }
  return out;
}

/** Root of a full tile: the perfect Merkle tree over its 256 hashes (the subtree the tile spans). */
export function tileRoot(tile: Uint8Array): Hash {
  if (tile.length !== FULL_TILE_BYTES) throw new RangeError(`a full tile is ${FULL_TILE_BYTES} bytes`);
  let level: Hash[] = [];
  for (let i = 0; i < TILE_WIDTH; i++)
    level.push(Buffer.from(tile.buffer, tile.byteOffset + i * HASH_SIZE, HASH_SIZE));
  while (level.length > 1) {
    const next: Hash[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return Buffer.from(level[0]!);
}

/** A tile's bytes: its hashes, concatenated. */
export function encodeTile(hashes: readonly Uint8Array[]): Buffer {
  if (hashes.length < 1 || hashes.length > TILE_WIDTH)
    throw new RangeError(`a tile holds 1 … ${TILE_WIDTH} hashes`);
  return Buffer.concat(hashes.map((h) => Buffer.from(h.buffer, h.byteOffset, h.byteLength)));
}

/**
 * An entry bundle (tlog-tiles §Log entries): each entry as a big-endian uint16 length and its bytes. auditsink's
 * entries are 32-byte record hashes.
 */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Buffer {
  const out = Buffer.alloc(entries.reduce((n, e) => n + 2 + e.length, 0));
  let at = 0;
  for (const e of entries) {
    if (e.length > 0xffff) throw new RangeError("a tlog-tiles entry is at most 65,535 bytes");
    out.writeUInt16BE(e.length, at);
    out.set(e, at + 2);
    at += 2 + e.length;
  }
  return out;
}

/** The entries of a bundle. Throws FormatError("bad-tile") for bytes that are not length-prefixed entries. */
export function parseEntryBundle(bytes: Uint8Array): Buffer[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length; ) {
    if (at + 2 > buf.length) throw new FormatError("bad-tile", "entry bundle ends inside a length prefix");
    const length = buf.readUInt16BE(at);
    if (at + 2 + length > buf.length) throw new FormatError("bad-tile", "entry bundle ends inside an entry");
    out.push(buf.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return out;
}

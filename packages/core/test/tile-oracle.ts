/**
 * Tiles computed independently of the writer and the store (tiles.ts geometry, a tree in memory): what the tests
 * compare stored and served tiles with.
 */
import { encodeTile, TILE_WIDTH, type Tile, tileRange } from "../src/tiles.ts";

/**
 * The partial tiles of a tree of `size` (tlog-tiles §Partial Tiles): at each level l, the one with
 * ⌊size / 256^l⌋ mod 256 hashes, when that is not 0; and the partial entry bundle beside level 0's.
 */
export function partialTiles(size: number): Tile[] {
  const out: Tile[] = [];
  for (let level = 0; TILE_WIDTH ** level <= size; level++) {
    const below = Math.floor(size / TILE_WIDTH ** level);
    const width = below % TILE_WIDTH;
    if (width === 0) continue;
    const index = Math.floor(below / TILE_WIDTH);
    out.push({ level, index, width });
    if (level === 0) out.push({ level: "entries", index, width });
  }
  return out;
}

/**
 * A tile's hashes from any source of aligned subtree hashes — MTH(D[lo:hi]) for hi − lo a power of two (a
 * MerkleTree's subtree). Entry bundles are not hashes: build them from the records.
 */
export function tileHashes(tile: Tile, subtree: (lo: number, hi: number) => Uint8Array): Buffer {
  if (tile.level === "entries") throw new RangeError("an entry bundle holds entries, not hashes");
  const s = TILE_WIDTH ** tile.level;
  const { start } = tileRange(tile);
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < tile.width; i++) hashes.push(subtree(start + i * s, start + (i + 1) * s));
  return encodeTile(hashes);
}

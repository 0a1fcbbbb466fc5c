import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { GO_BUILD_TIMEOUT_MS, goTools } from "../../../test/go-tools.ts";
import { MemoryObjectStore } from "../src/memory.ts";
import { leafHash, MerkleTree } from "../src/merkle.ts";
import { parseStoreKey, tileKey } from "../src/record.ts";
import { TileWriter } from "../src/tile-writer.ts";
import {
  encodeEntryBundle,
  formatTileIndex,
  fullTilesBetween,
  parseEntryBundle,
  parseTilePath,
  tilePath,
  tileRoot,
} from "../src/tiles.ts";
import { partialTiles, tileHashes } from "./tile-oracle.ts";

/** Go's golang.org/x/mod/sumdb/tlog (test/go/tiles, pinned by test/go's go.sum): root and every tile per size. */
async function goTiles(entries: Buffer[], sizes: number[]) {
  const input = `${entries.map((e) => e.toString("hex")).join("\n")}\nsizes\n${sizes.join("\n")}\n`;
  const out = execFileSync((await goTools()).tiles, [], { input, maxBuffer: 1 << 28 });
  return JSON.parse(out.toString()) as {
    size: number;
    root: string;
    tiles: { path: string; hex: string }[];
  }[];
}

describe("tile paths", () => {
  it("formats <N> in tlog-tiles' x001/x234/067 form", () => {
    expect(formatTileIndex(0)).toBe("000");
    expect(formatTileIndex(67)).toBe("067");
    expect(formatTileIndex(1000)).toBe("x001/000");
    expect(formatTileIndex(1234067)).toBe("x001/x234/067");
    expect(tilePath({ level: 2, index: 1234067, width: 256 })).toBe("2/x001/x234/067");
    expect(tilePath({ level: "entries", index: 5, width: 17 })).toBe("entries/005.p/17");
  });

  it("parses exactly the paths it formats", () => {
    for (const path of [
      "0/000",
      "63/x001/x234/067",
      "entries/x999/999.p/255",
      "1/000.p/1",
      "0/x009/x007/x000/000",
    ])
      expect(tilePath(parseTilePath(path)!)).toBe(path);
    expect(parseTilePath("entries/067.p/5")).toEqual({ level: "entries", index: 67, width: 5 });
  });

  it("refuses every other spelling and hostile input", () => {
    const bad = [
      "",
      "0",
      "0/",
      "00/000",
      "01/000",
      "64/000",
      "100/000",
      "0/67",
      "0/0067",
      "0/x067",
      "0/x000/067",
      "0/000/x001",
      "0/001/000",
      "0/000.p/0",
      "0/000.p/256",
      "0/000.p/007",
      "0/000.p/",
      "0/000.p",
      "0/000.p/5/6",
      "0/.p/5",
      "0/000/",
      "/0/000",
      "../0/000",
      "0/../000",
      "0/%30%30%30",
      "0/+12",
      "0/ 12",
      "-1/000",
      "data/000",
      "Entries/000",
      "__proto__",
      "constructor/000",
      "0/x001/x002/x003/x004/x005/x006/000",
      "0/x999/x999/x999/x999/x999/999",
    ];
    for (const path of bad) expect(parseTilePath(path), path).toBeUndefined();
  });

  it("store keys: full tiles parse, partial and malformed ones do not", () => {
    expect(tileKey("s", { level: 1, index: 1000, width: 256 })).toBe("streams/s/tile/1/x001/000");
    expect(parseStoreKey("streams/s/tile/entries/x001/000")).toMatchObject({
      stream: "s",
      kind: "tiles",
      n: 1000,
    });
    expect(parseStoreKey("streams/s/tile/0/000.p/4")).toBeUndefined();
    expect(parseStoreKey("streams/s/tile/__proto__")).toBeUndefined();
    expect(parseStoreKey("streams/s/tile/0/000/extra")).toBeUndefined();
  });
});

describe("tile geometry", () => {
  it("partial tiles of a size follow tlog-tiles' own example (70,000 and 256)", () => {
    expect(partialTiles(70_000).map(tilePath)).toEqual([
      "0/273.p/112",
      "entries/273.p/112",
      "1/001.p/17",
      "2/000.p/1",
    ]);
    expect(partialTiles(256).map(tilePath)).toEqual(["1/000.p/1"]);
    expect(partialTiles(0)).toEqual([]);
  });

  it("full tiles completed by a commit: every level, highest first, each bundle after its level-0 tile", () => {
    expect(fullTilesBetween(65_500, 65_600).map(tilePath)).toEqual(["1/000", "0/255", "entries/255"]);
    expect(fullTilesBetween(0, 255)).toEqual([]);
    expect(fullTilesBetween(256, 511)).toEqual([]);
    expect(fullTilesBetween(100, 600).map(tilePath)).toEqual([
      "0/000",
      "entries/000",
      "0/001",
      "entries/001",
    ]);
  });

  it("entry bundles are big-endian uint16 length-prefixed and parse back", () => {
    const entries = [randomBytes(32), randomBytes(32)];
    const bundle = encodeEntryBundle(entries);
    expect(bundle.length).toBe(68);
    expect(bundle.readUInt16BE(0)).toBe(32);
    expect(parseEntryBundle(bundle)).toEqual(entries);
    expect(() => parseEntryBundle(bundle.subarray(0, 67))).toThrow(/inside an entry/);
    expect(() => parseEntryBundle(Buffer.of(0))).toThrow(/length prefix/);
  });
});

describe("tiles against golang.org/x/mod/sumdb/tlog", () => {
  // test/go is built on first use (then cached): the timeout of a cold build on a loaded machine.
  it("writes the full tiles Go computes, serves partials equal to Go's, and the roots agree", {
    timeout: GO_BUILD_TIMEOUT_MS,
  }, async () => {
    const size = 70_000;
    const entries = Array.from({ length: size }, () => randomBytes(32));
    const sizes = [1, 255, 256, 257, 65_536, size];
    const go = await goTiles(entries, sizes);

    const objects = new MemoryObjectStore();
    const writer = new TileWriter(objects, "s");
    await writer.load(0);
    const tree = MerkleTree.empty();
    for (let at = 0; at < size; at += 1000) {
      const batch = entries.slice(at, at + 1000);
      await writer.add(at, batch);
      for (const e of batch) tree.append(leafHash(e));
    }
    for (const want of go) {
      // Decision 1: the entry is the record hash, so auditsink's root is the root a tiles client recomputes.
      expect(tree.root(want.size).toString("hex")).toBe(want.root);
      for (const t of want.tiles) {
        expect(t.path.startsWith("tile/8/")).toBe(true);
        const path = t.path.slice("tile/8/".length);
        if (path.startsWith("data/")) continue; // Go's record data tiles; auditsink's bundles are checked below
        const tile = parseTilePath(path)!;
        expect(tilePath(tile)).toBe(path);
        const built = tileHashes(tile, (lo, hi) => tree.subtree(lo, hi));
        expect(built.toString("hex"), path).toBe(t.hex);
        if (tile.width === 256) {
          const stored = await objects.get(tileKey("s", tile));
          expect(Buffer.from(stored!).toString("hex"), `stored ${path}`).toBe(t.hex);
        }
      }
    }
    // Every full tile of the tree is stored (273 level-0 tiles and bundles, 1 at level 1) and nothing else.
    expect(objects.objects.size).toBe(273 * 2 + 1);
    const bundle = parseEntryBundle(
      (await objects.get(tileKey("s", { level: "entries", index: 272, width: 256 })))!,
    );
    expect(bundle).toEqual(entries.slice(272 * 256, 273 * 256));
    expect(tileRoot((await objects.get(tileKey("s", { level: 0, index: 3, width: 256 })))!)).toEqual(
      tree.subtree(3 * 256, 4 * 256),
    );
  });
});

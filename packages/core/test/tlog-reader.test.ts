import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { TlogError } from "../src/errors.ts";
import { sha256 } from "../src/hash.ts";
import { generateKeyPair } from "../src/keys.ts";
import { KeyObjectSigner } from "../src/memory.ts";
import { EMPTY_ROOT, leafHash, MerkleTree } from "../src/merkle.ts";
import { formatNote } from "../src/note.ts";
import { type TlogCheckpoint, TlogReader, type TlogSource } from "../src/tlog-reader.ts";

const ORIGIN = "log.example/test";

/** tlog-tiles `<N>`: x001/x234/067. */
function indexPath(n: number): string {
  const digits = String(n).padStart(Math.ceil(String(n).length / 3) * 3, "0");
  const parts = digits.match(/\d{3}/g)!;
  return parts.map((p, i) => (i < parts.length - 1 ? `x${p}` : p)).join("/");
}

/**
 * A tlog-tiles log in memory, built from auditsink's MerkleTree straight from the tlog-tiles definition of a tile
 * ("MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l])"), with every partial tile of the given sizes.
 */
function buildLog(entries: Uint8Array[], sizes: number[]): Map<string, Uint8Array> {
  const tree = MerkleTree.empty();
  for (const e of entries) tree.append(leafHash(e));
  const files = new Map<string, Uint8Array>();
  for (const size of sizes) {
    for (let level = 0; 256 ** level <= size; level++) {
      const count = Math.floor(size / 256 ** level);
      for (let n = 0; n * 256 < count; n++) {
        const width = Math.min(256, count - n * 256);
        const hashes = [];
        for (let i = 0; i < width; i++) {
          const lo = (n * 256 + i) * 256 ** level;
          hashes.push(tree.subtree(lo, lo + 256 ** level));
        }
        const suffix = width < 256 ? `.p/${width}` : "";
        files.set(`tile/${level}/${indexPath(n)}${suffix}`, Buffer.concat(hashes));
        if (level === 0) {
          const bundle = entries.slice(n * 256, n * 256 + width).flatMap((e) => {
            const len = Buffer.alloc(2);
            len.writeUInt16BE(e.length);
            return [len, e];
          });
          files.set(`tile/entries/${indexPath(n)}${suffix}`, Buffer.concat(bundle));
        }
      }
    }
  }
  return files;
}

class MapSource implements TlogSource {
  reads: string[] = [];
  constructor(readonly files: Map<string, Uint8Array>) {}
  async read(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    this.reads.push(path);
    const bytes = this.files.get(path);
    if (bytes && bytes.length > maxBytes) throw new TlogError("too-large", `${path} too large`, path);
    return bytes;
  }
}

const entryOf = (i: number) => Buffer.from(`entry ${i} `.padEnd(10 + (i % 37), "x"));
const SIZE = 70_000; // the tlog-tiles example: 273 full level-0 tiles, partial 112, full + partial level 1, level 2
const OLD = 1_000;
let entries: Buffer[];
let tree: MerkleTree;
let files: Map<string, Uint8Array>;
let signer: KeyObjectSigner;

async function signed(size: number, origin = ORIGIN, root = tree.root(size)): Promise<string> {
  const text = `${origin}\n${size}\n${root.toString("base64")}\n`;
  const signature = Buffer.from(await signer.sign(Buffer.from(text)));
  return formatNote({ text, signatures: [{ name: signer.key.name, keyId: signer.key.keyId, signature }] });
}

function readerOver(source: TlogSource): TlogReader {
  return new TlogReader(source, { origin: ORIGIN, verifiers: [signer.key] });
}

beforeAll(() => {
  entries = Array.from({ length: SIZE }, (_, i) => entryOf(i));
  tree = MerkleTree.empty();
  for (const e of entries) tree.append(leafHash(e));
  files = buildLog(entries, [1, 256, 300, 301, OLD, 65_536, SIZE]);
  const { privateKey, publicKey } = generateKeyPair("ed25519");
  signer = new KeyObjectSigner(ORIGIN, privateKey, publicKey);
});

describe("TlogReader: checkpoints", () => {
  it("opens the served checkpoint with the pinned key: origin, size, root and the signed note", async () => {
    const source = new MapSource(new Map(files).set("checkpoint", Buffer.from(await signed(SIZE))));
    const cp = await readerOver(source).checkpoint();
    expect(cp).toMatchObject({ origin: ORIGIN, size: SIZE, extensions: [] });
    expect(cp.root.equals(tree.root())).toBe(true);
    expect(cp.key).toBe(signer.key);
  });

  it("refuses a checkpoint of another origin, by another key, or not a checkpoint at all", async () => {
    const reader = readerOver(new MapSource(files));
    expect(() => reader.openCheckpoint("x\n")).toThrow(expect.objectContaining({ code: "bad-checkpoint" }));
    const other = await signed(5, "log.example/other");
    expect(() => reader.openCheckpoint(other)).toThrow(/origin is "log.example\/other"/);
    const stranger = generateKeyPair("ed25519");
    const foreign = new TlogReader(new MapSource(files), {
      origin: ORIGIN,
      verifiers: [new KeyObjectSigner(ORIGIN, stranger.privateKey, stranger.publicKey).key],
    });
    expect(() => foreign.openCheckpoint(other.replace("log.example/other", ORIGIN))).toThrow(
      expect.objectContaining({ code: "checkpoint-not-verified" }),
    );
    const forged = (await signed(SIZE)).replace(`\n${SIZE}\n`, `\n${SIZE + 1}\n`);
    expect(() => reader.openCheckpoint(forged)).toThrow(
      expect.objectContaining({ code: "checkpoint-not-verified" }),
    );
  });

  it("refuses a checkpoint that is missing, not UTF-8, or larger than 1 MiB", async () => {
    await expect(readerOver(new MapSource(new Map())).checkpoint()).rejects.toMatchObject({
      code: "missing",
    });
    const latin1 = new MapSource(new Map([["checkpoint", Buffer.from([0x6f, 0xff, 0x0a])]]));
    await expect(readerOver(latin1).checkpoint()).rejects.toMatchObject({ code: "bad-checkpoint" });
    const huge = new MapSource(new Map([["checkpoint", Buffer.alloc((1 << 20) + 1, 0x61)]]));
    await expect(readerOver(huge).checkpoint()).rejects.toMatchObject({ code: "too-large" });
  });
});

describe("TlogReader: proofs from tiles", () => {
  let cp: TlogCheckpoint;
  let old: TlogCheckpoint;
  beforeAll(async () => {
    const reader = readerOver(new MapSource(files));
    cp = reader.openCheckpoint(await signed(SIZE));
    old = reader.openCheckpoint(await signed(OLD));
  });

  it.each([0, 1, 255, 256, 999, 65_535, 65_536, 69_887, 69_888, SIZE - 1])(
    "reads entry %i from its bundle and proves it included, with the proof MerkleTree gives",
    async (index) => {
      const reader = readerOver(new MapSource(files));
      expect(Buffer.from(await reader.entry(index, cp)).equals(entries[index]!)).toBe(true);
      const proof = await reader.proveInclusion(index, entries[index]!, cp);
      expect(proof).toEqual(tree.inclusionProof(index, SIZE));
    },
  );

  it("reads O(log n) tiles per proof, never the tree: at most two per tile level plus the entry bundle", async () => {
    const source = new MapSource(files);
    await readerOver(source).entry(12_345, cp);
    expect(source.reads.length).toBeLessThanOrEqual(2 * 3 + 1);
    expect(source.reads).toContain("tile/entries/048");
  });

  it.each([
    [1, SIZE],
    [OLD, SIZE],
    [256, 65_536],
    [65_536, SIZE],
    [300, 301],
  ])("proves consistency from size %i to size %i, as MerkleTree does", async (m, n) => {
    const reader = readerOver(new MapSource(files));
    const proof = await reader.proveConsistency(
      reader.openCheckpoint(await signed(m)),
      reader.openCheckpoint(await signed(n)),
    );
    expect(proof).toEqual(tree.consistencyProof(m, n));
  });

  it("accepts the empty tree and an equal checkpoint with no proof, and refuses a fork", async () => {
    const reader = readerOver(new MapSource(files));
    const empty = reader.openCheckpoint(await signed(0, ORIGIN, EMPTY_ROOT));
    expect(await reader.proveConsistency(empty, cp)).toEqual([]);
    expect(await reader.proveConsistency(cp, cp)).toEqual([]);
    const fork = reader.openCheckpoint(await signed(OLD, ORIGIN, sha256("another history")));
    await expect(reader.proveConsistency(fork, cp)).rejects.toMatchObject({ code: "proof-failed" });
    await expect(reader.proveConsistency(cp, old)).rejects.toMatchObject({ code: "out-of-range" });
  });

  it("refuses an entry that is not in the tree, and indexes outside it", async () => {
    const reader = readerOver(new MapSource(files));
    await expect(reader.proveInclusion(7, entries[8]!, cp)).rejects.toMatchObject({ code: "proof-failed" });
    await expect(reader.entry(SIZE, cp)).rejects.toMatchObject({ code: "out-of-range" });
    await expect(reader.entry(-1, cp)).rejects.toMatchObject({ code: "out-of-range" });
  });

  it("falls back to the full tile and bundle when the log has deleted a checkpoint's partial ones", async () => {
    // Size 2048 fills level-0 tile 3, so a log may drop the partial tile 003.p/232 the checkpoint of 1000 needed.
    const all = buildLog(entries.slice(0, 2048), [OLD, 2048]);
    const pruned = new Map([...all].filter(([p]) => !/^tile\/(0|entries)\/.*\.p\//.test(p)));
    const source = new MapSource(pruned);
    const reader = readerOver(source);
    const older = reader.openCheckpoint(await signed(OLD));
    const newer = reader.openCheckpoint(await signed(2048));
    expect(await reader.proveConsistency(older, newer)).toEqual(tree.consistencyProof(OLD, 2048));
    const fresh = new MapSource(pruned);
    expect(Buffer.from(await readerOver(fresh).entry(990, older)).equals(entries[990]!)).toBe(true);
    expect(fresh.reads).toEqual(
      expect.arrayContaining([
        "tile/0/003.p/232",
        "tile/0/003",
        "tile/entries/003.p/232",
        "tile/entries/003",
      ]),
    );
  });
});

describe("TlogReader: hostile logs", () => {
  let cp: TlogCheckpoint;
  beforeAll(async () => {
    cp = readerOver(new MapSource(files)).openCheckpoint(await signed(SIZE));
  });
  const tampered = (path: string, bytes: Uint8Array) =>
    readerOver(new MapSource(new Map(files).set(path, bytes)));

  it("refuses a tile of the wrong length", async () => {
    const reader = tampered("tile/0/000", Buffer.alloc(8191));
    await expect(reader.entry(3, cp)).rejects.toMatchObject({ code: "bad-tile", path: "tile/0/000" });
  });

  it("refuses a tile longer than a full tile without reading it whole", async () => {
    const reader = tampered("tile/0/000", Buffer.alloc(8193));
    await expect(reader.entry(3, cp)).rejects.toMatchObject({ code: "too-large" });
  });

  it("detects a tile with one hash changed: the proof does not reach the signed root", async () => {
    const tile = Buffer.from(files.get("tile/0/000")!);
    tile[32 * 5] = tile[32 * 5]! ^ 1;
    await expect(tampered("tile/0/000", tile).entry(4, cp)).rejects.toMatchObject({ code: "proof-failed" });
  });

  it("detects an entry changed in its bundle", async () => {
    const bundle = Buffer.from(files.get("tile/entries/000")!);
    bundle[3] = bundle[3]! ^ 1; // a byte of entry 0
    await expect(tampered("tile/entries/000", bundle).entry(0, cp)).rejects.toMatchObject({
      code: "proof-failed",
    });
  });

  it.each([
    ["a truncated length prefix", Buffer.of(0x00, 0x01, 0x61, 0x00)],
    ["an entry running past the end", Buffer.of(0x00, 0x05, 0x61)],
    ["too few entries", Buffer.of(0x00, 0x01, 0x61)],
    ["257 entries", Buffer.alloc(2 * 257)], // 257 empty entries
  ])("refuses a bundle with %s", async (_, bundle) => {
    await expect(tampered("tile/entries/000", bundle).entry(0, cp)).rejects.toMatchObject({
      code: "bad-tile",
    });
  });

  it("reports a missing tile, and a failing source as unavailable with its cause", async () => {
    const without = new Map(files);
    without.delete("tile/0/000");
    await expect(readerOver(new MapSource(without)).entry(1, cp)).rejects.toMatchObject({ code: "missing" });
    const broken = readerOver({
      read: async () => {
        throw new Error("connection reset");
      },
    });
    await expect(broken.entry(1, cp)).rejects.toMatchObject({
      code: "unavailable",
      message: /connection reset/,
    });
  });

  it("bounds an entry bundle by the configured maximum", async () => {
    const reader = new TlogReader(new MapSource(files), {
      origin: ORIGIN,
      verifiers: [signer.key],
      maxEntryBundleBytes: 100,
    });
    await expect(reader.entry(1, cp)).rejects.toMatchObject({ code: "too-large" });
  });
});

describe("TlogReader: any change to a served file", () => {
  it("gives the right entry or a TlogError, never a wrong entry or another exception (fast-check)", async () => {
    const size = 600;
    const small = buildLog(entries.slice(0, size), [size]);
    const paths = [...small.keys()];
    const cp = readerOver(new MapSource(small)).openCheckpoint(await signed(size));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...paths),
        fc.nat(),
        fc.oneof(
          fc.record({ kind: fc.constant("flip" as const), bit: fc.integer({ min: 0, max: 7 }) }),
          fc.record({ kind: fc.constant("cut" as const) }),
          fc.record({
            kind: fc.constant("append" as const),
            bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }),
          }),
        ),
        fc.integer({ min: 0, max: size - 1 }),
        async (path, at, change, index) => {
          const original = Buffer.from(small.get(path)!);
          const offset = at % original.length;
          const bytes =
            change.kind === "flip"
              ? Buffer.from(original).fill(original[offset]! ^ (1 << change.bit), offset, offset + 1)
              : change.kind === "cut"
                ? original.subarray(0, offset)
                : Buffer.concat([original, change.bytes]);
          const reader = readerOver(new MapSource(new Map(small).set(path, bytes)));
          try {
            expect(Buffer.from(await reader.entry(index, cp)).equals(entries[index]!)).toBe(true);
          } catch (e) {
            expect(e).toBeInstanceOf(TlogError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

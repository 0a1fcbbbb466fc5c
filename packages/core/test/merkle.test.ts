import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EMPTY_ROOT,
  Frontier,
  leafHash,
  MerkleTree,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from "../src/merkle.ts";
import { jsonFilesUnder, readJson, VECTORS } from "./vectors.ts";

const b64 = (s: string) => Buffer.from(s, "base64");
const hex = (h: Buffer) => h.toString("hex");
const hexes = (hs: readonly Buffer[]) => hs.map(hex).join(",");

/** The leaves the transparency-dev/merkle vectors are built from (vectors/README.md). */
const VECTOR_LEAVES = [
  "",
  "00",
  "10",
  "2021",
  "3031",
  "40414243",
  "5051525354555657",
  "606162636465666768696a6b6c6d6e6f",
].map((h) => leafHash(Buffer.from(h, "hex")));

interface InclusionVector {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}
interface ConsistencyVector {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

const inclusion = jsonFilesUnder(join(VECTORS, "rfc9162/inclusion"));
const consistency = jsonFilesUnder(join(VECTORS, "rfc9162/consistency"));

describe("RFC 9162 inclusion vectors (transparency-dev/merkle testdata)", () => {
  it("finds the vectors", () => {
    expect(inclusion.length).toBeGreaterThan(50);
  });
  it.each(inclusion)("$name", ({ path }) => {
    const v = readJson<InclusionVector>(path);
    const ok = verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), (v.proof ?? []).map(b64), b64(v.root));
    expect(ok).toBe(!v.wantErr);
  });
});

describe("RFC 9162 consistency vectors (transparency-dev/merkle testdata)", () => {
  it("finds the vectors", () => {
    expect(consistency.length).toBeGreaterThan(50);
  });
  it.each(consistency)("$name", ({ path }) => {
    const v = readJson<ConsistencyVector>(path);
    const ok = verifyConsistency(v.size1, v.size2, b64(v.root1), b64(v.root2), (v.proof ?? []).map(b64));
    expect(ok).toBe(!v.wantErr);
  });
});

describe("consistency from the empty tree (c2sp.org/tlog-witness `old 0`)", () => {
  // transparency-dev/merkle refuses every size1 = 0 (its vectors above are all also wrong in another way: a root
  // that is not 32 bytes, a proof that is not empty, or an old root that is not MTH({})); tlog-witness instead
  // treats size 0 as the empty tree, which every tree extends, with an empty proof. auditsink follows tlog-witness.
  const tree = MerkleTree.empty();
  for (let i = 0; i < 5; i++) tree.append(leafHash(Buffer.from(`leaf ${i}`)));

  it("proves every tree extends the empty tree with an empty proof", () => {
    expect(tree.consistencyProof(0, 5)).toEqual([]);
    expect(tree.consistencyProof(0, 0)).toEqual([]);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, tree.root(5), [])).toBe(true);
    expect(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])).toBe(true);
  });

  it("refuses a proof that is not empty, an old root that is not MTH({}), and a new root that is not a hash", () => {
    expect(verifyConsistency(0, 5, EMPTY_ROOT, tree.root(5), [tree.root(1)])).toBe(false);
    expect(verifyConsistency(0, 5, tree.root(1), tree.root(5), [])).toBe(false);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, tree.root(5).subarray(1), [])).toBe(false);
    expect(verifyConsistency(0, 0, EMPTY_ROOT, tree.root(5), [])).toBe(false);
    expect(verifyConsistency(-1, 5, EMPTY_ROOT, tree.root(5), [])).toBe(false);
  });
});

describe("MerkleTree", () => {
  it("reproduces the vectors' roots and proofs from their leaves", () => {
    // Prepare
    const tree = MerkleTree.empty();
    for (const leaf of VECTOR_LEAVES) tree.append(leaf);
    // Act + Assess: every happy-path vector's proof is exactly what the tree generates.
    for (const { path } of inclusion.filter((f) => f.name.endsWith("happy-path.json"))) {
      const v = readJson<InclusionVector>(path);
      if (v.treeSize > VECTOR_LEAVES.length) continue;
      expect(tree.root(v.treeSize).toString("base64")).toBe(v.root);
      expect(tree.inclusionProof(v.leafIdx, v.treeSize).map((h) => h.toString("base64"))).toEqual(
        v.proof ?? [],
      );
    }
    for (const { path } of consistency.filter((f) => f.name.endsWith("happy-path.json"))) {
      const v = readJson<ConsistencyVector>(path);
      if (v.size1 === 0) continue;
      expect(tree.consistencyProof(v.size1, v.size2).map((h) => h.toString("base64"))).toEqual(v.proof ?? []);
    }
  });

  it("has the empty root SHA-256('')", () => {
    expect(MerkleTree.empty().root()).toEqual(EMPTY_ROOT);
    expect(EMPTY_ROOT.toString("hex")).toBe(
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  });

  it("generates proofs that verify, for every index and size, and agrees with Frontier and rootOf", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 0, max: 69 }), (n, seed) => {
        const leaves = Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${seed} ${i}`)));
        const tree = MerkleTree.empty();
        const frontier = new Frontier();
        for (const l of leaves) {
          tree.append(l);
          frontier.append(l);
        }
        expect(hex(frontier.root())).toBe(hex(tree.root()));
        expect(hex(rootOf(leaves))).toBe(hex(tree.root()));
        const size = 1 + (seed % n);
        const index = seed % size;
        expect(
          verifyInclusion(index, size, leaves[index]!, tree.inclusionProof(index, size), tree.root(size)),
        ).toBe(true);
        expect(
          verifyConsistency(size, n, tree.root(size), tree.root(n), tree.consistencyProof(size, n)),
        ).toBe(true);
        // A proof for one index never proves another.
        if (size > 1) {
          const other = (index + 1) % size;
          expect(
            verifyInclusion(other, size, leaves[index]!, tree.inclusionProof(index, size), tree.root(size)),
          ).toBe(leaves[other]!.equals(leaves[index]!));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("started from a frontier, answers the same roots and proofs for the new leaves", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 40 }), (n0, k) => {
        const leaves = Array.from({ length: n0 + k }, (_, i) => leafHash(Buffer.from([i % 256, i >> 8])));
        const full = MerkleTree.empty();
        const f = new Frontier();
        leaves.forEach((l, i) => {
          full.append(l);
          if (i < n0) f.append(l);
        });
        const sparse = MerkleTree.fromFrontier(f);
        for (const l of leaves.slice(n0)) sparse.append(l);
        expect(hex(sparse.root())).toBe(hex(full.root()));
        expect(hexes(sparse.frontier().hashes)).toBe(hexes(full.frontier().hashes));
        for (let i = n0; i < n0 + k; i++)
          expect(hexes(sparse.inclusionProof(i))).toBe(hexes(full.inclusionProof(i)));
        if (n0 > 0) expect(hexes(sparse.consistencyProof(n0))).toBe(hexes(full.consistencyProof(n0)));
      }),
      { numRuns: 1000 },
    );
  });
});

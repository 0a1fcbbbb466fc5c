/**
 * RFC 9162 §2.1 Merkle trees: hashing, a compact frontier, an appendable tree with proofs, and the
 * inclusion and consistency proof verification algorithms of §2.1.3.2 and §2.1.4.2.
 */
import { hash } from "node:crypto";
import { FormatError } from "./errors.ts";
import { HASH_SIZE, type Hash, sha256 } from "./hash.ts";

const scratchLeaf = Buffer.alloc(1 + HASH_SIZE);
const scratchNode = Buffer.alloc(1 + 2 * HASH_SIZE);
scratchNode[0] = 0x01;

/** RFC 9162 §2.1.1: MTH({d}) = SHA-256(0x00 || d). */
export function leafHash(data: Uint8Array): Hash {
  if (data.length === HASH_SIZE) {
    // The auditsink leaf input is always a 32-byte record hash: reuse a buffer instead of concatenating.
    scratchLeaf[0] = 0x00;
    scratchLeaf.set(data, 1);
    return hash("sha256", scratchLeaf, "buffer");
  }
  return sha256(Buffer.concat([Buffer.of(0x00), data]));
}

/** RFC 9162 §2.1.1: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Hash {
  scratchNode.set(left, 1);
  scratchNode.set(right, 1 + HASH_SIZE);
  return hash("sha256", scratchNode, "buffer");
}

/** MTH({}) = SHA-256 of the empty string. */
export const EMPTY_ROOT: Hash = sha256(new Uint8Array(0));

/** The largest power of two strictly smaller than n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Root of the tree over the given leaf hashes, computed in one pass without keeping the tree. */
export function rootOf(leaves: readonly Hash[]): Hash {
  const f = new Frontier();
  for (const leaf of leaves) f.append(leaf);
  return f.root();
}

/**
 * The compact range [0, size): the roots of the perfect subtrees that make up the tree, largest (leftmost)
 * first, one for each set bit of `size`. Appending is O(log n) and needs nothing else; so does the root.
 */
export class Frontier {
  constructor(
    private _size = 0,
    private readonly nodes: Hash[] = [],
  ) {
    if (popcount(_size) !== nodes.length) {
      throw new FormatError("bad-proof", `frontier of size ${_size} must have ${popcount(_size)} nodes`);
    }
  }

  get size(): number {
    return this._size;
  }

  /** The subtree roots, leftmost first. */
  get hashes(): readonly Hash[] {
    return this.nodes;
  }

  clone(): Frontier {
    return new Frontier(this._size, [...this.nodes]);
  }

  /**
   * Appends a leaf. `onNode`, when given, is told of every perfect subtree the leaf completes, by its height
   * (1 for two leaves, …): the subtree ends at the new size (the verifier takes tile roots from it).
   */
  append(leaf: Hash, onNode?: (height: number, node: Hash) => void): void {
    if (this._size >= Number.MAX_SAFE_INTEGER) throw new RangeError("a tree holds at most 2^53 − 1 leaves");
    let node = leaf;
    let height = 0;
    // Merging happens once per trailing 1-bit of the old size: each such bit is a subtree of equal height.
    // Arithmetic, not bitwise operators: those truncate to 32 bits, and sizes go up to 2^53 − 1.
    for (let s = this._size; s % 2 === 1; s = (s - 1) / 2) {
      node = nodeHash(this.nodes.pop()!, node);
      onNode?.(++height, node);
    }
    this.nodes.push(node);
    this._size++;
  }

  root(): Hash {
    if (this.nodes.length === 0) return EMPTY_ROOT;
    let root = this.nodes[this.nodes.length - 1]!;
    for (let i = this.nodes.length - 2; i >= 0; i--) root = nodeHash(this.nodes[i]!, root);
    return root;
  }
}

/** For n ≥ 1 up to 2^53: no bitwise operators, which would truncate to 32 bits. */
function isPowerOfTwo(n: number): boolean {
  return 2 ** Math.round(Math.log2(n)) === n;
}

function popcount(n: number): number {
  let c = 0;
  for (let s = n; s > 0; s = Math.floor(s / 2)) c += s % 2;
  return c;
}

/** Level storage: the hashes of the complete, aligned subtrees of height `level`, from index `start`. */
class Level {
  buf: Buffer;
  count = 0;
  constructor(readonly start: number) {
    this.buf = Buffer.alloc(HASH_SIZE * 64);
  }
  push(h: Uint8Array): void {
    if ((this.count + 1) * HASH_SIZE > this.buf.length) {
      const next = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(next);
      this.buf = next;
    }
    this.buf.set(h, this.count * HASH_SIZE);
    this.count++;
  }
  get(index: number): Hash | undefined {
    const i = index - this.start;
    if (i < 0 || i >= this.count) return undefined;
    return this.buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }
}

/**
 * An append-only Merkle tree that keeps the hash of every complete aligned subtree (2n hashes), so roots and
 * proofs for any size it holds are O(log n) lookups plus O(log n) hashes for the ragged right edge.
 *
 * `MerkleTree.fromFrontier` starts a tree at size n knowing only the frontier: it then answers roots and
 * proofs for leaves at index ≥ n and sizes ≥ n (every sibling left of n on such a path is a frontier node),
 * which is all a writer needs to issue receipts for the records it just appended.
 */
export class MerkleTree {
  private readonly levels: Level[] = [];
  private _size: number;
  private readonly base: number;

  private constructor(base: number) {
    this.base = base;
    this._size = base;
  }

  static empty(): MerkleTree {
    return new MerkleTree(0);
  }

  static fromFrontier(frontier: Frontier): MerkleTree {
    const tree = new MerkleTree(frontier.size);
    let bitNodes = 0;
    for (let level = 0; 2 ** level <= frontier.size || level === 0; level++) {
      const within = Math.floor(frontier.size / 2 ** level);
      const hasNode = within % 2 === 1;
      const lvl = new Level(hasNode ? within - 1 : within);
      tree.levels.push(lvl);
      if (hasNode) bitNodes++;
    }
    // frontier.hashes lists the highest subtree first; level j's node is the one for bit j.
    let i = bitNodes - 1;
    for (let level = 0; level < tree.levels.length; level++) {
      if (Math.floor(frontier.size / 2 ** level) % 2 === 1) tree.levels[level]!.push(frontier.hashes[i--]!);
    }
    return tree;
  }

  get size(): number {
    return this._size;
  }

  /** The oldest size this tree can answer for (0 unless it was started from a frontier). */
  get firstSize(): number {
    return this.base;
  }

  append(leaf: Hash): void {
    const index = this._size;
    this.level(0).push(leaf);
    // Complete every parent whose right child this leaf finishes.
    let node: Hash = leaf;
    for (let level = 0, i = index; i % 2 === 1; level++, i = (i - 1) / 2) {
      const left = this.level(level).get(i - 1)!;
      node = nodeHash(left, node);
      this.level(level + 1).push(node);
    }
    this._size++;
  }

  private level(j: number): Level {
    while (this.levels.length <= j) {
      const l = this.levels.length;
      this.levels.push(new Level(Math.floor(this.base / 2 ** l)));
    }
    return this.levels[j]!;
  }

  /** The leaf hash at `index`, if this tree holds it. */
  leaf(index: number): Hash | undefined {
    return this.levels[0]?.get(index);
  }

  /** MTH(D[lo:hi]) for a range proofs and roots ask for: lo is aligned to the largest power of two ≤ hi−lo. */
  subtree(lo: number, hi: number): Hash {
    const n = hi - lo;
    if (n <= 0 || hi > this._size) throw new RangeError(`range [${lo}, ${hi}) is outside the tree`);
    if (isPowerOfTwo(n)) {
      const level = Math.log2(n);
      const h = this.levels[level]?.get(lo / n);
      if (!h) throw new RangeError(`subtree [${lo}, ${hi}) is not held by this tree`);
      return h;
    }
    const k = splitPoint(n);
    return nodeHash(this.subtree(lo, lo + k), this.subtree(lo + k, hi));
  }

  root(size = this._size): Hash {
    if (size === 0) return EMPTY_ROOT;
    return this.subtree(0, size);
  }

  /** RFC 9162 §2.1.3.1 PATH(m, D[0:size]). */
  inclusionProof(index: number, size = this._size): Hash[] {
    if (!(index >= 0 && index < size && size <= this._size)) {
      throw new RangeError(`no inclusion proof for index ${index} at size ${size}`);
    }
    const path: Hash[] = [];
    const walk = (m: number, lo: number, hi: number): void => {
      const n = hi - lo;
      if (n === 1) return;
      const k = splitPoint(n);
      if (m < k) {
        walk(m, lo, lo + k);
        path.push(this.subtree(lo + k, hi));
      } else {
        walk(m - k, lo + k, hi);
        path.push(this.subtree(lo, lo + k));
      }
    };
    walk(index, 0, size);
    return path;
  }

  /** RFC 9162 §2.1.4.1 PROOF(m, D[0:n]); empty for m = 0 (from the empty tree) and for m = n. */
  consistencyProof(m: number, n = this._size): Hash[] {
    if (!(m >= 0 && m <= n && n <= this._size))
      throw new RangeError(`no consistency proof from ${m} to ${n}`);
    if (m === 0 || m === n) return [];
    const proof: Hash[] = [];
    const sub = (m: number, lo: number, hi: number, complete: boolean): void => {
      const n = hi - lo;
      if (m === n) {
        if (!complete) proof.push(this.subtree(lo, hi));
        return;
      }
      const k = splitPoint(n);
      if (m <= k) {
        sub(m, lo, lo + k, complete);
        proof.push(this.subtree(lo + k, hi));
      } else {
        sub(m - k, lo + k, hi, false);
        proof.push(this.subtree(lo, lo + k));
      }
    };
    sub(m, 0, n, true);
    return proof;
  }

  frontier(): Frontier {
    const nodes: Hash[] = [];
    let lo = 0;
    for (let bit = 2 ** Math.floor(Math.log2(this._size || 1)); bit >= 1; bit /= 2) {
      if (Math.floor(this._size / bit) % 2 === 1) {
        nodes.push(this.subtree(lo, lo + bit));
        lo += bit;
      }
    }
    return new Frontier(this._size, nodes);
  }
}

/**
 * The number of hashes in RFC 9162 §2.1.3.1 PATH(index, D[0:size]): one per level the leaf's subtree is split
 * from a sibling. A proof of any other length cannot be one for (index, size).
 */
export function inclusionProofLength(index: number, size: number): number {
  let length = 0;
  for (let m = index, n = size; n > 1; length++) {
    const k = splitPoint(n);
    if (m < k) n = k;
    else {
      m -= k;
      n -= k;
    }
  }
  return length;
}

/**
 * RFC 9162 §2.1.3.2: recompute the root from a leaf hash and its inclusion proof. Throws FormatError
 * ("bad-proof") when the proof cannot belong to (index, size); callers compare the result with a root.
 */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Hash {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    throw new FormatError("bad-proof", `index ${index} is not inside a tree of size ${size}`);
  }
  if (leaf.length !== HASH_SIZE) throw new FormatError("bad-proof", "leaf hash must be 32 bytes");
  let fn = index;
  let sn = size - 1;
  let r: Hash = Buffer.from(leaf);
  for (const p of proof) {
    if (p.length !== HASH_SIZE) throw new FormatError("bad-proof", "proof hashes must be 32 bytes");
    if (sn === 0) throw new FormatError("bad-proof", "inclusion proof is longer than the path");
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new FormatError("bad-proof", "inclusion proof is shorter than the path");
  return r;
}

/** True when `proof` shows leaf `index` with hash `leaf` in the tree of `size` with `root`. */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  try {
    return root.length === HASH_SIZE && rootFromInclusionProof(index, size, leaf, proof).equals(root);
  } catch (e) {
    if (e instanceof FormatError) return false;
    throw e;
  }
}

/**
 * RFC 9162 §2.1.4.2: true when `proof` shows the tree (size1, root1) is a prefix of (size2, root2). From the empty
 * tree (size1 = 0, whose root is MTH({})) every tree is an extension and the proof is empty, as c2sp.org/tlog-witness
 * has it for `old 0`; RFC 9162 defines no PROOF(0, …), so any other proof is refused.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size1 > size2)
    return false;
  if (size1 === 0) {
    const root2ok = size2 === 0 ? EMPTY_ROOT.equals(root2) : root2.length === HASH_SIZE;
    return proof.length === 0 && EMPTY_ROOT.equals(root1) && root2ok;
  }
  if (size1 === size2) return proof.length === 0 && Buffer.from(root1).equals(root2);
  if (root1.length !== HASH_SIZE || root2.length !== HASH_SIZE || proof.some((p) => p.length !== HASH_SIZE))
    return false;
  if (proof.length === 0) return false;
  // Step 1: if size1 is an exact power of 2, prepend root1 to the proof.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Hash = Buffer.from(path[0]!);
  let sr: Hash = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(root1) && sr.equals(root2);
}

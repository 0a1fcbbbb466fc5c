/**
 * A reader's view of one stream in the write-once store: where each segment starts and the full Merkle tree,
 * loaded lazily and kept in step by reading only segments it has not seen. Serves records and proofs.
 *
 * Stored bytes that do not parse or do not continue the chain are the store's fault, never a caller's: they
 * surface as IntegrityError("stored-object-corrupt"), which the HTTP app turns into a logged 500 and an alert.
 */
import { IntegrityError } from "./errors.ts";
import { type Hash, hashFromHex, toHex, ZERO_HASH } from "./hash.ts";
import { Frontier, MerkleTree } from "./merkle.ts";
import type { ObjectStore } from "./ports.ts";
import { readSegment, type SealedRecord, segmentKey } from "./record.ts";

/** Where a reader starts when it does not start at record 0 (an evidence bundle's window): a verifier state. */
export interface ReaderStart {
  size: number;
  /** Hex hash of record size−1. */
  headHash: string;
  /** The Merkle frontier (compact range) of [0, size), largest subtree first, hex. */
  frontier: readonly string[];
}

/** readSegment for bytes read back from the store: what does not parse is the store's fault (IntegrityError). */
export function readStoredSegment(stream: string, first: number, bytes: Uint8Array): SealedRecord[] {
  try {
    return readSegment(bytes);
  } catch (cause) {
    const key = segmentKey(stream, first);
    throw new IntegrityError(
      "stored-object-corrupt",
      `stored segment ${key} is not valid: ${(cause as Error).message}`,
      { stream, at: key },
      { cause },
    );
  }
}

export class StreamReader {
  private readonly starts: number[] = [];
  private readonly tree: MerkleTree;
  private lastHash: Hash;
  private syncing: Promise<void> | undefined;

  /**
   * `start`, when given, makes the reader begin at record `start.size` instead of 0: it then serves records at
   * and after that index, and proofs for leaves and tree sizes at or after it (MerkleTree.fromFrontier).
   */
  constructor(
    private readonly store: ObjectStore,
    readonly stream: string,
    start?: ReaderStart,
  ) {
    this.tree = start
      ? MerkleTree.fromFrontier(
          new Frontier(
            start.size,
            start.frontier.map((h) => hashFromHex(h, "frontier")),
          ),
        )
      : MerkleTree.empty();
    this.lastHash = start ? hashFromHex(start.headHash, "head hash") : ZERO_HASH;
  }

  /** Records the reader has seen (counting from record 0, including any before its start). */
  get size(): number {
    return this.tree.size;
  }

  /** The first record index the reader can serve (0 unless it was given a start). */
  get firstIndex(): number {
    return this.tree.firstSize;
  }

  /** Reads every segment after what the reader holds, until the store has no next segment. */
  sync(): Promise<void> {
    this.syncing ??= this.readForward().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  /** Makes sure the reader holds at least `size` records, reading forward if needed. */
  async ensure(size: number): Promise<void> {
    if (this.tree.size < size) await this.sync();
    if (this.tree.size < size)
      throw new IntegrityError(
        "stored-object-corrupt",
        `stream ${this.stream} has ${this.tree.size} stored records, not ${size}`,
        { stream: this.stream, at: segmentKey(this.stream, this.tree.size) },
      );
  }

  private async readForward(): Promise<void> {
    for (;;) {
      const bytes = await this.store.get(segmentKey(this.stream, this.tree.size));
      if (!bytes) return;
      this.add(this.tree.size, readStoredSegment(this.stream, this.tree.size, bytes));
    }
  }

  /** Adds records a writer just committed, sparing a read; ignored unless they start where the reader ends. */
  add(first: number, records: readonly SealedRecord[]): void {
    if (first !== this.tree.size || records.length === 0) return;
    for (const [i, r] of records.entries()) {
      if (
        r.record.index !== first + i ||
        r.record.prev !== toHex(i === 0 ? this.lastHash : records[i - 1]!.hash)
      ) {
        throw new IntegrityError(
          "stored-object-corrupt",
          `segment ${segmentKey(this.stream, first)} does not continue the chain`,
          { stream: this.stream, at: segmentKey(this.stream, first) },
        );
      }
    }
    this.starts.push(first);
    for (const r of records) this.tree.append(r.leaf);
    this.lastHash = records[records.length - 1]!.hash;
  }

  inclusionProof(index: number, size: number): Hash[] {
    return this.tree.inclusionProof(index, size);
  }

  consistencyProof(m: number, n: number): Hash[] {
    return this.tree.consistencyProof(m, n);
  }

  root(size: number): Hash {
    return this.tree.root(size);
  }

  leaf(index: number): Hash | undefined {
    return this.tree.leaf(index);
  }

  /** Records [from, to) (to exclusive), read from the segments that hold them. */
  async records(from: number, to: number): Promise<SealedRecord[]> {
    if (from < this.firstIndex) throw new RangeError(`the reader starts at record ${this.firstIndex}`);
    await this.ensure(to);
    const out: SealedRecord[] = [];
    let s = this.segmentIndexOf(from);
    while (out.length < to - from && s < this.starts.length) {
      const first = this.starts[s]!;
      const bytes = await this.store.get(segmentKey(this.stream, first));
      if (!bytes)
        throw new IntegrityError(
          "stored-object-corrupt",
          `segment ${segmentKey(this.stream, first)} disappeared`,
          {
            stream: this.stream,
            at: segmentKey(this.stream, first),
          },
        );
      for (const r of readStoredSegment(this.stream, first, bytes))
        if (r.record.index >= from && r.record.index < to) out.push(r);
      s++;
    }
    return out;
  }

  private segmentIndexOf(index: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.starts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

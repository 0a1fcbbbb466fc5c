/**
 * A reader's view of one stream in the write-once store: where each segment starts and the full Merkle tree,
 * loaded lazily and kept in step by reading only segments it has not seen. Serves records and proofs.
 */
import { FormatError } from "./errors.ts";
import { type Hash, toHex, ZERO_HASH } from "./hash.ts";
import { MerkleTree } from "./merkle.ts";
import type { ObjectStore } from "./ports.ts";
import { readSegment, type SealedRecord, segmentKey } from "./record.ts";

export class StreamReader {
  private readonly starts: number[] = [];
  private readonly tree = MerkleTree.empty();
  private lastHash: Hash = ZERO_HASH;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly store: ObjectStore,
    readonly stream: string,
  ) {}

  /** Records the reader has seen. */
  get size(): number {
    return this.tree.size;
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
      throw new RangeError(`stream ${this.stream} has ${this.tree.size} records, not ${size}`);
  }

  private async readForward(): Promise<void> {
    for (;;) {
      const bytes = await this.store.get(segmentKey(this.stream, this.tree.size));
      if (!bytes) return;
      this.add(this.tree.size, readSegment(bytes));
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
        throw new FormatError(
          "bad-segment",
          `segment ${segmentKey(this.stream, first)} does not continue the chain`,
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
    await this.ensure(to);
    const out: SealedRecord[] = [];
    let s = this.segmentIndexOf(from);
    while (out.length < to - from && s < this.starts.length) {
      const first = this.starts[s]!;
      const bytes = await this.store.get(segmentKey(this.stream, first));
      if (!bytes)
        throw new FormatError("bad-segment", `segment ${segmentKey(this.stream, first)} disappeared`);
      for (const r of readSegment(bytes)) if (r.record.index >= from && r.record.index < to) out.push(r);
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

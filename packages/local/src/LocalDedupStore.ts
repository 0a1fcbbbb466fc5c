/**
 * Dedup entries on disk: an append-only JSON-lines file (`<data>/dedup.jsonl`) loaded into memory at open.
 *
 * Writing: the store keeps the length of the file's valid prefix and writes each batch at that offset
 * (pwrite), checking every byte (writeFully), then fdatasyncs; only then are the entries visible and the valid
 * length moved past them. A write that fails part-way (ENOSPC, EIO, a short write) leaves a fragment past the
 * valid length: the store cuts it off (ftruncate) before the next write, and until that succeeds every
 * putMany fails. So a fragment is never followed by good lines, and a failed putMany never counts as stored.
 *
 * Recovery rule (docs/EMBEDDED.md §6.2), applied by open():
 *   1. every line that is not a complete, well-formed entry — a torn last line left by a kill, or a damaged line
 *      anywhere — is dropped; if any line was dropped the file is first copied to
 *      `dedup.jsonl.damaged-<time>` for inspection and then rewritten atomically without it (an entry whose key
 *      is not `dedupKey(producer, event)`-shaped, as written before keys carried the producer, counts as damaged);
 *   2. openLocalSink then reconciles the entries with the store: a stream whose entries do not cover exactly
 *      its records 0…size−1 gets the missing entries rebuilt from its stored segments (reconcileStream).
 * Dropping a line is therefore always safe: the write-once store is the source of truth and the entries are
 * derived from it.
 */
import { copyFile, readFile } from "node:fs/promises";
import type { DedupEntry, DedupStore } from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";
import {
  type FileSystem,
  isErrno,
  nodeFileSystem,
  replaceFile,
  storeError,
  type WritableFile,
  writeFully,
} from "./fsutil.ts";

const HEX64 = /^[0-9a-f]{64}$/;

function parseEntry(line: string): DedupEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const e = v as Record<string, unknown>;
  if (
    typeof e.key !== "string" ||
    // dedupKey(producer, event) = producer NUL source NUL id (neither holds a control character). A key of
    // another shape — damage, or an entry written before keys carried the producer — is dropped like a damaged
    // line, and the stream's entries are rebuilt from its segments with today's keys (recovery rule, step 2).
    e.key.split("\u0000").length !== 3 ||
    typeof e.stream !== "string" ||
    !Number.isSafeInteger(e.index) ||
    (e.index as number) < 0 ||
    typeof e.recordHash !== "string" ||
    !HEX64.test(e.recordHash) ||
    typeof e.eventHash !== "string" ||
    !HEX64.test(e.eventHash)
  ) {
    return undefined;
  }
  return {
    key: e.key,
    stream: e.stream,
    index: e.index as number,
    recordHash: e.recordHash,
    eventHash: e.eventHash,
  };
}

export interface DedupRecovery {
  /** Lines dropped by the recovery rule (0 for a clean file). */
  droppedLines: number;
  /** Where the damaged file was copied, when lines were dropped. */
  damagedCopy?: string;
}

export class LocalDedupStore implements DedupStore {
  private readonly entries = new Map<string, DedupEntry>();
  /** Per stream: how many distinct record indexes have an entry, and the highest one. */
  private readonly coverage = new Map<string, { count: number; max: number }>();
  private chain: Promise<unknown> = Promise.resolve();
  /** Length of the file's valid prefix: where the next batch is written. */
  private length = 0;
  /** A write failed part-way: bytes past `length` must be cut off before the next write. */
  private dirty = false;
  recovery: DedupRecovery = { droppedLines: 0 };

  private constructor(
    readonly path: string,
    private readonly fh: WritableFile,
  ) {}

  static async open(path: string, tmpDir: string, fs: FileSystem = nodeFileSystem): Promise<LocalDedupStore> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw storeError(`reading the dedup file ${path}`, e);
      bytes = Buffer.alloc(0);
    }
    const good: DedupEntry[] = [];
    const goodLines: Buffer[] = [];
    let dropped = 0;
    let start = 0;
    while (start < bytes.length) {
      let nl = bytes.indexOf(0x0a, start);
      const complete = nl >= 0;
      if (!complete) nl = bytes.length;
      const line = bytes.subarray(start, nl);
      const entry = complete ? parseEntry(line.toString("utf8")) : undefined;
      if (entry) {
        good.push(entry);
        goodLines.push(bytes.subarray(start, nl + 1));
      } else if (line.length > 0) dropped++;
      start = nl + 1;
    }
    const recovery: DedupRecovery = { droppedLines: dropped };
    if (dropped > 0) {
      recovery.damagedCopy = `${path}.damaged-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      try {
        await copyFile(path, recovery.damagedCopy);
        await replaceFile(tmpDir, path, Buffer.concat(goodLines), 0o644, fs);
      } catch (e) {
        throw storeError(
          `repairing the dedup file ${path} (${dropped} damaged lines; free space in the data directory and restart)`,
          e,
        );
      }
    }
    let fh: WritableFile;
    try {
      fh = await fs.open(path, "a+", 0o644);
      // "a+" creates the file; writes go through explicit positions of a second, non-appending handle below.
      await fh.close();
      fh = await fs.open(path, "r+", 0o644);
    } catch (e) {
      throw storeError(`opening the dedup file ${path}`, e);
    }
    const store = new LocalDedupStore(path, fh);
    store.recovery = recovery;
    store.length = goodLines.reduce((n, l) => n + l.length, 0);
    for (const e of good) store.remember(e);
    return store;
  }

  private remember(e: DedupEntry): void {
    if (this.entries.has(e.key)) return;
    this.entries.set(e.key, e);
    const c = this.coverage.get(e.stream) ?? { count: 0, max: -1 };
    c.count++;
    c.max = Math.max(c.max, e.index);
    this.coverage.set(e.stream, c);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * True when the entries of `stream` are exactly one per record index 0…size−1 (as far as counting tells: a
   * count of `size` with the highest index `size − 1`). Entries are keyed by event, so two entries cannot share
   * an index unless the store is damaged; reconciliation treats anything else as "rebuild".
   */
  covers(stream: string, size: number): boolean {
    const c = this.coverage.get(stream) ?? { count: 0, max: -1 };
    return c.count === size && c.max === size - 1;
  }

  async getMany(keys: readonly string[]): Promise<Map<string, DedupEntry>> {
    const out = new Map<string, DedupEntry>();
    for (const k of keys) {
      const e = this.entries.get(k);
      if (e) out.set(k, e);
    }
    return out;
  }

  putMany(entries: readonly DedupEntry[]): Promise<void> {
    const fresh = entries.filter((e) => !this.entries.has(e.key));
    if (fresh.length === 0) return this.chain.then(() => undefined);
    const run = this.chain.then(async () => {
      const todo = fresh.filter((e) => !this.entries.has(e.key));
      if (todo.length === 0) return;
      const bytes = Buffer.from(todo.map((e) => `${JSON.stringify(e)}\n`).join(""), "utf8");
      try {
        if (this.dirty) {
          await this.fh.truncate(this.length);
          this.dirty = false;
        }
        this.dirty = true;
        await writeFully(this.fh, bytes, this.length);
        await this.fh.datasync();
        this.dirty = false;
      } catch (e) {
        throw storeError(`appending to the dedup file ${this.path}`, e);
      }
      this.length += bytes.length;
      for (const e of todo) this.remember(e);
      crashPoint("dedup:written");
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.chain;
    if (this.dirty) await this.fh.truncate(this.length).catch(() => undefined);
    await this.fh.close();
  }
}

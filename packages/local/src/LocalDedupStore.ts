/**
 * Dedup entries on disk: an append-only JSON-lines file (`<data>/dedup.jsonl`) loaded into memory at open.
 * putMany appends and fsyncs before it resolves. A crash in the middle of an append leaves a torn last line;
 * open() cuts it off, which is safe because the sink writes entries before it advances the head, and re-records
 * the entries of every segment past the head when it repairs it.
 */
import { type FileHandle, open, readFile, truncate } from "node:fs/promises";
import type { DedupEntry, DedupStore } from "@auditsink/core";
import { isErrno, storeError } from "./fsutil.ts";

export class LocalDedupStore implements DedupStore {
  private readonly entries = new Map<string, DedupEntry>();
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async open(path: string): Promise<LocalDedupStore> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw storeError("reading the dedup file", e);
      bytes = Buffer.alloc(0);
    }
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end < bytes.length) await truncate(path, end);
    const fh = await open(path, "a", 0o644);
    const store = new LocalDedupStore(path, fh);
    let start = 0;
    while (start < end) {
      const nl = bytes.indexOf(0x0a, start);
      const e = JSON.parse(bytes.subarray(start, nl).toString("utf8")) as DedupEntry;
      if (!store.entries.has(e.key)) store.entries.set(e.key, e);
      start = nl + 1;
    }
    return store;
  }

  get size(): number {
    return this.entries.size;
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
      try {
        await this.fh.write(todo.map((e) => `${JSON.stringify(e)}\n`).join(""));
        await this.fh.datasync();
      } catch (e) {
        throw storeError("appending dedup entries", e);
      }
      for (const e of todo) if (!this.entries.has(e.key)) this.entries.set(e.key, e);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.chain;
    await this.fh.close();
  }
}

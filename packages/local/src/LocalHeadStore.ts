/**
 * Stream heads on disk: `<data>/heads/<stream>.json`, replaced atomically (temp file, rename). Compare-and-set is
 * serialized per stream inside the process; the data-directory lock (DataDirectoryLock) makes this process the
 * only writer, so that is enough.
 *
 * A head is a cache of the write-once store, so it is written without fsync (docs/EMBEDDED.md §6.1, what is
 * synced when): readers in this process and a restart after a kill see the newest head whole, since the rename
 * is atomic and the page cache survives the process. A crash of the machine may leave an older head, none, or a
 * file cut short; `get` reports a file that does not parse as no head, and the stream's writer repairs it from
 * the stored segments and checkpoints before it serves (core sink.ts, catchUp), as it does any head that is
 * behind the store.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Head, type HeadStore, parseStoredJson } from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";
import { type FileSystem, isErrno, mkdirDurable, nodeFileSystem, replaceFile, storeError } from "./fsutil.ts";

export class LocalHeadStore implements HeadStore {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly written = new Map<string, number>();
  private dirReady = false;

  constructor(
    readonly dir: string,
    private readonly tmpDir: string,
    private readonly fs: FileSystem = nodeFileSystem,
  ) {}

  private pathOf(stream: string): string {
    return join(this.dir, `${stream}.json`);
  }

  async get(stream: string): Promise<Head | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.pathOf(stream));
    } catch (e) {
      if (isErrno(e, "ENOENT")) return undefined;
      throw storeError(`reading the head of ${stream}`, e);
    }
    // Read as any stored JSON is (FORMAT.md §1): a file left by a crash of the machine before the unsynced head
    // reached the disk (empty or cut short), or one with a member written twice, is no head, which the writer
    // repairs from the store.
    const parsed = parseStoredJson(bytes);
    return parsed.ok ? (parsed.value as Head) : undefined;
  }

  advance(stream: string, expectedSize: number, next: Head): Promise<boolean> {
    const previous = this.chains.get(stream) ?? Promise.resolve();
    const run = previous.then(async () => {
      // The size this process last wrote spares a read when it is the expected one; otherwise (first write, or
      // the file was changed behind our back) the file decides.
      let current = this.written.get(stream);
      if (current !== expectedSize) current = (await this.get(stream))?.size ?? 0;
      if (current !== expectedSize || next.size <= current) return false;
      try {
        if (!this.dirReady) await mkdirDurable(this.dir);
        this.dirReady = true;
        await replaceFile(this.tmpDir, this.pathOf(stream), JSON.stringify(next), 0o644, this.fs, false);
      } catch (e) {
        this.written.delete(stream);
        throw storeError(`writing the head of ${stream}`, e);
      }
      this.written.set(stream, next.size);
      crashPoint(`head:written:${stream}`);
      return true;
    });
    const settled = run.catch(() => undefined);
    this.chains.set(stream, settled);
    void settled.then(() => {
      if (this.chains.get(stream) === settled) this.chains.delete(stream);
    });
    return run;
  }

  async streams(): Promise<string[]> {
    try {
      const names = await readdir(this.dir);
      return names
        .filter((n) => n.endsWith(".json"))
        .map((n) => n.slice(0, -5))
        .sort();
    } catch (e) {
      if (isErrno(e, "ENOENT")) return [];
      throw storeError("listing heads", e);
    }
  }
}

/**
 * The write-once store on disk: one read-only file per object under `<data>/objects/<key>`.
 *
 * Life of an object:
 *   1. the bytes are written to a fresh file in `<data>/tmp` (mode 0444) and fsynced;
 *   2. link(2) gives it its key. link fails with EEXIST when the key exists, atomically, so exactly one
 *      concurrent creator wins and a reader never sees a half-written object (a crash leaves only a temp file);
 *   3. the directory holding the key is fsynced: the object is durable when putIfAbsent resolves;
 *   4. the temp name is removed (a crash before that leaves a temp file, which the next start deletes).
 * `stage` does step 1 ahead of the key, so a checkpoint is written and fsynced while its segment is, and only
 * linked once the segment is durable (core sink.ts).
 */
import { open, readdir, readFile, unlink } from "node:fs/promises";
import { dirname, join, sep } from "node:path";
import { type ObjectStore, type StagedObject, StoreError } from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";
import {
  type FileSystem,
  fsyncDir,
  isErrno,
  mkdirDurable,
  nodeFileSystem,
  storeError,
  writeTemp,
} from "./fsutil.ts";

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export class LocalObjectStore implements ObjectStore {
  /** Directories known to exist (objects are never deleted by the sink, so neither are their directories). */
  private readonly dirs = new Set<string>();

  /**
   * @param root directory holding the objects (`<data>/objects`)
   * @param tmpDir directory on the same filesystem for objects being written (`<data>/tmp`)
   */
  constructor(
    readonly root: string,
    private readonly tmpDir: string,
    private readonly fs: FileSystem = nodeFileSystem,
  ) {}

  /** The file that holds `key`. Keys are '/'-separated names; '.' and '..' segments are refused. */
  pathOf(key: string): string {
    if (!KEY.test(key) || key.split("/").some((s) => s === "." || s === "..")) {
      throw new StoreError("store-failed", `object key ${JSON.stringify(key)} is not a valid key`);
    }
    return join(this.root, ...key.split("/"));
  }

  async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    this.pathOf(key);
    return (await this.stage(bytes)).putIfAbsent(key);
  }

  /** Steps 1 of the life of an object, ahead of its key: the returned object does steps 2–4. */
  async stage(bytes: Uint8Array): Promise<StagedObject> {
    let tmp: string;
    try {
      tmp = await writeTemp(this.tmpDir, bytes, 0o444, this.fs);
    } catch (e) {
      throw storeError("writing a new object", e);
    }
    let done = false;
    const release = async () => {
      done = true;
      await unlink(tmp).catch(() => undefined);
    };
    return {
      putIfAbsent: async (key) => {
        if (done) throw new StoreError("store-failed", `the object staged for ${key} was already used`);
        try {
          return await this.link(tmp, key);
        } finally {
          await release();
        }
      },
      discard: release,
    };
  }

  private async link(tmp: string, key: string): Promise<boolean> {
    const path = this.pathOf(key);
    try {
      const dir = dirname(path);
      if (!this.dirs.has(dir)) {
        await mkdirDurable(dir);
        this.dirs.add(dir);
      }
      try {
        await this.fs.link(tmp, path);
      } catch (e) {
        if (isErrno(e, "EEXIST")) return false;
        throw e;
      }
      await fsyncDir(dir);
      crashPoint(`object:linked:${key.replace(/\/\d{20}$/, "")}`);
      return true;
    } catch (e) {
      throw storeError(`creating ${key}`, e);
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return undefined;
      throw storeError(`reading ${key}`, e);
    }
  }

  /**
   * Byte ranges of the object (each `length` bytes from `offset`, fewer where the object is shorter), or undefined
   * when there is no object: how the embedded index reads record lines of a segment without reading the whole
   * segment. One read covers every range (from the lowest offset to the highest end): each read is a trip through
   * libuv's thread pool, where it waits behind the sink's fsyncs, so a page of 100 lines costs one wait, not 100.
   */
  async getRanges(
    key: string,
    ranges: readonly { offset: number; length: number }[],
  ): Promise<Buffer[] | undefined> {
    const path = this.pathOf(key);
    try {
      const fh = await open(path, "r");
      try {
        if (ranges.length === 0) return [];
        const from = Math.min(...ranges.map((r) => r.offset));
        const to = Math.max(...ranges.map((r) => r.offset + r.length));
        const { bytesRead, buffer } = await fh.read(Buffer.alloc(to - from), 0, to - from, from);
        const span = buffer.subarray(0, bytesRead);
        return ranges.map(({ offset, length }) => span.subarray(offset - from, offset - from + length));
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return undefined;
      throw storeError(`reading ${key}`, e);
    }
  }

  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    const dir = base === "" ? this.root : this.pathOf(base);
    let entries: { name: string; parentPath: string; isDirectory(): boolean }[];
    try {
      entries = await readdir(dir, { recursive: true, withFileTypes: true });
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return [];
      throw storeError(`listing ${prefix}`, e);
    }
    const keys: string[] = [];
    for (const entry of entries) {
      if (entry.isDirectory()) continue;
      const rel = join(entry.parentPath, entry.name)
        .slice(this.root.length + 1)
        .split(sep)
        .join("/");
      if (!rel.startsWith(prefix)) continue;
      if (options.startAfter !== undefined && !(rel > options.startAfter)) continue;
      keys.push(rel);
    }
    keys.sort();
    return options.limit === undefined ? keys : keys.slice(0, options.limit);
  }
}

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
import type { BigIntStats, Dirent } from "node:fs";
import { open, readdir, readFile, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
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

/** How many large directory listings are kept, and from how many entries a directory counts as large. */
const LISTINGS = 4;
const LISTED_LARGE = 1000;

interface Listing {
  ino: bigint;
  ctimeNs: bigint;
  files: string[];
  dirs: string[];
}

/** The first index of `sorted` whose name is ≥ `name` (or > it, when `after`). */
function sortedIndex(sorted: readonly string[], name: string, after: boolean): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid]!;
    if (v < name || (after && v === name)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

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

  /**
   * The keys under `prefix`, ascending: one read per directory that can hold a key of the page (not a recursive
   * listing of the prefix's whole subtree), and none for a large directory unchanged since it was last read.
   */
  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const { startAfter, limit = Number.POSITIVE_INFINITY } = options;
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    const keys: string[] = [];
    const walk = async (dir: string, keyBase: string): Promise<void> => {
      const { files, dirs } = await this.readDirectory(dir, prefix);
      const head = keyBase === "" ? "" : `${keyBase}/`;
      // Names sort as their keys do (one directory, one head): the page is a run of the sorted names.
      const bound = (key: string) =>
        key.startsWith(head) ? key.slice(head.length) : key < head ? "" : "\uffff";
      let i = sortedIndex(files, bound(prefix), false);
      if (startAfter !== undefined) i = Math.max(i, sortedIndex(files, bound(startAfter), true));
      for (let taken = 0; i < files.length && taken < limit; i++, taken++) {
        const key = head + files[i];
        if (!key.startsWith(prefix)) break;
        keys.push(key);
      }
      for (const name of dirs) {
        const inner = `${head}${name}/`;
        // Skip a directory none of whose keys has the prefix, or all of whose keys sort before startAfter.
        if (!inner.startsWith(prefix) && !prefix.startsWith(inner)) continue;
        if (startAfter !== undefined && startAfter >= inner && !startAfter.startsWith(inner)) continue;
        await walk(join(dir, name), `${head}${name}`);
      }
    };
    await walk(base === "" ? this.root : this.pathOf(base), base);
    keys.sort();
    return keys.slice(0, limit);
  }

  /** Recently read large directories, at most LISTINGS of them, with what identified them unchanged. */
  private readonly listings = new Map<string, Listing>();

  /**
   * A directory's file names (sorted) and subdirectory names. A large directory's listing is kept while the
   * directory is unchanged — same inode, same ctime: adding, removing or renaming an entry, and even setting the
   * mtime back, moves the ctime, which no system call sets (only a change of the clock) — so the verifier paging
   * through a segment directory of 100,000 files reads it once, not once per page. Only a directory whose ctime
   * was over a second old when it was read is kept: a change within the same tick of the filesystem clock would
   * not move the ctime.
   */
  private async readDirectory(dir: string, prefix: string): Promise<Listing> {
    let seen: BigIntStats;
    let entries: Dirent[];
    try {
      seen = await stat(dir, { bigint: true });
      const kept = this.listings.get(dir);
      if (kept && kept.ino === seen.ino && kept.ctimeNs === seen.ctimeNs) {
        this.listings.delete(dir);
        this.listings.set(dir, kept);
        return kept;
      }
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return { ino: 0n, ctimeNs: 0n, files: [], dirs: [] };
      throw storeError(`listing ${prefix}`, e);
    }
    const files: string[] = [];
    const dirs: string[] = [];
    for (const entry of entries) (entry.isDirectory() ? dirs : files).push(entry.name);
    files.sort();
    const listing = { ino: seen.ino, ctimeNs: seen.ctimeNs, files, dirs };
    if (entries.length >= LISTED_LARGE && BigInt(Date.now()) * 1_000_000n - seen.ctimeNs > 1_000_000_000n) {
      this.listings.set(dir, listing);
      for (const old of this.listings.keys()) {
        if (this.listings.size <= LISTINGS) break;
        this.listings.delete(old);
      }
    }
    return listing;
  }
}

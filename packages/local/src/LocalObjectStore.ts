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
import { type BigIntStats, closeSync, type Dirent, openSync, readSync } from "node:fs";
import { readdir, readFile, stat, unlink } from "node:fs/promises";
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

/**
 * How store keys are kept as files under a root (docs/EMBEDDED.md §2, docs/FORMAT.md §7 "As files"):
 * - "flat": the file of key `k` is `<root>/k` (evidence bundles, docs/FORMAT.md §13; data directories written before
 *   this layout, until a sink opens them: openLocalSink moves their files, fanOutObjects);
 * - "fanned": the same, except that the 20-digit name of a segment, checkpoint or cosigned checkpoint is split into
 *   three directories' worth, `<digits 1–12>/<13–16>/<17–20>` — `streams/s/segments/00000000000012345600` is the
 *   file `streams/s/segments/000000000000/1234/5600`. A directory then holds at most 10,000 entries below 10¹²
 *   records (the top level gains one per 10⁸), so a page of keys reads directories of bounded size (the data
 *   directory's layout).
 */
export type ObjectLayout = "flat" | "fanned";

/** The directories of a stream's numbered keys (docs/FORMAT.md §7), whose names are 20 digits. */
export const NUMBERED_KINDS = ["segments", "checkpoints", "cosigned"] as const;
const NUMBERED = `streams\\/[^/]+\\/(?:${NUMBERED_KINDS.join("|")})\\/`;
const NUMBERED_DIR = new RegExp(`^${NUMBERED}`);
const FANNED_FILE = new RegExp(`^(${NUMBERED})(\\d{12})\\/(\\d{4})\\/(\\d{4})$`);
/** A numbered key spelt flat: in a fanned directory, a file that is no key (DirectoryObjects.list). */
const FLAT_NUMBERED = new RegExp(`^${NUMBERED}\\d{20}$`);
/** A numbered key's name. */
export const NUMBERED_NAME = /^\d{20}$/;

/**
 * Where `key` lies in the fanned layout, as a '/'-separated path under the root. With `partial`, `key` may be any
 * prefix of a key, such as a list's prefix or its startAfter: the digits it has are split as a whole name's would
 * be, so that path order is key order — the numbered names have one width, and so has each of the three parts.
 */
export function fannedPath(key: string, partial = false): string {
  const dir = NUMBERED_DIR.exec(key)?.[0];
  if (dir === undefined) return key;
  const name = key.slice(dir.length);
  if (!partial) return NUMBERED_NAME.test(name) ? dir + split(name, "") : key;
  const digits = /^\d{0,20}/.exec(name)![0];
  return dir + split(digits, name.slice(digits.length));
}

/** Up to 20 digits as the three parts of a fanned name, `rest` appended to the last. */
function split(digits: string, rest: string): string {
  const parts = [digits.slice(0, 12), digits.slice(12, 16), digits.slice(16)].filter((p) => p !== "");
  return parts.join("/") + rest;
}

/** The key a file of the fanned layout holds (the inverse of fannedPath); any other path is its own key. */
export function fannedKey(path: string): string {
  const m = FANNED_FILE.exec(path);
  return m ? m[1]! + m[2]! + m[3]! + m[4]! : path;
}

/** How many large directory listings are kept, and from how many entries a directory counts as large. */
const LISTINGS = 4;
const LISTED_LARGE = 1000;

interface Listing {
  ino: bigint;
  ctimeNs: bigint;
  /** In key order: file names, and subdirectory names followed by "/". */
  entries: string[];
}

/**
 * The first of a directory's `entries` (readDirectory) that can hold a key ≥ `key` (> it, when `after`), for
 * the directory whose keys start with `head`; 0 when `key` is undefined.
 */
function firstAt(entries: readonly string[], head: string, key: string | undefined, after: boolean): number {
  if (key === undefined) return 0;
  // Where `key` falls among this directory's keys: before all of them, after all, or at a name within.
  const name = key.startsWith(head) ? key.slice(head.length) : key < head ? "" : "\uffff";
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = entries[mid]!;
    if (v < name || (after && v === name)) lo = mid + 1;
    else hi = mid;
  }
  // A subdirectory whose name starts `name` sorts before it but may hold keys after it.
  const before = entries[lo - 1];
  return before?.endsWith("/") && name.startsWith(before) ? lo - 1 : lo;
}

/**
 * A read of a key's file failed because there is no object: no file, a file where a directory of the path should
 * be, or a directory where the file should be (a key that names a directory of the fanned layout).
 */
const isNoObject = (e: unknown) => isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR") || isErrno(e, "EISDIR");

/** The write of a store opened read-only: refused, so that reading can never change what it reads. */
export async function refuseWrite(key: string): Promise<boolean> {
  throw new StoreError("store-failed", `refusing to write ${key}: this store is opened read-only`);
}

/**
 * The store opened read-only: objects as files under `root`, one per key (the layout of `<data>/objects` and of
 * an evidence bundle's `objects`); a write is refused. The verifier thread, `auditsink verify` and `auditsink
 * query` read data directories and bundles through it, so every reader lists as the sink does (a page reads only
 * the directories its keys come from). LocalObjectStore adds the writes.
 */
export class DirectoryObjects implements ObjectStore {
  constructor(
    readonly root: string,
    readonly layout: ObjectLayout = "flat",
  ) {}

  putIfAbsent(key: string, _bytes?: Uint8Array): Promise<boolean> {
    return refuseWrite(key);
  }

  /** The file that holds `key`. Keys are '/'-separated names; '.' and '..' segments are refused. */
  pathOf(key: string): string {
    if (!KEY.test(key) || key.split("/").some((s) => s === "." || s === "..")) {
      throw new StoreError("store-failed", `object key ${JSON.stringify(key)} is not a valid key`);
    }
    return join(this.root, ...(this.layout === "fanned" ? fannedPath(key) : key).split("/"));
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (e) {
      if (isNoObject(e)) return undefined;
      throw storeError(`reading ${key}`, e);
    }
  }

  /**
   * Byte ranges of the object (each `length` bytes from `offset`, fewer where the object is shorter), or undefined
   * when there is no object: how the embedded index reads record lines of a segment without reading the whole
   * segment. One read covers every range (from the lowest offset to the highest end). Synchronous, on the calling
   * thread: a trip through libuv's thread pool would wait behind the sink's fsyncs and the verifier's reads there
   * (four threads for the whole process), which made a query's slowest pages several times its median; the index
   * beside it (libsql) is read synchronously too, so a page's reads no longer queue behind the sink's other file
   * work (docs/EMBEDDED.md §7.3).
   */
  getRanges(key: string, ranges: readonly { offset: number; length: number }[]): Buffer[] | undefined {
    let fd: number | undefined;
    try {
      fd = openSync(this.pathOf(key), "r");
      if (ranges.length === 0) return [];
      let from = Number.POSITIVE_INFINITY;
      let to = 0;
      for (const r of ranges) {
        from = Math.min(from, r.offset);
        to = Math.max(to, r.offset + r.length);
      }
      const span = Buffer.allocUnsafe(to - from);
      const read = readSync(fd, span, 0, to - from, from);
      return ranges.map(({ offset, length }) =>
        span.subarray(offset - from, Math.min(read, offset - from + length)),
      );
    } catch (e) {
      // A directory where the key's file would be opens, and its read fails with EISDIR: no object, as for get.
      if (isNoObject(e)) return undefined;
      throw storeError(`reading ${key}`, e);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /**
   * The keys under `prefix`, ascending: the directories are walked in key order, so a page reads only the
   * directories its keys come from and stops at `limit` — and a large directory unchanged since it was last read
   * is not read again (readDirectory). In the fanned layout, a numbered key's file spelt flat is refused
   * (StoreError naming it), as docs/FORMAT.md §7 requires of a reader.
   */
  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    if (this.layout === "fanned") {
      const { startAfter, limit } = options;
      const paths = await this.listPaths(fannedPath(prefix, true), {
        ...(startAfter === undefined ? {} : { startAfter: fannedPath(startAfter, true) }),
        ...(limit === undefined ? {} : { limit }),
      });
      const flat = paths.find((p) => FLAT_NUMBERED.test(p));
      if (flat !== undefined) {
        // Its key would be the key of the file at its fanned path: two files, one key. Refused, not guessed at.
        throw new StoreError(
          "store-failed",
          `${join(this.root, flat)} is spelt in the flat layout inside a directory in the fanned one (docs/EMBEDDED.md §2): ` +
            "a move between layouts stopped part-way (start the sink on the directory once) or the file was put there by hand",
        );
      }
      return paths.map(fannedKey);
    }
    return this.listPaths(prefix, options);
  }

  /** list() over the paths of the files under the root, '/'-separated (a flat layout's keys). */
  private async listPaths(
    prefix: string,
    options: { startAfter?: string; limit?: number },
  ): Promise<string[]> {
    const { startAfter, limit = Number.POSITIVE_INFINITY } = options;
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    const keys: string[] = [];
    const walk = async (dir: string, keyBase: string): Promise<void> => {
      const { entries } = await this.readDirectory(dir, prefix);
      const head = keyBase === "" ? "" : `${keyBase}/`;
      let i = Math.max(firstAt(entries, head, prefix, false), firstAt(entries, head, startAfter, true));
      for (; i < entries.length && keys.length < limit; i++) {
        const key = head + entries[i]!;
        if (!key.endsWith("/")) {
          if (!key.startsWith(prefix)) return; // past the prefix: so is every entry after it
          keys.push(key);
        } else if (key.startsWith(prefix) || prefix.startsWith(key))
          await walk(join(dir, entries[i]!), key.slice(0, -1));
        else return;
      }
    };
    await walk(base === "" ? this.root : this.pathOf(base), base);
    return keys;
  }

  /** Recently read large directories, at most LISTINGS of them, with what identified them unchanged. */
  private readonly listings = new Map<string, Listing>();

  /**
   * A directory's entries in key order: file names, and subdirectory names followed by "/" (all of a
   * subdirectory's keys start so, and sort against its siblings as that does). A large directory's listing is
   * kept while the directory is unchanged — same inode, same ctime: adding, removing or renaming an entry, and
   * even setting the mtime back, moves the ctime, which no system call sets (only a change of the clock) — so the
   * verifier paging through a segment directory of 100,000 files reads it once, not once per page. Only a
   * directory whose ctime was over a second old when it was read is kept: a change within the same tick of the
   * filesystem clock would not move the ctime.
   */
  private async readDirectory(dir: string, prefix: string): Promise<Listing> {
    let seen: BigIntStats;
    let read: Dirent[];
    try {
      seen = await stat(dir, { bigint: true });
      const kept = this.listings.get(dir);
      if (kept && kept.ino === seen.ino && kept.ctimeNs === seen.ctimeNs) {
        this.listings.delete(dir);
        this.listings.set(dir, kept);
        return kept;
      }
      read = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return { ino: 0n, ctimeNs: 0n, entries: [] };
      throw storeError(`listing ${prefix}`, e);
    }
    const entries = read.map((e) => (e.isDirectory() ? `${e.name}/` : e.name)).sort();
    const listing = { ino: seen.ino, ctimeNs: seen.ctimeNs, entries };
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

/** Stream names that have objects: the directories under objects/streams. */
export async function storedStreams(objectsDir: string): Promise<string[]> {
  try {
    return (await readdir(join(objectsDir, "streams"), { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch (e) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
}

/** How many directories LocalObjectStore remembers as existing (the newest: a stream's writer appends in order). */
const KNOWN_DIRS = 64;

/** The data directory's store (`<data>/objects`, fanned layout): DirectoryObjects with the writes. */
export class LocalObjectStore extends DirectoryObjects implements ObjectStore {
  /**
   * Directories known to exist (objects are never deleted by the sink, so neither are their directories): the
   * KNOWN_DIRS most recently used, so that memory does not grow with the number of directories.
   */
  private readonly dirs = new Set<string>();

  /**
   * @param root directory holding the objects (`<data>/objects`)
   * @param tmpDir directory on the same filesystem for objects being written (`<data>/tmp`)
   */
  constructor(
    root: string,
    private readonly tmpDir: string,
    private readonly fs: FileSystem = nodeFileSystem,
  ) {
    super(root, "fanned");
  }

  override async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
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
      if (!this.dirs.delete(dir)) await mkdirDurable(dir);
      this.dirs.add(dir);
      if (this.dirs.size > KNOWN_DIRS) this.dirs.delete(this.dirs.values().next().value!);
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
}

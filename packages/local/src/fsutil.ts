/**
 * Durable file primitives shared by the local adapters: fsync of files and directories, atomic replace and
 * create-once, checked appends.
 *
 * Every byte the adapters write goes through a FileSystem port (nodeFileSystem in production), so a test can
 * inject short writes and EIO at the system-call boundary, and the runtime can watch whether writes succeed
 * (StorageHealth). Every write is checked: `writeFully` loops over short writes and fails when the kernel
 * writes nothing (ENOSPC, EIO), so no caller ever counts bytes as stored that are not.
 */
import { randomBytes } from "node:crypto";
import {
  link as fsLink,
  open as fsOpen,
  rename as fsRename,
  unlink as fsUnlink,
  mkdir,
  readFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { StoreError } from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";

/** The part of a node:fs FileHandle the adapters write through. */
export interface WritableFile {
  write(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number | null,
  ): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

/**
 * The file-system calls that write. `open` with a write flag, `link` and `rename` are where ENOSPC and EIO
 * surface; reads go to node:fs directly.
 */
export interface FileSystem {
  open(path: string, flags: string, mode?: number): Promise<WritableFile>;
  link(existing: string, path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

export const nodeFileSystem: FileSystem = {
  open: (path, flags, mode) => fsOpen(path, flags, mode),
  link: fsLink,
  rename: fsRename,
  unlink: fsUnlink,
};

/**
 * Writes all of `bytes` at `position` (null: the file's append position), looping over short writes. A write
 * that makes no progress is an error (the kernel reports ENOSPC or EIO on the next call; a zero-byte write
 * without an error is reported as ENOSPC so the caller never mistakes it for success).
 */
export async function writeFully(
  file: WritableFile,
  bytes: Uint8Array,
  position: number | null,
): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await file.write(
      bytes,
      done,
      bytes.length - done,
      position === null ? null : position + done,
    );
    if (bytesWritten <= 0) {
      throw Object.assign(new Error(`write made no progress after ${done} of ${bytes.length} bytes`), {
        code: "ENOSPC",
      });
    }
    done += bytesWritten;
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsOpen(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** mkdir -p that also fsyncs the parent of every directory it created, so the new path survives a crash. */
export async function mkdirDurable(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true });
  if (created === undefined) return;
  for (let d = dir; d.length >= created.length; d = dirname(d)) await fsyncDir(dirname(d));
}

export function tempName(tmpDir: string): string {
  return join(tmpDir, `${process.pid}-${randomBytes(8).toString("hex")}`);
}

/**
 * Writes `bytes` to a new file in tmpDir and (unless `durable` is false) fsyncs it; returns its path. Nothing is
 * left behind on failure.
 */
export async function writeTemp(
  tmpDir: string,
  bytes: Uint8Array | string,
  mode: number,
  fs: FileSystem = nodeFileSystem,
  durable = true,
): Promise<string> {
  const path = tempName(tmpDir);
  const fh = await fs.open(path, "wx", mode);
  try {
    await writeFully(fh, typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes, 0);
    if (durable) await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fs.unlink(path).catch(() => undefined);
    throw e;
  }
  await fh.close();
  return path;
}

/**
 * Replaces `path` atomically: write temp, rename. Durably (the default): the temp is fsynced before the rename
 * and the directory after it. With `durable` false (a cache the store can rebuild, such as a stream head) both
 * fsyncs are skipped: a reader and a process kill still see the old or the new file whole, but a crash of the
 * machine may leave the old file, no file, or a damaged one, so its reader must treat anything it cannot parse
 * as absent and repair it.
 */
export async function replaceFile(
  tmpDir: string,
  path: string,
  bytes: Uint8Array | string,
  mode = 0o600,
  fs: FileSystem = nodeFileSystem,
  durable = true,
): Promise<void> {
  const tmp = await writeTemp(tmpDir, bytes, mode, fs, durable);
  try {
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.unlink(tmp).catch(() => undefined);
    throw e;
  }
  if (durable) await fsyncDir(dirname(path));
}

/**
 * Creates `path` with `bytes` unless it exists, atomically: a temp file is written and fsynced, then linked to
 * `path` (link(2) fails if it exists), then the directory is fsynced. A kill at any instant leaves either no
 * file or the complete one (and maybe a temp file in tmpDir, which the next start removes). Resolves the
 * bytes now at `path`: ours, or those of a creator that won.
 */
export async function createFileOnce(
  tmpDir: string,
  path: string,
  bytes: string,
  mode: number,
  fs: FileSystem = nodeFileSystem,
  crashName = "create-file",
): Promise<{ created: boolean; text: string }> {
  const tmp = await writeTemp(tmpDir, bytes, mode, fs);
  crashPoint(`${crashName}:temp-written`);
  try {
    try {
      await fs.link(tmp, path);
    } catch (e) {
      if (isErrno(e, "EEXIST")) return { created: false, text: await readFile(path, "utf8") };
      throw e;
    }
    crashPoint(`${crashName}:linked`);
    await fsyncDir(dirname(path));
    crashPoint(`${crashName}:dir-synced`);
    return { created: true, text: bytes };
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
}

export function storeError(what: string, cause: unknown): StoreError {
  return new StoreError("store-failed", `${what}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
}

export function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException)?.code === code;
}

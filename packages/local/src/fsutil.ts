/** Durable file primitives shared by the local adapters: fsync of files and directories, atomic replace. */
import { randomBytes } from "node:crypto";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { StoreError } from "@auditsink/core";

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
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

/** Writes `bytes` to a new file in tmpDir and fsyncs it; returns its path. */
export async function writeTemp(tmpDir: string, bytes: Uint8Array | string, mode: number): Promise<string> {
  const path = tempName(tmpDir);
  const fh = await open(path, "wx", mode);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw e;
  }
  await fh.close();
  return path;
}

/** Replaces `path` atomically and durably (write temp, fsync, rename, fsync directory). */
export async function replaceFile(
  tmpDir: string,
  path: string,
  bytes: Uint8Array | string,
  mode = 0o600,
): Promise<void> {
  const tmp = await writeTemp(tmpDir, bytes, mode);
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

export function storeError(what: string, cause: unknown): StoreError {
  return new StoreError("store-failed", `${what}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
}

export function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException)?.code === code;
}

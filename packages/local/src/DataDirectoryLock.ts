/**
 * One process per data directory. The head store's compare-and-set and the dedup file are only safe with a
 * single writer, so a second process (a second `auditsink start`, or `producer create --data` while the sink
 * runs) refuses with LocalError("data-dir-locked") instead of sharing.
 *
 * The lock is `<data>/lock.json`, holding the owner's pid, created atomically with its content (written to a
 * temp file, then link(2), which fails if the lock exists). A lock whose pid is no longer alive was left by a
 * killed process and is taken over at once, so a restart after `kill -9` needs no manual step. (A lock that only
 * expires after a timeout, as mtime-based lock files do, would either delay that restart or let a second process
 * in while the first is merely slow.)
 */
import { link, readFile, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { LocalError } from "./errors.ts";
import { fsyncDir, isErrno, mkdirDurable, writeTemp } from "./fsutil.ts";

export interface DataDirectoryLock {
  readonly path: string;
  release(): Promise<void>;
}

interface Owner {
  pid: number;
  host: string;
  purpose: string;
  since: string;
}

/** Locks this process holds: a lock file naming our own pid that is not in here was left by an earlier process. */
const held = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return isErrno(e, "EPERM");
  }
}

export async function lockDataDirectory(dataDir: string, purpose: string): Promise<DataDirectoryLock> {
  const path = join(dataDir, "lock.json");
  // The temp file sits beside the lock, not in tmp/, which the lock holder empties at start.
  const tmpDir = dataDir;
  await mkdirDurable(tmpDir);
  const me: Owner = { pid: process.pid, host: hostname(), purpose, since: new Date().toISOString() };
  const tmp = await writeTemp(tmpDir, `${JSON.stringify(me)}\n`, 0o644);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, path);
        await fsyncDir(dataDir);
        held.add(path);
        return {
          path,
          release: async () => {
            held.delete(path);
            await unlink(path).catch(() => undefined);
          },
        };
      } catch (e) {
        if (!isErrno(e, "EEXIST")) {
          throw new LocalError("data-dir-invalid", `cannot lock ${dataDir}: ${(e as Error).message}`, {
            cause: e,
          });
        }
      }
      let owner: Owner | undefined;
      try {
        owner = JSON.parse(await readFile(path, "utf8")) as Owner;
      } catch {
        owner = undefined; // vanished or unreadable: try again
      }
      const ours = owner?.pid === process.pid && held.has(path);
      if (owner && owner.host === me.host && !ours && (owner.pid === process.pid || !alive(owner.pid))) {
        // Left by a process that died (kill -9, power loss): take it over.
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (owner) {
        throw new LocalError(
          "data-dir-locked",
          `the data directory ${dataDir} is in use by process ${owner.pid} on ${owner.host} (${owner.purpose}, since ${owner.since}). ` +
            "Stop it first, or talk to the running sink over HTTP.",
        );
      }
    }
    throw new LocalError("data-dir-locked", `the data directory ${dataDir} is in use (lock ${path})`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

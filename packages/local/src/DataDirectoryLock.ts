/**
 * One process per data directory. The head store's compare-and-set and the dedup file are only safe with a
 * single writer, so a second process (a second `auditsink start`, or `producer create --data` while the sink
 * runs) refuses with LocalError("data-dir-locked") instead of sharing. proper-lockfile keeps the lock fresh
 * (mtime) so a lock left by a killed process goes stale and is taken over.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import lockfile from "proper-lockfile";
import { LocalError } from "./errors.ts";

export interface DataDirectoryLock {
  release(): Promise<void>;
}

const OWNER = "lock-owner.json";

export async function lockDataDirectory(dataDir: string, purpose: string): Promise<DataDirectoryLock> {
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dataDir, {
      lockfilePath: join(dataDir, "lock"),
      stale: 10_000,
      update: 2_000,
      realpath: false,
      onCompromised: (e) => {
        // Another process took the lock over: stop writing rather than corrupt anything.
        console.error(`auditsink: the lock on ${dataDir} was lost (${e.message}); exiting`);
        process.exit(75);
      },
    });
  } catch (cause) {
    let owner = "another process";
    try {
      const o = JSON.parse(await readFile(join(dataDir, OWNER), "utf8")) as {
        pid: number;
        purpose: string;
        since: string;
      };
      owner = `process ${o.pid} (${o.purpose}, since ${o.since})`;
    } catch {
      // no owner note: keep the generic wording
    }
    throw new LocalError(
      "data-dir-locked",
      `the data directory ${dataDir} is in use by ${owner}. Stop it first, or talk to the running sink over HTTP.`,
      { cause },
    );
  }
  await writeFile(
    join(dataDir, OWNER),
    JSON.stringify({ pid: process.pid, purpose, since: new Date().toISOString() }),
  );
  return { release: () => release() };
}

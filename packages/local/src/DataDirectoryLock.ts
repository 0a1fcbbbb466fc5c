/**
 * One process per data directory. The head store's compare-and-set and the dedup file are only safe with a
 * single writer, so a second process (a second `auditsink start`, or `producer create --data` while the sink
 * runs) refuses with LocalError("data-dir-locked") instead of sharing.
 *
 * The lock is an flock(2) advisory lock (through the maintained `fs-ext` binding) on `<data>/lock`, a file that
 * is never removed. The kernel holds it for the open file description and drops it when the process ends, however
 * it ends (kill -9, power loss), so a restart needs no manual step, and there is no "stale lock" to take over:
 * two processes racing after an unclean stop ask the kernel, and exactly one gets it. (The earlier lock file
 * holding a pid needed a takeover — read, check the pid, unlink, create — that two processes could both win.)
 * `<data>/lock.json` names the holder for the message a refused process prints; it is information only.
 *
 * `fs-ext` is a native addon and an optional dependency: an auditor's install that only verifies offline works
 * without it (no C++ toolchain, no allowed install script). It is loaded when a data directory is first locked,
 * and its absence is a LocalError("lock-unavailable") that says what to install.
 */
import { open, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { LocalError } from "./errors.ts";
import { mkdirDurable, replaceFile } from "./fsutil.ts";

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

type Flock = typeof import("fs-ext").flock;
let flockModule: Promise<Flock> | undefined;

/** fs-ext's flock, loaded once; rejects with what to install when the optional native addon is missing. */
function loadFlock(): Promise<Flock> {
  flockModule ??= import("fs-ext").then(
    (m) => m.flock,
    (e: unknown) => {
      flockModule = undefined;
      throw new LocalError(
        "lock-unavailable",
        "locking a data directory needs the native module fs-ext, which is not installed or not built " +
          `(${(e as Error).message.split("\n")[0]}). Install it next to auditsink with a C++ toolchain and Python 3 ` +
          "present, allowing its install script (npm install-scripts approve fs-ext, or allowScripts in package.json): " +
          "npm install fs-ext. Offline verify does not need it.",
        { cause: e },
      );
    },
  );
  return flockModule;
}

const lockFd = async (fd: number, flags: "exnb" | "un") => {
  const flock = await loadFlock();
  return new Promise<void>((resolve, reject) => flock(fd, flags, (err) => (err ? reject(err) : resolve())));
};

export async function lockDataDirectory(dataDir: string, purpose: string): Promise<DataDirectoryLock> {
  await loadFlock();
  await mkdirDurable(dataDir);
  const path = join(dataDir, "lock");
  const infoPath = join(dataDir, "lock.json");
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, "a", 0o644);
  } catch (e) {
    throw new LocalError("data-dir-invalid", `cannot open the lock file ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    await lockFd(fh.fd, "exnb");
  } catch (e) {
    await fh.close();
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EWOULDBLOCK" && code !== "EAGAIN") {
      throw new LocalError("data-dir-invalid", `cannot lock ${path}: ${(e as Error).message}`, { cause: e });
    }
    let owner: Owner | undefined;
    try {
      owner = JSON.parse(await readFile(infoPath, "utf8")) as Owner;
    } catch {
      owner = undefined;
    }
    throw new LocalError(
      "data-dir-locked",
      `the data directory ${dataDir} is in use${owner ? ` by process ${owner.pid} on ${owner.host} (${owner.purpose}, since ${owner.since})` : ""}. ` +
        "Stop it first, or talk to the running sink over HTTP.",
    );
  }
  const me: Owner = { pid: process.pid, host: hostname(), purpose, since: new Date().toISOString() };
  // Best effort: the lock holds without it, and a full disk must not stop a restart that frees space.
  await replaceFile(dataDir, infoPath, `${JSON.stringify(me)}\n`, 0o644).catch(() => undefined);
  let released = false;
  return {
    path,
    release: async () => {
      if (released) return;
      released = true;
      await lockFd(fh.fd, "un").catch(() => undefined);
      await fh.close();
    },
  };
}

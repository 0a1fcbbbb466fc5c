/**
 * The outside Go software the tests run, all from the one module test/go (its go.mod and go.sum pin every
 * version): Go's golang.org/x/mod/sumdb (note, tlog) and transparency-dev/formats in small programs of that
 * directory, Tessera's posix-oneshot writer, and torchwood's litewitness. Built once per version of
 * those sources into node_modules/.cache, under a lock (test files starting together build once), so a fresh
 * clone needs only Go on the PATH and the Go module proxy. Cold builds of the parts, before they were one module,
 * took 2 min 11 s (the reader and Tessera) and 3 min 13 s (litewitness, mostly its pure-Go SQLite) on the loaded
 * 2-core machine; a built version takes no time.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join, sep } from "node:path";
import { promisify } from "node:util";
import lockfile from "proper-lockfile";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "..");
const GO_MODULE = join(repo, "test/go");

/** A cold build on a loaded machine: give hooks that build this long. */
export const GO_BUILD_TIMEOUT_MS = 600_000;

/** Go's environment: the installed toolchain only, modules exactly as go.sum pins them, no C compiler needed. */
export const goEnv = { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=readonly", CGO_ENABLED: "0" };

export interface GoTools {
  /** `reader -url <prefix> -origin <o> -vkey <vkey> [-entry <i>=<hex>]… [-old <file>]` (test/go/reader). */
  reader: string;
  /** `notekey <name>`: prints an x/mod note signer key and verifier key, one a line (test/go/notekey). */
  notekey: string;
  /** Checks checkpoints and tlog-proofs with x/mod and torchwood (test/go/ckpt). */
  ckpt: string;
  /** Roots and tiles of x/mod's sumdb/tlog for given entries and sizes (test/go/tiles). */
  tiles: string;
  /** A minimal ssh-agent holding a witness key, for litewitness (test/go/witness-agent). */
  witnessAgent: string;
  /** Tessera's `posix-oneshot --storage_dir=<dir> --entries=<glob> --private_key=<file>`. */
  posixOneshot: string;
  /** torchwood's litewitness (filippo.io/torchwood v0.6.1). */
  litewitness: string;
  /** Adds logs and keys to a litewitness database and lists them, as witnessctl does (test/go/witnessdb). */
  witnessdb: string;
}

const PACKAGES = [
  "./reader",
  "./notekey",
  "./ckpt",
  "./tiles",
  "./witness-agent",
  "github.com/transparency-dev/tessera/cmd/examples/posix-oneshot",
  "filippo.io/torchwood/cmd/litewitness",
  "./witnessdb",
];

function sourceDigest(): string {
  const h = createHash("sha256");
  const files = readdirSync(GO_MODULE, { recursive: true, encoding: "utf8" })
    .filter((f) => /(\.go|go\.mod|go\.sum)$/.test(f))
    .sort();
  for (const f of files)
    h.update(f)
      .update("\0")
      .update(readFileSync(join(GO_MODULE, f)))
      .update("\0");
  return h.update(PACKAGES.join("\0")).digest("hex").slice(0, 16);
}

/** Builds test/go unless this version of its sources is built already; returns the binaries. */
export async function goTools(): Promise<GoTools> {
  const { stdout: version } = await run("go", ["version"], { env: goEnv }).catch((cause) => {
    throw new Error("the interop tests need Go ≥ 1.26 (https://go.dev/dl/) on the PATH", { cause });
  });
  const root = join(repo, "node_modules/.cache/auditsink-go");
  const dir = join(root, `${sourceDigest()}-${version.split(" ")[2]}`);
  const tools: GoTools = {
    reader: join(dir, "reader"),
    notekey: join(dir, "notekey"),
    ckpt: join(dir, "ckpt"),
    tiles: join(dir, "tiles"),
    witnessAgent: join(dir, "witness-agent"),
    posixOneshot: join(dir, "posix-oneshot"),
    litewitness: join(dir, "litewitness"),
    witnessdb: join(dir, "witnessdb"),
  };
  const built = () => Object.values(tools).every((p) => existsSync(p));
  if (built()) return tools;
  await mkdir(root, { recursive: true });
  const release = await lockfile.lock(root, {
    lockfilePath: join(root, "build.lock"),
    retries: { retries: 1200, minTimeout: 500, maxTimeout: 1000 },
    stale: GO_BUILD_TIMEOUT_MS,
  });
  try {
    if (built()) return tools;
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await run("go", ["build", "-o", `${tmp}${sep}`, ...PACKAGES], {
      cwd: GO_MODULE,
      env: goEnv,
      maxBuffer: 16 << 20,
    }).catch((e: Error & { stderr?: string }) => {
      throw new Error(`building test/go failed: ${e.message}\n${e.stderr ?? ""}`, { cause: e });
    });
    await rename(tmp, dir);
  } finally {
    await release();
  }
  return tools;
}

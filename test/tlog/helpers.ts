/**
 * Outside software for the tlog-tiles interop tests, built from test/go/reader (its go.mod and go.sum pin every
 * module): the Go reader (golang.org/x/mod/sumdb/note + tlog), x/mod's note key generator, and Tessera's
 * posix-oneshot writer (github.com/transparency-dev/tessera v1.0.4). Built once per version of those sources
 * into node_modules/.cache, so a fresh clone needs only Go on the PATH and the Go module proxy. A cold build
 * (modules downloaded, nothing in Go's build cache) takes about a minute of CPU.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize, sep } from "node:path";
import { promisify } from "node:util";
import lockfile from "proper-lockfile";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "..", "..");
const GO_MODULE = join(repo, "test/go/reader");

export interface GoTools {
  /** `reader -url <prefix> -origin <o> -vkey <vkey> [-entry <i>=<hex>]… [-old <file>]` (test/go/reader/main.go). */
  reader: string;
  /** `notekey <name>`: prints an x/mod note signer key and verifier key, one a line. */
  notekey: string;
  /** Tessera's `posix-oneshot --storage_dir=<dir> --entries=<glob> --private_key=<file>`. */
  posixOneshot: string;
}

/** Go's environment for the build: the installed toolchain only, modules exactly as go.sum pins them. */
const goEnv = { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=readonly", CGO_ENABLED: "0" };

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
  return h.digest("hex").slice(0, 16);
}

/**
 * Builds the Go tools unless this version of their sources is already built. One build at a time across test
 * files and processes (a lock beside the cache): the first builds, the others wait and reuse it.
 */
export async function goTools(): Promise<GoTools> {
  const { stdout: version } = await run("go", ["version"], { env: goEnv }).catch((cause) => {
    throw new Error("the tlog-tiles interop tests need Go (https://go.dev/dl/) on the PATH", { cause });
  });
  const root = join(repo, "node_modules/.cache/auditsink-go");
  const dir = join(root, `${sourceDigest()}-${version.split(" ")[2]}`);
  const tools = {
    reader: join(dir, "reader"),
    notekey: join(dir, "notekey"),
    posixOneshot: join(dir, "posix-oneshot"),
  };
  const built = () => Object.values(tools).every((p) => existsSync(p));
  if (built()) return tools;
  await mkdir(root, { recursive: true });
  const release = await lockfile.lock(root, {
    lockfilePath: join(root, "build.lock"),
    retries: { retries: 600, minTimeout: 500, maxTimeout: 1000 },
    stale: 600_000,
  });
  try {
    if (built()) return tools;
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await run(
      "go",
      [
        "build",
        "-o",
        `${tmp}${sep}`,
        ".",
        "./cmd/notekey",
        "github.com/transparency-dev/tessera/cmd/examples/posix-oneshot",
      ],
      { cwd: GO_MODULE, env: goEnv, maxBuffer: 16 << 20 },
    );
    await rename(tmp, dir);
  } finally {
    await release();
  }
  return tools;
}

/** Runs a Go tool; resolves its stdout, or rejects with its stderr in the message. */
export async function runTool(path: string, args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await run(path, args, { cwd, env: goEnv, maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${path} ${args.join(" ")}: ${err.stderr?.trim() || err.message}`, { cause: e });
  }
}

/**
 * A tiny static file server for a tlog-tiles directory, with the content types c2sp.org/tlog-tiles names; absent
 * files are 404. Counts the requests it answered, per path.
 */
export async function serveDirectory(
  dir: string,
): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)).replace(
      /^\/+/,
      "",
    );
    requests.push(path);
    if (path.split("/").includes("..") || path.startsWith(".")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(dir, path));
      const type = path === "checkpoint" ? "text/plain; charset=utf-8" : "application/octet-stream";
      res.writeHead(200, { "content-type": type, "content-length": body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Helpers for the tlog-tiles interop tests: running the outside Go tools (test/go-tools.ts builds them) and serving
 * a tlog-tiles directory over HTTP.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import { promisify } from "node:util";
import { goEnv } from "../go-tools.ts";

export { type GoTools, goTools } from "../go-tools.ts";

const run = promisify(execFile);

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

/**
 * The SDK's tlog-tiles sources against a real HTTP server and a real directory: absent resources, bounded bodies
 * (with and without Content-Length, and compressed), failures as coded errors, and paths that never leave the
 * prefix.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { DirectoryTlogSource, HttpTlogSource } from "@auditsink/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let server: Server;
let base: string;
const seen: string[] = [];

const routes: Record<string, (res: ServerResponse) => void> = {
  "/log/checkpoint": (res) => res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end("cp\n"),
  "/log/tile/0/000": (res) => res.writeHead(200).end(Buffer.alloc(8192, 1)),
  "/log/tile/0/001": (res) => res.writeHead(500).end("boom"),
  "/log/tile/0/002": (res) => res.writeHead(410).end(),
  "/log/tile/0/003": (res) => res.writeHead(200, { "content-length": "100000" }).end(Buffer.alloc(100_000)),
  "/log/tile/0/004": (res) => {
    // No Content-Length: the body streams until the reader stops it.
    res.writeHead(200);
    const chunk = Buffer.alloc(4096);
    let sent = 0;
    const more = () => {
      while (sent < 1 << 20 && res.write(chunk)) sent += chunk.length;
      if (sent >= 1 << 20) res.end();
    };
    res.on("drain", more);
    more();
  },
  "/log/tile/entries/000": (res) =>
    // 16 MiB of zeros compressed to a few KiB: bounded by the decompressed length.
    res.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync(Buffer.alloc(16 << 20))),
  "/log/tile/entries/001": (res) =>
    res.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync(Buffer.from("small"))),
};

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.url ?? "");
    const route = routes[req.url ?? ""];
    if (route) route(res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/log`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("HttpTlogSource", () => {
  it("reads a resource under the prefix, with or without a trailing slash", async () => {
    for (const prefix of [base, `${base}/`]) {
      const bytes = await new HttpTlogSource(prefix).read("checkpoint", 100);
      expect(Buffer.from(bytes!).toString()).toBe("cp\n");
    }
    expect(seen).toContain("/log/checkpoint");
  });

  it("answers absent for 404 and 410, and unavailable for another status", async () => {
    const source = new HttpTlogSource(base);
    expect(await source.read("tile/0/005", 8192)).toBeUndefined();
    expect(await source.read("tile/0/002", 8192)).toBeUndefined();
    await expect(source.read("tile/0/001", 8192)).rejects.toMatchObject({
      code: "unavailable",
      message: /HTTP 500/,
    });
  });

  it("refuses a body longer than asked for: by Content-Length, streamed, and decompressed", async () => {
    const source = new HttpTlogSource(base);
    await expect(source.read("tile/0/003", 8192)).rejects.toMatchObject({ code: "too-large" });
    await expect(source.read("tile/0/004", 8192)).rejects.toMatchObject({ code: "too-large" });
    await expect(source.read("tile/entries/000", 1 << 20)).rejects.toMatchObject({ code: "too-large" });
    expect(Buffer.from((await source.read("tile/entries/001", 100))!).toString()).toBe("small");
  });

  it("reports a connection failure as unavailable", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(
      new HttpTlogSource(`http://127.0.0.1:${port}/`).read("checkpoint", 10),
    ).rejects.toMatchObject({
      code: "unavailable",
    });
  });

  it("asks only for tlog-tiles paths, so nothing leaves the prefix", async () => {
    const source = new HttpTlogSource(base);
    for (const path of ["../secret", "tile/0/../../x", "/checkpoint", "tile/0/000?x=1"])
      await expect(source.read(path, 10)).rejects.toMatchObject({ code: "unavailable" });
    expect(() => new HttpTlogSource("file:///etc/")).toThrow(/http/);
  });
});

describe("DirectoryTlogSource", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "auditsink-tlogdir-"));
    await mkdir(join(dir, "tile/0/x001"), { recursive: true });
    await writeFile(join(dir, "checkpoint"), "cp\n");
    await writeFile(join(dir, "tile/0/x001/002.p"), "not a directory");
    await writeFile(join(dir, "tile/0/x001/003"), Buffer.alloc(8193));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("reads files at their tlog-tiles paths; a missing file is absent", async () => {
    const source = new DirectoryTlogSource(dir);
    expect(Buffer.from((await source.read("checkpoint", 10))!).toString()).toBe("cp\n");
    expect(await source.read("tile/0/x001/004", 8192)).toBeUndefined();
    expect(await source.read("tile/0/x001/002.p/3", 8192)).toBeUndefined(); // ENOTDIR: absent too
  });

  it("refuses a file longer than asked for, and paths outside the log", async () => {
    const source = new DirectoryTlogSource(dir);
    await expect(source.read("tile/0/x001/003", 8192)).rejects.toMatchObject({ code: "too-large" });
    await expect(source.read("../../etc/passwd", 8192)).rejects.toMatchObject({ code: "unavailable" });
  });
});

/**
 * Where core's TlogReader reads a c2sp.org/tlog-tiles log from: a URL prefix (HttpTlogSource) or a directory
 * laid out as the log's URLs are (DirectoryTlogSource) — a Tessera POSIX log, a mirror, a copy on disk.
 */
import { open } from "node:fs/promises";
import { join, resolve } from "node:path";
import { TlogError, type TlogSource } from "@auditsink/core";

/** The paths TlogReader asks for; anything else is refused, so a path never leaves the prefix or directory. */
const TLOG_PATH = /^(checkpoint|tile\/(\d{1,2}|entries)\/(x\d{3}\/)*\d{3}(\.p\/\d{1,3})?)$/;

function checkPath(path: string): void {
  if (!TLOG_PATH.test(path)) throw new TlogError("unavailable", `"${path}" is not a tlog-tiles path`, path);
}

export interface HttpTlogSourceOptions {
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** The fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra request headers (authorization for a private log, for example). */
  headers?: Record<string, string>;
}

/**
 * Reads a log over HTTP(S) from its URL prefix (`https://log.example/tlog/agents/` serves
 * `…/checkpoint`, `…/tile/0/000`, …). 404 and 410 mean absent; any other non-200 status is "unavailable".
 * Bodies are read as a stream and abandoned past `maxBytes` (after decompression: a gzip bomb stops there too).
 */
export class HttpTlogSource implements TlogSource {
  private readonly prefix: string;
  private readonly fetch: typeof fetch;

  constructor(
    prefix: string,
    private readonly options: HttpTlogSourceOptions = {},
  ) {
    const url = new URL(prefix);
    if (url.protocol !== "https:" && url.protocol !== "http:")
      throw new TypeError(`a tlog-tiles prefix is an http(s) URL, not ${url.protocol}`);
    this.prefix = url.href.endsWith("/") ? url.href : `${url.href}/`;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  async read(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    checkPath(path);
    const url = this.prefix + path;
    let res: Response;
    try {
      res = await this.fetch(url, {
        headers: { "accept-encoding": "gzip, identity", ...this.options.headers },
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (cause) {
      throw new TlogError("unavailable", `GET ${url}: ${(cause as Error).message}`, path, { cause });
    }
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel();
      return undefined;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new TlogError("unavailable", `GET ${url}: HTTP ${res.status}`, path);
    }
    const tooLarge = () => new TlogError("too-large", `GET ${url}: longer than ${maxBytes} bytes`, path);
    if (Number(res.headers.get("content-length") ?? 0) > maxBytes && !res.headers.get("content-encoding")) {
      await res.body?.cancel();
      throw tooLarge();
    }
    const chunks: Uint8Array[] = [];
    let length = 0;
    const reader = res.body?.getReader();
    try {
      for (let part = await reader?.read(); part && !part.done; part = await reader!.read()) {
        length += part.value.length;
        if (length > maxBytes) {
          await reader!.cancel();
          throw tooLarge();
        }
        chunks.push(part.value);
      }
    } catch (cause) {
      if (cause instanceof TlogError) throw cause;
      throw new TlogError("unavailable", `GET ${url}: ${(cause as Error).message}`, path, { cause });
    }
    return Buffer.concat(chunks, length);
  }
}

/**
 * Reads a log from a directory holding its resources at their URL paths (`<dir>/checkpoint`,
 * `<dir>/tile/0/000`, …), as Tessera's POSIX driver writes them. A missing file is absent; a file longer than
 * `maxBytes` is refused before it is read.
 */
export class DirectoryTlogSource implements TlogSource {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  async read(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    checkPath(path);
    const file = join(this.dir, path);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(file, "r");
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw new TlogError("unavailable", `cannot open ${file}: ${(cause as Error).message}`, path, { cause });
    }
    try {
      const { size } = await handle.stat();
      if (size > maxBytes) throw new TlogError("too-large", `${file} is longer than ${maxBytes} bytes`, path);
      // Read at most maxBytes + 1 whatever stat said: the file may grow between the two calls.
      const buffer = Buffer.alloc(Math.min(maxBytes + 1, size + 1));
      let length = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
        if (length === buffer.length) break;
      }
      if (length > maxBytes)
        throw new TlogError("too-large", `${file} is longer than ${maxBytes} bytes`, path);
      return buffer.subarray(0, length);
    } catch (cause) {
      if (cause instanceof TlogError) throw cause;
      throw new TlogError("unavailable", `cannot read ${file}: ${(cause as Error).message}`, path, { cause });
    } finally {
      await handle.close();
    }
  }
}

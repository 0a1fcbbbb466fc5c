/**
 * Every stream as a c2sp.org/tlog-tiles log, read-only, at `/tlog/<stream>/` (docs/TRANSPARENCY.md §1,
 * docs/FORMAT.md §14): `checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`, and the record lines
 * beside the bundles at `records/<N>[.p/<W>]` (tlog-tiles allows entries in other formats at another URL).
 *
 * Full tiles and bundles are the stored write-once objects (core tile-writer.ts); a partial one is the prefix of
 * the stored full one, or — past the last full tile — built from the records (core tiles.ts). Nothing is served
 * beyond the newest checkpoint: a client never needs it, and it would not verify against any signed root.
 */
import { checkpointPrefix, parseTilePath, type Sink, type Tile, tilePath, tileRange } from "@auditsink/core";
import { type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ApiError } from "./errors.ts";
import { iamGateway, problems } from "./responses.ts";
import { StreamParams } from "./schemas.ts";

/** tlog-tiles: the checkpoint is mutable ("headers SHOULD prevent caching beyond a few seconds"). */
export const CHECKPOINT_CACHE = "public, max-age=5";
/** tlog-tiles: tiles, bundles (full or partial) never change once they exist. */
export const IMMUTABLE_CACHE = "public, max-age=31536000, immutable";

/** The stream's newest signed checkpoint as stored (the signed note text, as is), and its size. */
export async function newestCheckpoint(sink: Sink, stream: string): Promise<{ size: number; text: string }> {
  const head = await sink.options.heads.get(stream);
  if (!head) throw new ApiError("not-found", `no stream ${stream}`, "stream");
  if (head.checkpoint) return { size: head.size, text: head.checkpoint };
  // The head lost its checkpoint text (repaired after a crash): the newest stored checkpoint is the answer.
  const keys = await sink.options.objects.list(checkpointPrefix(stream));
  const last = keys[keys.length - 1];
  const bytes = last ? await sink.options.objects.get(last) : undefined;
  if (!last || !bytes) throw new ApiError("not-found", `stream ${stream} has no checkpoint yet`, "stream");
  return { size: Number(last.slice(-20)), text: new TextDecoder().decode(bytes) };
}

const TLOG_PATH = /^\/tlog\/([^/]+)\/(tile|records)\/(.+)$/;

const TilePathParam = z.string().openapi({
  param: { name: "tile", in: "path", "x-multi-segment": true } as never,
  description:
    "`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]` (c2sp.org/tlog-tiles): `<N>` in x001/x234/067 form. Spans several path segments.",
  example: "0/x001/234.p/17",
});
const RecordsPathParam = z.string().openapi({
  param: { name: "range", in: "path", "x-multi-segment": true } as never,
  description: "`<N>[.p/<W>]` as for entry bundles: the record lines of records 256·N … 256·N + W − 1.",
  example: "x001/234",
});

const binary = (description: string) => ({
  description,
  content: { "application/octet-stream": { schema: { type: "string", format: "binary" } as never } },
});

/**
 * Registers the tlog-tiles routes on the app (declared in its OpenAPI document, so its route table knows them).
 * With `cosigned` (a runtime that submits to witnesses), `checkpoint` is the newest cosigned checkpoint — what a
 * client with a witness policy accepts (docs/TRANSPARENCY.md §3) — and the newest signed one until there is one.
 */
export function registerTlogRoutes(
  app: OpenAPIHono,
  sink: Sink,
  cosigned?: (stream: string) => Promise<{ size: number; note: string } | undefined>,
): void {
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/tlog/{stream}/checkpoint",
    summary:
      "The stream's newest signed checkpoint as a C2SP signed note (c2sp.org/tlog-tiles); with witnesses, the newest cosigned one",
    request: { params: StreamParams },
    responses: {
      200: {
        description: "The signed note, as stored; Cache-Control allows a few seconds",
        content: { "text/plain; charset=utf-8": { schema: { type: "string" } as never } },
      },
      ...problems(404, 500, 503),
      ...iamGateway,
    },
  });
  app.get("/tlog/:stream/checkpoint", async (c) => {
    const stream = streamOf(c.req.param("stream"));
    const witnessed = await cosigned?.(stream);
    const text = witnessed?.note ?? (await newestCheckpoint(sink, stream)).text;
    return c.body(text, 200, {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": CHECKPOINT_CACHE,
    });
  });

  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/tlog/{stream}/tile/{tile}",
    summary: "A Merkle tree tile or an entry bundle (c2sp.org/tlog-tiles); an entry is a 32-byte record hash",
    request: { params: StreamParams.extend({ tile: TilePathParam }) },
    responses: {
      200: binary("The tile's hashes, or the bundle's uint16-length-prefixed entries; immutable"),
      ...problems(404, 500, 503),
      ...iamGateway,
    },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/tlog/{stream}/records/{range}",
    summary:
      "The record lines of an entry bundle's range, each followed by a newline; SHA-256 of a line is its entry",
    request: { params: StreamParams.extend({ range: RecordsPathParam }) },
    responses: {
      200: binary("Record lines (RFC 8785 JSON, docs/FORMAT.md §5), each followed by \\n; immutable"),
      ...problems(404, 500, 503),
      ...iamGateway,
    },
  });
  app.get("/tlog/:stream/tile/:tile{.+}", (c) => serveTile(c, sink));
  app.get("/tlog/:stream/records/:range{.+}", (c) => serveTile(c, sink));
}

/** GET …/tile/… and …/records/…: one tile, bundle or records range inside the newest checkpoint. */
async function serveTile(c: Context, sink: Sink): Promise<Response> {
  // The raw path, not Hono's decoded parameters: a tile has exactly one spelling, and %-escapes are not it.
  const m = TLOG_PATH.exec(new URL(c.req.url).pathname);
  if (!m) throw new ApiError("not-found", `no route GET ${c.req.path}`);
  const stream = streamOf(decodeURIComponent(m[1]!));
  const records = m[2] === "records";
  const field = records ? "range" : "tile";
  const tile = parseTilePath(records ? `entries/${m[3]}` : m[3]!);
  if (!tile) {
    throw new ApiError(
      "invalid-request",
      records
        ? `${field}: must be <N>[.p/<W>] with <N> in tlog-tiles' x001/x234/067 form and W 1 … 255`
        : `${field}: must be <L>/<N>[.p/<W>] or entries/<N>[.p/<W>] (c2sp.org/tlog-tiles): L 0 … 63, <N> in x001/x234/067 form, W 1 … 255`,
      field,
    );
  }
  const { size } = await newestCheckpoint(sink, stream);
  const { end } = tileRange(tile);
  if (end > size) {
    const name = records ? `records/${tilePath(tile).slice("entries/".length)}` : `tile/${tilePath(tile)}`;
    throw new ApiError(
      "not-found",
      `${name} covers records up to ${end}, beyond the newest checkpoint of ${stream} (size ${size})`,
      field,
    );
  }
  const bytes = records ? await recordLines(sink, stream, tile) : await tileBytes(sink, stream, tile);
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
    "content-type": "application/octet-stream",
    "cache-control": IMMUTABLE_CACHE,
  });
}

function streamOf(raw: string): string {
  const parsed = StreamParams.safeParse({ stream: raw });
  if (!parsed.success)
    throw new ApiError(
      "invalid-request",
      "stream: 1–128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
      "stream",
    );
  return parsed.data.stream;
}

/** A tile or bundle inside the newest checkpoint: the stored full one (or its prefix), else built (core StoreTiles). */
function tileBytes(sink: Sink, stream: string, tile: Tile): Promise<Uint8Array> {
  return sink.tiles(stream).tile(tile);
}

async function recordLines(sink: Sink, stream: string, tile: Tile): Promise<Uint8Array> {
  const { start, end } = tileRange(tile);
  const lines = await sink.tiles(stream).recordLines(start, end);
  return Buffer.concat(lines.flatMap((line) => [line, NEWLINE]));
}

const NEWLINE = Buffer.from("\n");

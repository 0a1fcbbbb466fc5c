/**
 * A running embedded sink serves every stream as a c2sp.org/tlog-tiles log (docs/TRANSPARENCY.md §1): a client
 * that reads only `/tlog/<stream>/…` recomputes the root the checkpoint signs — full and partial tiles, after a
 * restart, and after a SIGKILL between a segment and its tiles. Bad and hostile paths are clear problems.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  leafHash,
  parseCheckpointText,
  parseEntryBundle,
  parseNote,
  rootOf,
  sha256,
  type Tile,
  tilePath,
  tileRoot,
} from "@auditsink/core";
import { openLocalSink } from "@auditsink/local";
import { describe, expect, it } from "vitest";
import { exited, postEvents, startChild } from "./faults.ts";
import { testProducer, testSinks } from "./helpers.ts";

const t = testSinks("auditsink-tiles-");
const STREAM = "agents.tiles";

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  expect(res.status, `${url}: ${res.status}`).toBe(200);
  return res;
}

/**
 * Reads the stream as a tlog-tiles client would (checkpoint, then tiles, bundles and records) and checks that
 * everything agrees: each bundle entry's leaf hash is its tile hash, each record line hashes to its entry, each
 * level-1 hash is the root of its level-0 tile, and the root of the leaves is the checkpoint's root.
 */
async function readAsTlog(url: string, stream: string) {
  const base = `${url}/tlog/${stream}`;
  const cpRes = await fetchOk(`${base}/checkpoint`);
  expect(cpRes.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(cpRes.headers.get("cache-control")).toBe("public, max-age=5");
  const note = await cpRes.text();
  const checkpoint = parseCheckpointText(parseNote(note).text);
  const size = checkpoint.size;
  const get = async (tile: Tile, kind: "tile" | "records" = "tile") => {
    const path = kind === "tile" ? `tile/${tilePath(tile)}` : `records/${tilePath(tile).slice(8)}`;
    const res = await fetchOk(`${base}/${path}`);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    return Buffer.from(await res.arrayBuffer());
  };
  const leaves: Buffer[] = [];
  const level0: Buffer[] = [];
  for (let index = 0; index * 256 < size; index++) {
    const width = Math.min(256, size - index * 256);
    const tile = await get({ level: 0, index, width });
    const entries = parseEntryBundle(await get({ level: "entries", index, width }));
    const lines = (await get({ level: "entries", index, width }, "records")).toString("utf8").split("\n");
    expect([tile.length, entries.length, lines.pop()]).toEqual([32 * width, width, ""]);
    for (let i = 0; i < width; i++) {
      const hash = tile.subarray(32 * i, 32 * i + 32);
      expect(leafHash(entries[i]!)).toEqual(hash);
      expect(sha256(lines[i]!)).toEqual(entries[i]);
      leaves.push(Buffer.from(hash));
    }
    if (width === 256) level0.push(tile);
  }
  if (level0.length > 0) {
    const level1 = await get({ level: 1, index: 0, width: level0.length });
    level0.forEach((tile, i) => {
      expect(level1.subarray(32 * i, 32 * i + 32)).toEqual(tileRoot(tile));
    });
  }
  expect(rootOf(leaves)).toEqual(checkpoint.root);
  return { size, root: checkpoint.root, note };
}

async function prepared(events: number) {
  const dataDir = await t.fresh();
  const agent = testProducer("agent");
  const local = await openLocalSink({ dataDir });
  await local.producers.register({ id: agent.id, publicKey: agent.publicKey, streams: ["agents.*"] });
  for (let at = 0; at < events; at += 100)
    await local.sink.submit(
      STREAM,
      Array.from({ length: Math.min(100, events - at) }, () => agent.event()),
    );
  await local.close();
  return { dataDir, agent };
}

describe("tlog-tiles over HTTP from the embedded sink", () => {
  it("serves full and partial tiles, bundles and records that recompute the signed root, before and after a restart", async () => {
    // Prepare: 600 records = two full level-0 tiles, a partial one of width 88, and a level-1 tile of width 2.
    const { dataDir, agent } = await prepared(600);
    const first = await t.start(dataDir);
    // Act
    const before = await readAsTlog(first.sink.url, STREAM);
    await first.close();
    const second = await t.start(dataDir);
    const after = await readAsTlog(second.sink.url, STREAM);
    const sent = await postEvents(
      second.sink.url,
      STREAM,
      Array.from({ length: 30 }, () => agent.event()),
    );
    const grown = await readAsTlog(second.sink.url, STREAM);
    // Assess
    expect(before.size).toBe(600 + 0);
    expect(after).toEqual(before);
    expect(sent.status).toBe(200);
    expect(grown.size).toBe(630);
    const stored = join(dataDir, "objects", "streams", STREAM, "tile");
    for (const p of ["0/000", "0/001", "entries/000", "entries/001"])
      expect(existsSync(join(stored, p)), p).toBe(true);
    expect(existsSync(join(stored, "0/002"))).toBe(false);
  });

  it("answers a tile beyond the newest checkpoint with 404 and a bad or hostile path with 400, naming it", async () => {
    const { dataDir } = await prepared(300);
    const { sink } = await t.start(dataDir);
    const base = `${sink.url}/tlog/${STREAM}`;
    const problemOf = async (path: string) => {
      const res = await fetch(`${base}/${path}`);
      const body = (await res.json()) as { code: string; field?: string; detail: string };
      return [res.status, res.headers.get("content-type"), body.code, body.field];
    };
    const beyond = [404, "application/problem+json", "not-found", "tile"];
    expect(await problemOf("tile/0/001")).toEqual(beyond);
    expect(await problemOf("tile/0/001.p/45")).toEqual(beyond);
    expect(await problemOf("tile/entries/002.p/1")).toEqual(beyond);
    expect(await problemOf("tile/1/000.p/2")).toEqual(beyond);
    expect(await problemOf("tile/2/000.p/1")).toEqual(beyond);
    expect(await problemOf("records/001")).toEqual([404, "application/problem+json", "not-found", "range"]);
    for (const bad of [
      "tile/__proto__",
      "tile/constructor/prototype",
      "tile/0/0",
      "tile/0/000.p/256",
      "tile/0/000.p/0",
      "tile/0/x000/000",
      "tile/0/%30%30%30",
      "tile/64/000",
      "tile/entries/000/extra",
    ])
      expect(await problemOf(bad), bad).toEqual([400, "application/problem+json", "invalid-request", "tile"]);
    expect(await problemOf("records/__proto__")).toEqual([
      400,
      "application/problem+json",
      "invalid-request",
      "range",
    ]);
    expect((await fetch(`${sink.url}/tlog/__proto__/checkpoint`)).status).toBe(400);
    // Dot segments, even escaped, are resolved by URL parsing before any route sees them: nothing outside.
    expect(await problemOf("tile/%2e%2e/checkpoint.p/1")).toEqual([
      404,
      "application/problem+json",
      "not-found",
      undefined,
    ]);
    expect((await fetch(`${sink.url}/tlog/no.such.stream/tile/0/000.p/1`)).status).toBe(404);
    expect((await fetch(`${base}/tile/0/000.p/5?x=1`)).status).toBe(400);
    // A partial tile of the current size, and of an older size (a prefix of what is stored), are served.
    expect((await fetch(`${base}/tile/0/001.p/44`)).status).toBe(200);
    expect((await fetch(`${base}/tile/0/000.p/5`)).status).toBe(200);
  });

  it("repairs the tiles a SIGKILL left out between a segment and its tiles, at the next start", {
    timeout: 60_000, // a child process started and killed, then a restart: well over a plain test's budget
  }, async () => {
    // Prepare: 250 records, then a child sink killed just after the segment that completes tile 0 is linked.
    const { dataDir, agent } = await prepared(250);
    const child = await startChild(dataDir, {
      AUDITSINK_CRASH_AT: `object:linked:streams/${STREAM}/segments`,
    });
    const killed = await postEvents(
      child!.url,
      STREAM,
      Array.from({ length: 20 }, () => agent.event()),
    ).catch(() => undefined);
    await exited(child!.child);
    const tileFile = join(dataDir, "objects", "streams", STREAM, "tile", "0", "000");
    expect([killed, child!.child.signalCode, existsSync(tileFile)]).toEqual([undefined, "SIGKILL", false]);
    // Act
    const { sink } = await t.start(dataDir);
    const read = await readAsTlog(sink.url, STREAM);
    // Assess
    expect(read.size).toBe(270);
    expect(existsSync(tileFile)).toBe(true);
  });
});

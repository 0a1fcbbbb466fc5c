/**
 * The commit step stores every full tlog-tiles tile and entry bundle (docs/FORMAT.md §12): as records are
 * committed, after a crash between a segment and its tiles, and for a stream written without tiles.
 */
import { describe, expect, it } from "vitest";
import { StoreError } from "../src/errors.ts";
import type { ObjectStore } from "../src/ports.ts";
import { parseStoreKey, tileKey, tilePrefix } from "../src/record.ts";
import { admit, Sink } from "../src/sink.ts";
import { encodeEntryBundle, fullTilesBetween, tileHashes } from "../src/tiles.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer } from "./fixtures.ts";

async function submitMany(
  sink: Sink,
  ports: Ports,
  stream: string,
  count: number,
  batch: number,
  tag: string,
) {
  const agent = producer(ports, `agent-${tag}`);
  for (let at = 0; at < count; at += batch) {
    const n = Math.min(batch, count - at);
    // Committed as admitted (signatures made, not checked again): these tests are about what follows the commit.
    await sink.commit(
      stream,
      Array.from({ length: n }, (_, i) => admit(agent.event(`${tag}-${at + i}`), `agent-${tag}`)),
    );
  }
}

/** The tiles the stream's records give, built from a reader (independently of the writer). */
async function expectedTiles(sink: Sink, stream: string, size: number): Promise<Map<string, Buffer>> {
  const reader = sink.reader(stream);
  await reader.ensure(size);
  const out = new Map<string, Buffer>();
  for (const tile of fullTilesBetween(0, size)) {
    if (tile.level === "entries") {
      const start = tile.index * 256;
      const records = await reader.records(start, start + 256);
      out.set(tileKey(stream, tile), encodeEntryBundle(records.map((r) => r.hash)));
    } else
      out.set(
        tileKey(stream, tile),
        tileHashes(tile, (lo, hi) => reader.subtree(lo, hi)),
      );
  }
  return out;
}

function storedTiles(ports: Ports, stream: string): Map<string, Buffer> {
  return new Map(
    [...ports.objects.objects]
      .filter(([k]) => k.startsWith(tilePrefix(stream)))
      .map(([k, v]) => [k, Buffer.from(v)]),
  );
}

describe("tiles in the commit step", () => {
  it("stores exactly the full tiles and bundles of the committed records, as they complete", async () => {
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    await submitMany(sink, ports, "s", 700, 37, "a");
    const stored = storedTiles(ports, "s");
    expect([...stored.keys()].sort()).toEqual(
      ["0/000", "0/001", "entries/000", "entries/001"].map((p) => `streams/s/tile/${p}`),
    );
    expect(stored).toEqual(await expectedTiles(sink, "s", 700));
  });

  it("repairs tiles a crash left out between the segment and the tiles, at the next start", async () => {
    const ports = memoryPorts();
    let failTiles = false;
    const faulty: ObjectStore = {
      putIfAbsent: async (k, b) => {
        if (failTiles && parseStoreKey(k)?.kind === "tiles")
          throw new StoreError("store-failed", "disk gone");
        return ports.objects.putIfAbsent(k, b);
      },
      get: (k) => ports.objects.get(k),
      list: (p, o) => ports.objects.list(p, o),
    };
    const first = new Sink({ deployment: DEPLOYMENT, ...ports, objects: faulty });
    await submitMany(first, ports, "s", 250, 50, "a");
    failTiles = true;
    const agent = producer(ports, "late");
    await expect(
      first.submit(
        "s",
        Array.from({ length: 20 }, (_, i) => agent.event(`late-${i}`)),
      ),
    ).rejects.toThrow(/disk gone/);
    // The segment is committed (270 records), the tile of 0 … 255 is not.
    expect(storedTiles(ports, "s").size).toBe(0);
    const restarted = new Sink({ deployment: DEPLOYMENT, ...ports });
    await restarted.commit("s", []);
    await restarted.idle();
    expect(ports.heads.heads.get("s")!.size).toBe(270);
    expect(storedTiles(ports, "s")).toEqual(await expectedTiles(restarted, "s", 270));
    expect(storedTiles(ports, "s").size).toBe(2);
  });

  it("a stream written with tiles off gets them read back between commits, resumably, without blocking ingest", async () => {
    const ports = memoryPorts();
    const off = new Sink({ deployment: DEPLOYMENT, ...ports, tiles: false, maxSegmentRecords: 1000 });
    await submitMany(off, ports, "s", 5000, 1000, "a");
    expect(storedTiles(ports, "s").size).toBe(0);
    // A first back-fill stopped part way (here by a store failure after 8 tiles) leaves a prefix of the tiles; the
    // next start finds where it ends and goes on from there.
    let budget = 8;
    const failing: ObjectStore = {
      putIfAbsent: async (k, b) => {
        if (parseStoreKey(k)?.kind === "tiles" && budget-- <= 0)
          throw new StoreError("store-failed", "disk gone");
        return ports.objects.putIfAbsent(k, b);
      },
      get: (k) => ports.objects.get(k),
      list: (p, o) => ports.objects.list(p, o),
    };
    const partial = new Sink({ deployment: DEPLOYMENT, ...ports, objects: failing });
    await partial.commit("s", []); // 5,000 records behind: read back in the background, between commits
    await partial.idle();
    expect(storedTiles(ports, "s").size).toBe(8);
    const on = new Sink({ deployment: DEPLOYMENT, ...ports });
    const commitDuringBackfill = submitMany(on, ports, "s", 600, 300, "b");
    await commitDuringBackfill;
    await on.idle();
    const want = await expectedTiles(on, "s", 5600);
    expect(storedTiles(ports, "s")).toEqual(want);
    expect(want.size).toBe(2 * 21);
  });

  it("tiles: false stores none", async () => {
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports, tiles: false });
    await submitMany(sink, ports, "s", 300, 100, "a");
    expect(storedTiles(ports, "s").size).toBe(0);
  });
});

/**
 * The commit step stores every full tlog-tiles tile and entry bundle (docs/FORMAT.md §14): as records are
 * committed, after a crash between a segment and its tiles, and for a stream written without tiles.
 */
import { describe, expect, it } from "vitest";
import { StoreError } from "../src/errors.ts";
import { verifyStoredStream } from "../src/fetch.ts";
import { MerkleTree } from "../src/merkle.ts";
import type { ObjectStore } from "../src/ports.ts";
import { parseStoreKey, tileKey, tilePrefix } from "../src/record.ts";
import { admit, Sink } from "../src/sink.ts";
import { encodeEntryBundle, fullTilesBetween } from "../src/tiles.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer, recordingReads } from "./fixtures.ts";
import { tileHashes } from "./tile-oracle.ts";

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
  const tree = MerkleTree.empty();
  for (const r of await reader.records(0, size)) tree.append(r.leaf);
  const out = new Map<string, Buffer>();
  for (const tile of fullTilesBetween(0, size)) {
    if (tile.level === "entries") {
      const start = tile.index * 256;
      const records = await reader.records(start, start + 256);
      out.set(tileKey(stream, tile), encodeEntryBundle(records.map((r) => r.hash)));
    } else
      out.set(
        tileKey(stream, tile),
        tileHashes(tile, (lo, hi) => tree.subtree(lo, hi)),
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

describe("verification of stored tiles", () => {
  const trusted = (ports: Ports) => ({ trusted: [ports.signer.key], deployment: DEPLOYMENT });

  it("passes the tiles the writer stored, and finds a tampered tile or bundle (tile-mismatch)", async () => {
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    await submitMany(sink, ports, "s", 600, 100, "a");
    expect((await verifyStoredStream(ports.objects, "s", trusted(ports))).failures).toEqual([]);
    const tile = tileKey("s", { level: 0, index: 1, width: 256 });
    const bundle = tileKey("s", { level: "entries", index: 0, width: 256 });
    const bytes = Buffer.from(ports.objects.objects.get(tile)!);
    bytes.writeUInt8(bytes[100]! ^ 1, 100);
    ports.objects.objects.set(tile, bytes);
    ports.objects.objects.set(bundle, ports.objects.objects.get(bundle)!.subarray(0, 8000));
    const report = await verifyStoredStream(ports.objects, "s", trusted(ports));
    expect(report.failures.map((f) => [f.code, f.at])).toEqual([
      ["tile-mismatch", bundle],
      ["tile-mismatch", tile],
    ]);
  });

  it("reports a key under tile/ that is not a full tile path as unexpected-object, and a tile past the records", async () => {
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    await submitMany(sink, ports, "s", 300, 100, "a");
    const beyond = tileKey("s", { level: 0, index: 4, width: 256 });
    ports.objects.objects.set(beyond, new Uint8Array(8192));
    for (const k of ["streams/s/tile/0/001.p/44", "streams/s/tile/__proto__", "streams/s/tile/0/x000/001"])
      ports.objects.objects.set(k, new Uint8Array(1));
    const report = await verifyStoredStream(ports.objects, "s", trusted(ports));
    expect(report.failures.map((f) => [f.code, f.at]).sort()).toEqual(
      [
        ["tile-mismatch", beyond],
        ["unexpected-object", "streams/s/tile/0/001.p/44"],
        ["unexpected-object", "streams/s/tile/0/x000/001"],
        ["unexpected-object", "streams/s/tile/__proto__"],
      ].sort(),
    );
  });

  it("an incremental run reads only the tiles completed since its start; a missing one is a warning", async () => {
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    await submitMany(sink, ports, "s", 300, 100, "a");
    const first = await verifyStoredStream(ports.objects, "s", trusted(ports));
    await submitMany(sink, ports, "s", 300, 100, "b");
    ports.objects.objects.delete(tileKey("s", { level: "entries", index: 1, width: 256 }));
    // Tampering with a tile an earlier run checked is for full runs (and storage events) to catch, not this one.
    const old = tileKey("s", { level: 0, index: 0, width: 256 });
    ports.objects.objects.set(old, new Uint8Array(8192));
    const read: string[] = [];
    const counting = recordingReads(ports.objects, read);
    const next = await verifyStoredStream(counting, "s", { ...trusted(ports), from: first.state });
    expect(read.filter((k) => parseStoreKey(k)?.kind === "tiles").sort()).toEqual(
      ["streams/s/tile/0/001", "streams/s/tile/entries/001"].sort(),
    );
    expect(next.failures).toEqual([]);
    expect(next.warnings.map((w) => [w.code, w.at])).toEqual([
      ["tiles-missing", "streams/s/tile/entries/001"],
    ]);
    const full = await verifyStoredStream(ports.objects, "s", trusted(ports));
    expect(full.failures.map((f) => [f.code, f.at])).toEqual([["tile-mismatch", old]]);
    // A run that starts inside a tile (300 of 256…511) checks that tile through its root, not its bytes.
    const partial = tileKey("s", { level: 0, index: 1, width: 256 });
    const bytes = Buffer.from(ports.objects.objects.get(partial)!);
    bytes.writeUInt8(bytes[8000]! ^ 1, 8000);
    ports.objects.objects.set(partial, bytes);
    const again = await verifyStoredStream(ports.objects, "s", { ...trusted(ports), from: first.state });
    expect(again.failures.map((f) => [f.code, f.at])).toEqual([["tile-mismatch", partial]]);
  });

  it("with tiles: false (a source without tiles by design, an evidence bundle) asks for none and warns nothing", async () => {
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    await submitMany(sink, ports, "s", 600, 100, "a");
    for (const key of [...ports.objects.objects.keys()])
      if (parseStoreKey(key)?.kind === "tiles") ports.objects.objects.delete(key);
    const read: string[] = [];
    const counting = recordingReads(ports.objects, read);
    const withTiles = await verifyStoredStream(counting, "s", trusted(ports));
    expect(withTiles.warnings.map((w) => w.code)).toEqual(["tiles-missing"]);
    read.length = 0;
    const without = await verifyStoredStream(counting, "s", { ...trusted(ports), tiles: false });
    expect(read.filter((k) => parseStoreKey(k)?.kind === "tiles")).toEqual([]);
    expect([without.failures, without.warnings, without.records]).toEqual([[], [], 600]);
  });
});

/**
 * Sink.tree: a stream's proofs, roots and records read from its stored tiles and segments with bounded work, equal
 * to what the whole tree in memory (StreamReader) gives — and the reader is only the fallback.
 */
import { describe, expect, it } from "vitest";
import { IntegrityError, StoreError } from "../src/errors.ts";
import { segmentKey, segmentPrefix, tileKey, tilePrefix } from "../src/record.ts";
import { admit, Sink } from "../src/sink.ts";
import { StoreTiles, TileCache } from "../src/store-tiles.ts";
import { tileRange } from "../src/tiles.ts";
import { DEPLOYMENT, memoryPorts, producer, recordingReads } from "./fixtures.ts";

async function fill(
  sink: Sink,
  ports: ReturnType<typeof memoryPorts>,
  stream: string,
  count: number,
  batch: number,
  id = "t",
) {
  const agent = producer(ports, "agent-t");
  for (let at = 0; at < count; at += batch) {
    const n = Math.min(batch, count - at);
    await sink.commit(
      stream,
      Array.from({ length: n }, (_, i) => admit(agent.event(`${id}-${at + i}`), "agent-t")),
    );
  }
  await sink.idle();
}

/** A Sink that counts the stream readers it opens (each holds the stream's whole tree). */
class CountingSink extends Sink {
  readersOpened = 0;
  override reader(stream: string) {
    this.readersOpened++;
    return super.reader(stream);
  }
}

describe("Sink.tree", () => {
  it("gives the proofs, roots and records the whole tree gives, without opening a reader", async () => {
    // Prepare: 1,300 records in segments of 37 (five full level-0 tiles and a partial one)
    const ports = memoryPorts();
    const sink = new CountingSink({ deployment: DEPLOYMENT, ...ports });
    await fill(sink, ports, "s", 1300, 37);
    const tree = sink.tree("s");

    // Act
    const cases = [
      [0, 1300],
      [1, 1300],
      [256, 1300],
      [300, 1299],
      [1024, 1280],
      [37, 37],
    ] as const;
    const consistency = await Promise.all(cases.map(([m, n]) => tree.consistencyProof(m, n)));
    const inclusion = await Promise.all([0, 255, 256, 1299].map((i) => tree.inclusionProof(i, 1300)));
    const roots = await Promise.all([1, 256, 700, 1300].map((n) => tree.root(n)));
    const records = await tree.records(250, 262);
    const opened = sink.readersOpened;
    const reader = sink.reader("s");
    await reader.ensure(1300);

    // Assess
    expect(opened).toBe(0);
    expect(consistency).toEqual(cases.map(([m, n]) => reader.consistencyProof(m, n)));
    expect(inclusion).toEqual([0, 255, 256, 1299].map((i) => reader.inclusionProof(i, 1300)));
    expect(roots).toEqual([1, 256, 700, 1300].map((n) => reader.root(n)));
    expect(records.map((r) => r.record.index)).toEqual(Array.from({ length: 12 }, (_, i) => 250 + i));
    expect(records.map((r) => r.hash)).toEqual((await reader.records(250, 262)).map((r) => r.hash));
  });

  it("keeps what it built between requests: a proof against a newer size reads only the records since", async () => {
    // Prepare: 1,300 records in segments of 37 (five full level-0 tiles stored, the level-1 tile above them is
    // built from them), then a proof as a client asks for one after a delivery
    const ports = memoryPorts();
    const read: string[] = [];
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports, objects: recordingReads(ports.objects, read) });
    await fill(sink, ports, "s", 1300, 37);
    const first = await sink.tree("s").consistencyProof(100, 1300);
    await fill(sink, ports, "s", 20, 1, "u");
    read.length = 0;

    // Act: the next delivery's proof, 1,300 → 1,320, as a new request
    const next = await sink.tree("s").consistencyProof(1300, 1320);
    const reads = [...read];
    const again = await sink.tree("s").consistencyProof(100, 1320);

    // Assess: equal to the whole tree's; no stored level-0 tile read again, and of the records only those since
    const reader = sink.reader("s");
    await reader.ensure(1320);
    expect(first).toEqual(reader.consistencyProof(100, 1300));
    expect(next).toEqual(reader.consistencyProof(1300, 1320));
    expect(again).toEqual(reader.consistencyProof(100, 1320));
    const tilesRead = reads.filter((k) => k.startsWith(tilePrefix("s")));
    for (let i = 0; i < 5; i++)
      expect(tilesRead).not.toContain(tileKey("s", { level: 0, index: i, width: 256 }));
    const segmentsRead = reads
      .filter((k) => k.startsWith(segmentPrefix("s")))
      .map((k) => Number(k.slice(-20)));
    expect(segmentsRead.length).toBeGreaterThan(0);
    expect(Math.min(...segmentsRead)).toBeGreaterThanOrEqual(1300);
  });

  it("builds the same tiles from a cache too small to keep them", async () => {
    // Prepare: 1,300 records; one cache that keeps one root and one tile's record hashes, one that keeps all
    const ports = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    await fill(sink, ports, "s", 1300, 37);
    const tiny = new StoreTiles(ports.objects, "s", new TileCache(1, 1));
    const roomy = new StoreTiles(ports.objects, "s", new TileCache());
    const tiles = [
      { level: 1, index: 0, width: 5 },
      { level: 0, index: 5, width: 10 },
      { level: 0, index: 5, width: 20 },
      { level: "entries", index: 5, width: 20 },
      { level: 0, index: 2, width: 7 },
      { level: 1, index: 0, width: 3 },
    ] as const;

    // Act: each tile twice through each cache, in turn
    const built = [];
    for (const t of [...tiles, ...tiles]) built.push([await tiny.tile(t), await roomy.tile(t)]);
    const fresh = await Promise.all(tiles.map((t) => new StoreTiles(ports.objects, "s").tile(t)));

    // Assess
    for (const [i, [a, b]] of built.entries()) {
      expect(Buffer.from(a!)).toEqual(Buffer.from(fresh[i % tiles.length]!));
      expect(Buffer.from(b!)).toEqual(Buffer.from(fresh[i % tiles.length]!));
    }
  });

  it("falls back to the reader when the tiles are not stored and building them would pass the budget", async () => {
    // Prepare: tiles off, 17,000 records — a level-1 tile of width 66 would need 16,896 records rebuilt
    const ports = memoryPorts();
    const sink = new CountingSink({
      deployment: DEPLOYMENT,
      ...ports,
      tiles: false,
      maxSegmentRecords: 1000,
    });
    await fill(sink, ports, "s", 17_000, 1000);
    const tiles = new StoreTiles(ports.objects, "s");

    // Act
    const direct = await tiles.tile({ level: 1, index: 0, width: 66 }).catch((e: unknown) => e);
    const small = await tiles.tile({ level: 0, index: 3, width: 256 });
    const proof = await sink.tree("s").consistencyProof(300, 17_000);

    // Assess
    expect(direct).toBeInstanceOf(StoreError);
    expect((direct as Error).message).toMatch(/not stored yet/);
    expect(small.length).toBe(256 * 32);
    expect(tileRange({ level: 1, index: 0, width: 66 }).end).toBe(16_896);
    expect(sink.readersOpened).toBe(1);
    expect(proof).toEqual(sink.reader("s").consistencyProof(300, 17_000));
  });

  it("names the stored segment that contradicts the signed size: one missing, or one cut short", async () => {
    // Prepare: three segments of 3 records (0, 3, 6); two copies of the store, one losing segment 3, one whose
    // segment 0 lost its last line
    const missing = memoryPorts();
    const sink = new Sink({ deployment: DEPLOYMENT, ...missing });
    await fill(sink, missing, "s", 9, 3);
    const short = memoryPorts();
    for (const [k, v] of missing.objects.objects) short.objects.objects.set(k, v);
    missing.objects.objects.delete(segmentKey("s", 3));
    const first = Buffer.from(short.objects.objects.get(segmentKey("s", 0))!).toString("utf8");
    short.objects.objects.set(
      segmentKey("s", 0),
      Buffer.from(`${first.split("\n").slice(0, 2).join("\n")}\n`),
    );

    // Act
    const gap = await new StoreTiles(missing.objects, "s").segments(0, 9).catch((e: unknown) => e);
    const cut = await new StoreTiles(short.objects, "s").segments(0, 9).catch((e: unknown) => e);

    // Assess: each is the store contradicting itself, at the segment that ends too early
    expect(gap).toBeInstanceOf(IntegrityError);
    expect(gap).toMatchObject({
      code: "stored-object-corrupt",
      where: { stream: "s", at: segmentKey("s", 0) },
    });
    expect((gap as Error).message).toContain(`segment ${segmentKey("s", 0)} ends at record 3`);
    expect(cut).toBeInstanceOf(IntegrityError);
    expect(cut).toMatchObject({ where: { at: segmentKey("s", 0) } });
    expect((cut as Error).message).toContain(`segment ${segmentKey("s", 0)} ends at record 2`);
  });
});

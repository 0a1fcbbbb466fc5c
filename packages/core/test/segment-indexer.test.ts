/**
 * The SegmentIndexer port (ports.ts): the writer tells it of every segment it creates or catches up on, once the
 * segment is durable and before the head moves past it, so an index kept outside the store names every record
 * below a head; after a failure between the segment and the index, the next writer's catch-up tells it again.
 */
import { describe, expect, it } from "vitest";
import type { SegmentIndexer } from "../src/ports.ts";
import type { SealedRecord } from "../src/record.ts";
import { segmentKey } from "../src/record.ts";
import { Sink } from "../src/sink.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer } from "./fixtures.ts";

/** Records what it is told, with the stored head's size and whether the segment existed at that moment. */
function recordingIndexer(ports: Ports, fail = false) {
  const told: { stream: string; first: number; indexes: number[]; headSize: number; stored: boolean }[] = [];
  const indexer: SegmentIndexer = {
    async indexSegment(stream: string, first: number, records: readonly SealedRecord[]) {
      told.push({
        stream,
        first,
        indexes: records.map((r) => r.record.index),
        headSize: ports.heads.heads.get(stream)?.size ?? 0,
        stored: ports.objects.objects.has(segmentKey(stream, first)),
      });
      if (fail) throw new Error("index unavailable");
    },
  };
  return { told, indexer };
}

describe("SegmentIndexer", () => {
  it("is told of each segment after it is stored and before the head moves past it", async () => {
    // Prepare
    const ports = memoryPorts();
    const { told, indexer } = recordingIndexer(ports);
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports, indexer });
    const agent = producer(ports, "agent");
    // Act
    await sink.submit("s", [agent.event("1"), agent.event("2")]);
    await sink.submit("s", [agent.event("3")]);
    // Assess: the `_system` stream's creation record, then the two segments of s.
    expect(told.map(({ stream, first, indexes }) => ({ stream, first, indexes }))).toEqual([
      { stream: "_system", first: 0, indexes: [0] },
      { stream: "s", first: 0, indexes: [0, 1] },
      { stream: "s", first: 2, indexes: [2] },
    ]);
    for (const t of told) {
      expect(t.stored).toBe(true);
      expect(t.headSize).toBe(t.first);
    }
    expect(ports.heads.heads.get("s")!.size).toBe(3);
  });

  it("a failure leaves the head behind the segment, and the next writer's catch-up tells the index again", async () => {
    // Prepare
    const ports = memoryPorts();
    const agent = producer(ports, "agent");
    await new Sink({ deployment: DEPLOYMENT, ...ports }).submit("s", [agent.event("0")]);
    const failing = recordingIndexer(ports, true);
    const crashed = new Sink({ deployment: DEPLOYMENT, ...ports, indexer: failing.indexer });
    const events = [agent.event("1"), agent.event("2")];
    // Act
    const error = await crashed.submit("s", events).then(
      () => undefined,
      (e: unknown) => e,
    );
    const headAfterFailure = ports.heads.heads.get("s")!.size;
    const working = recordingIndexer(ports);
    const next = new Sink({ deployment: DEPLOYMENT, ...ports, indexer: working.indexer });
    const receipts = await next.submit("s", events);
    // Assess
    expect((error as Error).message).toBe("index unavailable");
    expect(ports.objects.objects.has(segmentKey("s", 1))).toBe(true);
    expect(headAfterFailure).toBe(1);
    expect(working.told.map(({ stream, first, indexes }) => ({ stream, first, indexes }))).toEqual([
      { stream: "s", first: 1, indexes: [1, 2] },
    ]);
    expect(receipts.map((r) => r.index)).toEqual([1, 2]); // replays of the records already stored
    expect(ports.heads.heads.get("s")!.size).toBe(3);
  });
});

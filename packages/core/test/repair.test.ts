/**
 * Repair after a kill left the head behind (issue 16): the writer folds in only the segments past the stored
 * head — the unsealed tail — and signs the missing checkpoint from the frontier, never re-reading the stream.
 */
import { describe, expect, it } from "vitest";
import { verifyStoredStream } from "../src/fetch.ts";
import { checkpointKey, parseStoreKey } from "../src/record.ts";
import { Sink } from "../src/sink.ts";
import { DEPLOYMENT, memoryPorts, producer, recordingReads } from "./fixtures.ts";

describe("repair from the stored frontier", () => {
  it("reads only the segments past the head and signs the missing checkpoint without reading the stream", async () => {
    // Prepare: 40 segments; then the head is put back 2 segments and the newest checkpoint removed, as a kill
    // between creating a segment and advancing the head (and signing) leaves them.
    const ports = memoryPorts();
    const writer = new Sink({ deployment: DEPLOYMENT, ...ports });
    const agent = producer(ports, "agent");
    for (let i = 0; i < 38; i++) await writer.submit("s", [agent.event(`a${i}`), agent.event(`b${i}`)]);
    const behind = structuredClone(ports.heads.heads.get("s")!);
    for (let i = 38; i < 40; i++) await writer.submit("s", [agent.event(`a${i}`), agent.event(`b${i}`)]);
    ports.heads.heads.set("s", behind);
    ports.objects.objects.delete(checkpointKey("s", 80));
    const read: string[] = [];
    const counting = recordingReads(ports.objects, read);
    // Tiles off here: a writer with tiles also reads back the records after the last full tile (at most 255, and
    // the segment holding the first of them) — bounded, but in this 80-record stream that is every segment.
    const restarted = new Sink({ deployment: DEPLOYMENT, ...ports, objects: counting, tiles: false });
    // Act
    await restarted.commit("s", []);
    // Assess
    const segmentsRead = read.map(parseStoreKey).filter((k) => k?.kind === "segments");
    expect(segmentsRead.every((k) => k!.n >= behind.size)).toBe(true);
    expect(segmentsRead.length).toBeLessThanOrEqual(3);
    expect(ports.objects.objects.has(checkpointKey("s", 80))).toBe(true);
    expect(ports.heads.heads.get("s")!.size).toBe(80);
    const report = await verifyStoredStream(ports.objects, "s", {
      trusted: [ports.signer.key],
      deployment: DEPLOYMENT,
    });
    expect(report.failures).toEqual([]);
  });
});

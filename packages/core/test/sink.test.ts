import { describe, expect, it } from "vitest";
import type { CheckpointVerdict } from "../src/checkpoint.ts";
import { IngestError } from "../src/errors.ts";
import { verifyStoredStream } from "../src/fetch.ts";
import { canonicalBytes } from "../src/hash.ts";
import type { Head } from "../src/ports.ts";
import { verifyReceipt } from "../src/receipt.ts";
import { segmentKey } from "../src/record.ts";
import { DEPLOYMENT, memoryPorts, newSink, producer } from "./fixtures.ts";

/** One agent's batch of three events committed to `agent-actions` by a new sink; its ports and receipts. */
async function threeCommitted() {
  const ports = memoryPorts();
  const sink = newSink(ports);
  const agent = producer(ports, "agent-1");
  const receipts = await sink.submit("agent-actions", [agent.event("1"), agent.event("2"), agent.event("3")]);
  return { ports, receipts };
}

describe("Sink.submit", () => {
  it("commits a batch and returns a receipt per event that verifies offline", async () => {
    // Act
    const { ports, receipts } = await threeCommitted();
    // Assess
    expect(receipts.map((r) => r.index)).toEqual([0, 1, 2]);
    for (const r of receipts) {
      expect(verifyReceipt(r, { trusted: [ports.signer.key], deployment: DEPLOYMENT })).toMatchObject({
        ok: true,
      });
    }
    const report = await verifyStoredStream(ports.objects, "agent-actions", {
      trusted: [ports.signer.key],
      deployment: DEPLOYMENT,
    });
    expect(report.failures).toEqual([]);
    expect(report.records).toBe(3);
  });

  it("a batch's receipts share one checkpoint, opened once through the caller's memo; a forged one is still refused", async () => {
    // Prepare
    const { ports, receipts } = await threeCommitted();
    const opened = new Map<string, CheckpointVerdict>();
    const check = { trusted: [ports.signer.key], deployment: DEPLOYMENT, opened };
    const forged = { ...receipts[1]!, checkpoint: receipts[1]!.checkpoint.replace("\n3\n", "\n4\n") };

    // Act
    const verdicts = receipts.map((r) => verifyReceipt(r, check));
    const forgedVerdict = verifyReceipt(forged, check);

    // Assess
    expect(verdicts.map((v) => v.ok)).toEqual([true, true, true]);
    expect([...opened.keys()]).toEqual([receipts[0]!.checkpoint, forged.checkpoint]);
    expect(forged.checkpoint).not.toBe(receipts[1]!.checkpoint);
    expect(forgedVerdict).toMatchObject({ ok: false, code: "receipt-checkpoint-invalid" });
  });

  it("stores each record in its RFC 8785 form, built around the bytes admission canonicalized", async () => {
    // Prepare: members in producer order, with names and values that need care (escapes, __proto__, numbers).
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent-1");
    const data = JSON.parse(
      '{"z":[1e21,-0,0.1],"__proto__":{"é":"\\u2028"},"10":"ten","2":"two","a\\"b":null}',
    );
    // Act
    await sink.submit("s", [agent.event("1", data), agent.event("2", { b: 1, a: 2 })]);
    // Assess: every line is the canonical form of the record it parses to, and holds the event's member as sent.
    const lines = Buffer.from(ports.objects.objects.get(segmentKey("s", 0))!)
      .toString("utf8")
      .split("\n")
      .slice(0, -1);
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(canonicalBytes(JSON.parse(line)).toString("utf8")).toBe(line);
    expect(canonicalBytes(JSON.parse(lines[0]!).event.data).equals(canonicalBytes(data))).toBe(true);
    expect(Object.hasOwn(JSON.parse(lines[0]!).event.data, "__proto__")).toBe(true);
  });

  it("returns the original record for a replayed source+id and writes nothing new", async () => {
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent-1");
    const [first] = await sink.submit("s", [agent.event("1")]);
    await sink.submit("s", [agent.event("2")]);
    const [again] = await sink.submit("s", [agent.event("1")]);
    expect(again!.index).toBe(first!.index);
    expect(again!.recordHash).toBe(first!.recordHash);
    expect(verifyReceipt(again!, { trusted: [ports.signer.key] }).ok).toBe(true);
    expect(ports.objects.objects.has(segmentKey("s", 2))).toBe(false);
  });

  it("rejects a reused id with other content, and changes nothing", async () => {
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent-1");
    await sink.submit("s", [agent.event("1", { a: 1 })]);
    const before = ports.objects.objects.size;
    await expect(sink.submit("s", [agent.event("1", { a: 2 })])).rejects.toMatchObject({
      code: "id-conflict",
    });
    expect(ports.objects.objects.size).toBe(before);
  });

  it.each([
    ["unknown producer", "unknown-producer"],
    ["bad signature", "bad-signature"],
    ["revoked key", "revoked-key"],
    ["stream not allowed", "stream-not-allowed"],
    ["malformed event", "invalid-event"],
  ])("refuses a %s with %s and writes nothing", async (_, code) => {
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent-1", "ecdsa-p256", ["allowed"]);
    const stranger = producer(memoryPorts(), "stranger");
    let stream = "allowed";
    let event: unknown = agent.event("1");
    if (code === "unknown-producer") event = stranger.event("1");
    if (code === "bad-signature") event = { ...agent.event("1"), type: "tampered" };
    if (code === "revoked-key") [...ports.producers.keys.values()][0]!.revoked = true;
    if (code === "stream-not-allowed") stream = "other";
    if (code === "invalid-event") event = { ...agent.event("1"), time: "yesterday" };
    const error = await sink.submit(stream, [agent.event("0"), event]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IngestError);
    expect((error as IngestError).code).toBe(code);
    if (code === "invalid-event") expect((error as IngestError).field).toBe("events[1].time");
    expect(ports.objects.objects.size).toBe(0);
  });

  it("repairs after a writer crashed between storing a segment and moving the head", async () => {
    // Prepare: a writer whose head store fails for stream s after the segment is stored (the stream's creation,
    // recorded in _system before its first segment, goes through).
    const ports = memoryPorts();
    const agent = producer(ports, "agent-1");
    const crashing = newSink({
      ...ports,
      heads: Object.assign(Object.create(ports.heads), {
        advance: (stream: string, expected: number, next: Head) =>
          stream === "s" ? Promise.reject(new Error("crash")) : ports.heads.advance(stream, expected, next),
      }),
    });
    await expect(crashing.submit("s", [agent.event("1"), agent.event("2")])).rejects.toThrow("crash");
    expect(ports.objects.objects.has(segmentKey("s", 0))).toBe(true);
    // Act: a fresh writer takes over, and the producer retries.
    const sink = newSink(ports);
    const retried = await sink.submit("s", [agent.event("1"), agent.event("2")]);
    const next = await sink.submit("s", [agent.event("3")]);
    // Assess
    expect(retried.map((r) => r.index)).toEqual([0, 1]);
    expect(next[0]!.index).toBe(2);
    expect((await ports.heads.get("s"))!.size).toBe(3);
    const report = await verifyStoredStream(ports.objects, "s", {
      trusted: [ports.signer.key],
      head: (await ports.heads.get("s"))!,
    });
    expect(report.failures).toEqual([]);
  });
});

describe("concurrent writers on one stream", () => {
  it("8 writers × 50 batches make one contiguous chain with no duplicates, and every receipt verifies", async () => {
    // Prepare: 8 independent sinks (as 8 Lambda instances) over the same stores.
    const ports = memoryPorts();
    let lostRaces = 0;
    const put = ports.objects.putIfAbsent.bind(ports.objects);
    ports.objects.putIfAbsent = async (key, bytes) => {
      const created = await put(key, bytes);
      if (!created) lostRaces++;
      return created;
    };
    const agents = Array.from({ length: 8 }, (_, w) => producer(ports, `agent-${w}`));
    const sinks = agents.map(() => newSink(ports));
    // Act
    const receipts = (
      await Promise.all(
        sinks.map(async (sink, w) => {
          const mine = [];
          for (let b = 0; b < 50; b++) {
            const batch = Array.from({ length: 3 }, (_, e) => agents[w]!.event(`${b}-${e}`));
            mine.push(...(await sink.submit("shared", batch)));
          }
          return mine;
        }),
      )
    ).flat();
    // Assess
    const indexes = receipts.map((r) => r.index).sort((a, b) => a - b);
    expect(indexes).toEqual(Array.from({ length: 8 * 50 * 3 }, (_, i) => i));
    for (const r of receipts)
      expect(verifyReceipt(r, { trusted: [ports.signer.key], deployment: DEPLOYMENT }).ok).toBe(true);
    const report = await verifyStoredStream(ports.objects, "shared", {
      trusted: [ports.signer.key],
      deployment: DEPLOYMENT,
      receipts,
      head: (await ports.heads.get("shared"))!,
    });
    expect(report.failures).toEqual([]);
    expect(report.records).toBe(1200);
    expect(lostRaces).toBeGreaterThan(0); // the writers really did collide and recover
  });
});

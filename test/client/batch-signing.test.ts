/**
 * Batch-signed envelopes end to end (docs/FORMAT.md §3b): the SDK signs each batch once, the running embedded
 * sink checks one signature per batch and every event's membership, refuses forgeries with a problem naming the
 * event and stores nothing, and `auditsink verify` re-checks every producer signature offline.
 */
import { join } from "node:path";
import { generateKeyPair, parseSigbatch, type Receipt, type SignedEvent, signBatch } from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, clientOf, registerProducer, startSink, tempDir } from "../cli/helpers.ts";

let sink: EmbeddedSink;
let dataDir: string;
const producer = generateKeyPair("ed25519");

beforeAll(async () => {
  dataDir = join(await tempDir("auditsink-batch-sign-"), "data");
  sink = await startSink(dataDir);
  await registerProducer(sink, "support-bot", producer.publicKey);
});

afterAll(async () => {
  await sink?.close();
});

const client = (stream: string, options: { signing?: "batch" | "event" } = {}) =>
  clientOf(sink, producer.privateKey, {
    stream,
    source: "agent://support-bot",
    batch: { maxEvents: 25, lingerMs: 50 },
    ...options,
  });

/** The events a stream holds, as stored (its checkpoint's size, then GET /v1/streams/{stream}/records). */
async function storedEvents(stream: string): Promise<SignedEvent[]> {
  const head = await fetch(`${sink.url}/v1/streams/${stream}/checkpoint`, {
    headers: { accept: "application/json" },
  });
  if (head.status === 404) return [];
  const { size } = (await head.json()) as { size: number };
  const res = await fetch(`${sink.url}/v1/streams/${stream}/records?from=0&to=${size}`);
  expect(res.status).toBe(200);
  const body = (await res.json()) as { records: { record: { event: SignedEvent } }[] };
  return body.records.map((r) => r.record.event);
}

const post = (stream: string, events: unknown[]) =>
  fetch(`${sink.url}/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ events }),
  });

const unsigned = (i: number) => ({
  specversion: "1.0" as const,
  id: `raw-${i}`,
  source: "agent://support-bot",
  type: "ai.agent.tool_call",
  time: "2026-11-28T12:00:00.000Z",
  data: { n: i },
});

describe("the SDK signing batches", () => {
  it("signs a batch of several events once and a lone event on its own, and every receipt verifies", async () => {
    // Prepare
    const c = await client("agents.batched");
    // Act: 50 events (two batches of 25), then one alone.
    const receipts = await Promise.all(
      Array.from({ length: 50 }, (_, n) => c.send({ type: "ai.agent.tool_call", data: { n } })),
    );
    const lone = await c.send({ type: "ai.agent.decision", data: { alone: true } });
    await c.close();
    // Assess
    expect(receipts.map((r) => r.index).sort((a, b) => a - b)).toEqual([...Array(50).keys()]);
    expect(lone.index).toBe(50);
    const stored = await storedEvents("agents.batched");
    expect(stored).toHaveLength(51);
    const batches = new Set(stored.slice(0, 50).map((e) => e.signature));
    expect(batches.size).toBe(2);
    for (const e of stored.slice(0, 50)) expect(parseSigbatch(e.sigbatch)?.size).toBe(25);
    expect(stored[50]!.sigbatch).toBeUndefined();
  });

  it("signs each event on its own when asked to", async () => {
    const c = await client("agents.per-event", { signing: "event" });
    await Promise.all(
      Array.from({ length: 5 }, (_, n) => c.send({ type: "ai.agent.tool_call", data: { n } })),
    );
    await c.close();
    const stored = await storedEvents("agents.per-event");
    expect(stored).toHaveLength(5);
    expect(stored.every((e) => e.sigbatch === undefined)).toBe(true);
    expect(new Set(stored.map((e) => e.signature)).size).toBe(5);
  });

  it("resends the batch-signed bytes when the same id is sent again, and gets the original receipt", async () => {
    const c = await client("agents.resend");
    const [first] = await Promise.all([
      c.send({ type: "ai.agent.tool_call", id: "call-1", time: "2026-11-28T12:00:00.000Z" }),
      c.send({ type: "ai.agent.tool_call", id: "call-2", time: "2026-11-28T12:00:00.000Z" }),
    ]);
    const again = await c.send({
      type: "ai.agent.tool_call",
      id: "call-1",
      time: "2026-11-28T12:00:00.000Z",
    });
    await c.close();
    expect(again).toEqual(first);
    const stored = await storedEvents("agents.resend");
    expect(stored).toHaveLength(2);
    expect(parseSigbatch(stored[0]!.sigbatch)?.size).toBe(2);
  });
});

describe("the sink refusing forged batch-signed events", () => {
  it("answers 401 bad-signature naming the forged event, and stores nothing", async () => {
    const events = signBatch([unsigned(0), unsigned(1), unsigned(2)], producer.privateKey);
    const forged = [events[0], { ...events[1]!, data: { n: 100 } }, events[2]];
    const res = await post("agents.forged", forged);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "bad-signature", field: "events[1].signature" });
    expect(await storedEvents("agents.forged")).toEqual([]);
  });

  it("answers 400 invalid-event for a membership of another form, and stores nothing", async () => {
    const [event] = signBatch([unsigned(0), unsigned(1)], producer.privateKey);
    const res = await post("agents.forged", [{ ...event, sigbatch: `0${event!.sigbatch}` }]);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid-event", field: "events[0].sigbatch" });
    expect(await storedEvents("agents.forged")).toEqual([]);
  });

  it("answers 401 for an event moved to another position of its batch, and stores nothing", async () => {
    const events = signBatch([unsigned(0), unsigned(1), unsigned(2), unsigned(3)], producer.privateKey);
    const moved = { ...events[0]!, sigbatch: events[1]!.sigbatch };
    const res = await post("agents.forged", [moved]);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "bad-signature", field: "events[0].signature" });
    expect(await storedEvents("agents.forged")).toEqual([]);
  });

  it("replays an event taken out of its batch and refuses its id in another envelope (409 id-conflict)", async () => {
    const events = signBatch([unsigned(0), unsigned(1), unsigned(2)], producer.privateKey);
    const first = await post("agents.extracted", events);
    expect(first.status).toBe(200);
    const { receipts } = (await first.json()) as { receipts: Receipt[] };
    const alone = await post("agents.extracted", [events[1]]);
    expect(alone.status).toBe(200);
    expect(((await alone.json()) as { receipts: Receipt[] }).receipts[0]).toMatchObject({
      index: 1,
      recordHash: receipts[1]!.recordHash,
    });
    const other = signBatch([unsigned(1), unsigned(9)], producer.privateKey);
    const conflict = await post("agents.extracted", other);
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ code: "id-conflict" });
    expect(await storedEvents("agents.extracted")).toHaveLength(3);
  });
});

describe("a batch-signed event in CloudEvents binary mode", () => {
  it("carries its membership as the ce-sigbatch header and is accepted", async () => {
    const events = signBatch(
      [0, 1].map((i) => ({ ...unsigned(100 + i), datacontenttype: "application/json" })),
      producer.privateKey,
    );
    const e = events[1]!;
    const res = await fetch(`${sink.url}/v1/streams/agents.binary/events`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...Object.fromEntries(
          ["specversion", "id", "source", "type", "time", "sigkeyid", "signature", "sigbatch"].map((a) => [
            `ce-${a}`,
            String(e[a]),
          ]),
        ),
      },
      body: JSON.stringify(e.data),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await storedEvents("agents.binary")).toEqual([e]);
  });
});

describe("auditsink verify over a log holding batch-signed events", () => {
  it("re-checks every producer signature offline with no failure", async () => {
    // Prepare: batch-signed and per-event events are in the log from the tests above; stop the sink.
    await sink.close();
    const { fingerprint } = sink.local.signingKey;
    // Act
    const clean = await cli(["verify", dataDir, "--fingerprint", fingerprint, "--json"]);
    // Assess
    const report = JSON.parse(clean.out) as {
      ok: boolean;
      producerSignatures: boolean;
      streams: { stream: string; records: number; failures: unknown[] }[];
    };
    expect(clean.code, clean.err).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.producerSignatures).toBe(true);
    expect(report.streams.find((s) => s.stream === "agents.batched")).toMatchObject({
      records: 51,
      failures: [],
    });
  });
});

/**
 * The AWS event index (packages/aws/src/DynamoEventIndex.ts, docs/AWS.md §Finding events) on the emulators: the
 * committing Sink writes one posting per facet value per segment before its head moves; `GET /v1/events` reads
 * postings and only the segments they name, and answers with the stored records.
 */
import { randomUUID } from "node:crypto";
import {
  type AwsRuntime,
  createHttpHandler,
  createSequencerHandler,
  DynamoEventIndex,
  hourBucket,
  MAX_QUERIES_PER_PAGE,
  MAX_SEGMENTS_PER_PAGE,
  postingKey,
  type Reindexed,
  STOP_MARGIN_MS,
} from "@auditsink/aws";
import {
  type EventQuery,
  type FoundEvent,
  foundEvent,
  generateKeyPair,
  readStoredSegment,
  type SignedEvent,
  Sink,
  segmentKey,
  signEvent,
} from "@auditsink/core";
import { PutCommand, QueryCommand } from "@aws-sdk/lib-dynamodb";
import type { APIGatewayProxyResult } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { httpEvent, lambdaContext, type Provisioned, provision, useEmulators } from "./fixtures.ts";
import { injectFaults } from "./sdk-middleware.ts";

let emulators: Emulators;
let p: Provisioned;
let rt: AwsRuntime;
let privateKey: ReturnType<typeof generateKeyPair>["privateKey"];

beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
  p = await provision();
  rt = p.runtime();
  const keys = generateKeyPair("ed25519");
  privateKey = keys.privateKey;
  await rt.producers.register({ id: "fleet", publicKey: keys.publicKey, streams: ["*"] });
});
afterAll(async () => emulators?.stop());

interface Spec {
  agent: string;
  run: string;
  type?: string;
  time?: string;
  trace?: string;
}

function event(spec: Spec): SignedEvent {
  return signEvent(
    {
      specversion: "1.0",
      id: randomUUID(),
      source: `agent://${spec.agent}`,
      type: spec.type ?? "ai.agent.tool_call",
      time: spec.time ?? "2026-11-24T12:00:00.000Z",
      ...(spec.trace ? { traceparent: `00-${spec.trace}-00f067aa0ba902b7-01` } : {}),
      data: { "gen_ai.agent.id": spec.agent, "gen_ai.conversation.id": spec.run },
    },
    privateKey,
  );
}

/** Commits each batch as one segment through the runtime's committing Sink (as the sequencer does). */
async function commit(runtime: AwsRuntime, stream: string, batches: Spec[][]) {
  const { sink } = await runtime.start();
  for (const batch of batches) await sink.submit(stream, batch.map(event));
}

/** Every record of a stream, read from the archive (what results must equal). */
async function stored(stream: string): Promise<FoundEvent[]> {
  const out: FoundEvent[] = [];
  for (let at = 0; ; ) {
    const bytes = await rt.objects.get(segmentKey(stream, at));
    if (!bytes) return out;
    for (const r of readStoredSegment(stream, at, bytes)) {
      out.push(foundEvent(stream, r.record, r.hash));
      at = r.record.index + 1;
    }
  }
}

/** Follows cursors to the end; returns every event and the number of pages. */
async function all(index: DynamoEventIndex, query: Omit<EventQuery, "limit">, limit = 100) {
  const events: FoundEvent[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await index.find({ ...query, limit, ...(cursor ? { cursor } : {}) });
    events.push(...page.events);
    cursor = page.cursor;
    pages++;
  } while (cursor && pages < 100);
  return { events, pages };
}

const postings = async (pk: string) =>
  (
    await rt.clients.doc.send(
      new QueryCommand({
        TableName: p.settings.eventIndexTable,
        KeyConditionExpression: "pk = :p",
        ExpressionAttributeValues: { ":p": pk },
      }),
    )
  ).Items ?? [];

describe("postings", () => {
  it("are written at commit, one per facet value per segment, naming the records that carry it", async () => {
    // Prepare
    const stream = `postings-${randomUUID().slice(0, 8)}`;
    // Act: one segment of 5 events: 2 agents, 2 runs, 2 types, one producer time hour.
    await commit(rt, stream, [
      [
        { agent: "pa-1", run: "pr-1" },
        { agent: "pa-2", run: "pr-2", type: "ai.agent.reply" },
        { agent: "pa-1", run: "pr-1" },
        { agent: "pa-1", run: "pr-1" },
        { agent: "pa-2", run: "pr-2" },
      ],
    ]);
    // Assess
    const agent1 = await postings(postingKey("agent", "pa-1"));
    expect(agent1).toHaveLength(1);
    expect(agent1[0]).toMatchObject({ sk: `${stream}#${"0".padStart(20, "0")}`, ix: "0,2-3" });
    expect((await postings(postingKey("agent", "pa-2")))[0]).toMatchObject({ ix: "1,4" });
    expect((await postings(postingKey("type", "ai.agent.reply")))[0]).toMatchObject({ ix: "1" });
    const hour = (await postings(postingKey("time", "2026-11-24T12"))).filter((i) => i.sk.startsWith(stream));
    expect(hour).toMatchObject([{ ix: "0-4", t0: Date.parse("2026-11-24T12:00:00.000Z") }]);
    // Source postings carry one id digest (6 hex) per record.
    expect(String((await postings(postingKey("source", "agent://pa-1")))[0]!.ih)).toHaveLength(18);
  });
});

describe("GET /v1/events on AWS", () => {
  const a = `a-${randomUUID().slice(0, 6)}`;
  const b = `b-${randomUUID().slice(0, 6)}`;
  const streams = [`q1-${a}`, `q2-${a}`];
  const trace = "4bf92f3577b34da6a3ce929d0e0e4736".replace(/^..../, a.slice(2, 6).padEnd(4, "0"));

  beforeAll(async () => {
    // Two streams, three segments each: agent a appears in segments of both streams, b only in the first.
    for (const [k, stream] of streams.entries()) {
      await commit(rt, stream, [
        [
          { agent: a, run: `${a}-r1`, time: "2026-11-24T10:15:00Z" },
          { agent: b, run: `${b}-r1`, time: "2026-11-24T10:20:00Z", type: "ai.agent.reply" },
          { agent: a, run: `${a}-r1`, time: "2026-11-24T10:25:00Z", trace: k === 0 ? trace : undefined },
        ],
        [{ agent: b, run: `${b}-r2`, time: "2026-11-24T11:05:00Z" }],
        [
          { agent: a, run: `${a}-r2`, time: "2026-11-24T12:30:00Z", type: "ai.agent.reply" },
          { agent: a, run: `${a}-r2`, time: "2026-11-24T13:45:00Z" },
        ],
      ]);
    }
  });

  const expected = async (pred: (e: FoundEvent) => boolean) =>
    (await Promise.all(streams.map(stored))).flat().filter(pred);
  const data = (e: FoundEvent) => e.event.data as Record<string, string>;

  it("finds by agent, run, type, trace id and time windows, and every result is the stored record", async () => {
    // Act
    const byAgent = await all(rt.events, { agent: a });
    const byRun = await all(rt.events, { run: `${b}-r1` });
    const byType = await all(rt.events, { type: "ai.agent.reply", agent: a });
    const byTrace = await all(rt.events, { traceId: trace });
    const byWindow = await all(rt.events, { since: "2026-11-24T10:20:00Z", until: "2026-11-24T12:31:00Z" });
    const byAgentWindow = await all(rt.events, { agent: a, since: "2026-11-24T12:00:00Z" });
    // Assess: the same records, in stream then index order, as reading the archive finds.
    expect(byAgent.events).toEqual(await expected((e) => data(e)["gen_ai.agent.id"] === a));
    expect(byAgent.events).toHaveLength(8);
    expect(byRun.events).toEqual(await expected((e) => data(e)["gen_ai.conversation.id"] === `${b}-r1`));
    expect(byType.events).toEqual(
      await expected((e) => e.event.type === "ai.agent.reply" && data(e)["gen_ai.agent.id"] === a),
    );
    expect(byTrace.events.map((e) => [e.stream, e.index])).toEqual([[streams[0], 2]]);
    const inWindow = (e: FoundEvent) => {
      const t = Date.parse(e.event.time);
      return t >= Date.parse("2026-11-24T10:20:00Z") && t < Date.parse("2026-11-24T12:31:00Z");
    };
    // A window without a facet is answered hour by hour (then stream, index); it also holds other tests' events
    // of those hours: compare the ones of these streams.
    const hourly = (await expected(inWindow)).sort(
      (x, y) =>
        hourBucket(Date.parse(x.event.time)).localeCompare(hourBucket(Date.parse(y.event.time))) ||
        x.stream.localeCompare(y.stream) ||
        x.index - y.index,
    );
    expect(byWindow.events.filter((e) => streams.includes(e.stream))).toEqual(hourly);
    expect(byAgentWindow.events.map((e) => e.event.time)).toEqual([
      "2026-11-24T12:30:00Z",
      "2026-11-24T13:45:00Z",
      "2026-11-24T12:30:00Z",
      "2026-11-24T13:45:00Z",
    ]);
  });

  it("pages with cursors across segments and streams, and a received-time window finds the same", async () => {
    // Act
    const whole = await all(rt.events, { agent: a });
    const paged = await all(rt.events, { agent: a }, 3);
    const received = await all(rt.events, {
      agent: a,
      receivedSince: new Date(Date.now() - 3_600_000).toISOString(),
    });
    const reported: unknown[] = [];
    const reporting = new DynamoEventIndex(rt.clients.doc, p.settings.eventIndexTable, rt.objects, {
      onMismatch: (m) => reported.push(m),
    });
    const byReceivedOnly = await all(reporting, {
      receivedSince: new Date(Date.now() - 600_000).toISOString(),
    });
    // Assess
    expect(paged.pages).toBe(3);
    expect(paged.events).toEqual(whole.events);
    expect(received.events).toEqual(whole.events);
    const mine = byReceivedOnly.events.filter((e) => streams.includes(e.stream));
    expect(mine).toEqual(await expected(() => true));
    // The sink's own `_system` stream (each new stream's creation) is indexed like any other.
    expect(byReceivedOnly.events.some((e) => e.stream === "_system")).toBe(true);
    expect(reported).toEqual([]);
  });

  it("refuses a forged, tampered or foreign cursor, and a query it cannot answer from an index, with a 400", async () => {
    // Prepare
    const http = createHttpHandler(rt) as unknown as (
      e: unknown,
      c: unknown,
    ) => Promise<APIGatewayProxyResult>;
    const get = (query: string) =>
      http(httpEvent("GET", "/v1/events", undefined, { iam: true, query }), lambdaContext());
    const first = await rt.events.find({ agent: a, limit: 2 });
    const parts = JSON.parse(Buffer.from(first.cursor!, "base64url").toString("utf8")) as unknown[];
    const forge = (edit: (x: unknown[]) => unknown[]) =>
      Buffer.from(JSON.stringify(edit([...parts])), "utf8").toString("base64url");
    // Act
    const answers = await Promise.all(
      [
        `agent=${a}&cursor=not-a-cursor`,
        `agent=${b}&cursor=${first.cursor}`, // another query's cursor
        `agent=${a}&cursor=${forge((x) => [x[0], x[1], 7, x[3], x[4]])}`, // a list the query does not have
        `agent=${a}&cursor=${forge((x) => [x[0], x[1], x[2], "../x#1", x[4]])}`,
        `agent=${a}&cursor=${forge((x) => [x[0], x[1], x[2], x[3], -5])}`,
        `agent=${a}&cursor=${forge((x) => [x[0], x[1], x[2], { pk: "agent#x" }, x[4]])}`,
        "", // nothing to drive the query by
        "since=2020-01-01T00:00:00Z", // a window of years without a facet
      ].map(get),
    );
    const next = await get(`agent=${a}&limit=2&cursor=${first.cursor}`);
    // Assess
    for (const answer of answers) {
      expect(answer.statusCode, answer.body).toBe(400);
      expect(answer.headers?.["content-type"]).toMatch(/problem\+json/);
      expect(JSON.parse(answer.body).detail).toMatch(/cursor|index|window/);
    }
    expect(next.statusCode, next.body).toBe(200);
    expect(JSON.parse(next.body).events).toHaveLength(2);
  });

  it("returns no record a posting does not match, and reports each such posting", async () => {
    // Prepare: postings for agent a naming a record of agent b, a missing offset, and a missing segment.
    const reported: { reason: string }[] = [];
    const index = new DynamoEventIndex(rt.clients.doc, p.settings.eventIndexTable, rt.objects, {
      onMismatch: (m) => reported.push(m),
    });
    const put = (sk: string, ix: string) =>
      rt.clients.doc.send(
        new PutCommand({
          TableName: p.settings.eventIndexTable,
          Item: { pk: postingKey("agent", a), sk, ix, t0: 0, t1: 0, r0: 0, r1: 0 },
        }),
      );
    const tampered = `tampered-${a}`;
    await commit(rt, tampered, [[{ agent: b, run: "x" }]]);
    await put(`${tampered}#${"0".padStart(20, "0")}`, "0,5");
    await put(`${tampered}#${"9".padStart(20, "0")}`, "0");
    // Act
    const found = await all(index, { agent: a });
    // Assess
    expect(found.events).toEqual(await expected((e) => data(e)["gen_ai.agent.id"] === a));
    expect(reported.map((r) => r.reason).sort()).toEqual([
      "the posting names no stored record",
      "the posting names no stored record",
      "the stored record does not match",
    ]);
  });
});

describe("repair", () => {
  it("a crash between the segment and its postings is repaired by the next writer's catch-up", async () => {
    // Prepare: the item writes after the segment is created (postings, dedup entries) never happen: a Lambda that
    // dies there.
    const stream = `crash-${randomUUID().slice(0, 8)}`;
    const agent = `c-${randomUUID().slice(0, 6)}`;
    await commit(rt, stream, [[{ agent, run: "before" }]]);
    const crashing = p.runtime();
    const crashes = injectFaults(crashing.clients.dynamo, {
      kind: "crash",
      command: "PutItemCommand",
      when: () => true,
    });
    const { sink } = await crashing.start();
    const lost = [event({ agent, run: "lost" }), event({ agent, run: "lost" })];
    // Act
    const failed = await sink.submit(stream, lost).then(
      () => undefined,
      (e: unknown) => e,
    );
    const between = await all(rt.events, { agent });
    const next = p.runtime(); // a fresh sequencer: catches up on the segment the crash left behind
    const replay = await (await next.start()).sink.submit(stream, lost);
    const after = await all(rt.events, { agent });
    // Assess
    expect(crashes()).toBeGreaterThan(0);
    expect(failed).toBeInstanceOf(Error);
    expect(await rt.objects.get(segmentKey(stream, 1))).toBeDefined(); // the segment was created
    expect(between.events.map((e) => e.index)).toEqual([0]); // its postings were not
    expect(replay.map((r) => r.index)).toEqual([1, 2]); // the same records, not new ones
    expect(after.events.map((e) => e.index)).toEqual([0, 1, 2]);
    expect(after.events).toEqual(await stored(stream));
  });

  it("a re-indexing invocation of the sequencer writes the postings of segments committed without them", async () => {
    // Prepare: two segments committed by a writer without the index (as before an upgrade).
    const stream = `old-${randomUUID().slice(0, 8)}`;
    const agent = `o-${randomUUID().slice(0, 6)}`;
    const { sink } = await rt.start();
    const unindexed = new Sink({ ...sink.options, indexer: undefined });
    await unindexed.submit(stream, [event({ agent, run: "r" })]);
    await unindexed.submit(stream, [event({ agent, run: "r" }), event({ agent, run: "r" })]);
    const sequencer = createSequencerHandler(p.runtime());
    const before = await all(rt.events, { agent });
    // Act: out of time at once (it says where to go on), then the rest; and a payload that names no stream.
    const stopped = await sequencer({ reindex: stream }, lambdaContext(STOP_MARGIN_MS) as never);
    const resumed = await sequencer(
      { reindex: stream, from: (stopped as Reindexed).next },
      lambdaContext() as never,
    );
    const bad = await sequencer({ reindex: "../x" }, lambdaContext() as never).catch((e: Error) => e.message);
    const after = await all(rt.events, { agent });
    // Assess
    expect(before.events).toEqual([]);
    expect(stopped).toEqual({ reindexed: stream, segments: 0, next: 0 });
    expect(resumed).toEqual({ reindexed: stream, segments: 2 });
    expect(bad).toMatch(/reindex/);
    expect(after.events).toEqual(await stored(stream));
  });

  it("bounds a page's segment reads and DynamoDB Queries, and continues with a cursor", async () => {
    // Prepare: more one-event segments of one agent than a page may read (4 here, MAX_SEGMENTS_PER_PAGE deployed).
    const stream = `wide-${randomUUID().slice(0, 8)}`;
    const agent = `w-${randomUUID().slice(0, 6)}`;
    await commit(
      rt,
      stream,
      Array.from({ length: 10 }, () => [{ agent, run: "r" }]),
    );
    const index = new DynamoEventIndex(rt.clients.doc, p.settings.eventIndexTable, rt.objects, {
      maxSegmentsPerPage: 4,
    });
    // Act: an id no record has (`id` without `source` is checked on the records the agent's postings name).
    const first = await index.find({ agent, id: "none", limit: 10 });
    const rest = await all(index, { agent, id: "none" }, 10);
    const hits = await all(index, { agent }, 3);
    // A facet-less window of 100 hour buckets with nothing in them: 48 Queries a page at most.
    const empty = await all(index, { since: "2001-01-01T00:00:00Z", until: "2001-01-05T04:00:00Z" });
    // Assess
    expect(MAX_SEGMENTS_PER_PAGE).toBeGreaterThanOrEqual(16);
    expect(first.events).toEqual([]);
    expect(first.cursor).toBeDefined();
    expect(rest.events).toEqual([]);
    expect(rest.pages).toBe(3); // 4 + 4 + 2 segments
    expect(hits.events).toEqual(await stored(stream));
    expect(MAX_QUERIES_PER_PAGE).toBe(48);
    expect(empty).toEqual({ events: [], pages: 3 });
  });
});

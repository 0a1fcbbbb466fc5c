/**
 * Accept, then sequence (docs/AWS.md): ingest writes authenticated events as pending items of their stream and
 * wakes the stream's sequencer unless one holds its lease; the lease holder commits everything pending with one
 * Sink.commit per loop and answers with receipts the HTTP request waits for. All on the emulators (moto S3, KMS,
 * SQS, EventBridge; DynamoDB Local) with the real handlers; Lambda's asynchronous invoke is the in-process
 * SequencerWake port (sequencer-wake.ts).
 */
import { randomUUID } from "node:crypto";
import { gunzipSync } from "node:zlib";
import {
  AwsRuntime,
  type AwsRuntimeOptions,
  createClients,
  createHttpHandler,
  createSequencerHandler,
  DynamoDedupStore,
  forwardQueueBatch,
  type HandOffMessage,
  keys,
  type SequencerDeps,
  type SequencerWake,
  sequenceStream,
  splitParts,
  sweepPending,
} from "@auditsink/aws";
import { type Receipt, type SignedEvent, verifyReceipt, verifyStoredStream } from "@auditsink/core";
import { PutEventsCommand, PutRuleCommand, PutTargetsCommand } from "@aws-sdk/client-eventbridge";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import {
  lambdaContext,
  type Provisioned,
  postEventsEvent,
  provision,
  registerProducer,
  useEmulators,
} from "./fixtures.ts";
import { atomicCreates, injectFaults } from "./sdk-middleware.ts";
import { InProcessWake, type SequencerHandler } from "./sequencer-wake.ts";

let emulators: Emulators;
let p: Provisioned;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
  p = await provision();
});
afterAll(async () => emulators?.stop());

type HttpHandler = (e: APIGatewayProxyEventV2, c: unknown) => Promise<APIGatewayProxyResult>;

/** Lambda as the tests have it: a wake-up runs the real sequencer handler in-process. */
function lambda(options: AwsRuntimeOptions = {}): InProcessWake {
  const wake = new InProcessWake();
  wake.container = () =>
    createSequencerHandler(p.runtime({ ...options, wake })) as unknown as SequencerHandler;
  return wake;
}

const ingestRuntime = (
  wake: SequencerWake,
  options: { waitSeconds?: number; nudgeMs?: number; leaseMs?: number } = {},
) =>
  new AwsRuntime({ ...p.settings, receiptWaitSeconds: options.waitSeconds ?? 25 }, createClients(), {
    handOff: true,
    wake,
    receiptPolling: { firstPollMs: 20, pollMs: 20, nudgeMs: options.nudgeMs ?? 3000 },
    ...(options.leaseMs ? { leaseMs: options.leaseMs } : {}),
  });
const ingestHandler = (rt: AwsRuntime) => createHttpHandler(rt) as unknown as HttpHandler;

/** A wake-up port that only counts (nothing runs). */
const countingWake = () => {
  const woken: string[] = [];
  return { woken, wake: async (stream: string) => void woken.push(stream) };
};

const post = (stream: string, body: unknown) => postEventsEvent(stream, body);

/** Writes one hand-off part as ingest would (no wake-up); returns the part. */
async function pend(rt: AwsRuntime, stream: string, events: unknown[], receipt = true) {
  const [message] = splitParts(randomUUID(), { stream, events: events as SignedEvent[], receipt });
  await rt.pending.put(stream, `${message!.requestId}#0000`, JSON.stringify(message), events.length);
  return message!;
}

async function depsOf(rt: AwsRuntime, wake: SequencerWake = countingWake()): Promise<SequencerDeps> {
  return { ...(await rt.startSequencer()), wake };
}

async function verifyStream(stream: string, receipts: Receipt[] = []) {
  const rt = p.runtime();
  const { signer } = await rt.start();
  const report = await verifyStoredStream(rt.objects, stream, {
    trusted: [signer.key],
    deployment: p.settings.origin,
    receipts,
  });
  for (const r of receipts) expect(verifyReceipt(r, { trusted: [signer.key] }).ok).toBe(true);
  return report;
}

async function answerOf(message: HandOffMessage) {
  const item = await p
    .runtime()
    .clients.doc.send(
      new GetCommand({ TableName: p.settings.ledgerTable, Key: keys.receipt(message.requestId, 0) }),
    );
  return item.Item
    ? (JSON.parse(gunzipSync(item.Item.answer as Uint8Array).toString("utf8")) as Record<string, unknown>)
    : undefined;
}

const receiptsOf = (r: APIGatewayProxyResult) => (JSON.parse(r.body) as { receipts: Receipt[] }).receipts;

describe("HTTP ingest through the sequencer", () => {
  it("answers each request with verifying receipts; concurrent requests share segments", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-seq");
    const wake = lambda();
    const ingest = ingestHandler(ingestRuntime(wake));
    // Act: 12 producers send one event each at once.
    const responses = await Promise.all(
      [...Array(12).keys()].map((i) => ingest(post("seq.http", producer.event(`s-${i}`)), lambdaContext())),
    );
    await wake.settled();
    // Assess
    expect(responses.map((r) => r.statusCode)).toEqual(Array(12).fill(200));
    const receipts = responses.flatMap(receiptsOf);
    expect(receipts.map((r) => r.index).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    const report = await verifyStream("seq.http", receipts);
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(12);
    // Everything pending when a loop reads is one commit: fewer segments than events.
    expect(report.segments).toBeLessThan(12);
    expect(wake.errors).toEqual([]);
    expect(await p.runtime().pending.oldest("seq.http")).toBeUndefined();
    // Each concurrent wake-up that found no lease starts a sequencer container (a cold start: KMS key, head),
    // and the stream's first commit also records its creation in `_system`: slow on emulators under load.
  }, 60_000);

  it("returns the original receipt for a replay inside the dedup window", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-replay");
    const wake = lambda();
    const ingest = ingestHandler(ingestRuntime(wake));
    const event = producer.event("once");
    // Act
    const first = await ingest(post("seq.replay", event), lambdaContext());
    const again = await ingest(post("seq.replay", event), lambdaContext());
    await wake.settled();
    // Assess
    const [a] = receiptsOf(first);
    const [b] = receiptsOf(again);
    expect(again.statusCode).toBe(200);
    expect(b!.index).toBe(a!.index);
    expect(b!.recordHash).toBe(a!.recordHash);
    expect((await verifyStream("seq.replay", [a!, b!])).state.size).toBe(1);
  });

  it("answers 503 when no receipt comes in time, and the retry returns the events' single record", async () => {
    // Prepare: the first request's wake-up is lost (nothing runs).
    const producer = await registerProducer(p.runtime(), "agent-slow");
    const lost = countingWake();
    const event = producer.event("late");
    const wake = lambda();
    // Act
    const timedOut = await ingestHandler(ingestRuntime(lost, { waitSeconds: 1 }))(
      post("seq.slow", event),
      lambdaContext(),
    );
    const retried = await ingestHandler(ingestRuntime(wake))(post("seq.slow", event), lambdaContext());
    await wake.settled();
    // Assess
    expect(lost.woken).toEqual(["seq.slow"]);
    expect(timedOut.statusCode).toBe(503);
    expect(JSON.parse(timedOut.body)).toMatchObject({ code: "unavailable" });
    expect(retried.statusCode).toBe(200);
    expect(receiptsOf(retried)[0]!.index).toBe(0);
    // Both copies were pending; the second commit of the same event is a replay, not a second record.
    expect((await verifyStream("seq.slow")).state.size).toBe(1);
    expect(await p.runtime().pending.oldest("seq.slow")).toBeUndefined();
  });

  it("passes the sequencer's refusal back as the request's problem (key revoked after ingest)", async () => {
    // Prepare: ingest accepted the event, then the key was revoked before the sequencer ran.
    const producer = await registerProducer(p.runtime(), "agent-revoked");
    const message = await pend(p.runtime(), "seq.revoked", [producer.event("r-0")]);
    await p.runtime().producers.revoke("agent-revoked");
    // Act
    const run = await sequenceStream(await depsOf(p.runtime({ producerCacheSeconds: 0 })), "seq.revoked");
    // Assess
    expect(run).toMatchObject({ stopped: "drained", committed: 0, refused: 1 });
    expect(await answerOf(message)).toMatchObject({ error: { code: "revoked-key" } });
    expect(await p.runtime().heads.get("seq.revoked")).toBeUndefined();
    expect(await p.runtime().pending.oldest("seq.revoked")).toBeUndefined();
  });

  it("a waiter whose sequencer died holding the lease wakes a new one once the lease lapses", async () => {
    // Prepare: a sequencer took the stream's lease (600 ms here) and died; ingest sees it held and wakes nobody.
    const producer = await registerProducer(p.runtime(), "agent-orphan");
    const dead = p.runtime({ leaseMs: 600 });
    expect(await dead.lease.acquire("seq.orphan", "dead-sequencer")).toBeDefined();
    const wake = lambda();
    const ingest = ingestHandler(ingestRuntime(wake, { nudgeMs: 200 }));
    // Act
    const response = await ingest(post("seq.orphan", producer.event("o-0")), lambdaContext());
    await wake.settled();
    // Assess: the first wake-up came from the waiter's nudge, after the lease lapsed.
    expect(response.statusCode).toBe(200);
    expect(wake.wakes.length).toBeGreaterThanOrEqual(1);
    expect((await verifyStream("seq.orphan", receiptsOf(response))).state.size).toBe(1);
  });
});

describe("sequencer lease", () => {
  it("duplicate wake-ups run one sequencer; the others find the lease held and stop", async () => {
    // Prepare: ten parts pending, then ten wake-ups of the stream at once.
    const producer = await registerProducer(p.runtime(), "agent-dupwake");
    const rt = p.runtime();
    for (let i = 0; i < 10; i++) await pend(rt, "seq.dupwake", [producer.event(`w-${i}`)]);
    const wake = lambda();
    // Act
    await Promise.all([...Array(10).keys()].map(() => wake.wake("seq.dupwake")));
    await wake.settled();
    // Assess
    const runs = wake.runs as { stopped: string; committed: number }[];
    expect(runs).toHaveLength(10);
    expect(runs.reduce((n, r) => n + r.committed, 0)).toBe(10);
    expect(runs.filter((r) => r.committed > 0)).toHaveLength(1);
    const report = await verifyStream("seq.dupwake");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(10);
  });

  it("two sequencers that both believe they hold the lease still make one chain: the head CAS guards", async () => {
    // Prepare: both run under one owner id, as two runs would after a lease outlived (a paused Lambda, clocks
    // that disagree); S3 creates made atomic (moto's are not, see docs/AWS.md).
    const producer = await registerProducer(p.runtime(), "agent-race");
    const creates = new Map<string, Promise<unknown>>();
    const racer = () => {
      const rt = p.runtime();
      atomicCreates(rt.clients.s3, creates);
      return rt;
    };
    const [a, b] = [racer(), racer()];
    for (let i = 0; i < 6; i++) await pend(a, "seq.race", [producer.event(`r-${i}`)]);
    // Act: both read the same pending items and commit them concurrently.
    const runs = await Promise.all([
      sequenceStream(await depsOf(a), "seq.race", { owner: "both" }),
      sequenceStream(await depsOf(b), "seq.race", { owner: "both" }),
    ]);
    // Assess: every event once, one contiguous chain (the loser's events became replays of the winner's).
    expect(runs.map((r) => r.stopped)).toEqual(["drained", "drained"]);
    const report = await verifyStream("seq.race");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(6);
  });

  it("closes the lost wake-up race: an item written while the lease is still held is committed by its holder", async () => {
    // Prepare: the sequencer's first read finds nothing; just then ingest writes a part and reads the lease
    // (held: it wakes nobody); only then does the sequencer release.
    const producer = await registerProducer(p.runtime(), "agent-lost");
    const rt = p.runtime();
    const ingestWake = countingWake();
    const handOff = ingestRuntime(ingestWake).handOff();
    const deps = await depsOf(rt);
    const take = deps.pending.take.bind(deps.pending);
    let interleaved = false;
    deps.pending = Object.assign(Object.create(deps.pending), {
      take: async (...args: Parameters<typeof take>) => {
        const taken = await take(...args);
        if (taken.length === 0 && !interleaved) {
          interleaved = true;
          await handOff.send([{ stream: "seq.lost", events: [producer.event("l-0")], receipt: false }]);
        }
        return taken;
      },
    });
    // Act
    const run = await sequenceStream(deps, "seq.lost");
    // Assess
    expect(interleaved).toBe(true);
    expect(ingestWake.woken).toEqual([]);
    expect(run).toMatchObject({ stopped: "drained", committed: 1 });
    expect((await verifyStream("seq.lost")).state.size).toBe(1);
    expect(await rt.pending.oldest("seq.lost")).toBeUndefined();
  });

  it("and the other order: ingest that reads the lease after the release wakes a sequencer itself", async () => {
    // Prepare: the part is written between the sequencer's release and its last read.
    const producer = await registerProducer(p.runtime(), "agent-lost2");
    const rt = p.runtime();
    const ingestWake = countingWake();
    const handOff = ingestRuntime(ingestWake).handOff();
    const deps = await depsOf(rt);
    const release = deps.lease.release.bind(deps.lease);
    let interleaved = false;
    deps.lease = Object.assign(Object.create(deps.lease), {
      release: async (stream: string, owner: string) => {
        await release(stream, owner);
        if (!interleaved) {
          interleaved = true;
          await handOff.send([{ stream: "seq.lost2", events: [producer.event("l-0")], receipt: false }]);
        }
      },
    });
    // Act
    const run = await sequenceStream(deps, "seq.lost2");
    // Assess: ingest saw the lease free and woke a sequencer; this one also saw the part and committed it.
    expect(ingestWake.woken).toEqual(["seq.lost2"]);
    expect(run).toMatchObject({ stopped: "drained", committed: 1 });
    expect((await verifyStream("seq.lost2")).state.size).toBe(1);
  });

  it("stops at its deadline with the lease released and wakes a fresh sequencer for what is left", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-deadline");
    const rt = p.runtime();
    await pend(rt, "seq.deadline", [producer.event("d-0")]);
    const self = countingWake();
    // Act
    const run = await sequenceStream(await depsOf(rt, self), "seq.deadline", { deadline: Date.now() });
    // Assess
    expect(run.stopped).toBe("deadline");
    expect(self.woken).toEqual(["seq.deadline"]);
    expect(await rt.lease.held("seq.deadline")).toBe(false);
    expect(await rt.pending.oldest("seq.deadline")).toBeDefined();
    expect(await sequenceStream(await depsOf(rt, self), "seq.deadline")).toMatchObject({ committed: 1 });
  });
});

describe("sequencer failures", () => {
  it("after a crash between the segment and the head write, the next run repairs the head and duplicates nothing", async () => {
    // Prepare: DynamoDB item writes die (the Lambda is gone) after the segment is stored.
    const producer = await registerProducer(p.runtime(), "agent-crash");
    const rt = p.runtime();
    for (let i = 0; i < 3; i++) await pend(rt, "seq.crash", [producer.event(`c-${i}`)]);
    const crashing = p.runtime();
    const crashes = injectFaults(crashing.clients.dynamo, {
      kind: "crash",
      command: "PutItemCommand",
      when: () => true,
    });
    // Act
    const crashed = await sequenceStream(await depsOf(crashing), "seq.crash").catch((e: Error) => e);
    const pendingAfterCrash = await rt.pending.oldest("seq.crash");
    const next = await sequenceStream(await depsOf(p.runtime()), "seq.crash");
    // Assess
    expect(crashes()).toBeGreaterThan(0);
    expect(crashed).toBeInstanceOf(Error);
    expect(pendingAfterCrash).toBeDefined();
    expect(next).toMatchObject({ stopped: "drained", committed: 3 });
    const report = await verifyStream("seq.crash");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(3);
    expect((await p.runtime().heads.get("seq.crash"))!.size).toBe(3);
  });

  it("sends poison pending items to the dead-letter queue at once and still commits the rest of the stream", async () => {
    // Prepare: a good part, an unsigned part nobody waits for, a body that is not gzip, and one that is not a part.
    const producer = await registerProducer(p.runtime(), "agent-poison");
    const rt = p.runtime();
    await pend(rt, "seq.poison", [producer.event("p-0")]);
    await pend(rt, "seq.poison", [{ ...producer.event("p-1"), signature: "AAAA" }], false);
    const raw = (sk: string, body: Uint8Array) =>
      rt.clients.doc.send(
        new PutCommand({
          TableName: p.settings.ledgerTable,
          Item: { ...keys.pending("seq.poison", 0, sk), body },
        }),
      );
    await raw(`${String(Date.now()).padStart(15, "0")}#garbage`, new TextEncoder().encode("{not gzip"));
    await rt.pending.put("seq.poison", "not-a-part", '{"v":1,"__proto__":{"stream":"seq.poison"}}', 1);
    // Act
    const run = await sequenceStream(await depsOf(rt), "seq.poison");
    // Assess
    expect(run).toMatchObject({ stopped: "drained", committed: 1, refused: 1, deadLettered: 3 });
    const dead = await p.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: p.sequencerDeadLetterUrl,
        MaxNumberOfMessages: 10,
        MessageAttributeNames: ["All"],
      }),
    );
    const codes = (dead.Messages ?? []).map((m) => m.MessageAttributes?.code?.StringValue).sort();
    expect(codes).toEqual(["bad-signature", "invalid-request", "invalid-request"]);
    expect((await verifyStream("seq.poison")).state.size).toBe(1);
    expect(await rt.pending.oldest("seq.poison")).toBeUndefined();
  });
});

describe("EventBridge bus → ingest queue → sequencer", () => {
  it("commits events put on the bus through ingest-queue's hand-off; the sweep wakes a stream whose sequencer died", async () => {
    // Prepare: the bus rule forwards audit events to a standard ingest queue, as stacks/Ingest.ts does.
    const producer = await registerProducer(p.runtime(), "agent-bus");
    const wake = lambda();
    const rt = ingestRuntime(wake);
    const queueUrl = (await p.sqs.send(new CreateQueueCommand({ QueueName: `ingest-${randomUUID()}` })))
      .QueueUrl!;
    const queueArn = (
      await p.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }))
    ).Attributes!.QueueArn!;
    const bus = p.settings.eventBusName!;
    await rt.clients.events.send(
      new PutRuleCommand({
        Name: "ingest",
        EventBusName: bus,
        EventPattern: JSON.stringify({ "detail-type": ["auditsink.event"] }),
      }),
    );
    await rt.clients.events.send(
      new PutTargetsCommand({ Rule: "ingest", EventBusName: bus, Targets: [{ Id: "q", Arn: queueArn }] }),
    );
    const put = async (ids: string[]) => {
      await rt.clients.events.send(
        new PutEventsCommand({
          Entries: ids.map((id) => ({
            EventBusName: bus,
            Source: "agent.bus",
            DetailType: "auditsink.event",
            Detail: JSON.stringify({ stream: "seq.bus", event: producer.event(id) }),
          })),
        }),
      );
      const delivered = await p.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }),
      );
      const { sink } = await rt.start();
      // moto leaves `account` out of delivered events; EventBridge always sets it: put it back, not depend on the gap.
      return forwardQueueBatch(
        sink,
        rt.handOff(),
        (delivered.Messages ?? []).map((m) => ({
          messageId: m.MessageId!,
          body: JSON.stringify({ account: "000000000000", ...JSON.parse(m.Body!) }),
        })),
      );
    };
    // Act: three events go through; then a sequencer dies holding the lease while a fourth arrives.
    const outcomes = await put(["b-0", "b-1", "b-2"]);
    await wake.settled();
    const dead = p.runtime({ leaseMs: 300 });
    await dead.lease.acquire("seq.bus", "dead-sequencer");
    const wakesBefore = wake.wakes.length;
    await put(["b-3"]);
    await new Promise((r) => setTimeout(r, 400));
    const woken = await sweepPending(await depsOf(p.runtime(), wake), { now: Date.now() + 60_000 });
    await wake.settled();
    // Assess
    expect([...outcomes.values()]).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(wake.wakes.length).toBe(wakesBefore + 1);
    expect(woken).toContain("seq.bus");
    const report = await verifyStream("seq.bus");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(4);
    expect(await sweepPending(await depsOf(p.runtime(), wake), { now: Date.now() + 60_000 })).not.toContain(
      "seq.bus",
    );
  });
});

describe("DynamoDedupStore window", () => {
  it("stamps entries with expiresAt = now + window, ignores expired ones, and lets a new entry replace them", async () => {
    // Prepare
    let now = new Date("2026-11-24T00:00:00Z");
    const clock = { now: () => now };
    const rt = p.runtime();
    const store = new DynamoDedupStore(rt.clients.doc, p.settings.ledgerTable, {
      windowSeconds: 3600,
      clock,
    });
    const entry = {
      key: `k-${randomUUID()}`,
      stream: "s",
      index: 1,
      recordHash: "a".repeat(64),
      eventHash: "b".repeat(64),
    };
    // Act
    await store.putMany([entry]);
    const inside = await store.getMany([entry.key]);
    const raw = await rt.clients.doc.send(
      new GetCommand({ TableName: p.settings.ledgerTable, Key: keys.dedup(entry.key) }),
    );
    now = new Date(now.getTime() + 3601_000);
    const outside = await store.getMany([entry.key]);
    await store.putMany([{ ...entry, index: 7 }]);
    const replaced = await store.getMany([entry.key]);
    // Assess
    expect(inside.get(entry.key)).toEqual(entry);
    expect(raw.Item?.expiresAt).toBe(Date.parse("2026-11-24T00:00:00Z") / 1000 + 3600);
    expect(outside.size).toBe(0);
    expect(replaced.get(entry.key)?.index).toBe(7);
  });
});

describe("tlog-tiles on AWS (docs/FORMAT.md §14)", () => {
  it("the sequencer stores every full tile and entry bundle as it commits; a new version over a tile is a tile-mismatch", async () => {
    // Prepare: 300 events pending in three parts.
    const producer = await registerProducer(p.runtime(), "agent-tiles");
    const rt = p.runtime();
    for (let part = 0; part < 3; part++)
      await pend(
        rt,
        "seq.tiles",
        Array.from({ length: 100 }, (_, i) => producer.event(`t-${part}-${i}`)),
      );
    // Act
    const run = await sequenceStream(await depsOf(p.runtime()), "seq.tiles");
    // Assess: the one full tile of 300 records and its bundle, nothing partial, and they verify.
    expect(run).toMatchObject({ stopped: "drained", committed: 300 });
    const keys = (await rt.objects.list("streams/seq.tiles/tile/")).sort();
    expect(keys).toEqual(["streams/seq.tiles/tile/0/000", "streams/seq.tiles/tile/entries/000"]);
    const report = await verifyStream("seq.tiles");
    expect([report.failures, report.warnings]).toEqual([[], []]);
    const tile = Buffer.from((await rt.objects.get(keys[0]!))!);
    tile.writeUInt8(tile[0]! ^ 1, 0);
    await rt.clients.s3.send(
      new PutObjectCommand({ Bucket: p.settings.archiveBucket, Key: keys[0]!, Body: tile }),
    );
    const tampered = await verifyStream("seq.tiles");
    expect(tampered.failures.map((f) => [f.code, f.at])).toEqual([["tile-mismatch", keys[0]]]);
  }, 60_000);
});

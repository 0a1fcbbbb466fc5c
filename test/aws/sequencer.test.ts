/**
 * Accept, then sequence (docs/AWS.md): ingest hands authenticated events to the SQS FIFO sequencer queue, the
 * sequencer commits them with core's Sink.commit and answers with receipts the HTTP request waits for. All on the
 * emulators (moto SQS FIFO, S3, KMS; DynamoDB Local), with the real handlers.
 */
import { randomUUID } from "node:crypto";
import { gunzipSync } from "node:zlib";
import {
  AwsRuntime,
  createClients,
  createHttpHandler,
  createSequencerHandler,
  DynamoDedupStore,
  forwardQueueBatch,
  type HandOffMessage,
  keys,
  sequenceBatch,
  splitParts,
} from "@auditsink/aws";
import { type Receipt, type SignedEvent, verifyReceipt, verifyStoredStream } from "@auditsink/core";
import { PutEventsCommand, PutRuleCommand, PutTargetsCommand } from "@aws-sdk/client-eventbridge";
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { lambdaContext, type Provisioned, provision, registerProducer, useEmulators } from "./fixtures.ts";
import { injectFaults } from "./sdk-middleware.ts";
import { drainQueue, type SequencerHandler, whilePumping } from "./sequencer-pump.ts";

let emulators: Emulators;
let p: Provisioned;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
  p = await provision();
});
afterAll(async () => emulators?.stop());

type HttpHandler = (e: APIGatewayProxyEventV2, c: unknown) => Promise<APIGatewayProxyResult>;

const ingestRuntime = (options: { waitSeconds?: number } = {}) =>
  new AwsRuntime({ ...p.settings, receiptWaitSeconds: options.waitSeconds ?? 25 }, createClients(), {
    handOff: true,
    receiptPolling: { firstPollMs: 20, pollMs: 20 },
  });
const sequencer = (rt: AwsRuntime = p.runtime()): SequencerHandler =>
  createSequencerHandler(rt) as unknown as SequencerHandler;

function post(stream: string, body: unknown): APIGatewayProxyEventV2 {
  const path = `/v1/streams/${stream}/events`;
  return {
    version: "2.0",
    routeKey: "POST /v1/streams/{stream}/events",
    rawPath: path,
    rawQueryString: "",
    headers: { "content-type": "application/json", host: "api.example.com" },
    requestContext: {
      http: { method: "POST", path, protocol: "HTTP/1.1", sourceIp: "203.0.113.1", userAgent: "test" },
      requestId: randomUUID(),
    } as APIGatewayProxyEventV2["requestContext"],
    body: JSON.stringify(body),
    isBase64Encoded: false,
  };
}

/** A hand-off message for `events` as ingest would send it, as an SQS record. */
function handOffRecord(stream: string, events: unknown[], receipt = true) {
  const [message] = splitParts(randomUUID(), { stream, events: events as SignedEvent[], receipt });
  return { messageId: randomUUID(), body: JSON.stringify(message), message: message! };
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

describe("HTTP ingest through the sequencer", () => {
  it("answers each request with verifying receipts once the sequencer committed it; concurrent requests share segments", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-seq");
    const ingest = createHttpHandler(ingestRuntime()) as unknown as HttpHandler;
    // Act: 12 producers send one event each at once while one sequencer container works the queue.
    const responses = await whilePumping(
      { sqs: p.sqs, queueUrl: p.sequencerQueueUrl, handlers: [sequencer()] },
      Promise.all(
        [...Array(12).keys()].map((i) => ingest(post("seq.http", producer.event(`s-${i}`)), lambdaContext())),
      ),
    );
    // Assess
    expect(responses.map((r) => r.statusCode)).toEqual(Array(12).fill(200));
    const receipts = responses.flatMap((r) => (JSON.parse(r.body) as { receipts: Receipt[] }).receipts);
    expect(receipts.map((r) => r.index).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    const report = await verifyStream("seq.http", receipts);
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(12);
    // FIFO hands a sequencer up to 10 messages of a stream at once, committed as one segment.
    expect(report.segments).toBeLessThan(12);
  });

  it("returns the original receipt for a replay inside the dedup window", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-replay");
    const ingest = createHttpHandler(ingestRuntime()) as unknown as HttpHandler;
    const event = producer.event("once");
    const pumping = { sqs: p.sqs, queueUrl: p.sequencerQueueUrl, handlers: [sequencer()] };
    // Act
    const first = await whilePumping(pumping, ingest(post("seq.replay", event), lambdaContext()));
    const again = await whilePumping(pumping, ingest(post("seq.replay", event), lambdaContext()));
    // Assess
    const [a] = (JSON.parse(first.body) as { receipts: Receipt[] }).receipts;
    const [b] = (JSON.parse(again.body) as { receipts: Receipt[] }).receipts;
    expect(again.statusCode).toBe(200);
    expect(b!.index).toBe(a!.index);
    expect(b!.recordHash).toBe(a!.recordHash);
    expect((await verifyStream("seq.replay", [a!, b!])).state.size).toBe(1);
  });

  it("answers 503 when no receipt comes in time, and the retry returns the events' single records", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-slow");
    const ingest = createHttpHandler(ingestRuntime({ waitSeconds: 1 })) as unknown as HttpHandler;
    const event = producer.event("late");
    // Act: nothing consumes the queue during the first request.
    const timedOut = await ingest(post("seq.slow", event), lambdaContext());
    const retried = await whilePumping(
      { sqs: p.sqs, queueUrl: p.sequencerQueueUrl, handlers: [sequencer()] },
      (createHttpHandler(ingestRuntime()) as unknown as HttpHandler)(
        post("seq.slow", event),
        lambdaContext(),
      ),
    );
    // Assess
    expect(timedOut.statusCode).toBe(503);
    expect(JSON.parse(timedOut.body)).toMatchObject({ code: "unavailable" });
    expect(retried.statusCode).toBe(200);
    expect((JSON.parse(retried.body) as { receipts: Receipt[] }).receipts[0]!.index).toBe(0);
    expect((await verifyStream("seq.slow")).state.size).toBe(1);
  });

  it("passes the sequencer's refusal back as the request's problem (key revoked after ingest)", async () => {
    // Prepare: ingest accepted the event, then the key was revoked before the sequencer ran.
    const producer = await registerProducer(p.runtime(), "agent-revoked");
    const record = handOffRecord("seq.revoked", [producer.event("r-0")]);
    await p.runtime().producers.revoke("agent-revoked");
    const seq = p.runtime({ producerCacheSeconds: 0 });
    // Act
    const result = await sequenceBatch(await seq.startSequencer(), [record]);
    // Assess
    expect(result).toMatchObject({ failed: [], committed: 0, refused: 1 });
    expect(await answerOf(record.message)).toMatchObject({ error: { code: "revoked-key" } });
    expect(await p.runtime().heads.get("seq.revoked")).toBeUndefined();
  });
});

describe("sequencer on SQS delivery semantics", () => {
  it("commits a message delivered twice once, and answers both deliveries with the same receipt", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-dup");
    const record = handOffRecord("seq.dup", [producer.event("d-0"), producer.event("d-1")]);
    const deps = await p.runtime().startSequencer();
    // Act
    const first = await sequenceBatch(deps, [record]);
    const second = await sequenceBatch(await p.runtime().startSequencer(), [record]);
    // Assess
    expect(first.committed).toBe(2);
    expect(second.committed).toBe(2);
    const report = await verifyStream("seq.dup");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(2);
  });

  it("after a crash between the segment and the head write, the redelivery repairs the head and duplicates nothing", async () => {
    // Prepare: the head write dies (the Lambda is gone) after the segment is stored.
    const producer = await registerProducer(p.runtime(), "agent-crash");
    const records = [0, 1, 2].map((i) => handOffRecord("seq.crash", [producer.event(`c-${i}`)]));
    const crashing = p.runtime();
    const crashes = injectFaults(crashing.clients.dynamo, {
      kind: "crash",
      command: "PutItemCommand",
      when: () => true,
    });
    // Act
    const crashed = await sequenceBatch(await crashing.startSequencer(), records).catch((e: Error) => e);
    const redelivered = await sequenceBatch(await p.runtime().startSequencer(), records);
    // Assess
    expect(crashes()).toBeGreaterThan(0);
    const failedFirst = crashed instanceof Error ? records.map((r) => r.messageId) : crashed.failed;
    expect(failedFirst.sort()).toEqual(records.map((r) => r.messageId).sort());
    expect(redelivered).toMatchObject({ failed: [], committed: 3 });
    const report = await verifyStream("seq.crash");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(3);
    expect((await p.runtime().heads.get("seq.crash"))!.size).toBe(3);
  });

  it("two sequencers racing on one stream make one contiguous chain with every event once", async () => {
    // Prepare: two containers each hold different messages of the same stream (as after a visibility timeout).
    const producer = await registerProducer(p.runtime(), "agent-race");
    const batches = [0, 1].map((b) =>
      [0, 1, 2, 3, 4].map((i) => handOffRecord("seq.race", [producer.event(`r-${b}-${i}`)])),
    );
    const a = await p.runtime().startSequencer();
    const b = await p.runtime().startSequencer();
    // Act: each batch is redelivered to its sequencer until it succeeds, as SQS does with failed messages.
    const deliver = async (deps: typeof a, records: ReturnType<typeof handOffRecord>[]) => {
      for (let pending = records, round = 0; pending.length > 0 && round < 10; round++) {
        const { failed } = await sequenceBatch(deps, pending);
        pending = pending.filter((r) => failed.includes(r.messageId));
      }
    };
    await Promise.all([
      deliver(a, batches[0]!),
      deliver(b, batches[1]!),
      deliver(a, batches[1]!.slice(0, 2)),
    ]);
    // Assess
    const report = await verifyStream("seq.race");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(10);
  });

  it("sends poison messages to the dead-letter queue at once and still commits the rest of the stream", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-poison");
    const good = handOffRecord("seq.poison", [producer.event("p-0")]);
    const unsigned = handOffRecord("seq.poison", [{ ...producer.event("p-1"), signature: "AAAA" }], false);
    const garbage = { messageId: randomUUID(), body: "{not json" };
    // Act
    const result = await sequenceBatch(await p.runtime().startSequencer(), [garbage, good, unsigned]);
    // Assess
    expect(result).toMatchObject({ failed: [], committed: 1, refused: 1, deadLettered: 2 });
    const dead = await p.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: p.sequencerDeadLetterUrl,
        MaxNumberOfMessages: 10,
        MessageAttributeNames: ["All"],
      }),
    );
    const codes = (dead.Messages ?? []).map((m) => m.MessageAttributes?.code?.StringValue).sort();
    expect(codes).toEqual(["bad-signature", "invalid-request"]);
    expect((await verifyStream("seq.poison")).state.size).toBe(1);
  });
});

describe("EventBridge bus → ingest queue → sequencer", () => {
  it("commits events put on the bus, through ingest-queue's hand-off, into one verified stream", async () => {
    // Prepare: the bus rule forwards audit events to a standard ingest queue, as stacks/Ingest.ts does.
    const producer = await registerProducer(p.runtime(), "agent-bus");
    const rt = ingestRuntime();
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
    // Act
    await rt.clients.events.send(
      new PutEventsCommand({
        Entries: [0, 1, 2].map((i) => ({
          EventBusName: bus,
          Source: "agent.bus",
          DetailType: "auditsink.event",
          Detail: JSON.stringify({ stream: "seq.bus", event: producer.event(`b-${i}`) }),
        })),
      }),
    );
    const delivered = await p.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }),
    );
    const { sink } = await rt.start();
    const outcomes = await forwardQueueBatch(
      sink,
      rt.handOff(),
      // moto leaves `account` out of delivered events; EventBridge always sets it: put it back, not depend on the gap.
      (delivered.Messages ?? []).map((m) => ({
        messageId: m.MessageId!,
        body: JSON.stringify({ account: "000000000000", ...JSON.parse(m.Body!) }),
      })),
    );
    const handled = await drainQueue(p.sqs, p.sequencerQueueUrl, sequencer());
    // Assess
    expect([...outcomes.values()]).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(handled).toBeGreaterThanOrEqual(3);
    const report = await verifyStream("seq.bus");
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(3);
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

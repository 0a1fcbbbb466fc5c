/**
 * EventBridgePublisher against moto (DESIGN.md §6): signed events put on a bus, routed by a rule on the
 * `auditsink.event` detail-type to SQS (as stacks/Ingest.ts deploys it), then committed by packages/aws's
 * queue consumer into a sink whose receipts verify.
 */

import { commitQueueBatch } from "@auditsink/aws";
import { DEFAULT_DETAIL_TYPE, EventBridgePublisher } from "@auditsink/client/eventbridge";
import {
  generateKeyPair,
  KeyObjectSigner,
  keyFingerprint,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  Sink,
  signEvent,
  verifyReceipt,
} from "@auditsink/core";
import {
  CreateEventBusCommand,
  EventBridgeClient,
  PutRuleCommand,
  PutTargetsCommand,
} from "@aws-sdk/client-eventbridge";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMoto } from "../emulators/harness.ts";

let moto: Awaited<ReturnType<typeof startMoto>>;
let eventbridge: EventBridgeClient;
let sqs: SQSClient;

beforeAll(async () => {
  moto = await startMoto();
  const config = {
    endpoint: moto.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
  };
  eventbridge = new EventBridgeClient(config);
  sqs = new SQSClient(config);
});

afterAll(async () => {
  eventbridge?.destroy();
  sqs?.destroy();
  await moto?.stop();
});

describe("EventBridgePublisher on the ingest bus", () => {
  it("puts signed events that reach the ingest queue and commit into receipts that verify", async () => {
    // Prepare: bus → rule on the detail-type → queue, and a sink that knows the producer.
    await eventbridge.send(new CreateEventBusCommand({ Name: "auditsink-ingest" }));
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "auditsink-ingest" }));
    const { Attributes } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ["QueueArn"] }),
    );
    await eventbridge.send(
      new PutRuleCommand({
        Name: "ingest",
        EventBusName: "auditsink-ingest",
        EventPattern: JSON.stringify({ "detail-type": [DEFAULT_DETAIL_TYPE] }),
      }),
    );
    await eventbridge.send(
      new PutTargetsCommand({
        Rule: "ingest",
        EventBusName: "auditsink-ingest",
        Targets: [{ Id: "queue", Arn: Attributes!.QueueArn! }],
      }),
    );
    const producer = generateKeyPair("ed25519");
    const producers = new MemoryProducerRegistry();
    producers.add({
      keyId: keyFingerprint(producer.publicKey),
      publicKey: producer.publicKey,
      producer: "support-bot",
      streams: ["agents.*"],
      revoked: false,
    });
    const signingKey = generateKeyPair("ecdsa-p256");
    const signer = new KeyObjectSigner("auditsink.test/eb", signingKey.privateKey, signingKey.publicKey);
    const sink = new Sink({
      deployment: "auditsink.test/eb",
      objects: new MemoryObjectStore(),
      heads: new MemoryHeadStore(),
      dedup: new MemoryDedupStore(),
      producers,
      signer,
    });
    const events = Array.from({ length: 12 }, (_, n) =>
      signEvent(
        {
          specversion: "1.0",
          id: `call-${n}`,
          source: "agent://support-bot",
          type: "ai.agent.tool_call",
          time: "2026-11-24T12:00:00.000Z",
          data: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", n },
        },
        producer.privateKey,
      ),
    );
    // Act
    const ids = await new EventBridgePublisher({ eventBusName: "auditsink-ingest", client: eventbridge }).put(
      "agents.eb",
      events,
    );
    const messages: { messageId: string; body: string }[] = [];
    for (let i = 0; i < 20 && messages.length < events.length; i++) {
      const out = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
      );
      for (const m of out.Messages ?? []) messages.push({ messageId: m.MessageId!, body: m.Body! });
    }
    // moto leaves `account` out of the events it delivers; EventBridge always sets it (and the consumer's
    // Powertools schema requires it), so the test puts it back rather than depend on the gap.
    const delivered = messages.map((m) => ({
      ...m,
      body: JSON.stringify({ account: "000000000000", ...JSON.parse(m.body) }),
    }));
    const outcomes = await commitQueueBatch(sink, delivered);
    // Assess
    expect(ids).toHaveLength(12);
    expect(messages).toHaveLength(12);
    const first = JSON.parse(messages[0]!.body);
    expect(first).toMatchObject({ "detail-type": "auditsink.event", source: "auditsink.producer" });
    expect(first.detail).toEqual({
      stream: "agents.eb",
      event: events.find((e) => e.id === first.detail.event.id),
    });
    const receipts = [...outcomes.values()].map((o) => {
      if (!o.ok) throw o.error;
      return o.receipt;
    });
    expect(receipts.map((r) => r.id).sort()).toEqual(events.map((e) => e.id).sort());
    for (const r of receipts) expect(verifyReceipt(r, { trusted: [signer.key] }).ok).toBe(true);
  });
});

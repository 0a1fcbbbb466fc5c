import { createPublicKey, randomUUID } from "node:crypto";
import {
  generateKeyPair,
  keyFingerprint,
  leafHash,
  METRICS,
  parseCheckpointText,
  parseEntryBundle,
  parseNote,
  parseVerifierKey,
  type Receipt,
  rootOf,
  signBatch,
  signEvent,
  spkiDer,
  verifyReceipt,
  verifyStoredStream,
} from "@auditsink/core";
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import {
  httpEvent,
  lambdaContext,
  type Provisioned,
  provision,
  registerProducer,
  sqsRecord,
  useEmulators,
} from "./fixtures.ts";
import { InProcessWake, type SequencerHandler, startInvokeEndpoint } from "./sequencer-wake.ts";

type HttpHandler = (e: APIGatewayProxyEventV2, c: unknown) => Promise<APIGatewayProxyResult>;
type QueueHandler = (e: SQSEvent, c: unknown) => Promise<SQSBatchResponse>;

let emulators: Emulators;
let p: Provisioned;
let ingestHttp: HttpHandler;
let query: HttpHandler;
let ingestQueue: QueueHandler;
/** Lambda's asynchronous invoke of the sequencer, served in-process (the handlers' LambdaClient calls it). */
const lambda = new InProcessWake();
let invokeEndpoint: { url: string; stop(): Promise<void> } | undefined;
/** Waits for an ingest request, then for the sequencers it woke. */
const pumped = async <T>(work: Promise<T>) => {
  const result = await work;
  await lambda.settled();
  return result;
};
const sequence = () => lambda.settled();

beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
  p = await provision();
  invokeEndpoint = await startInvokeEndpoint(lambda);
  Object.assign(process.env, p.env, { AWS_ENDPOINT_URL_LAMBDA: invokeEndpoint.url });
  ingestHttp = (await import("../../functions/ingest-http.ts")).handler as HttpHandler;
  query = (await import("../../functions/query.ts")).handler as HttpHandler;
  ingestQueue = (await import("../../functions/ingest-queue.ts")).handler as QueueHandler;
  const sequencer = (await import("../../functions/sequencer.ts")).handler as unknown as SequencerHandler;
  lambda.container = () => sequencer;
});
afterAll(async () => {
  await invokeEndpoint?.stop();
  await emulators?.stop();
});

const json = (r: APIGatewayProxyResult) => JSON.parse(r.body) as Record<string, unknown>;

async function trustedKeys() {
  const keys = json(await query(httpEvent("GET", "/v1/keys"), lambdaContext())) as {
    keys: { verifierKey: string }[];
  };
  return keys.keys.map((k) => parseVerifierKey(k.verifierKey));
}

describe("functions/ingest-http", () => {
  it("answers the unauthenticated /healthz without the deployment name, which carries the account id", async () => {
    const r = await ingestHttp(httpEvent("GET", "/healthz"), lambdaContext());
    expect(r.statusCode).toBe(200);
    expect(json(r)).toEqual({ status: "ok", runtime: "aws" });
  });

  it("registers a producer only for IAM-authorized callers, then accepts its signed events with receipts", async () => {
    // Prepare
    const { privateKey, publicKey } = generateKeyPair("ed25519");
    const registration = {
      id: "agent-http",
      publicKey: spkiDer(publicKey).toString("base64"),
      streams: ["agent.*"],
    };
    // Act
    const anonymous = await ingestHttp(httpEvent("POST", "/v1/producers", registration), lambdaContext());
    const registered = await pumped(
      ingestHttp(httpEvent("POST", "/v1/producers", registration, { iam: true }), lambdaContext()),
    );
    const { signEvent } = await import("@auditsink/core");
    const events = [1, 2, 3].map((i) =>
      signEvent(
        {
          specversion: "1.0",
          id: `h-${i}`,
          source: "agent://http",
          type: "ai.agent.tool_call",
          time: "2026-11-24T12:00:00Z",
        },
        privateKey,
      ),
    );
    const accepted = await pumped(
      ingestHttp(httpEvent("POST", "/v1/streams/agent.http/events", events), lambdaContext()),
    );
    const replay = await pumped(
      ingestHttp(httpEvent("POST", "/v1/streams/agent.http/events", events), lambdaContext()),
    );
    // Assess
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.headers?.["content-type"]).toContain("application/problem+json");
    expect(registered.statusCode).toBe(201);
    expect(accepted.statusCode).toBe(200);
    const receipts = json(accepted).receipts as Receipt[];
    expect(receipts.map((r) => r.index)).toEqual([0, 1, 2]);
    expect((json(replay).receipts as Receipt[]).map((r) => r.index)).toEqual([0, 1, 2]);
    const trusted = await trustedKeys();
    for (const r of receipts) expect(verifyReceipt(r, { trusted }).ok).toBe(true);
    expect(keyFingerprint(publicKey)).toBe(events[0]!.sigkeyid);
  }, 60_000); // the first wake-ups cold-start the sequencer (KMS key, heads) on emulators shared by the suite

  it("takes batch-signed events (FORMAT.md §3b) through ingest and the sequencer, and refuses a forged one", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-batch");
    const unsigned = [1, 2, 3].map((i) => {
      const { signature: _, sigkeyid: __, ...event } = producer.event(`b-${i}`);
      return event;
    });
    const events = signBatch(unsigned, producer.privateKey);
    const forged = [events[0], { ...events[1]!, data: { "gen_ai.tool.name": "delete_all" } }, events[2]];
    // Act
    const refused = await pumped(
      ingestHttp(httpEvent("POST", "/v1/streams/agent.batch/events", forged), lambdaContext()),
    );
    const refusedCheckpoint = await query(
      httpEvent("GET", "/v1/streams/agent.batch/checkpoint"),
      lambdaContext(),
    );
    const accepted = await pumped(
      ingestHttp(httpEvent("POST", "/v1/streams/agent.batch/events", events), lambdaContext()),
    );
    const alone = await pumped(
      ingestHttp(httpEvent("POST", "/v1/streams/agent.batch/events", [events[1]]), lambdaContext()),
    );
    // Assess
    expect(refused.statusCode).toBe(401);
    expect(json(refused)).toMatchObject({ code: "bad-signature", field: "events[1].signature" });
    expect(refusedCheckpoint.statusCode).toBe(404);
    expect(accepted.statusCode).toBe(200);
    expect((json(accepted).receipts as Receipt[]).map((r) => r.index)).toEqual([0, 1, 2]);
    expect((json(alone).receipts as Receipt[]).map((r) => r.index)).toEqual([1]);
    const report = await verifyStoredStream(p.runtime().objects, "agent.batch", {
      trusted: await trustedKeys(),
      producerKeys: new Map([[events[0]!.sigkeyid, createPublicKey(producer.privateKey)]]),
    });
    expect(report.records).toBe(3);
    expect(report.failures).toEqual([]);
  }, 60_000); // may be the suite's first wake-up: cold-starts the sequencer (KMS key, heads) on the emulators

  it("answers bad input with an RFC 9457 problem and changes nothing", async () => {
    const bad = await ingestHttp(
      httpEvent("POST", "/v1/streams/agent.http/events", [{ specversion: "0.3" }]),
      lambdaContext(),
    );
    expect(bad.statusCode).toBe(400);
    expect(json(bad)).toMatchObject({ code: "invalid-event" });
  });
});

describe("EMF metrics of the functions", () => {
  /** Sums each metric's values over the EMF blobs the handlers print while `work` runs. */
  async function emitted(work: () => Promise<unknown>): Promise<Map<string, number[]>> {
    const values = new Map<string, number[]>();
    const write = process.stdout.write.bind(process.stdout);
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk, ...rest) => {
      for (const line of String(chunk).split("\n")) {
        if (!line.includes('"_aws"')) continue;
        const blob = JSON.parse(line) as Record<string, unknown> & {
          _aws: { CloudWatchMetrics: { Namespace: string; Metrics: { Name: string }[] }[] };
        };
        for (const d of blob._aws.CloudWatchMetrics) {
          expect(d.Namespace).toBe("auditsink");
          for (const { Name } of d.Metrics)
            values.set(Name, [...(values.get(Name) ?? []), ...[blob[Name] as number | number[]].flat()]);
        }
      }
      return write(chunk, ...(rest as []));
    });
    try {
      await work();
    } finally {
      spy.mockRestore();
    }
    return values;
  }
  const sum = (v: number[] | undefined) => (v ?? []).reduce((a, b) => a + b, 0);

  it("carry the names the embedded sink serves, counting the same work", async () => {
    // Prepare
    const { privateKey, publicKey } = generateKeyPair("ed25519");
    const registration = {
      id: "agent-emf",
      publicKey: spkiDer(publicKey).toString("base64"),
      streams: ["emf.*"],
    };
    const registered = await pumped(
      ingestHttp(httpEvent("POST", "/v1/producers", registration, { iam: true }), lambdaContext()),
    );
    expect(registered.statusCode).toBe(201);
    const { signEvent } = await import("@auditsink/core");
    const events = [1, 2].map((i) =>
      signEvent(
        {
          specversion: "1.0",
          id: `emf-${i}`,
          source: "agent://emf",
          type: "t",
          time: "2026-11-24T12:00:00Z",
        },
        privateKey,
      ),
    );
    const forged = { ...events[0]!, id: "emf-forged" };
    // Act
    const values = await emitted(async () => {
      const accepted = await pumped(
        ingestHttp(httpEvent("POST", "/v1/streams/emf.one/events", events), lambdaContext()),
      );
      expect(accepted.statusCode).toBe(200);
      const refused = await ingestHttp(
        httpEvent("POST", "/v1/streams/emf.one/events", [forged]),
        lambdaContext(),
      );
      expect(refused.statusCode).toBe(401);
    });
    // Assess: two events accepted, one refused; the sequencer committed the stream's creation (in `_system`) and
    // its first segment, one checkpoint signature each; each signature was checked at ingest and again by the
    // sequencer.
    expect(sum(values.get(METRICS.eventsAccepted.name))).toBe(2);
    expect(sum(values.get(METRICS.eventsRejected.name))).toBe(1);
    expect(sum(values.get(METRICS.checkpointSignatures.name))).toBe(2);
    expect(values.get(METRICS.commitDuration.name)).toHaveLength(2);
    expect(sum(values.get(METRICS.commitBatchSize.name))).toBe(3);
    expect(sum(values.get(METRICS.producerSignatures.name))).toBe(4);
  });
});

describe("functions/query", () => {
  it("serves checkpoints, records and proofs of a stream committed through the queue", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-query");
    await ingestQueue(
      { Records: [0, 1, 2, 3].map((i) => sqsRecord("agent.query", producer.event(`q-${i}`))) } as SQSEvent,
      lambdaContext(),
    );
    await sequence();
    // Act
    const checkpoint = await query(httpEvent("GET", "/v1/streams/agent.query/checkpoint"), lambdaContext());
    const records = await query(
      httpEvent("GET", "/v1/streams/agent.query/records", undefined, { query: "from=0&to=4" }),
      lambdaContext(),
    );
    const proof = await query(
      httpEvent("GET", "/v1/streams/agent.query/proofs/inclusion", undefined, { query: "index=1&size=4" }),
      lambdaContext(),
    );
    const missing = await query(httpEvent("GET", "/v1/streams/nothing-here/checkpoint"), lambdaContext());
    // Assess
    expect(checkpoint.statusCode).toBe(200);
    expect(json(checkpoint)).toMatchObject({ stream: "agent.query", size: 4 });
    expect((json(records).records as unknown[]).length).toBe(4);
    expect((json(proof).proof as string[]).length).toBe(2);
    expect(missing.statusCode).toBe(404);
  });

  it("serves the stream as a tlog-tiles log: the checkpoint as text, tiles and bundles as binary", async () => {
    // Prepare: the stream of the test above (4 records).
    // Act
    const note = await query(httpEvent("GET", "/tlog/agent.query/checkpoint"), lambdaContext());
    const tile = await query(httpEvent("GET", "/tlog/agent.query/tile/0/000.p/4"), lambdaContext());
    const bundle = await query(httpEvent("GET", "/tlog/agent.query/tile/entries/000.p/4"), lambdaContext());
    const beyond = await query(httpEvent("GET", "/tlog/agent.query/tile/0/000.p/5"), lambdaContext());
    const bad = await query(httpEvent("GET", "/tlog/agent.query/tile/0/0"), lambdaContext());
    // Assess
    expect([note.statusCode, note.headers?.["content-type"]]).toEqual([200, "text/plain; charset=utf-8"]);
    const checkpoint = parseCheckpointText(parseNote(note.body).text);
    expect([tile.statusCode, tile.isBase64Encoded, tile.headers?.["cache-control"]]).toEqual([
      200,
      true,
      "public, max-age=31536000, immutable",
    ]);
    const hashes = Buffer.from(tile.body, "base64");
    const entries = parseEntryBundle(Buffer.from(bundle.body, "base64"));
    const leaves = [0, 1, 2, 3].map((i) => hashes.subarray(32 * i, 32 * i + 32));
    expect(entries.map((e) => leafHash(e))).toEqual(leaves);
    expect([checkpoint.size, rootOf(leaves)]).toEqual([4, checkpoint.root]);
    expect([beyond.statusCode, bad.statusCode]).toEqual([404, 400]);
  });
});

describe("lookups through API Gateway", () => {
  it("ingest-http takes CloudEvents binary mode; query finds the event by trace id and its receipt by source + id", async () => {
    // Prepare: an event with a traceparent, sent in binary mode (ce-* headers, the data as the body).
    const producer = await registerProducer(p.runtime(), "agent-lookups", ["agent.*"]);
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const { signature: _s, sigkeyid: _k, ...unsigned } = producer.event("traced-1");
    const event = signEvent(
      { ...unsigned, datacontenttype: "application/json", traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      producer.privateKey,
    );
    const headers: Record<string, string> = { "content-type": "application/json" };
    for (const [name, value] of Object.entries(event)) {
      if (name !== "data" && name !== "datacontenttype") headers[`ce-${name}`] = String(value);
    }
    const path = "/v1/streams/agent.lookups/events";
    // Act
    const sent = await pumped(
      ingestHttp(
        {
          ...httpEvent("POST", path, undefined, { headers, routeKey: "POST /v1/streams/{stream}/events" }),
          body: JSON.stringify(event.data),
        },
        lambdaContext(),
      ),
    );
    const byTrace = await query(
      httpEvent("GET", "/v1/events", undefined, { iam: true, query: `traceId=${traceId}` }),
      lambdaContext(),
    );
    const lookup = await query(
      httpEvent("GET", "/v1/receipts", undefined, {
        iam: true,
        query: new URLSearchParams({ source: event.source, id: event.id }).toString(),
      }),
      lambdaContext(),
    );
    const unknownParameter = await query(
      httpEvent("GET", "/v1/events", undefined, { iam: true, query: "traceid=x" }),
      lambdaContext(),
    );
    // Assess
    expect(sent.statusCode, sent.body).toBe(200);
    const [original] = (json(sent) as unknown as { receipts: Receipt[] }).receipts;
    expect((json(byTrace) as { events: { event: unknown }[] }).events.map((e) => e.event)).toEqual([event]);
    expect(lookup.statusCode, lookup.body).toBe(200);
    const found = json(lookup) as unknown as Receipt;
    expect(found).toMatchObject({
      stream: "agent.lookups",
      index: original!.index,
      recordHash: original!.recordHash,
    });
    expect(verifyReceipt(found, { trusted: await trustedKeys(), deployment: p.settings.origin }).ok).toBe(
      true,
    );
    expect(json(unknownParameter)).toMatchObject({ status: 400, field: "traceid" });
  });
});

describe("functions/ingest-queue", () => {
  it("hands a batch to the sequencer, which commits it per stream; only poison messages are batch item failures", async () => {
    // Prepare
    const producer = await registerProducer(p.runtime(), "agent-queue");
    const stranger = generateKeyPair("ed25519");
    const { signEvent } = await import("@auditsink/core");
    const unknown = signEvent(
      { specversion: "1.0", id: "x", source: "agent://nobody", type: "t", time: "2026-11-24T12:00:00Z" },
      stranger.privateKey,
    );
    const good = [
      ...[0, 1, 2].map((i) => sqsRecord("queue.a", producer.event(`a-${i}`))),
      ...[0, 1].map((i) => sqsRecord("queue.b", producer.event(`b-${i}`))),
    ];
    const poison = [
      { ...sqsRecord("queue.a", {}), body: "not json" },
      sqsRecord("queue.a", unknown),
      sqsRecord("Bad Stream", producer.event("c-0")),
    ];
    // Act
    const first = await ingestQueue({ Records: [...good, ...poison] } as SQSEvent, lambdaContext());
    await sequence();
    const redelivered = await ingestQueue({ Records: good } as SQSEvent, lambdaContext());
    await sequence();
    // Assess
    expect(first.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(
      poison.map((r) => r.messageId).sort(),
    );
    expect(redelivered.batchItemFailures).toEqual([]);
    const rt = p.runtime();
    const { signer } = await rt.start();
    for (const [stream, size] of [
      ["queue.a", 3],
      ["queue.b", 2],
    ] as const) {
      const report = await verifyStoredStream(rt.objects, stream, {
        trusted: [signer.key],
        deployment: p.settings.origin,
      });
      expect(report.failures).toEqual([]);
      expect(report.state.size).toBe(size);
      // One segment per stream: the sequencer committed the batch with one Sink commit per stream.
      expect(report.segments).toBe(1);
    }
  });
});

describe("ingest-queue with a real SQS queue and dead-letter queue", () => {
  it("acknowledges committed messages and lets SQS move a poison message to the DLQ, never dropping it", async () => {
    // Prepare: a queue that redrives after one failed receive, as the stack's ingest queue does after five.
    const producer = await registerProducer(p.runtime(), "agent-dlq");
    const dlqUrl = (
      await p.sqs.send(new CreateQueueCommand({ QueueName: `dlq-${randomUUID().slice(0, 8)}` }))
    ).QueueUrl!;
    const dlqArn = (
      await p.sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ["QueueArn"] }))
    ).Attributes!.QueueArn!;
    const queueUrl = (
      await p.sqs.send(
        new CreateQueueCommand({
          QueueName: `ingest-${randomUUID().slice(0, 8)}`,
          Attributes: {
            RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: "1" }),
          },
        }),
      )
    ).QueueUrl!;
    const bodies = [
      sqsRecord("queue.dlq", producer.event("d-0")).body,
      sqsRecord("queue.dlq", producer.event("d-1")).body,
      sqsRecord("queue.dlq", { not: "an event" }).body,
    ];
    for (const body of bodies)
      await p.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
    // Act: poll as Lambda's event source mapping does, deleting only what the handler did not report failed.
    for (let round = 0; round < 3; round++) {
      const received = await p.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          VisibilityTimeout: 0,
          WaitTimeSeconds: 0,
        }),
      );
      const records = (received.Messages ?? []).map((m) => ({
        ...sqsRecord("unused", {}),
        messageId: m.MessageId!,
        body: m.Body!,
        receiptHandle: m.ReceiptHandle!,
      }));
      if (records.length === 0) continue;
      const result = await ingestQueue({ Records: records } as SQSEvent, lambdaContext());
      const failed = new Set(result.batchItemFailures.map((f) => f.itemIdentifier));
      for (const r of records)
        if (!failed.has(r.messageId))
          await p.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: r.receiptHandle }));
    }
    await sequence();
    // Assess
    const left = await p.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
    const dead = await p.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, MaxNumberOfMessages: 10 }));
    expect(left.Messages ?? []).toEqual([]);
    expect((dead.Messages ?? []).map((m) => m.Body)).toEqual([bodies[2]]);
    const rt = p.runtime();
    expect((await rt.heads.get("queue.dlq"))!.size).toBe(2);
  });
});

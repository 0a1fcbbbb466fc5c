/**
 * AWS cost model: counts the API calls the sink makes per 1,000 events, through ingest-http (API Gateway v2
 * events into the one Hono app) and ingest-queue (SQS records carrying EventBridge events), at batch 1 and
 * batch 100, against the emulators (moto + DynamoDB Local). Calls are counted by SDK middleware, one per
 * attempt as AWS bills them; DynamoDB capacity units are read from ReturnConsumedCapacity. The counts are then
 * priced at list prices. Not a timing benchmark: what bounds the result is the number of calls per batch
 * (one segment PUT, one checkpoint PUT, one KMS Sign, one head write, and one dedup item per event).
 *
 *   npm run bench:aws-cost        → prints a table and writes bench/results/aws-cost.json
 *
 * Prices: AWS list prices for us-east-1 (N. Virginia), on-demand, as published on the AWS pricing pages and
 * used here on 2026-11-24. Free tiers are ignored.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type AwsRuntime, commitQueueBatch, createHttpHandler } from "@auditsink/aws";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { lambdaContext, provision, registerProducer, sqsRecord, useEmulators } from "../test/aws/fixtures.ts";
import { countCalls } from "../test/aws/sdk-middleware.ts";
import { startEmulators } from "../test/emulators/harness.ts";

const EVENTS = 1000;
const BATCHES = [1, 100];

/** USD, us-east-1, 2026-11-24. */
const PRICES = {
  region: "us-east-1",
  date: "2026-11-24",
  s3PutPer1000: 0.005, // PUT, COPY, POST, LIST (S3 Standard)
  s3GetPer1000: 0.0004, // GET, HEAD and all other requests
  dynamoWriteUnitPerMillion: 0.625, // on-demand write request unit
  dynamoReadUnitPerMillion: 0.125, // on-demand read request unit
  kmsAsymmetricPer10000: 0.15, // Sign, GetPublicKey on ECC keys
  kmsSymmetricPer10000: 0.03, // DescribeKey and other requests
  lambdaPerMillionRequests: 0.2,
  lambdaGbSecond: 0.0000133334, // arm64
  apiGatewayHttpPerMillion: 1.0, // HTTP API, first 300 M requests
  eventBridgeCustomEventsPerMillion: 1.0,
  sqsPerMillionRequests: 0.4, // standard queue, per 64 KB chunk
} as const;

/** Lambda duration is not measurable on emulators; assume 512 MB arm64 and this billed time per invocation. */
const LAMBDA = { memoryGb: 0.5, msPerInvocation: 150, msPerEvent: 1 };

interface Usage {
  calls: Map<string, number>;
  readUnits: number;
  writeUnits: number;
}

function meter(rt: AwsRuntime): Usage {
  const usage: Usage = { calls: new Map(), readUnits: 0, writeUnits: 0 };
  for (const [name, client] of Object.entries(rt.clients)) {
    if (name !== "doc") countCalls(client, usage.calls, name);
  }
  // Ask DynamoDB for the capacity each call consumed (DynamoDB Local computes it as the service does).
  (rt.clients.dynamo.middlewareStack as { add: (m: never, o: never) => void }).add(
    ((
      next: (a: unknown) => Promise<{ output: Record<string, unknown> }>,
      context: { commandName?: string },
    ) =>
      async (args: { input: Record<string, unknown> }) => {
        args.input.ReturnConsumedCapacity = "TOTAL";
        const result = await next(args);
        const consumed = result.output.ConsumedCapacity as
          | { CapacityUnits?: number }
          | { CapacityUnits?: number }[]
          | undefined;
        const units = (Array.isArray(consumed) ? consumed : consumed ? [consumed] : []).reduce(
          (sum, c) => sum + (c.CapacityUnits ?? 0),
          0,
        );
        // DynamoDB bills a strongly consistent read of a missing item too (1 unit per key up to 4 KB); DynamoDB
        // Local reports 0 for misses, so charge at least one unit per key asked for.
        const requested = args.input.RequestItems as Record<string, { Keys?: unknown[] }> | undefined;
        const keys = requested ? Object.values(requested).reduce((n, r) => n + (r.Keys?.length ?? 0), 0) : 1;
        if (/^(Get|BatchGet)/.test(context.commandName ?? "")) usage.readUnits += Math.max(units, keys);
        else if (/^(Query|Scan)/.test(context.commandName ?? "")) usage.readUnits += units;
        else usage.writeUnits += units;
        return result;
      }) as never,
    { step: "initialize", name: "consumed-capacity", priority: "low" } as never,
  );
  return usage;
}

function postEvents(stream: string, events: unknown[]): APIGatewayProxyEventV2 {
  const path = `/v1/streams/${stream}/events`;
  return {
    version: "2.0",
    routeKey: "POST /v1/streams/{stream}/events",
    rawPath: path,
    rawQueryString: "",
    headers: { "content-type": "application/cloudevents-batch+json" },
    requestContext: {
      http: { method: "POST", path },
      requestId: "bench",
    } as APIGatewayProxyEventV2["requestContext"],
    body: JSON.stringify(events),
    isBase64Encoded: false,
  };
}

function price(usage: Usage, path: "ingest-http" | "ingest-queue", batch: number) {
  const calls = Object.fromEntries([...usage.calls].sort());
  const n = (prefix: string, pred: (cmd: string) => boolean) =>
    [...usage.calls]
      .filter(([k]) => k.startsWith(`${prefix}:`) && pred(k.split(":")[1]!))
      .reduce((s, [, v]) => s + v, 0);
  const s3Put = n("s3", (c) => /^(Put|List|Copy|Create)/.test(c));
  const s3Get = n("s3", (c) => !/^(Put|List|Copy|Create)/.test(c));
  const kmsAsym = n("kms", (c) => c === "SignCommand" || c === "GetPublicKeyCommand");
  const kmsOther = n("kms", (c) => c !== "SignCommand" && c !== "GetPublicKeyCommand");
  const invocations = EVENTS / batch;
  const perEvents = 1_000_000 / EVENTS;
  const sink = {
    s3: ((s3Put * PRICES.s3PutPer1000) / 1000 + (s3Get * PRICES.s3GetPer1000) / 1000) * perEvents,
    kms:
      ((kmsAsym * PRICES.kmsAsymmetricPer10000) / 10000 + (kmsOther * PRICES.kmsSymmetricPer10000) / 10000) *
      perEvents,
    dynamodb:
      ((usage.writeUnits * PRICES.dynamoWriteUnitPerMillion) / 1e6 +
        (usage.readUnits * PRICES.dynamoReadUnitPerMillion) / 1e6) *
      perEvents,
    lambda:
      ((invocations * PRICES.lambdaPerMillionRequests) / 1e6 +
        ((invocations * LAMBDA.msPerInvocation + EVENTS * LAMBDA.msPerEvent) / 1000) *
          LAMBDA.memoryGb *
          PRICES.lambdaGbSecond) *
      perEvents,
  };
  // What carries events to the sink: API Gateway per request; or EventBridge per event plus SQS (the
  // EventBridge delivery, one ReceiveMessage and one DeleteMessageBatch per 10 messages, per batch).
  const transport: Record<string, number> =
    path === "ingest-http"
      ? { apiGateway: ((invocations * PRICES.apiGatewayHttpPerMillion) / 1e6) * perEvents }
      : {
          eventBridge: ((EVENTS * PRICES.eventBridgeCustomEventsPerMillion) / 1e6) * perEvents,
          sqs:
            (((EVENTS + invocations + Math.ceil(EVENTS / 10)) * PRICES.sqsPerMillionRequests) / 1e6) *
            perEvents,
        };
  const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
  const round = (o: Record<string, number>) =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number(v.toFixed(4))]));
  return {
    path,
    batch,
    events: EVENTS,
    invocations,
    callsPer1000Events: calls,
    dynamodbUnitsPer1000Events: {
      read: Number(usage.readUnits.toFixed(1)),
      write: Number(usage.writeUnits.toFixed(1)),
    },
    usdPerMillionEvents: {
      sink: round(sink),
      sinkTotal: Number(sum(sink).toFixed(4)),
      transport: round(transport),
      total: Number((sum(sink) + sum(transport)).toFixed(4)),
    },
  };
}

async function main() {
  const emulators = await startEmulators();
  useEmulators(emulators);
  const results = [];
  try {
    for (const path of ["ingest-http", "ingest-queue"] as const) {
      for (const batch of BATCHES) {
        const p = await provision();
        const producer = await registerProducer(p.runtime(), "bench-agent");
        const rt = p.runtime();
        const http = createHttpHandler(rt);
        const { sink } = await rt.start(); // cold start (GetPublicKey, key export) is not per-event cost
        await sink.submit("warmup", [producer.event("warm")]);
        const usage = meter(rt);
        for (let b = 0; b < EVENTS / batch; b++) {
          const events = Array.from({ length: batch }, (_, i) =>
            producer.event(`${path}-${batch}-${b}-${i}`),
          );
          if (path === "ingest-http") {
            const r = await http(postEvents("bench", events), lambdaContext());
            if (r.statusCode !== 200) throw new Error(`ingest-http answered ${r.statusCode}: ${r.body}`);
          } else {
            const outcomes = await commitQueueBatch(
              sink,
              events.map((e) => sqsRecord("bench", e)),
            );
            if ([...outcomes.values()].some((o) => !o.ok)) throw new Error("ingest-queue failed a message");
          }
        }
        const result = price(usage, path, batch);
        results.push(result);
        console.log(
          `${path.padEnd(13)} batch ${String(batch).padStart(3)}: sink $${result.usdPerMillionEvents.sinkTotal.toFixed(4)}/M events ` +
            `(${JSON.stringify(result.usdPerMillionEvents.sink)}), with transport $${result.usdPerMillionEvents.total.toFixed(4)}/M`,
        );
      }
    }
  } finally {
    await emulators.stop();
  }
  const goal = 0.25;
  const atBatch100 = results.filter((r) => r.batch === 100).map((r) => r.usdPerMillionEvents.sinkTotal);
  const out = {
    bench: "aws-cost",
    date: new Date().toISOString(),
    prices: PRICES,
    lambdaAssumption: LAMBDA,
    goal: {
      usdPerMillionEventsAtBatch100: goal,
      met: atBatch100.every((v) => v <= goal),
      note: "sink cost (S3, KMS, DynamoDB, Lambda) with a signed checkpoint per batch; transport priced separately",
    },
    results,
  };
  const file = join(dirname(fileURLToPath(import.meta.url)), "results", "aws-cost.json");
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

await main();

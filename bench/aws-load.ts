/**
 * AWS load benchmark: the real handlers (ingest-http through the one Hono app, the sequencer over the SQS FIFO
 * sequencer queue) on the emulators (moto: S3, KMS, SQS FIFO; DynamoDB Local), with each SDK call delayed by a
 * published typical AWS latency (LATENCY_MS, injected by SDK middleware inside the retry loop). N concurrent
 * batch-1 producers (each standing for its own ingest Lambda container) send into ONE stream and into 16 streams;
 * one sequencer container per active stream works the queue as Lambda's FIFO event source would (at most 10
 * messages per batch, one batch of a message group in flight at a time; test/aws/sequencer-pump.ts).
 *
 *   npm run bench:aws-load   → writes bench/results/aws-load.json (read by `npm run bench:aws-cost`)
 *
 * Measured per scenario: events/s per stream; p50/p99 time to a verifiable receipt (request sent → receipt in
 * hand and verified against the sink's key); API calls per 1,000 events by service and command; DynamoDB
 * capacity units (ReturnConsumedCapacity); Lambda billed milliseconds per 1,000 events by function. Not part of
 * `npm test`; takes a few minutes. Emulator CPU (moto is one Python process) and this machine's 2 shared cores
 * bound what it can show: the latency model is the floor, not the ceiling, of what AWS would do.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type AwsClients,
  AwsRuntime,
  createClients,
  createHttpHandler,
  createSequencerHandler,
} from "@auditsink/aws";
import { type NoteKey, type Receipt, verifyReceipt } from "@auditsink/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from "aws-lambda";
import { lambdaContext, provision, registerProducer, useEmulators } from "../test/aws/fixtures.ts";
import { type SequencerHandler, startPump } from "../test/aws/sequencer-pump.ts";
import { startEmulators } from "../test/emulators/harness.ts";

/**
 * Typical per-call latency, milliseconds, as AWS publishes it:
 * - DynamoDB: "single-digit millisecond performance at any scale" (DynamoDB product page and developer guide): 5;
 *   batch calls 8.
 * - S3: small requests (< 512 KB) see "median latencies often in the tens of milliseconds" (S3 performance
 *   whitepaper, "Timeouts and retries for latency-sensitive applications"): 30.
 * - SQS: "typical latencies for SendMessage, ReceiveMessage and DeleteMessage requests are in the tens or low
 *   hundreds of milliseconds" (Amazon SQS FAQ): 20.
 * - KMS: AWS publishes no latency for Sign; an in-region ECC_NIST_P256 Sign is assumed at 20 (an HSM call).
 * Not modelled: API Gateway's own overhead and Lambda's event source polling delay (both ~10 ms).
 */
export const LATENCY_MS = { dynamodb: 5, dynamodbBatch: 8, s3: 30, sqs: 20, kms: 20, other: 20 } as const;

/** Deployed memory (stacks/Ingest.ts, stacks/Sequencer.ts), for GB-seconds. */
export const MEMORY_MB = { "ingest-http": 256, sequencer: 1024 } as const;

const STREAM_COUNTS = [1, 16];
const PRODUCERS = [1, 16, 64, 256];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);

type HttpHandler = (e: APIGatewayProxyEventV2, c: unknown) => Promise<APIGatewayProxyResult>;

interface Meter {
  calls: Map<string, number>;
  readUnits: number;
  writeUnits: number;
  lambdaMs: { "ingest-http": number; sequencer: number };
  /** Time the emulators themselves took per call, beyond the injected latency. */
  emulatorMs: number;
  invocations: { "ingest-http": number; sequencer: number };
}

function newMeter(): Meter {
  return {
    calls: new Map(),
    readUnits: 0,
    writeUnits: 0,
    lambdaMs: { "ingest-http": 0, sequencer: 0 },
    emulatorMs: 0,
    invocations: { "ingest-http": 0, sequencer: 0 },
  };
}

type Stack = { add: (m: never, o: never) => void };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Clients with latency and metering middleware; `meter.current` is swapped per scenario. */
function instrumentedClients(meter: { current: Meter }): AwsClients {
  const clients = createClients();
  for (const [name, client] of Object.entries(clients)) {
    if (name === "doc") continue;
    (client.middlewareStack as unknown as Stack).add(
      ((next: (a: unknown) => Promise<unknown>, context: { commandName?: string }) =>
        async (args: unknown) => {
          const key = `${name}:${context.commandName ?? "unknown"}`;
          meter.current.calls.set(key, (meter.current.calls.get(key) ?? 0) + 1);
          const batch = /^Batch/.test(context.commandName ?? "");
          const ms =
            name === "dynamo"
              ? batch
                ? LATENCY_MS.dynamodbBatch
                : LATENCY_MS.dynamodb
              : name === "s3" || name === "sqs" || name === "kms"
                ? LATENCY_MS[name]
                : LATENCY_MS.other;
          await sleep(ms);
          return next(args);
        }) as never,
      { step: "deserialize", name: `latency-${name}`, priority: "low" } as never,
    );
  }
  // DynamoDB capacity as the service bills it (DynamoDB Local computes it; misses of strong reads bill 1 unit).
  (clients.dynamo.middlewareStack as unknown as Stack).add(
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
        const requested = args.input.RequestItems as Record<string, { Keys?: unknown[] }> | undefined;
        const keys = requested ? Object.values(requested).reduce((n, r) => n + (r.Keys?.length ?? 0), 0) : 1;
        if (/^(Get|BatchGet)/.test(context.commandName ?? ""))
          meter.current.readUnits += Math.max(units, keys);
        else if (/^(Query|Scan)/.test(context.commandName ?? "")) meter.current.readUnits += units;
        else meter.current.writeUnits += Math.max(units, 1);
        return result;
      }) as never,
    { step: "initialize", name: "consumed-capacity", priority: "low" } as never,
  );
  return clients;
}

function post(stream: string, events: unknown[]): APIGatewayProxyEventV2 {
  const path = `/v1/streams/${stream}/events`;
  return {
    version: "2.0",
    routeKey: "POST /v1/streams/{stream}/events",
    rawPath: path,
    rawQueryString: "",
    headers: { "content-type": "application/json" },
    requestContext: {
      http: { method: "POST", path },
      requestId: "bench",
    } as APIGatewayProxyEventV2["requestContext"],
    body: JSON.stringify(events.length === 1 ? events[0] : events),
    isBase64Encoded: false,
  };
}

const percentile = (sorted: number[], q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function main() {
  const emulators = await startEmulators();
  useEmulators(emulators);
  const results: Record<string, unknown>[] = [];
  try {
    const p = await provision();
    const meter = { current: newMeter() };
    const clients = instrumentedClients(meter);
    const producer = await registerProducer(p.runtime(), "bench-agent");
    const trusted: NoteKey[] = [(await p.runtime().start()).signer.key];
    const timed =
      <A extends unknown[], R>(fn: (...a: A) => Promise<R>, name: keyof Meter["lambdaMs"]) =>
      async (...a: A): Promise<R> => {
        const t = performance.now();
        try {
          return await fn(...a);
        } finally {
          meter.current.lambdaMs[name] += performance.now() - t;
          meter.current.invocations[name]++;
        }
      };
    const ingestContainer = () =>
      timed(
        createHttpHandler(new AwsRuntime(p.settings, clients, { handOff: true })) as unknown as HttpHandler,
        "ingest-http",
      );
    const sequencerContainer = () =>
      timed(
        createSequencerHandler(new AwsRuntime(p.settings, clients)) as unknown as SequencerHandler,
        "sequencer",
      );

    const scenarios: { streams: number; producers: number; batch: number }[] = [];
    for (const streams of STREAM_COUNTS)
      for (const producers of PRODUCERS) scenarios.push({ streams, producers, batch: 1 });
    scenarios.push({ streams: 1, producers: 16, batch: 100 });

    let seq = 0;
    for (const scenario of scenarios) {
      const tag = `s${scenario.streams}-n${scenario.producers}-b${scenario.batch}`;
      if (process.env.BENCH_ONLY && !tag.startsWith(process.env.BENCH_ONLY)) continue;
      const streams = [...Array(scenario.streams).keys()].map((i) => `bench.${tag}.${i}`);
      const pump = startPump({
        sqs: clients.sqs,
        queueUrl: p.sequencerQueueUrl,
        handlers: streams.map(() => sequencerContainer()),
        // SQS long polling returns as soon as a message arrives; moto's waits out the timeout: poll short instead.
        waitSeconds: 0,
        idleMs: 10,
      });
      // Warm every container (KMS public key, first head load) outside the measurement.
      const containers = [...Array(scenario.producers).keys()].map(() => ingestContainer());
      await Promise.all(
        containers.map((c, i) =>
          c(post(streams[i % streams.length]!, [producer.event(`warm-${tag}-${i}`)]), lambdaContext()),
        ),
      );
      meter.current = newMeter();
      const latencies: number[] = [];
      let events = 0;
      let failures = 0;
      const started = performance.now();
      const until = started + SECONDS * 1000;
      await Promise.all(
        containers.map(async (ingest, i) => {
          const stream = streams[i % streams.length]!;
          while (performance.now() < until) {
            const batch = [...Array(scenario.batch).keys()].map(() => producer.event(`e-${seq++}`));
            const t = performance.now();
            const response = await ingest(post(stream, batch), lambdaContext());
            if (response.statusCode !== 200) {
              if (failures++ === 0) console.error(`${tag}: ${response.statusCode} ${response.body}`);
              continue;
            }
            const receipts = (JSON.parse(response.body) as { receipts: Receipt[] }).receipts;
            if (!receipts.every((r) => verifyReceipt(r, { trusted }).ok))
              throw new Error("receipt did not verify");
            latencies.push(performance.now() - t);
            events += receipts.length;
          }
        }),
      );
      const elapsed = (performance.now() - started) / 1000;
      await pump.stop();
      const m = meter.current;
      const per1000 = (v: number) => Number(((v * 1000) / Math.max(events, 1)).toFixed(2));
      latencies.sort((a, b) => a - b);
      const byService: Record<string, Record<string, number>> = {};
      for (const [key, n] of [...m.calls].sort()) {
        const [service, command] = key.split(":") as [string, string];
        byService[service] ??= {};
        byService[service][command.replace(/Command$/, "")] = per1000(n);
      }
      const result = {
        ...scenario,
        seconds: Number(elapsed.toFixed(1)),
        events,
        failedRequests: failures,
        eventsPerSecondPerStream: Number((events / elapsed / scenario.streams).toFixed(1)),
        eventsPerSecondTotal: Number((events / elapsed).toFixed(1)),
        receiptMs: {
          p50: Math.round(percentile(latencies, 0.5)),
          p99: Math.round(percentile(latencies, 0.99)),
        },
        apiCallsPer1000Events: byService,
        dynamodbUnitsPer1000Events: { read: per1000(m.readUnits), write: per1000(m.writeUnits) },
        emulatorMsPerCall: Number(
          (
            m.emulatorMs /
            Math.max(
              1,
              [...m.calls.values()].reduce((a, b) => a + b, 0),
            )
          ).toFixed(1),
        ),
        lambdaPer1000Events: Object.fromEntries(
          (Object.keys(MEMORY_MB) as (keyof typeof MEMORY_MB)[]).map((fn) => [
            fn,
            {
              invocations: per1000(m.invocations[fn]),
              billedMs: per1000(m.lambdaMs[fn]),
              memoryMb: MEMORY_MB[fn],
            },
          ]),
        ),
      };
      results.push(result);
      console.log(
        `${tag.padEnd(14)} ${String(result.eventsPerSecondPerStream).padStart(7)} ev/s/stream  ` +
          `receipt p50 ${result.receiptMs.p50} ms p99 ${result.receiptMs.p99} ms  (${events} events, ${failures} failed)`,
      );
    }
  } finally {
    await emulators.stop();
  }
  const batch1 = results.filter((r) => r.batch === 1) as {
    eventsPerSecondPerStream: number;
    receiptMs: { p99: number };
  }[];
  // The same commit cycle at the published latencies alone (what AWS would take, without emulator CPU): the
  // sequencer's calls in order, plus the event source's receive and delete.
  const L = LATENCY_MS;
  const cycleMs =
    L.sqs + L.dynamodbBatch + L.s3 + L.dynamodb + L.kms + L.s3 + L.dynamodb + L.dynamodbBatch + L.sqs;
  const out = {
    bench: "aws-load",
    date: new Date().toISOString(),
    command: "npm run bench:aws-load",
    machine: { cpus: cpus().length, loadAverage1m: Number(loadavg()[0]!.toFixed(1)) },
    latencyMs: LATENCY_MS,
    model: {
      commitCycleMs: cycleMs,
      maxEventsPerSecondPerStreamAtBatch1: Math.floor((10 * 1000) / cycleMs),
      note:
        "one FIFO batch (≤ 10 messages) per cycle: receive, dedup read, segment PUT, dedup writes, KMS Sign, " +
        "checkpoint PUT, head write, answer write, delete; the emulators' own CPU time comes on top of this",
    },
    secondsPerScenario: SECONDS,
    goal: {
      eventsPerSecondPerStreamAtBatch1: 1000,
      p99ReceiptMs: 1000,
      met: batch1.every((r) => r.eventsPerSecondPerStream >= 1000 && r.receiptMs.p99 <= 1000),
      bound:
        "Lambda's SQS FIFO event source hands a sequencer at most 10 messages of a message group per batch, and a " +
        "group's next batch waits for this one: per stream, at most 10 batch-1 events per commit cycle (dedup read, " +
        "segment PUT, dedup writes, KMS Sign, checkpoint PUT, head write, answer write, delete).",
    },
    results,
  };
  const file = join(dirname(fileURLToPath(import.meta.url)), "results", "aws-load.json");
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

await main();

/**
 * AWS load benchmark: the real handlers (ingest-http through the one Hono app, writing pending items and waking
 * the sequencer; the sequencer holding each stream's lease) on the emulators (moto: S3, KMS, SQS; DynamoDB
 * Local), with each SDK call delayed by a published typical AWS latency (LATENCY_MS, injected by SDK middleware
 * inside the retry loop). N concurrent batch-1 producers (each standing for its own ingest Lambda container)
 * send into ONE stream and into 16 streams; Lambda's asynchronous invoke of the sequencer is the in-process
 * SequencerWake port (test/aws/sequencer-wake.ts) with the invoke's latency injected, each wake-up running in a
 * pooled sequencer "container" as Lambda would.
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
  PENDING_SHARDS,
} from "@auditsink/aws";
import { type NoteKey, type Receipt, verifyReceipt } from "@auditsink/core";
import { SignCommand } from "@aws-sdk/client-kms";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from "aws-lambda";
import {
  lambdaContext,
  postEventsEvent,
  provision,
  registerProducer,
  useEmulators,
} from "../test/aws/fixtures.ts";
import { InProcessWake, type SequencerHandler } from "../test/aws/sequencer-wake.ts";
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
 * - Lambda Invoke (InvocationType Event): AWS publishes none; the API call returns once the event is queued,
 *   assumed 20, plus the time until a sequencer starts, assumed 30 (a warm container).
 * Not modelled: API Gateway's own overhead (~10 ms) and cold starts.
 */
export const LATENCY_MS = {
  dynamodb: 5,
  dynamodbBatch: 8,
  s3: 30,
  sqs: 20,
  kms: 20,
  lambdaInvoke: 20,
  lambdaStart: 30,
  other: 20,
} as const;

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
  /** Time the emulators themselves took per call, beyond the injected latency, in total and by command. */
  emulatorMs: number;
  emulatorMsByCall: Map<string, number>;
  invocations: { "ingest-http": number; sequencer: number };
  /** Events in each commit the sequencers made. */
  commits: number[];
}

function newMeter(): Meter {
  return {
    calls: new Map(),
    readUnits: 0,
    writeUnits: 0,
    lambdaMs: { "ingest-http": 0, sequencer: 0 },
    emulatorMs: 0,
    emulatorMsByCall: new Map(),
    invocations: { "ingest-http": 0, sequencer: 0 },
    commits: [],
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
          const t = performance.now();
          try {
            return await next(args);
          } finally {
            const ms = performance.now() - t;
            meter.current.emulatorMs += ms;
            meter.current.emulatorMsByCall.set(key, (meter.current.emulatorMsByCall.get(key) ?? 0) + ms);
          }
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

const post = (stream: string, events: unknown[]) =>
  postEventsEvent(stream, events.length === 1 ? events[0] : events);

const percentile = (sorted: number[], q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** Busy and total CPU time of the whole machine (all cores), ms. */
function machineTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of cpus()) {
    const t = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    total += t;
    busy += t - c.times.idle;
  }
  return { busy, total };
}

const busyShare = (a: { busy: number; total: number }, b: { busy: number; total: number }) =>
  Number(((b.busy - a.busy) / Math.max(1, b.total - a.total)).toFixed(2));

/**
 * What the emulators sustain on this machine without injected latency, before any scenario: calls per second
 * for the item writes and strongly consistent reads every batch-1 event needs (a ~600-byte item, like a pending
 * part), and for S3 puts and KMS signatures (once per commit), each with 64 callers for 3 s.
 */
async function probeEmulators(p: Awaited<ReturnType<typeof provision>>): Promise<Record<string, number>> {
  const raw = createClients();
  const table = p.settings.ledgerTable;
  const body = new Uint8Array(600).fill(7);
  const rate = async (call: (i: number) => Promise<unknown>) => {
    let n = 0;
    const until = performance.now() + 3000;
    const t = performance.now();
    await Promise.all(
      [...Array(64).keys()].map(async (w) => {
        while (performance.now() < until) await call(w * 1_000_000 + n++);
      }),
    );
    return Math.round(n / ((performance.now() - t) / 1000));
  };
  const item = (i: number) => ({ pk: `probe#${i % 64}`, sk: String(i), body });
  return {
    dynamodbPutItem: await rate((i) => raw.doc.send(new PutCommand({ TableName: table, Item: item(i) }))),
    dynamodbGetItemConsistent: await rate((i) =>
      raw.doc.send(
        new GetCommand({ TableName: table, Key: { pk: `probe#${i % 64}`, sk: "1" }, ConsistentRead: true }),
      ),
    ),
    s3PutObject: await rate((i) =>
      raw.s3.send(new PutObjectCommand({ Bucket: p.settings.archiveBucket, Key: `probe/${i}`, Body: body })),
    ),
    kmsSign: await rate(() =>
      raw.kms.send(
        new SignCommand({
          KeyId: p.settings.signingKeyId,
          Message: body.subarray(0, 32),
          MessageType: "DIGEST",
          SigningAlgorithm: "ECDSA_SHA_256",
        }),
      ),
    ),
  };
}

async function main() {
  const emulators = await startEmulators();
  useEmulators(emulators);
  const results: Record<string, unknown>[] = [];
  let emulatorCapacity: Record<string, number> = {};
  try {
    const p = await provision();
    emulatorCapacity = await probeEmulators(p);
    console.log("emulator capacity (calls/s, no injected latency):", emulatorCapacity);
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
    // Lambda's async invoke: the Invoke call's latency and the container start, then the real handler.
    const lambda = new InProcessWake({ latencyMs: LATENCY_MS.lambdaStart });
    const wake = {
      wake: async (stream: string) => {
        const key = "lambda:Invoke";
        meter.current.calls.set(key, (meter.current.calls.get(key) ?? 0) + 1);
        await sleep(LATENCY_MS.lambdaInvoke);
        void lambda.wake(stream);
      },
    };
    lambda.container = () => {
      const handler = createSequencerHandler(new AwsRuntime(p.settings, clients, { wake }));
      return timed(async (event: unknown, context: unknown) => {
        const run = (await handler(event, context as never)) as { commits?: number[] };
        meter.current.commits.push(...(run.commits ?? []));
        return run;
      }, "sequencer") as SequencerHandler;
    };
    const ingestContainer = () =>
      timed(
        createHttpHandler(
          new AwsRuntime(p.settings, clients, {
            handOff: true,
            wake,
            receiptPolling: { firstPollMs: 20, pollMs: 20 },
          }),
        ) as unknown as HttpHandler,
        "ingest-http",
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
      const cpuBefore = process.cpuUsage();
      const machineBefore = machineTimes();
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
      const cpu = process.cpuUsage(cpuBefore);
      const machineBusy = busyShare(machineBefore, machineTimes());
      await lambda.settled();
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
        eventsPerCommit: {
          commits: m.commits.length,
          mean: Number((m.commits.reduce((a, b) => a + b, 0) / Math.max(1, m.commits.length)).toFixed(1)),
          max: Math.max(0, ...m.commits),
        },
        // Where this machine's CPU went: the share of both cores busy during the run, and this process's own CPU
        // (the handlers, the SDK clients and the producers) per event; the rest of the busy time is the emulators.
        machineBusyShare: machineBusy,
        benchProcessCpuMsPerEvent: Number(((cpu.user + cpu.system) / 1000 / Math.max(events, 1)).toFixed(2)),
        emulatorMsPerCall: Number(
          (
            m.emulatorMs /
            Math.max(
              1,
              [...m.calls.values()].reduce((a, b) => a + b, 0),
            )
          ).toFixed(1),
        ),
        emulatorMsPerCallByCommand: Object.fromEntries(
          [...m.emulatorMsByCall]
            .sort()
            .map(([key, ms]) => [
              key.replace(/Command$/, ""),
              Number((ms / Math.max(1, m.calls.get(key) ?? 0)).toFixed(1)),
            ]),
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
          `receipt p50 ${result.receiptMs.p50} ms p99 ${result.receiptMs.p99} ms  ` +
          `${result.eventsPerCommit.mean} ev/commit  (${events} events, ${failures} failed)`,
      );
    }
  } finally {
    await emulators.stop();
  }
  const batch1 = results.filter((r) => r.batch === 1) as {
    eventsPerSecondPerStream: number;
    receiptMs: { p99: number };
  }[];
  // One sequencer loop at the published latencies alone (what AWS would take, without emulator CPU): Query the
  // pending shards, dedup read, segment PUT, dedup writes, KMS Sign, checkpoint PUT, head write, then the answers
  // and the pending deletes (parallel BatchWriteItems). A loop commits whatever arrived during the previous one,
  // so per-stream throughput is not bounded by the loop: it is bounded by the pending partitions' write capacity.
  const L = LATENCY_MS;
  const loopMs =
    L.dynamodb + L.dynamodbBatch + L.s3 + L.dynamodb + L.kms + L.s3 + L.dynamodb + L.dynamodbBatch * 2;
  const out = {
    bench: "aws-load",
    date: new Date().toISOString(),
    command: "npm run bench:aws-load",
    machine: { cpus: cpus().length, loadAverage1m: Number(loadavg()[0]!.toFixed(1)) },
    latencyMs: LATENCY_MS,
    model: {
      sequencerLoopMs: loopMs,
      // Per event: one pending put and one pending delete (≤ 1 KB each), over PENDING_SHARDS partitions of
      // 1,000 WCU/s each; one strongly consistent lease read (½… 1 RCU) on one partition of 3,000 RCU/s.
      maxEventsPerSecondPerStreamAtBatch1: Math.min((PENDING_SHARDS * 1000) / 2, 3000),
      receiptFloorMs:
        L.dynamodb + L.dynamodb + L.lambdaInvoke + L.lambdaStart + L.dynamodb + loopMs + 20 /* first poll */,
      note:
        "the per-stream rate is bounded by the pending items' write capacity (PENDING_SHARDS partitions × 1,000 " +
        "WCU/s, two writes per event) and the lease item's read capacity; a sequencer loop commits everything " +
        "that arrived during the previous loop, so events per commit grow with the rate",
    },
    emulatorCapacityPerSecond: emulatorCapacity,
    secondsPerScenario: SECONDS,
    goal: {
      eventsPerSecondPerStreamAtBatch1: 1000,
      p99ReceiptMs: 1000,
      met: batch1.every((r) => r.eventsPerSecondPerStream >= 1000 && r.receiptMs.p99 <= 1000),
      bound:
        "on this machine: the emulators' CPU (moto is one Python process, DynamoDB Local one JVM) and the 2 shared " +
        "cores running the benchmark's own handlers; see emulatorMsPerCall and the model for what AWS would bound",
    },
    results,
  };
  const file = join(dirname(fileURLToPath(import.meta.url)), "results", "aws-load.json");
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

await main();

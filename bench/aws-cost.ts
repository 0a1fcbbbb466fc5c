/**
 * AWS cost model, all-in: prices what `npm run bench:aws-load` measured (API calls per 1,000 events by service
 * and command, DynamoDB capacity units, Lambda invocations and billed milliseconds at the deployed memory) at
 * us-east-1 list prices, for batch-1 producers and batch-100 producers over HTTP (accept → pending items and a
 * wake-up → the stream's sequencer). The sweep schedule (1,440 sequencer invocations a day, a few reads per
 * stream) is a fixed daily cost, not a per-event one, and is left out. Adds what the emulators cannot count: API Gateway requests, the dedup window's storage, CloudWatch
 * Logs ingestion, X-Ray traces and data transfer out, each from a stated assumption.
 *
 * The event index (DynamoEventIndex: postings written in the commit step, `npm run bench:aws-index`) is priced
 * from its own measurement: its item writes per event are added to each batch size's total, and the cost of one
 * query by agent returning 100 events is priced on its own.
 *
 *   npm run bench:aws-load && npm run bench:aws-index && npm run bench:aws-cost   → writes bench/results/aws-cost.json
 *
 * Prices: AWS list prices for us-east-1 (N. Virginia), on-demand, as published on the AWS pricing pages
 * (2026-11). Free tiers are ignored.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** USD, us-east-1. */
const PRICES = {
  region: "us-east-1",
  apiGatewayHttpPerMillion: 1.0, // HTTP API, first 300 M requests a month
  lambdaPerMillionRequests: 0.2,
  lambdaGbSecond: 0.0000133334, // arm64
  sqsStandardPerMillionRequests: 0.4, // standard queue, per 64 KB chunk of a request (dead letters only here)
  dynamoWriteUnitPerMillion: 0.625, // on-demand write request unit
  dynamoReadUnitPerMillion: 0.125, // on-demand read request unit
  dynamoStorageGbMonth: 0.25,
  dynamoPitrGbMonth: 0.2, // continuous backups (the ledger has PITR on)
  s3PutPer1000: 0.005,
  s3GetPer1000: 0.0004,
  kmsAsymmetricPer10000: 0.15, // Sign and GetPublicKey on an ECC key
  kmsSymmetricPer10000: 0.03,
  cloudwatchLogsIngestGb: 0.5,
  xrayPerMillionTraces: 5.0,
  transferOutGb: 0.09, // first 10 TB a month to the internet
} as const;

/** What the emulators cannot measure, stated. */
const ASSUMPTIONS = {
  /** Lambda's own START/END/REPORT lines plus one EMF metrics line and one structured log line per invocation. */
  logBytesPerInvocation: 1200,
  /** X-Ray's default sampling: 1 request a second, then 5%; at sustained load about 5% of invocations. */
  xraySampledShare: 0.05,
  /** A dedup item (key hash, event key, stream, index, two hashes, expiry) with DynamoDB's 100-byte overhead. */
  dedupItemBytes: 420,
  /** The dedup window priced (the stage default, stacks/settings.ts dedupWindowDays). */
  dedupWindowDays: 14,
  /** Response bytes per event sent back to the producer: a receipt (checkpoint, proof) at batch 1, less when shared. */
  responseBytesPerEvent: { 1: 1900, 100: 1300 } as Record<number, number>,
};

interface LoadResult {
  streams: number;
  producers: number;
  batch: number;
  events: number;
  apiCallsPer1000Events: Record<string, Record<string, number>>;
  dynamodbUnitsPer1000Events: { read: number; write: number };
  lambdaPer1000Events: Record<string, { invocations: number; billedMs: number; memoryMb: number }>;
}

interface IndexResult {
  scenario: string;
  eventsPerCommit: number;
  index: { itemWritesPer1000Events: number; writeUnitsPer1000Events: number };
  queryByAgent: {
    limit: number;
    returned: number;
    dynamodbQueries: number;
    dynamodbReadUnits: number;
    s3GetObjects: number;
    modelledAwsMs: number;
  };
}

const here = dirname(fileURLToPath(import.meta.url));
const load = JSON.parse(readFileSync(join(here, "results", "aws-load.json"), "utf8")) as {
  date: string;
  results: LoadResult[];
};
const indexed = JSON.parse(readFileSync(join(here, "results", "aws-index.json"), "utf8")) as {
  date: string;
  results: IndexResult[];
};
/**
 * The index scenario priced with each batch size: batch 1 as commits of 1 event (a quiet stream; under load the
 * sequencer's commits carry many events and cost less per event), batch 100 as commits of one 100-event request.
 */
const INDEX_SCENARIO: Record<number, string> = {
  1: "commits of 1 event",
  100: "commits of 100 events, one agent",
};
const indexScenario = (batch: number) => {
  const found = indexed.results.find((r) => r.scenario === INDEX_SCENARIO[batch]);
  if (!found) throw new Error(`bench/results/aws-index.json has no scenario "${INDEX_SCENARIO[batch]}"`);
  return found;
};

/** One `GET /v1/events?agent=…&limit=100` through API Gateway and the query function (512 MB). */
function priceQuery(r: IndexResult) {
  const q = r.queryByAgent;
  const lines = {
    apiGateway: PRICES.apiGatewayHttpPerMillion / 1e6,
    lambdaRequest: PRICES.lambdaPerMillionRequests / 1e6,
    // Billed time modelled at AWS latencies from the measured calls, plus 20 ms of work.
    lambdaDuration: ((q.modelledAwsMs + 20) / 1000) * (512 / 1024) * PRICES.lambdaGbSecond,
    // Eventually consistent Query: the units DynamoDB Local reported.
    dynamodbQuery:
      Math.max(q.dynamodbQueries * 0.5, q.dynamodbReadUnits) * (PRICES.dynamoReadUnitPerMillion / 1e6),
    s3GetObject: q.s3GetObjects * (PRICES.s3GetPer1000 / 1000),
  };
  const usd = Object.fromEntries(Object.entries(lines).map(([k, v]) => [k, Number(v.toExponential(3))]));
  const total = Object.values(lines).reduce((a, b) => a + b, 0);
  return {
    ...q,
    usdPerQuery: usd,
    totalUsdPerQuery: Number(total.toExponential(3)),
    usdPerMillionQueries: Number((total * 1e6).toFixed(2)),
  };
}

function price(r: LoadResult) {
  const calls = (service: string, pred: (cmd: string) => boolean = () => true) =>
    Object.entries(r.apiCallsPer1000Events[service] ?? {})
      .filter(([cmd]) => pred(cmd))
      .reduce((s, [, n]) => s + n, 0);
  const perMillion = 1000; // figures are per 1,000 events
  const lambda = r.lambdaPer1000Events;
  const invocations = Object.values(lambda).reduce((s, f) => s + f.invocations, 0);
  const gbSeconds = Object.values(lambda).reduce((s, f) => s + (f.billedMs / 1000) * (f.memoryMb / 1024), 0);
  const dedupGbMonths =
    ((1000 * ASSUMPTIONS.dedupItemBytes) / 1024 ** 3) * (ASSUMPTIONS.dedupWindowDays / 30);
  const lines: Record<string, number> = {
    apiGateway: lambda["ingest-http"]!.invocations * (PRICES.apiGatewayHttpPerMillion / 1e6),
    lambdaRequests: invocations * (PRICES.lambdaPerMillionRequests / 1e6),
    lambdaDuration: gbSeconds * PRICES.lambdaGbSecond,
    // Lambda's asynchronous Invoke is billed as the sequencer's invocation (lambdaRequests), not per API call.
    sqs: calls("sqs") * (PRICES.sqsStandardPerMillionRequests / 1e6),
    dynamodbRequests:
      r.dynamodbUnitsPer1000Events.write * (PRICES.dynamoWriteUnitPerMillion / 1e6) +
      r.dynamodbUnitsPer1000Events.read * (PRICES.dynamoReadUnitPerMillion / 1e6),
    dynamodbDedupStorage: dedupGbMonths * (PRICES.dynamoStorageGbMonth + PRICES.dynamoPitrGbMonth),
    s3Requests:
      calls("s3", (c) => /^(Put|List|Copy|Create)/.test(c)) * (PRICES.s3PutPer1000 / 1000) +
      calls("s3", (c) => !/^(Put|List|Copy|Create)/.test(c)) * (PRICES.s3GetPer1000 / 1000),
    kms:
      calls("kms", (c) => c === "Sign" || c === "GetPublicKey") * (PRICES.kmsAsymmetricPer10000 / 1e4) +
      calls("kms", (c) => c !== "Sign" && c !== "GetPublicKey") * (PRICES.kmsSymmetricPer10000 / 1e4),
    cloudwatchLogs:
      ((invocations * ASSUMPTIONS.logBytesPerInvocation) / 1024 ** 3) * PRICES.cloudwatchLogsIngestGb,
    xray: invocations * ASSUMPTIONS.xraySampledShare * (PRICES.xrayPerMillionTraces / 1e6),
    dataTransferOut:
      ((1000 * (ASSUMPTIONS.responseBytesPerEvent[r.batch] ?? 1300)) / 1024 ** 3) * PRICES.transferOutGb,
    // The event index's postings (bench:aws-index), written in the commit step.
    eventIndex:
      indexScenario(r.batch).index.writeUnitsPer1000Events * (PRICES.dynamoWriteUnitPerMillion / 1e6),
  };
  const usd = Object.fromEntries(
    Object.entries(lines).map(([k, v]) => [k, Number((v * perMillion).toFixed(4))]),
  );
  const total = Object.values(usd).reduce((a, b) => a + b, 0);
  const ranked = Object.entries(usd).sort((a, b) => b[1] - a[1]);
  return { usdPerMillionEvents: usd, totalUsdPerMillionEvents: Number(total.toFixed(4)), ranked };
}

const goals: Record<number, number> = { 1: 2.0, 100: 0.25 };
const results = [];
for (const batch of [1, 100]) {
  // The busiest measured scenario at this batch size: the most events behind each per-1,000 figure.
  const r = load.results.filter((x) => x.batch === batch).sort((a, b) => b.events - a.events)[0];
  if (!r) {
    // No batch of this size completed in the load run: say so instead of pricing zero events.
    results.push({
      batch,
      measured: false,
      reason: `bench/results/aws-load.json has no completed batch-${batch} scenario`,
    });
    console.log(`batch ${String(batch).padStart(3)}: not measured (no completed scenario in aws-load.json)`);
    continue;
  }
  const priced = price(r);
  const goal = goals[batch]!;
  const met = priced.totalUsdPerMillionEvents <= goal;
  results.push({
    batch,
    scenario: { streams: r.streams, producers: r.producers, events: r.events },
    ...priced,
    goalUsdPerMillionEvents: goal,
    met,
    ...(met
      ? {}
      : {
          boundBy: priced.ranked
            .slice(0, 3)
            .map(([k, v]) => `${k} $${v.toFixed(2)}`)
            .join(", "),
        }),
  });
  console.log(
    `batch ${String(batch).padStart(3)}: $${priced.totalUsdPerMillionEvents.toFixed(2)}/M events all-in ` +
      `(goal $${goal.toFixed(2)}${
        met
          ? ", met"
          : `, missed; largest: ${priced.ranked
              .slice(0, 3)
              .map(([k, v]) => `${k} $${v.toFixed(2)}`)
              .join(", ")}`
      })`,
  );
}

const queries = indexed.results.map((r) => ({
  scenario: r.scenario,
  eventsPerCommit: r.eventsPerCommit,
  indexWriteUnitsPer1000Events: r.index.writeUnitsPer1000Events,
  indexUsdPerMillionEvents: Number(
    (r.index.writeUnitsPer1000Events * 1000 * (PRICES.dynamoWriteUnitPerMillion / 1e6)).toFixed(4),
  ),
  queryByAgent: priceQuery(r),
}));
for (const q of queries) {
  console.log(
    `index, ${q.scenario}: $${q.indexUsdPerMillionEvents.toFixed(3)}/M events; a query by agent (100 results): ` +
      `$${q.queryByAgent.totalUsdPerQuery} ($${q.queryByAgent.usdPerMillionQueries}/M queries), ` +
      `~${q.queryByAgent.modelledAwsMs} ms of calls at AWS latencies`,
  );
}

const out = {
  bench: "aws-cost",
  date: new Date().toISOString(),
  command: "npm run bench:aws-load && npm run bench:aws-index && npm run bench:aws-cost",
  measuredBy: `bench/results/aws-load.json (${load.date}), bench/results/aws-index.json (${indexed.date})`,
  prices: PRICES,
  assumptions: ASSUMPTIONS,
  results,
  eventIndex: queries,
};
const file = join(here, "results", "aws-cost.json");
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
console.log(`wrote ${file}`);

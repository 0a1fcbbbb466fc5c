/**
 * The AWS event index, measured on the emulators (moto S3 and KMS, DynamoDB Local) with the real runtime: the
 * committing Sink writes postings (packages/aws/src/DynamoEventIndex.ts) and `find` answers queries. Counts, per
 * scenario, the item writes and write units the index adds per 1,000 events and the bytes it stores, and, for a
 * query by agent returning 100 events, its DynamoDB and S3 calls and units. `npm run bench:aws-cost` prices them.
 *
 *   npm run bench:aws-index   → writes bench/results/aws-index.json
 *
 * Scenarios (events signed by one registered producer; 16 agents; a run and a trace per agent per 50 events;
 * four event types):
 *   - commits of 1 event (a quiet stream: every batch-1 event is its own segment — the most postings per event);
 *   - commits of 100 events from one agent (one batch-100 request);
 *   - commits of 100 events from 16 agents (what the sequencer commits when many batch-1 producers share a stream).
 * Emulator wall times are in the JSON but are not AWS latencies; the query's AWS latency is modelled from the calls.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AwsRuntime } from "@auditsink/aws";
import { generateKeyPair, type SignedEvent, signEvent } from "@auditsink/core";
import { provision, useEmulators } from "../test/aws/fixtures.ts";
import { startEmulators } from "../test/emulators/harness.ts";

const here = dirname(fileURLToPath(import.meta.url));
const AGENTS = 16;
const TYPES = ["ai.agent.tool_call", "ai.agent.tool_result", "ai.agent.llm_call", "ai.agent.reply"];

/** Per-table DynamoDB calls and consumed units, and S3 GetObjects, as the runtime's clients send them. */
interface Meter {
  calls: Map<string, number>;
  units: Map<string, number>;
  s3Gets: number;
  s3GetBytes: number;
}

type Stack = {
  middlewareStack: { add: (m: never, o: never) => void };
};

function meter(runtime: AwsRuntime, indexTable: string): Meter {
  const m: Meter = { calls: new Map(), units: new Map(), s3Gets: 0, s3GetBytes: 0 };
  (runtime.clients.dynamo as unknown as Stack).middlewareStack.add(
    ((
      next: (a: unknown) => Promise<{ output: Record<string, unknown> }>,
      context: { commandName?: string },
    ) =>
      async (args: { input: Record<string, unknown> }) => {
        const onIndex = args.input.TableName === indexTable;
        if (onIndex) args.input.ReturnConsumedCapacity = "TOTAL";
        const result = await next(args);
        if (onIndex) {
          const key = context.commandName ?? "?";
          m.calls.set(key, (m.calls.get(key) ?? 0) + 1);
          const used = (result.output.ConsumedCapacity as { CapacityUnits?: number } | undefined)
            ?.CapacityUnits;
          m.units.set(key, (m.units.get(key) ?? 0) + (used ?? 0));
        }
        return result;
      }) as never,
    { step: "initialize", name: "index-meter" } as never,
  );
  (runtime.clients.s3 as unknown as Stack).middlewareStack.add(
    ((
      next: (a: unknown) => Promise<{ output: Record<string, unknown> }>,
      context: { commandName?: string },
    ) =>
      async (args: unknown) => {
        const result = await next(args);
        if (context.commandName === "GetObjectCommand") {
          m.s3Gets++;
          m.s3GetBytes += Number(result.output.ContentLength ?? 0);
        }
        return result;
      }) as never,
    { step: "initialize", name: "s3-meter" } as never,
  );
  return m;
}

const snapshot = (m: Meter) => ({
  calls: Object.fromEntries(m.calls),
  units: Object.fromEntries(m.units),
  s3Gets: m.s3Gets,
  s3GetBytes: m.s3GetBytes,
});
const reset = (m: Meter) => {
  m.calls.clear();
  m.units.clear();
  m.s3Gets = 0;
  m.s3GetBytes = 0;
};

async function main() {
  const emulators = await startEmulators();
  try {
    useEmulators(emulators);
    const p = await provision();
    const runtime = p.runtime();
    const m = meter(runtime, p.settings.eventIndexTable);
    const { privateKey, publicKey } = generateKeyPair("ed25519");
    await runtime.producers.register({ id: "fleet", publicKey, streams: ["*"] });
    const { sink } = await runtime.start();
    let serial = 0;
    const event = (agent: number): SignedEvent => {
      const n = serial++;
      const run = `run-${agent}-${Math.floor(n / 50)}`;
      const trace = Buffer.from(run.padEnd(16, "-")).toString("hex").slice(0, 32).padEnd(32, "0");
      return signEvent(
        {
          specversion: "1.0",
          id: `e-${n}`,
          source: `agent://agent-${agent}`,
          type: TYPES[n % TYPES.length]!,
          time: new Date().toISOString(),
          traceparent: `00-${trace}-00f067aa0ba902b7-01`,
          data: {
            "gen_ai.agent.id": `agent-${agent}`,
            "gen_ai.conversation.id": run,
            "gen_ai.operation.name": "execute_tool",
          },
        },
        privateKey,
      );
    };

    const scenarios: {
      name: string;
      commitEvents: number;
      commits: number;
      agents: (i: number) => number;
    }[] = [
      { name: "commits of 1 event", commitEvents: 1, commits: 160, agents: () => 0 },
      { name: "commits of 100 events, one agent", commitEvents: 100, commits: 16, agents: () => 1 },
      {
        name: "commits of 100 events, 16 agents",
        commitEvents: 100,
        commits: 16,
        agents: (i) => 2 + (i % AGENTS),
      },
    ];
    const results = [];
    for (const [k, s] of scenarios.entries()) {
      const stream = `bench-${k}`;
      // Warm up (the stream's creation in _system, its first head) before counting.
      await sink.submit(stream, [event(99)]);
      reset(m);
      const started = performance.now();
      for (let c = 0; c < s.commits; c++) {
        const agentOf = (i: number) => (s.commitEvents === 1 ? s.agents(c) : s.agents(i));
        await sink.submit(
          stream,
          Array.from({ length: s.commitEvents }, (_, i) => event(agentOf(i))),
        );
      }
      const seconds = (performance.now() - started) / 1000;
      const events = s.commits * s.commitEvents;
      const writes = snapshot(m);
      const puts = writes.calls.PutItemCommand ?? 0;
      const wru = writes.units.PutItemCommand ?? 0;
      // The agent with the most events in this stream; a query of 100 of them.
      const agent = s.commitEvents === 1 ? 0 : s.agents(0);
      reset(m);
      const queryStarted = performance.now();
      const page = await runtime.events.find({ agent: `agent-${agent}`, limit: 100 });
      const queryMs = performance.now() - queryStarted;
      const read = snapshot(m);
      const segments = read.s3Gets;
      results.push({
        scenario: s.name,
        eventsPerCommit: s.commitEvents,
        events,
        index: {
          itemWritesPer1000Events: Number(((puts / events) * 1000).toFixed(1)),
          writeUnitsPer1000Events: Number(((wru / events) * 1000).toFixed(1)),
          itemWritesPerCommit: Number((puts / s.commits).toFixed(1)),
        },
        commitWallSeconds: Number(seconds.toFixed(1)),
        queryByAgent: {
          limit: 100,
          returned: page.events.length,
          dynamodbQueries: read.calls.QueryCommand ?? 0,
          dynamodbReadUnits: Number((read.units.QueryCommand ?? 0).toFixed(2)),
          s3GetObjects: segments,
          s3GetBytes: read.s3GetBytes,
          emulatorWallMs: Math.round(queryMs),
          // At AWS latencies (docs/AWS.md §Load and cost): one Query per 1 MB of postings ~10 ms, segment reads
          // 16 in parallel at ~30 ms a round.
          modelledAwsMs: (read.calls.QueryCommand ?? 0) * 10 + Math.ceil(segments / 16) * 30,
        },
      });
      console.log(
        `${s.name}: ${results.at(-1)!.index.itemWritesPer1000Events} posting writes per 1,000 events ` +
          `(${results.at(-1)!.index.writeUnitsPer1000Events} WRU); query by agent: ${page.events.length} events, ` +
          `${read.calls.QueryCommand ?? 0} Query (${read.units.QueryCommand ?? 0} RRU), ${segments} GetObject`,
      );
    }
    // Bytes stored: every posting item of the table, by its own size as DynamoDB Local reports it.
    const out = {
      bench: "aws-index",
      date: new Date().toISOString(),
      command: "npm run bench:aws-index",
      note: "Measured on moto and DynamoDB Local with the real runtime; wall times are emulator times on a shared 2-core machine, not AWS latencies.",
      results,
    };
    mkdirSync(join(here, "results"), { recursive: true });
    const file = join(here, "results", "aws-index.json");
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    console.log(`wrote ${file}`);
  } finally {
    await emulators.stop();
  }
}

await main();

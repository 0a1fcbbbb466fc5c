/**
 * The scheduled AWS verifier's cost per run as the archive grows: 1×, 10× and 100× archive sizes on the
 * emulators (moto + DynamoDB Local), real SDK clients over HTTP. For each size the archive is committed, a first
 * run catches up (the one-time walk of everything, as after a deployment), one more batch is committed, and the
 * next — steady-state — run is measured: its wall time and its API calls by service and command (counted by SDK
 * middleware, one per attempt, as AWS bills them). A sweep step (one page of 100 versions, as a run a week
 * later would do) is measured the same way. Goal: flat — the same calls at every size.
 *
 *   npm run bench:aws-verifier    → prints a table and writes bench/results/aws-verifier.json
 *
 * Wall times are on emulators on a shared machine: they show the trend, not AWS latencies.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AwsVerifier } from "@auditsink/aws";
import { provision, registerProducer, useEmulators } from "../test/aws/fixtures.ts";
import { countCalls } from "../test/aws/sdk-middleware.ts";
import { startEmulators } from "../test/emulators/harness.ts";

const BASE_SEGMENTS = 5;
const SCALES = [1, 10, 100];
const EVENTS_PER_SEGMENT = 5;
const DAY_MS = 86_400_000;

interface Measured {
  ms: number;
  calls: Record<string, number>;
  total: number;
}

async function measure(run: (counts: Map<string, number>) => Promise<unknown>): Promise<Measured> {
  const counts = new Map<string, number>();
  const started = performance.now();
  await run(counts);
  const ms = Math.round(performance.now() - started);
  const calls = Object.fromEntries([...counts.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
  return { ms, calls, total: [...counts.values()].reduce((a, b) => a + b, 0) };
}

async function main(): Promise<void> {
  const emulators = await startEmulators();
  useEmulators(emulators);
  const results = [];
  try {
    for (const scale of SCALES) {
      const segments = BASE_SEGMENTS * scale;
      const p = await provision();
      const admin = p.runtime({ exportPublicKey: true });
      const producer = await registerProducer(admin, "bench-agent");
      const { sink } = await admin.start();
      let n = 0;
      const batch = () =>
        sink.submit(
          "agent.tools",
          Array.from({ length: EVENTS_PER_SEGMENT }, () => producer.event(`e-${n++}`)),
        );
      for (let i = 0; i < segments; i++) await batch();
      const catchUp = await new AwsVerifier(p.runtime()).run({ remainingMs: () => 900_000 });
      if (catchUp.findings.open.length > 0) throw new Error(`unexpected findings at ${scale}×`);
      await batch();

      const rt = p.runtime();
      const steady = await measure(async (counts) => {
        for (const [name, client] of Object.entries(rt.clients))
          if (name !== "doc") countCalls(client, counts, name);
        const r = await new AwsVerifier(rt).run({ remainingMs: () => 900_000 });
        if (r.alerts.length > 0) throw new Error(`unexpected alerts at ${scale}×`);
      });
      p.settings.sweepPagesPerRun = 1;
      const later = p.runtime();
      const sweep = await measure(async (counts) => {
        for (const [name, client] of Object.entries(later.clients))
          if (name !== "doc") countCalls(client, counts, name);
        await new AwsVerifier(later, () => new Date(Date.now() + 8 * DAY_MS)).run({
          remainingMs: () => 900_000,
          sweepPageSize: 100,
        });
      });
      const row = {
        scale: `${scale}x`,
        segments: segments + 1,
        events: n,
        steadyRun: steady,
        runWithSweepStep: sweep,
      };
      results.push(row);
      write(results);
      console.log(
        `${row.scale.padEnd(5)} ${String(row.segments).padStart(5)} segments ${String(row.events).padStart(6)} events | ` +
          `steady run ${String(steady.total).padStart(4)} calls ${String(steady.ms).padStart(6)} ms | ` +
          `with a sweep step ${String(sweep.total).padStart(4)} calls ${String(sweep.ms).padStart(6)} ms`,
      );
    }
  } finally {
    await emulators.stop();
  }
}

/** Writes what has been measured so far (after every scale: a run cut short still leaves its rows). */
function write(results: unknown[]): void {
  const out = join(dirname(fileURLToPath(import.meta.url)), "results", "aws-verifier.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        benchmark: "aws-verifier",
        description:
          "API calls and wall time of one steady-state scheduled verifier run (one new segment since the last run), " +
          "and of a run that also does one sweep step of 100 versions, at 1x, 10x and 100x archive sizes on moto + DynamoDB Local",
        eventsPerSegment: EVENTS_PER_SEGMENT,
        date: new Date().toISOString(),
        node: process.version,
        results,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${out}`);
}

await main();

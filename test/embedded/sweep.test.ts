/**
 * The scheduled verifier's full sweep on a running sink (docs/EMBEDDED.md §5): a SIGTERM during a sweep stops it
 * between two segments and the process exits; the sweep's cursor survives, and after a restart the sweep resumes
 * there, finishes, and reports a change to an old segment it had not reached yet; incremental runs still catch
 * new damage meanwhile. (How long the exit takes at size is measured in bench/, not asserted here.)
 */
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SweepCursor } from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { dataPaths } from "../../packages/local/src/index.ts";
import { startChild } from "./faults.ts";
import { objectFile, testProducer, testSinks } from "./helpers.ts";

const { fresh, start } = testSinks("auditsink-sweep-");
const STREAM = "agents.big";
const BATCHES = 100;
const BATCH = 100;

const segmentPath = (dataDir: string, first: number) =>
  objectFile(dataDir, `streams/${STREAM}/segments/${String(first).padStart(20, "0")}`);

async function tamper(path: string): Promise<void> {
  await chmod(path, 0o644);
  await writeFile(path, (await readFile(path, "utf8")).replace('"web_search"', '"web_fetch!"'));
}

async function savedSweep(dataDir: string): Promise<{ startedAt: string; cursor?: SweepCursor } | undefined> {
  const saved = JSON.parse(await readFile(dataPaths(dataDir).verifierState, "utf8")) as {
    version: number;
    sweep?: { startedAt: string; cursor?: SweepCursor };
  };
  expect(saved.version).toBe(2);
  return saved.sweep;
}

/** A data directory holding BATCHES segments of BATCH signed events in STREAM, and the sink (open) that wrote it. */
async function bigStream() {
  const dataDir = await fresh();
  const first = await start(dataDir);
  const agent = testProducer("agent");
  await first.sink.local.producers.register({
    id: agent.id,
    publicKey: agent.publicKey,
    streams: ["agents.*"],
  });
  for (let b = 0; b < BATCHES; b++)
    await first.sink.local.sink.submit(
      STREAM,
      Array.from({ length: BATCH }, () => agent.event()),
    );
  return { dataDir, first };
}

/** Resolves once the sink at `url` reports at least `records` verified by `mode` runs (its /metrics). */
async function verifiedAtLeast(url: string, mode: "sweep" | "incremental", records: number): Promise<void> {
  const counter = new RegExp(`auditsink_verifier_records_total\\{mode="${mode}"\\} (\\d+)`);
  for (;;) {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    if (Number(counter.exec(metrics)?.[1] ?? 0) >= records) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("a sweep of the whole archive", () => {
  it("stopped by SIGTERM in the middle: the process exits 0 and the sweep resumes at its cursor after a restart, finishing and reporting a changed segment it had not reached", {
    // Writes 10,000 signed events (each signature checked at ingest) and verifies them three times: ~20 s on
    // this 2-core machine under load, since a SIGTERM needs a sweep long enough to land in.
    timeout: 90_000,
  }, async () => {
    // Prepare: 10,000 events in 100 segments, verified incrementally, so the next start has only a sweep to do
    const { dataDir, first } = await bigStream();
    expect((await first.sink.verifier.runOnce()).failures).toEqual([]);

    await first.close();

    // Act: the sink process sweeps in long slices; SIGTERM once the sweep has verified 1,000 records
    const child = (await startChild(dataDir, {
      AUDITSINK_VERIFY_INTERVAL: "3600",
      AUDITSINK_VERIFY_SWEEP_SLICE_MS: "600000",
      AUDITSINK_VERIFY_SWEEP_SHARE: "1",
    }))!;
    await verifiedAtLeast(child.url, "sweep", 1_000);
    await child.stop();

    // Assess: a clean exit, a sweep saved in the middle of the stream, none completed
    expect(child.child.exitCode).toBe(0);
    const interrupted = await savedSweep(dataDir);
    expect(interrupted?.cursor?.stream).toBe(STREAM);
    const reached = interrupted!.cursor!.state?.size ?? 0;
    expect(reached).toBeGreaterThan(0);
    expect(reached).toBeLessThan(BATCHES * BATCH);
    expect(JSON.parse(await readFile(dataPaths(dataDir).findings, "utf8")).lastFullRun).toBeUndefined();

    // Act: change the last segment (not reached), restart, and run the sweep's next slice
    const last = (BATCHES - 1) * BATCH;
    expect(last).toBeGreaterThanOrEqual(reached);
    await tamper(segmentPath(dataDir, last));
    const second = await start(dataDir, { verifySweepSliceMs: 600_000 });
    const slice = await second.sink.verifier.sweepSlice();

    // Assess: it started where the interrupted one stopped, finished the sweep, and found the change
    expect(slice.sweep?.from).toEqual(interrupted!.cursor);
    expect(slice.sweep?.startedAt).toBe(interrupted!.startedAt);
    expect(slice.full).toBe(true);
    expect(slice.records).toBe(BATCHES * BATCH - reached);
    expect(slice.failures.map((f) => `${f.code} ${f.at}`)).toContain(`producer-signature-invalid ${last}`);
    expect(second.sink.verifier.findings.lastFullRun).toBe(interrupted!.startedAt);
    expect(await savedSweep(dataDir)).toBeUndefined();
  });

  it("leaves incremental runs catching new damage while a sweep is under way", {
    timeout: 30_000,
  }, async () => {
    // Prepare: a sweep stopped after its first slice (one segment), then a new segment
    const dataDir = await fresh();
    const { sink } = await start(dataDir, { verifySweepSliceMs: 0 });
    const agent = testProducer("agent");
    await sink.local.producers.register({ id: agent.id, publicKey: agent.publicKey, streams: ["agents.*"] });
    for (let b = 0; b < 4; b++) await sink.local.sink.submit(STREAM, [agent.event(), agent.event()]);
    await sink.verifier.runOnce();
    const slice = await sink.verifier.sweepSlice();
    expect(slice.sweep?.resumeAt).toBeDefined();
    await sink.local.sink.submit(STREAM, [agent.event(), agent.event()]);
    await tamper(segmentPath(dataDir, 8));
    // Act
    const incremental = await sink.verifier.runOnce();
    // Assess: the new segment's damage is found now, and the sweep is still where it was
    expect(incremental.full).toBe(false);
    expect(incremental.failures.map((f) => `${f.code} ${f.at}`)).toContain("producer-signature-invalid 8");
    expect(sink.verifier.sweep?.cursor).toEqual(slice.sweep?.resumeAt);
  });

  it("an incremental run stopped by SIGTERM keeps the position it reached, and the restarted sink verifies only the rest", {
    timeout: 90_000,
  }, async () => {
    // Prepare: 10,000 events in 100 segments that no run has verified yet
    const { dataDir, first } = await bigStream();
    await first.close();

    // Act: the sink process starts its first incremental run at once; SIGTERM once it has verified 1,000 records
    const child = (await startChild(dataDir, {
      AUDITSINK_VERIFY_INTERVAL: "3600",
      AUDITSINK_FULL_VERIFY_INTERVAL: "3600",
    }))!;
    await verifiedAtLeast(child.url, "incremental", 1_000);
    await child.stop();

    // Assess: a clean exit, and the stream's saved position inside the backlog
    expect(child.child.exitCode).toBe(0);
    const saved = JSON.parse(await readFile(dataPaths(dataDir).verifierState, "utf8")) as {
      states: Record<string, { size: number }>;
    };
    const reached = saved.states[STREAM]?.size ?? 0;
    expect(reached).toBeGreaterThanOrEqual(1_000);
    expect(reached).toBeLessThan(BATCHES * BATCH);

    // Act: restart and run once
    const second = await start(dataDir);
    const run = await second.sink.verifier.runOnce();

    // Assess: only the records past the saved position were verified (plus _system's), and all is clean
    expect(run.failures).toEqual([]);
    expect(run.records - (await systemRecords(dataDir, saved.states))).toBe(BATCHES * BATCH - reached);
  });
});

/** The `_system` records an incremental run from `states` reads: those past its saved position. */
async function systemRecords(dataDir: string, states: Record<string, { size: number }>): Promise<number> {
  const head = JSON.parse(await readFile(join(dataDir, "heads", "_system.json"), "utf8")) as { size: number };
  return head.size - (states._system?.size ?? 0);
}

/**
 * Full verification in slices (run.ts `sweep`, fetch.ts `pause`): a sweep stopped between any two segments and
 * resumed from its cursor reports what one full run reports, and a walk holds a bounded number of objects
 * whatever the stream's length — checkpoints are read as the walk reaches them, segments one at a time.
 */
import type { KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import { VerificationStoppedError } from "../src/errors.ts";
import { verifyStoredStream } from "../src/fetch.ts";
import { keyFingerprint } from "../src/keys.ts";
import type { Clock, ObjectStore } from "../src/ports.ts";
import { parseStoreKey, segmentKey } from "../src/record.ts";
import { allFailures, runVerification, type SweepCursor, type VerificationTrust } from "../src/run.ts";
import { Sink } from "../src/sink.ts";
import { StreamVerifier } from "../src/verify.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer } from "./fixtures.ts";

const clock: Clock = { now: () => new Date("2026-11-29T12:00:00.000Z") };

interface World {
  ports: Ports;
  trust: VerificationTrust;
  producerKeys: Map<string, KeyObject>;
}

/** `batches` segments of two records (each with its checkpoint) in each of `streams`, through the real Sink. */
async function world(streams: string[], batches: number): Promise<World> {
  const ports = memoryPorts();
  const agent = producer(ports, "agent-1");
  const sink = new Sink({ deployment: DEPLOYMENT, ...ports, clock });
  for (const stream of streams)
    for (let b = 0; b < batches; b++)
      await sink.submit(stream, [agent.event(`${stream}-${b}-0`), agent.event(`${stream}-${b}-1`)]);
  return {
    ports,
    trust: { keys: [ports.signer.key], basis: "pinned", detail: "test key" },
    producerKeys: new Map([
      [keyFingerprint(agent.publicKey), agent.publicKey],
      [keyFingerprint(ports.signer.key.publicKey), ports.signer.key.publicKey],
    ]),
  };
}

/** Sweeps the whole archive in slices of `segmentsPerSlice` segments; returns every finding and every cursor. */
async function sweepInSlices(w: World, segmentsPerSlice: number) {
  const found: string[] = [];
  const cursors: SweepCursor[] = [];
  let from: SweepCursor | undefined;
  for (let slice = 0; slice < 10_000; slice++) {
    let walked = 0;
    const report = await runVerification({ objects: w.ports.objects, deployment: DEPLOYMENT }, w.trust, {
      mode: "full",
      producerKeys: w.producerKeys,
      layout: from === undefined,
      sweep: { ...(from ? { from } : {}), pause: () => walked >= segmentsPerSlice },
      progress: { onSegment: () => void walked++ },
    });
    found.push(...allFailures(report).map((f) => `${f.code} ${f.stream} ${f.at}`));
    if (!report.resumeAt) return { found, cursors };
    // A cursor survives a restart as JSON.
    from = JSON.parse(JSON.stringify(report.resumeAt)) as SweepCursor;
    cursors.push(from);
  }
  throw new Error("the sweep never finished");
}

function tamper(w: World, stream: string, first: number): void {
  const key = segmentKey(stream, first);
  const text = Buffer.from(w.ports.objects.objects.get(key)!).toString("utf8");
  w.ports.objects.objects.set(key, Buffer.from(text.replace(`${stream}-`, `${stream}!`)));
}

describe("a full sweep in slices", () => {
  it("stops between segments, resumes from its cursor, and verifies a clean archive clean", async () => {
    // Prepare
    const w = await world(["alpha", "beta"], 6);
    // Act
    const { found, cursors } = await sweepInSlices(w, 1);
    // Assess: one slice per segment (6 per stream, _system's too), each resuming inside a stream after the first
    expect(found).toEqual([]);
    expect(cursors.length).toBeGreaterThanOrEqual(12);
    // What a cursor carries is one stream's position: a chain hash and a Merkle frontier of popcount(size) hashes
    for (const c of cursors)
      expect(c.state?.frontier.length ?? 0).toBeLessThanOrEqual(Math.log2((c.state?.size ?? 0) + 1));
    expect(cursors.filter((c) => c.stream === "alpha").map((c) => c.state?.size)).toEqual([
      undefined,
      2,
      4,
      6,
      8,
      10,
    ]);
  });

  it("reports a changed old segment as one full run does, wherever the slices fall", async () => {
    // Prepare
    const w = await world(["alpha", "beta"], 6);
    tamper(w, "beta", 6);
    const whole = await runVerification({ objects: w.ports.objects, deployment: DEPLOYMENT }, w.trust, {
      mode: "full",
      producerKeys: w.producerKeys,
      streamSet: false,
    });
    // Act
    const bySegment = await sweepInSlices(w, 1);
    const byThree = await sweepInSlices(w, 3);
    // Assess
    const expected = allFailures(whole).map((f) => `${f.code} ${f.stream} ${f.at}`);
    expect(expected).toEqual([
      "producer-signature-invalid beta 6",
      "chain-broken beta 7",
      "checkpoint-root-mismatch beta 8",
      "checkpoint-root-mismatch beta 10",
      "checkpoint-root-mismatch beta 12",
    ]);
    expect(bySegment.found.sort()).toEqual([...expected].sort());
    expect(byThree.found.sort()).toEqual([...expected].sort());
  });

  it("moves past a stream whose walk found a gap (it cannot resume past it) and still finishes", async () => {
    // Prepare
    const w = await world(["alpha", "beta"], 6);
    w.ports.objects.objects.delete(segmentKey("alpha", 4));
    // Act
    const { found } = await sweepInSlices(w, 1);
    // Assess
    expect(found).toContain("segment-gap alpha 4");
  });
});

describe("a run stopped by its signal", () => {
  it("rejects with the positions it reached, inside a stream too, and the next run goes on from them to the state one run reaches", async () => {
    // Prepare: two streams of 6 segments (12 records each), and where one uninterrupted run ends
    const w = await world(["alpha", "beta"], 6);
    const source = { objects: w.ports.objects, deployment: DEPLOYMENT };
    const policy = { mode: "incremental" as const, producerKeys: w.producerKeys, streamSet: false };
    const whole = await runVerification(source, w.trust, policy);
    expect(allFailures(whole)).toEqual([]);
    // Act: stop the run after 4 segments (both of _system's, then 2 of alpha's), then run again from what it kept
    const controller = new AbortController();
    let walked = 0;
    const stopped = await runVerification(source, w.trust, {
      ...policy,
      signal: controller.signal,
      progress: { onSegment: () => void (++walked === 4 && controller.abort(new Error("shutting down"))) },
    }).catch((e: unknown) => e);
    let rest = 0;
    const resumed =
      stopped instanceof VerificationStoppedError
        ? await runVerification(source, w.trust, {
            ...policy,
            states: JSON.parse(JSON.stringify(stopped.states)) as typeof stopped.states,
            progress: {
              onSegment: (_n, _b, records) => {
                rest += records;
              },
            },
          })
        : undefined;
    // Assess
    expect(stopped).toBeInstanceOf(VerificationStoppedError);
    const { states } = stopped as VerificationStoppedError;
    expect((stopped as VerificationStoppedError).cause).toEqual(new Error("shutting down"));
    expect(Object.keys(states).sort()).toEqual(["_system", "alpha"]);
    expect(states._system).toEqual(whole.states._system);
    expect(states.alpha?.size).toBe(4);
    expect(rest).toBe(12 - 4 + 12); // alpha's last 8 records and all of beta's, none twice
    expect(allFailures(resumed!)).toEqual([]);
    expect(resumed!.states).toEqual(whole.states);
  });
});

describe("a walk's memory", () => {
  it("holds the checkpoints just ahead of its position, never one per checkpoint of the stream", async () => {
    // Prepare: 200 segments, each with its checkpoint; a store that counts what the walk has read
    const w = await world(["alpha"], 200);
    const read = { segments: 0, checkpoints: 0 };
    let worst = 0;
    const store: ObjectStore = {
      putIfAbsent: w.ports.objects.putIfAbsent.bind(w.ports.objects),
      list: w.ports.objects.list.bind(w.ports.objects),
      get: async (key: string) => {
        const kind = parseStoreKey(key)?.kind;
        if (kind === "segments") read.segments++;
        if (kind === "checkpoints") read.checkpoints++;
        // Checkpoints are read as the walk reaches them: never more than one past the segments read.
        worst = Math.max(worst, read.checkpoints - read.segments);
        return w.ports.objects.get(key);
      },
    };
    const held: number[] = [];
    const original = StreamVerifier.prototype.addSegment;
    StreamVerifier.prototype.addSegment = function (this: StreamVerifier, ...args) {
      original.apply(this, args);
      held.push(this.checkpointsHeld);
    };
    // Act
    let report: Awaited<ReturnType<typeof verifyStoredStream>>;
    try {
      report = await verifyStoredStream(store, "alpha", { trusted: w.trust.keys, deployment: DEPLOYMENT });
    } finally {
      StreamVerifier.prototype.addSegment = original;
    }
    // Assess
    expect(report.failures).toEqual([]);
    expect(report.checkpoints).toBe(200);
    expect(read).toEqual({ segments: 200, checkpoints: 200 });
    expect(worst).toBeLessThanOrEqual(1);
    expect(held).toHaveLength(200);
    expect(Math.max(...held)).toBeLessThanOrEqual(1);
  });

  it("still reports checkpoints beyond the stored records (records removed)", async () => {
    // Prepare
    const w = await world(["alpha"], 5);
    w.ports.objects.objects.delete(segmentKey("alpha", 8));
    // Act
    const report = await verifyStoredStream(w.ports.objects, "alpha", {
      trusted: w.trust.keys,
      deployment: DEPLOYMENT,
    });
    // Assess
    expect(report.failures.map((f) => `${f.code} ${f.at}`)).toEqual(["checkpoint-beyond-log 10"]);
  });
});

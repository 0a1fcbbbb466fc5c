/**
 * The scheduled verifier's own thread (packages/local VerifierThread, docs/EMBEDDED.md §5): a job carried out
 * there finds what the same job finds on the caller's thread, while the caller's event loop stays free; a stopped
 * run hands back the positions it reached and the next run verifies only the rest; a thread that dies fails its
 * job and the next job gets a new one.
 */
import { performance } from "node:perf_hooks";
import { systemProducerKey, VerificationStoppedError } from "@auditsink/core";
import { describe, expect, it } from "vitest";
import {
  dataPaths,
  LocalHeadStore,
  LocalObjectStore,
  runJob,
  storedStreams,
  type VerificationJob,
  VerifierThread,
} from "../../packages/local/src/index.ts";
import { testProducer, testSinks } from "./helpers.ts";

const { fresh, start, after } = testSinks("auditsink-verifier-thread-");
const STREAM = "agents.threaded";
const BATCHES = 40;
const BATCH = 100;

/** A data directory holding BATCHES × BATCH signed events in STREAM (the sink closed), and what a job needs. */
async function written() {
  const dataDir = await fresh();
  const { sink, close } = await start(dataDir);
  const agent = testProducer("agent");
  await sink.local.producers.register({ id: agent.id, publicKey: agent.publicKey, streams: ["agents.*"] });
  for (let b = 0; b < BATCHES; b++)
    await sink.local.sink.submit(
      STREAM,
      Array.from({ length: BATCH }, () => agent.event()),
    );
  const key = sink.local.signingKey.signer;
  const system = systemProducerKey(key);
  const producerKeys = new Map([...sink.local.registry.publicKeys(), [system.keyId, system.publicKey]]);
  const deployment = sink.local.deployment;
  await close();
  const paths = dataPaths(dataDir);
  const thread = new VerifierThread({ dataDir, deployment, trusted: [key.key] });
  after(() => thread.close());
  const ports = {
    objects: new LocalObjectStore(paths.objects, paths.tmp),
    heads: new LocalHeadStore(paths.heads, paths.tmp),
    deployment,
    trusted: [key.key],
    streams: () => storedStreams(paths.objects),
  };
  const job = (kind: VerificationJob["kind"], extra: Partial<VerificationJob> = {}): VerificationJob => ({
    kind,
    producerKeys,
    now: new Date(),
    ...extra,
  });
  return { thread, ports, job };
}

const signal = () => new AbortController().signal;
/** Records in every stream of a run's states (the stream, and `_system`'s start and registration). */
const total = (states: Record<string, { size: number }>) =>
  Object.values(states).reduce((n, s) => n + s.size, 0);

describe("the verifier thread", () => {
  it("finds what the same job finds on the caller's thread, for incremental runs and sweep slices, without holding the caller's event loop", {
    timeout: 90_000,
  }, async () => {
    const { thread, ports, job } = await written();
    await thread.run(job("full"), { signal: signal() }); // loads the worker's modules before measuring

    let elu = performance.eventLoopUtilization();
    const threaded = await thread.run(job("full"), { signal: signal() });
    const onThread = performance.eventLoopUtilization(elu).utilization;
    elu = performance.eventLoopUtilization();
    const here = await runJob(ports, job("full"), { signal: signal() });
    const onCaller = performance.eventLoopUtilization(elu).utilization;

    expect(threaded).toEqual(here);
    expect(threaded.failures).toEqual([]);
    expect(threaded.records).toBe(total(threaded.states));
    expect(threaded.states[STREAM]?.size).toBe(BATCHES * BATCH);
    // Verifying 4,000 records keeps the thread that does it busy; the caller only waits for the answer.
    expect(onThread).toBeLessThan(onCaller / 2);

    const from = { stream: STREAM };
    const slice = job("sweep", { from, sliceMs: 0 });
    const slices = [
      await thread.run(slice, { signal: signal() }),
      await runJob(ports, slice, { signal: signal() }),
    ];
    expect(slices[0]).toEqual(slices[1]);
    expect(slices[0]!.resumeAt?.stream).toBe(STREAM);
    expect(slices[0]!.records).toBe(BATCH); // one segment: a slice always moves forward, then pauses

    let counted = 0;
    await thread.run(job("incremental"), { signal: signal(), onRecords: (n) => (counted += n) });
    expect(counted).toBe(threaded.records);
  });

  it("stopped in the middle of a run: rejects with the positions reached, and the next run verifies only the rest", {
    timeout: 90_000,
  }, async () => {
    const { thread, job } = await written();
    const whole = await thread.run(job("incremental"), { signal: signal() });

    const abort = new AbortController();
    let seen = 0;
    const stopped = await thread
      .run(job("incremental"), {
        signal: abort.signal,
        onRecords: (n) => {
          seen += n;
          if (seen >= 1_000) abort.abort(new Error("the verifier is stopping"));
        },
      })
      .catch((e: unknown) => e);
    expect(stopped).toBeInstanceOf(VerificationStoppedError);
    const states = (stopped as VerificationStoppedError).states;
    const reached = states[STREAM]?.size ?? 0;
    expect(reached).toBeGreaterThanOrEqual(1_000 - 1);
    expect(reached).toBeLessThan(BATCHES * BATCH);

    const rest = await thread.run(job("incremental", { states }), { signal: signal() });
    expect(rest.failures).toEqual([]);
    expect(rest.records).toBe(total(whole.states) - total(states));
    expect(rest.states).toEqual(whole.states);
  });

  it("a thread that dies fails the job it had, and the next job gets a new thread", {
    timeout: 90_000,
  }, async () => {
    const { thread, job } = await written();
    let killed = false;
    const failed = await thread
      .run(job("full"), {
        signal: signal(),
        onRecords: () => {
          if (killed) return;
          killed = true;
          // The worker is private: ended here as a crash of its own would end it.
          void (thread as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
        },
      })
      .catch((e: Error) => e);
    expect(failed).toBeInstanceOf(Error);
    expect((failed as Error).message).toMatch(/the verifier thread exited/);

    const next = await thread.run(job("full"), { signal: signal() });
    expect(next.failures).toEqual([]);
    expect(next.states[STREAM]?.size).toBe(BATCHES * BATCH);
  });
});

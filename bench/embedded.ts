/**
 * The embedded sink over loopback: the sink runs as its own process (packages/local/src/serve.ts, a fresh data
 * directory per run), this process drives it with concurrent producers over keep-alive HTTP/1.1, 1 KB events,
 * batch sizes 1 and 100. Events are signed before the clock starts, so the driver spends its core on HTTP only.
 * At batch 100 the producer signs each event (per-event envelope) or each request's batch once (batch-signed
 * envelope, docs/FORMAT.md §3b: the sink then verifies one signature per request instead of 100).
 *
 *   npm run bench:embedded                 → prints a table and writes bench/results/embedded.json
 *   EVENTS=300000 CONCURRENCY=16 npm run bench:embedded
 *   PLAN=1x1:ed25519,1x64:ed25519 RESULTS=bench/results/embedded-batch1.json npm run bench:embedded
 *
 * Reported per run: events/s, p50/p99 acknowledgement latency (request sent → receipts received), p99 time from
 * acknowledgement to a signed checkpoint covering the event, the sink's CPU per event (main thread and Node's
 * background threads: the threadpool that verifies signatures and runs file operations, V8's GC helpers), and a
 * summary of a V8 CPU profile of the sink's main thread during the load, by category (bench/cpu-profile.ts;
 * PROFILE=0 runs without the profiler). The driver asks for compact receipts, as the SDK does (docs/FORMAT.md §9b;
 * RECEIPTS=full for the full form), and expands them; every receipt is checked to carry a checkpoint whose size
 * covers its index, and a sample is fully verified (signature + inclusion proof) with the verifier key.
 *
 * `verdicts` in the result compares each goal with its best run and names what bounds it, from the same run's
 * CPU figures and profile: the sink's CPU per event against both cores, the main thread against one, and the
 * load generator's own CPU on the same two cores.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { KeyObject } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { Agent } from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  canonicalBytes,
  checkpointKeyFor,
  formatVerifierKey,
  generateKeyPair,
  type KeyAlgorithm,
  originFor,
  parseCheckpointText,
  parseNote,
  parseVerifierKey,
  type Receipt,
  receiptsOfAnswer,
  type SignedEvent,
  signBatch,
  signEvent,
  type UnsignedEvent,
  verifyReceipt,
} from "@auditsink/core";
import { openLocalSink } from "../packages/local/src/index.ts";
import { type Litewitness, startLitewitness } from "../test/witness/litewitness.ts";
import {
  CATEGORIES,
  type Category,
  largestCosts,
  type ProfileSummary,
  summarizeProfile,
} from "./cpu-profile.ts";
import { toolCallEvent } from "./events.ts";
import { percentile, send } from "./http.ts";
import { cpuOf, mainThreadCpu, threadCpu } from "./proc-cpu.ts";

const STREAM = "agents.bench";

/** Per-event signatures (envelope version 1), or one signature per request's batch (version 2). */
type Signing = "event" | "batch";
type Variant = "tiles" | "no-tiles" | "no-verifier" | "ed25519-checkpoints" | "witness";

let witness: Litewitness | undefined;
/** The sink's environment for a variant; for `witness`, a new litewitness that knows the stream. */
async function variantEnv(variant: Variant, dataDir: string): Promise<Record<string, string>> {
  if (variant === "no-tiles") return { AUDITSINK_TILES: "off" };
  if (variant === "no-verifier") return { AUDITSINK_VERIFY_INTERVAL: "0" };
  if (variant === "tiles") return {};
  if (variant === "ed25519-checkpoints") return { AUDITSINK_CHECKPOINT_KEY: "ed25519" };
  // A new witness per run: each run's sink has a new key and starts its stream from size 0.
  await witness?.close();
  witness = await startLitewitness("bench.witness");
  const deploymentKey = parseVerifierKey(
    readFileSync(join(dataDir, "keys", "verifier-key.txt"), "utf8").trim(),
  );
  const origin = originFor(deploymentKey.name, STREAM);
  await witness.addLog(origin, formatVerifierKey(checkpointKeyFor(deploymentKey, origin)));
  return {
    AUDITSINK_CHECKPOINT_KEY: "ed25519",
    AUDITSINK_WITNESSES: `${witness.url} ${witness.verifierKey}`,
    AUDITSINK_WITNESS_INTERVAL: "1",
  };
}

/** The form the driver asks receipts in: compact (the SDK's, FORMAT.md §9b) unless RECEIPTS=full. */
const RECEIPTS = process.env.RECEIPTS === "full" ? "full" : "compact";

interface Run {
  producerKey: KeyAlgorithm;
  receipts: "full" | "compact";
  signing: Signing;
  /** tiles: the default sink (tlog-tiles stored as it commits, the scheduled verifier every 60 s as `npm start`
   * runs it); no-tiles: `--tiles off`; no-verifier: no scheduled verifier (ingest alone); witness: tiles, an Ed25519
   * checkpoint key and one litewitness cosigning the stream at most once a second; ed25519-checkpoints: the
   * Ed25519 checkpoint key alone. */
  variant: Variant;
  /** Files stored under the stream's tile/ and cosigned/ keys by the end of the run. */
  stored: { tiles: number; cosignedCheckpoints: number };
  batch: number;
  concurrency: number;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** CPU time (user + system) the sink process used during the run: independent of other load on the machine. */
  sinkCpuSeconds: number;
  /** The kernel's share of it (file writes, fsync, link, rename, sockets). */
  sinkSystemCpuShare: number;
  eventsPerSinkCpuSecond: number;
  /** Sink CPU per event, all threads; then the main (JavaScript) thread and Node's background threads. */
  sinkCpuPerEventUs: number;
  sinkMainThreadCpuPerEventUs: number;
  sinkBackgroundCpuPerEventUs: number;
  /** Sink CPU per event by thread name (threadCpu), largest first: what the background share is made of. */
  sinkThreadCpuPerEventUs: Record<string, number>;
  /** CPU the load generator (this process: HTTP client, JSON parsing of the answers) used per event, on the same cores. */
  driverCpuPerEventUs: number;
  /** Bytes of the sink's answers per event (receipts in the form asked for). */
  answerBytesPerEvent: number;
  /** 1-minute load average when the run started: other work on the (shared) machine. */
  loadAverage: number;
  requests: number;
  ackP50Ms: number;
  ackP99Ms: number;
  ackToCheckpointP99Ms: number;
  receiptsWithCheckpoint: number;
  receiptsVerified: number;
  errors: number;
  /** The main thread's profile: busy shares and µs per event (share × main-thread CPU per event) by category. */
  profile?: ProfileSummary & { usPerEvent: Record<Category, number> };
}

function signedEvents(
  count: number,
  tag: string,
  privateKey: KeyObject,
  signing: Signing,
  batch: number,
): SignedEvent[] {
  const events: SignedEvent[] = [];
  const bases: UnsignedEvent[] = [];
  let pad = 0;
  for (let i = 0; i < count; i++) {
    const base = toolCallEvent(`${tag}-${i}`, i, "x".repeat(pad));
    if (i === 0) {
      // Size the padding once so each signed event is about 1 KB in its canonical form (membership included).
      const probe =
        signing === "batch" && batch > 1
          ? signBatch(
              Array.from({ length: batch }, (_, j) => ({ ...base, id: `probe-${j}` })),
              privateKey,
            )[0]!
          : signEvent(base, privateKey);
      pad = Math.max(0, 1024 - canonicalBytes(probe).length);
      base.data.note = "x".repeat(pad);
    }
    if (signing === "event" || batch === 1) events.push(signEvent(base, privateKey));
    else bases.push(base);
  }
  // Batch signing: each request's events (the bodies below slice `batch` at a time) are one signed batch.
  for (let i = 0; i < bases.length; i += batch)
    events.push(...signBatch(bases.slice(i, i + batch), privateKey));
  return events;
}

const sinkCpu = (pid: number) => cpuOf(`/proc/${pid}/stat`);
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);
const PROFILE = process.env.PROFILE !== "0";

function startSink(
  dataDir: string,
  profileDir: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...(PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
        "--import",
        "tsx",
        "packages/local/src/serve.ts",
        dataDir,
        "0",
      ],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env, AUDITSINK_QUIET: "1" } },
    );
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on("exit", (code) => reject(new Error(`sink exited with ${code}`)));
  });
}

const post = (agent: Agent, port: number, body: string) =>
  send(agent, port, "POST", `/v1/streams/${STREAM}/events?receipts=${RECEIPTS}`, body);

async function run(
  batch: number,
  concurrency: number,
  total: number,
  algorithm: KeyAlgorithm,
  signing: Signing,
  variant: Variant,
): Promise<Run> {
  const dataDir = mkdtempSync(join(tmpdir(), "auditsink-bench-"));
  const keys = generateKeyPair(algorithm);
  const events = signedEvents(total, `b${batch}`, keys.privateKey, signing, batch);
  const bodies: string[] = [];
  for (let i = 0; i < events.length; i += batch) bodies.push(JSON.stringify(events.slice(i, i + batch)));
  // Register the producer while no sink runs, through the same local admin the CLI uses.
  const setup = await openLocalSink({
    dataDir,
    ...(variant === "witness" || variant === "ed25519-checkpoints"
      ? { checkpointKey: "ed25519" as const }
      : {}),
  });
  await setup.producers.register({ id: "bench-agent", publicKey: keys.publicKey, streams: ["agents.*"] });
  await setup.close();
  const profileDir = join(dataDir, "profile");
  const loadAverage = Number(loadavg()[0]!.toFixed(2));
  const { child, port } = await startSink(dataDir, profileDir, await variantEnv(variant, dataDir));
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  const receipts: { receipt: Receipt; ackAt: number }[] = [];
  let errors = 0;
  let next = 0;
  let answerBytes = 0;
  const driverBefore = process.cpuUsage();
  const cpuBefore = sinkCpu(child.pid!);
  const threadsBefore = threadCpu(child.pid!);
  const mainBefore = mainThreadCpu(child.pid!);
  const fromUs = monotonicUs();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= bodies.length) return;
        const t0 = performance.now();
        const res = await post(agent, port, bodies[i]!);
        const t1 = performance.now();
        if (res.status !== 200) {
          errors++;
          continue;
        }
        latencies.push(t1 - t0);
        answerBytes += Buffer.byteLength(res.text);
        const answer = receiptsOfAnswer(JSON.parse(res.text));
        if (!answer.ok) throw new Error(answer.detail);
        for (const receipt of answer.receipts as Receipt[]) receipts.push({ receipt, ackAt: t1 });
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const driver = process.cpuUsage(driverBefore);
  const toUs = monotonicUs();
  const cpuAfter = sinkCpu(child.pid!);
  const threadsAfter = threadCpu(child.pid!);
  const main = mainThreadCpu(child.pid!) - mainBefore;
  const user = cpuAfter.user - cpuBefore.user;
  const system = cpuAfter.system - cpuBefore.system;
  const cpu = user + system;
  agent.destroy();
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;

  // Every receipt carries a signed checkpoint that already covers its record: ack → checkpoint is 0 by
  // construction. Check that claim for every receipt, and verify a sample completely.
  const trusted = [parseVerifierKey(readFileSync(join(dataDir, "keys", "verifier-key.txt"), "utf8").trim())];
  const gaps: number[] = [];
  let covered = 0;
  for (const { receipt } of receipts) {
    const cp = parseCheckpointText(parseNote(receipt.checkpoint).text);
    if (cp.size > receipt.index) {
      covered++;
      gaps.push(0);
    }
  }
  let verified = 0;
  const step = Math.max(1, Math.floor(receipts.length / 2000));
  for (let i = 0; i < receipts.length; i += step) {
    if (verifyReceipt(receipts[i]!.receipt, { trusted, deployment: "auditsink.local/embedded" }).ok)
      verified++;
    else throw new Error(`receipt ${i} does not verify`);
  }
  latencies.sort((a, b) => a - b);
  const delivered = receipts.length;
  const perEventUs = (seconds: number) => Number(((seconds * 1e6) / delivered).toFixed(1));
  let profile: Run["profile"];
  if (PROFILE) {
    const [file] = readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error("the sink wrote no CPU profile");
    const summary = summarizeProfile(join(profileDir, file), fromUs, toUs);
    const mainUs = (main * 1e6) / delivered;
    const usPerEvent = Object.fromEntries(
      CATEGORIES.map((c) => [c, Number((summary.busyShare[c] * mainUs).toFixed(1))]),
    ) as Record<Category, number>;
    profile = { ...summary, usPerEvent };
  }
  // What the variant stored besides the segments: full tiles and bundles, cosigned checkpoints.
  const storedUnder = (dir: string) => {
    const path = join(dataDir, "objects", "streams", STREAM, dir);
    if (!existsSync(path)) return 0;
    return readdirSync(path, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).length;
  };
  const stored = { tiles: storedUnder("tile"), cosignedCheckpoints: storedUnder("cosigned") };
  rmSync(dataDir, { recursive: true, force: true });
  return {
    producerKey: algorithm,
    receipts: RECEIPTS,
    signing,
    variant,
    stored,
    batch,
    concurrency,
    events: delivered,
    seconds: Number(seconds.toFixed(2)),
    eventsPerSecond: Math.round(delivered / seconds),
    sinkCpuSeconds: Number(cpu.toFixed(2)),
    sinkSystemCpuShare: Number((system / cpu).toFixed(2)),
    eventsPerSinkCpuSecond: Math.round(delivered / cpu),
    sinkCpuPerEventUs: perEventUs(cpu),
    sinkMainThreadCpuPerEventUs: perEventUs(main),
    sinkBackgroundCpuPerEventUs: perEventUs(cpu - main),
    sinkThreadCpuPerEventUs: Object.fromEntries(
      [...threadsAfter]
        .map(([name, after]) => [name, perEventUs(after - (threadsBefore.get(name) ?? 0))] as const)
        .filter(([, us]) => us > 0)
        .sort((a, b) => b[1] - a[1]),
    ),
    driverCpuPerEventUs: perEventUs((driver.user + driver.system) / 1e6),
    answerBytesPerEvent: Math.round(answerBytes / delivered),
    loadAverage,
    requests: latencies.length,
    ackP50Ms: Number(percentile(latencies, 50).toFixed(2)),
    ackP99Ms: Number(percentile(latencies, 99).toFixed(2)),
    ackToCheckpointP99Ms: covered === delivered ? 0 : Number.NaN,
    receiptsWithCheckpoint: covered,
    receiptsVerified: verified,
    errors,
    ...(profile ? { profile } : {}),
  };
}

// batch size, concurrent producers, events, producer key algorithm. Latency at a given throughput is set by how
// many events are in flight (Little's law), so batch 1 runs from 1 to 256 connections (256: beside Tessera's
// POSIX server, docs/EMBEDDED.md), and batch 100 runs with per-event and batch-signed envelopes. Sized to take a
// few minutes in all on two cores.
const EVENTS = Number(process.env.EVENTS ?? 30_000);
const EVENTS_B1 = Number(process.env.EVENTS_B1 ?? 5_000);
type Step = [number, number, number, KeyAlgorithm, Signing, Variant?];
const fullPlan: Step[] = [
  [100, 1, EVENTS / 2, "ed25519", "event"],
  [100, 1, EVENTS / 2, "ed25519", "batch"],
  [100, 4, EVENTS, "ed25519", "event"],
  [100, 4, EVENTS, "ed25519", "batch"],
  // The cost of tlog-tiles and of witness cosigning (docs/TRANSPARENCY.md), beside the row above.
  [100, 4, EVENTS, "ed25519", "batch", "no-tiles"],
  // Ingest alone: the scheduled verifier re-checks every event it commits on a thread of its own.
  [100, 4, EVENTS, "ed25519", "batch", "no-verifier"],
  [100, 4, EVENTS, "ed25519", "batch", "witness"],
  [1, 1, EVENTS_B1 / 5, "ed25519", "event"],
  [1, 16, EVENTS_B1, "ed25519", "event"],
  [1, 64, EVENTS_B1, "ed25519", "event"],
  [1, 64, EVENTS_B1, "ed25519", "event", "no-verifier"],
  [1, 256, EVENTS_B1, "ed25519", "event"],
];
// PLAN="100x4:ed25519:batch,1x64:ecdsa-p256" runs only those (batch x concurrency : producer key [: signing
// [: variant]]), e.g. PLAN=100x4:ed25519:batch:no-tiles.
const plan = process.env.PLAN
  ? process.env.PLAN.split(",").map((p): Step => {
      const [batch, rest] = p.split("x");
      const [concurrency, algorithm, signing, variant] = rest!.split(":");
      return [
        Number(batch),
        Number(concurrency),
        Number(batch) === 1 ? EVENTS_B1 : EVENTS,
        algorithm as KeyAlgorithm,
        (signing ?? "event") as Signing,
        (variant ?? "tiles") as Variant,
      ];
    })
  : fullPlan;
const loadBefore = loadavg();
const runs: Run[] = [];
for (const [batch, concurrency, events, algorithm, signing, variant = "tiles"] of plan) {
  runs.push(await run(batch, concurrency, events, algorithm, signing, variant));
  console.log(JSON.stringify(runs[runs.length - 1]));
}
await witness?.close();
const goals: Goal[] = [
  {
    name: "batch 100, batch-signed, ≤ 4 connections",
    eventsPerSecond: 20_000,
    ackP99Ms: 50,
    applies: (r) => r.batch === 100 && r.signing === "batch" && r.concurrency <= 4,
  },
  {
    name: "batch 100, per-event signatures",
    eventsPerSecond: 10_000,
    applies: (r) => r.batch === 100 && r.signing === "event",
  },
  {
    name: "batch 1, 64 connections",
    eventsPerSecond: 5_000,
    ackP99Ms: 50,
    applies: (r) => r.batch === 1 && r.concurrency === 64,
  },
];
const result = {
  benchmark: "embedded",
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? "unknown",
  cores: cpus().length,
  eventBytes: 1024,
  receipts: RECEIPTS,
  goals: goals.map(({ applies: _, ...g }) => g),
  verdicts: goals.map((g) => verdict(g, runs)),
  // Tessera v1.0.4's POSIX server on this machine with the same load generator (docs/EMBEDDED.md).
  compare: { tesseraPosix: { concurrency: 256, eventsPerSecond: 11_667, ackP99Ms: 33 } },
  // Other work on the machine during the run (1-minute load average before and after): the numbers are only
  // comparable between runs on an otherwise idle machine.
  loadAverage: { before: loadBefore[0], after: loadavg()[0] },
  runs,
};
console.table(
  runs.map(({ profile, ...r }) => ({
    run: `${r.batch}x${r.concurrency} ${r.producerKey} ${r.signing}${r.variant === "tiles" ? "" : ` ${r.variant}`}`,
    "events/s": r.eventsPerSecond,
    "p50 ms": r.ackP50Ms,
    "p99 ms": r.ackP99Ms,
    "cpu µs/event": r.sinkCpuPerEventUs,
    "main µs": r.sinkMainThreadCpuPerEventUs,
    "bg µs": r.sinkBackgroundCpuPerEventUs,
    "driver µs": r.driverCpuPerEventUs,
    "answer B/event": r.answerBytesPerEvent,
    load: r.loadAverage,
    ...(profile ? { idle: profile.idleShare, ...profile.usPerEvent } : {}),
  })),
);
for (const v of result.verdicts) console.log(`${v.goal}: ${v.bound}`);
// RESULTS=<file> writes a partial plan somewhere other than the full run's file.
const out =
  process.env.RESULTS ?? join(dirname(new URL(import.meta.url).pathname), "results", "embedded.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${out}`);

interface Goal {
  name: string;
  eventsPerSecond: number;
  ackP99Ms?: number;
  /** The runs (default variant: tiles, no witness) that speak to the goal. */
  applies: (r: Run) => boolean;
}

/**
 * A goal against its best run (most events/s among those it applies to), and what bounds that run, derived from
 * the run's own figures: the sink's CPU per event gives the most two cores could do for the sink alone, the main
 * thread's CPU per event the most one thread can do, and the idle share whether the main thread waited instead.
 */
function verdict(goal: Goal, all: readonly Run[]) {
  const best = all
    .filter((r) => r.variant === "tiles" && goal.applies(r))
    .sort((a, b) => b.eventsPerSecond - a.eventsPerSecond)[0];
  if (!best) return { goal: goal.name, measured: null, bound: "no run of the plan applies to this goal" };
  const cores = cpus().length;
  const allCores = Math.round((cores * 1e6) / best.sinkCpuPerEventUs);
  const withDriver = Math.round((cores * 1e6) / (best.sinkCpuPerEventUs + best.driverCpuPerEventUs));
  const mainThread = Math.round(1e6 / best.sinkMainThreadCpuPerEventUs);
  const met =
    best.eventsPerSecond >= goal.eventsPerSecond &&
    (goal.ackP99Ms === undefined || best.ackP99Ms <= goal.ackP99Ms);
  const largest = best.profile ? largestCosts(best.profile.usPerEvent) : "no profile (PROFILE=0)";
  const idle = best.profile?.idleShare;
  const alone = all.find(
    (r) =>
      r.variant === "no-verifier" &&
      r.batch === best.batch &&
      r.concurrency === best.concurrency &&
      r.signing === best.signing,
  );
  const verifier = alone
    ? `; without the scheduled verifier (which re-checks each event on a thread of its own) ${alone.eventsPerSecond} events/s at ${alone.sinkCpuPerEventUs} µs of sink CPU per event`
    : "";
  // Two questions: can this machine reach the goal at this CPU per event at all, and what held this run below
  // even that ceiling (the one JavaScript thread, sharing the cores; or waiting, when it idled).
  const budget = Math.round((cores * 1e6) / goal.eventsPerSecond);
  const cpu =
    allCores < goal.eventsPerSecond
      ? `CPU: the goal leaves ${budget} µs of CPU per event on ${cores} cores; the sink used ${best.sinkCpuPerEventUs} (main thread ${best.sinkMainThreadCpuPerEventUs}, background threads ${best.sinkBackgroundCpuPerEventUs}), which caps it at ${allCores} events/s with the cores to itself, ${withDriver}/s beside the load generator's ${best.driverCpuPerEventUs} µs`
      : `CPU would allow ${allCores} events/s (${best.sinkCpuPerEventUs} µs per event)`;
  const held =
    idle !== undefined && idle > 0.25
      ? `waiting: the main thread idled ${Math.round(idle * 100)} % (commits wait on file syncs; the kernel's share of the sink's CPU was ${Math.round(best.sinkSystemCpuShare * 100)} %)`
      : `the main thread: ${best.sinkMainThreadCpuPerEventUs} µs per event caps it at ${mainThread} events/s, and it shares the cores with the background threads and the load generator${idle !== undefined ? ` (idle ${Math.round(idle * 100)} %)` : ""}`;
  const p99 =
    goal.ackP99Ms !== undefined && best.ackP99Ms > goal.ackP99Ms
      ? `; p99 ${best.ackP99Ms} ms against ${goal.ackP99Ms}: ${best.concurrency * best.batch} events in flight at ${best.eventsPerSecond}/s take ${Math.round((1000 * best.concurrency * best.batch) / best.eventsPerSecond)} ms on average (Little's law)`
      : "";
  const bound = met
    ? "met"
    : `${cpu}. This run reached ${best.eventsPerSecond}/s, held by ${held}. Main thread per event: ${largest}${p99}${verifier}`;
  return {
    goal: goal.name,
    target: { eventsPerSecond: goal.eventsPerSecond, ...(goal.ackP99Ms ? { ackP99Ms: goal.ackP99Ms } : {}) },
    run: `${best.batch}x${best.concurrency} ${best.producerKey} ${best.signing}`,
    measured: { eventsPerSecond: best.eventsPerSecond, ackP99Ms: best.ackP99Ms },
    met,
    ceilings: { sinkOnAllCores: allCores, sinkAndDriverOnAllCores: withDriver, mainThread },
    bound,
    ...(alone
      ? {
          withoutVerifier: {
            eventsPerSecond: alone.eventsPerSecond,
            ackP99Ms: alone.ackP99Ms,
            sinkCpuPerEventUs: alone.sinkCpuPerEventUs,
          },
        }
      : {}),
  };
}

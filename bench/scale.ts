/**
 * Scale: one embedded sink (the built CLI's `auditsink start`, its own process) fed 10,000,000 producer-signed
 * 1 KB events into ONE stream, then 1,000,000 more into 16 streams, measured at checkpoints on the way.
 *
 *   npm run bench:scale                          → bench/results/scale.json (hours on two cores)
 *   SCALE_EVENTS=200000 npm run bench:scale      → the same steps scaled down (a few minutes)
 *
 * Load: batch 100, batch-signed (one Ed25519 signature per request, docs/FORMAT.md §3b), over CONNECTIONS (4)
 * keep-alive connections; events are a year of agent activity (bench/events.ts agentActivityEvent: 500 agents,
 * runs of 50 events, five types, producer time 2.6 s apart), signed as they are sent.
 *
 * At 0, 10 %, 50 % and 100 % of the one-stream phase (0, 1 M, 5 M, 10 M at full size) and after the 16-stream
 * phase: the sink's RSS (/proc VmRSS and its own /metrics), the ingest rate over the interval and in its first
 * and last windows, the data directory's size, then SIGTERM → exit ("shutdown"), start → /healthz 200
 * ("restart"), the first query after the restart (by agent) on its own, and p50/p99 of QUERIES queries each by
 * agent, by run, by type and by a one-hour producer-time window through GET /v1/events. The goals of the
 * scale work are evaluated at the end. WORK=<dir> keeps the data directory (default: a temp dir, removed);
 * REMEASURE=1 with the WORK of a finished run measures its checkpoint again, without ingest (see remeasure()).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createPrivateKey, type KeyObject } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { canonicalBytes, newEventId, type SignedEvent, signBatch } from "@auditsink/core";
import { ACTIVITY, agentActivityEvent } from "./events.ts";
import { percentile, send } from "./http.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(ROOT, "packages/cli/dist/main.js");
const FULL = 10_000_000;
const EVENTS = Number(process.env.SCALE_EVENTS ?? FULL);
const SPREAD_EVENTS = Math.round(EVENTS / 10);
const STREAMS = 16;
const BATCH = 100;
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 4);
const QUERIES = Number(process.env.QUERIES ?? 200);
const STREAM = "agents.scale";
/** Rate windows: the first and last of an interval are compared for the "rate at 10 M vs at the start" goal. */
const WINDOW = Math.max(10_000, Math.round(EVENTS / 100 / BATCH) * BATCH);
const checkpoints = [0, 0.1, 0.5, 1].map((f) => Math.round((EVENTS * f) / BATCH) * BATCH);

const round = (n: number, digits = 2) => Number(n.toFixed(digits));
const load1m = () => round(loadavg()[0]!);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
    server.on("error", fail);
  });
}

function cliSync(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`auditsink ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

class SinkProcess {
  child: ChildProcess | undefined;
  constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly logFile: string,
  ) {}

  /** Spawns `auditsink start` and resolves with the seconds until /healthz answers 200. */
  async start(agent: Agent): Promise<number> {
    const started = performance.now();
    const log = openSync(this.logFile, "a");
    const child = spawn(
      process.execPath,
      [
        // SINK_NODE_ARGS: node flags for the sink process only, e.g. "--cpu-prof --cpu-prof-dir=<dir>"
        ...(process.env.SINK_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
        CLI,
        "start",
        "--data-dir",
        this.dataDir,
        "--port",
        String(this.port),
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "ignore", log] },
    );
    closeSync(log);
    this.child = child;
    let exited: number | null | undefined;
    child.once("exit", (code) => {
      exited = code;
    });
    for (;;) {
      if (exited !== undefined)
        throw new Error(`the sink exited with ${exited} while starting (${this.logFile})`);
      const r = await send(agent, this.port, "GET", "/healthz").catch(() => undefined);
      if (r?.status === 200) return (performance.now() - started) / 1000;
      await sleep(10);
    }
  }

  /** SIGTERM; resolves with the seconds until the process exited, and its exit status. */
  async stop(): Promise<{ seconds: number; exitCode: number | null }> {
    const child = this.child!;
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const t0 = performance.now();
    child.kill("SIGTERM");
    const exitCode = await exited;
    this.child = undefined;
    return { seconds: round((performance.now() - t0) / 1000, 3), exitCode };
  }

  rssMB(): number {
    return this.memoryMB().rss;
  }

  /** /proc VmRSS and its parts: anonymous memory (heaps, SQLite's cache), mapped files, shared memory. */
  memoryMB(): { rss: number; anon: number; file: number; shmem: number } {
    const status = readFileSync(`/proc/${this.child!.pid}/status`, "utf8");
    const mb = (field: string) =>
      round(Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) / 1024, 1);
    return { rss: mb("VmRSS"), anon: mb("RssAnon"), file: mb("RssFile"), shmem: mb("RssShmem") };
  }
}

/** The sink's own view of its memory (prom-client default metrics at GET /metrics). */
async function metricsMB(agent: Agent, port: number) {
  const { text } = await send(agent, port, "GET", "/metrics");
  const value = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
    return m ? round(Number(m[1]) / 2 ** 20, 1) : undefined;
  };
  return {
    residentMB: value("process_resident_memory_bytes"),
    heapUsedMB: value("nodejs_heap_size_used_bytes"),
  };
}

function dataDirMB(dir: string): number {
  const r = spawnSync("du", ["-sb", dir], { encoding: "utf8" });
  return round(Number(r.stdout.split("\t")[0]) / 1e6, 1);
}

/** Pads agentActivityEvent so that a batch-signed event is about 1 KB in its canonical form. */
function padding(privateKey: KeyObject): string {
  const probe = Array.from({ length: BATCH }, (_, j) => agentActivityEvent(newEventId(), j, ""));
  const signed = signBatch(probe, privateKey)[0]!;
  return "x".repeat(Math.max(0, 1024 - canonicalBytes(signed).length));
}

interface Ingest {
  events: number;
  seconds: number;
  eventsPerSecond: number;
  firstWindowEventsPerSecond: number;
  lastWindowEventsPerSecond: number;
  /** Requests answered other than 200 and sent again (after 100 ms). */
  retries: number;
  /**
   * The sink's RSS sampled every 5 s during the interval: a checkpoint's one sample falls wherever the verifier
   * thread's run is (it adds up to ~50 MB while it verifies), the lowest and highest do not.
   */
  rssSampledMB: { samples: number; min?: number; max?: number };
}

/** Sends events [from, to) of the workload, batch by batch, round robin over `streams`. */
async function ingest(
  agent: Agent,
  port: number,
  privateKey: KeyObject,
  note: string,
  from: number,
  to: number,
  streams: string[],
  rssMB: () => number,
): Promise<Ingest> {
  const rss: number[] = [];
  const sampler = setInterval(() => rss.push(rssMB()), 5_000);
  let next = from;
  let done = 0;
  let retries = 0;
  const windows: number[] = [];
  let windowStart = performance.now();
  let windowDone = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      for (;;) {
        const first = next;
        if (first >= to) return;
        next += BATCH;
        const count = Math.min(BATCH, to - first);
        const events: SignedEvent[] = signBatch(
          Array.from({ length: count }, (_, k) => agentActivityEvent(newEventId(), first + k, note)),
          privateKey,
        );
        const stream = streams[(first / BATCH) % streams.length]!;
        const body = JSON.stringify(events);
        for (let attempt = 0; ; attempt++) {
          const r = await send(agent, port, "POST", `/v1/streams/${stream}/events`, body);
          if (r.status === 200) break;
          if (attempt === 20) throw new Error(`POST answered ${r.status}: ${r.text.slice(0, 300)}`);
          retries++;
          await sleep(100);
        }
        done += count;
        windowDone += count;
        if (windowDone >= WINDOW) {
          const now = performance.now();
          windows.push(windowDone / ((now - windowStart) / 1000));
          windowStart = now;
          windowDone = 0;
        }
      }
    }),
  );
  clearInterval(sampler);
  const seconds = (performance.now() - t0) / 1000;
  const overall = done / seconds;
  return {
    events: done,
    seconds: round(seconds, 1),
    eventsPerSecond: Math.round(overall),
    firstWindowEventsPerSecond: Math.round(windows[0] ?? overall),
    lastWindowEventsPerSecond: Math.round(windows[windows.length - 1] ?? overall),
    retries,
    rssSampledMB: {
      samples: rss.length,
      ...(rss.length ? { min: Math.min(...rss), max: Math.max(...rss) } : {}),
    },
  };
}

/** How a shutdown is measured. */
const SHUTDOWN = "SIGTERM to the sink process → its exit";

type QueryKind = "agent" | "run" | "type" | "window";
const TYPES = [
  "ai.agent.run.start",
  "ai.agent.llm_call",
  "ai.agent.tool_call",
  "ai.agent.decision",
  "ai.agent.run.end",
];

/** A query of `kind` over the first `ingested` events of the workload, chosen at random. */
function queryPath(kind: QueryKind, ingested: number): string {
  const n = Math.max(1, ingested);
  const runs = Math.max(1, Math.floor(n / ACTIVITY.runLength));
  const pick = (k: number) => Math.floor(Math.random() * k);
  switch (kind) {
    case "agent":
      return `/v1/events?agent=agent-${pick(ACTIVITY.agents)}&limit=100`;
    case "run":
      return `/v1/events?run=run-${pick(runs)}&limit=100`;
    case "type":
      return `/v1/events?type=${TYPES[pick(TYPES.length)]}&limit=100`;
    case "window": {
      const since = ACTIVITY.start + pick(n) * ACTIVITY.stepMs;
      const q = `since=${new Date(since).toISOString()}&until=${new Date(since + 3_600_000).toISOString()}`;
      return `/v1/events?${q}&limit=100`;
    }
  }
}

async function timedQuery(agent: Agent, port: number, path: string) {
  const t0 = performance.now();
  const r = await send(agent, port, "GET", path);
  const ms = performance.now() - t0;
  if (r.status !== 200) throw new Error(`GET ${path} answered ${r.status}: ${r.text.slice(0, 300)}`);
  return { ms: round(ms, 2), results: (JSON.parse(r.text) as { events: unknown[] }).events.length };
}

async function queryLatencies(agent: Agent, port: number, ingested: number) {
  const out: Record<string, { queries: number; p50Ms: number; p99Ms: number; meanResults: number }> = {};
  for (const kind of ["agent", "run", "type", "window"] as const) {
    const ms: number[] = [];
    let results = 0;
    for (let i = 0; i < QUERIES; i++) {
      const r = await timedQuery(agent, port, queryPath(kind, ingested));
      ms.push(r.ms);
      results += r.results;
    }
    ms.sort((a, b) => a - b);
    out[`by${kind[0]!.toUpperCase()}${kind.slice(1)}`] = {
      queries: QUERIES,
      p50Ms: round(percentile(ms, 50)),
      p99Ms: round(percentile(ms, 99)),
      meanResults: round(results / QUERIES, 1),
    };
  }
  return out;
}

/** Starts the sink and measures what a checkpoint records after a (re)start: start-up, memory, the queries. */
async function startAndQuery(sink: SinkProcess, agent: Agent, port: number, events: number) {
  const restartToHealthySeconds = round(await sink.start(agent), 3);
  const rssAfterRestartMB = sink.rssMB();
  const firstQuery = await timedQuery(agent, port, queryPath("agent", events));
  const queries = await queryLatencies(agent, port, events);
  return {
    restartToHealthySeconds,
    rssAfterRestartMB,
    firstQueryAfterRestart: { kind: "byAgent", ...firstQuery },
    queries,
    rssAfterQueriesMB: sink.rssMB(),
  };
}

type Point = {
  phase: string;
  events: number;
  ingest?: Ingest;
  rssMB: number;
  shutdown: { seconds: number };
  restartToHealthySeconds: number;
  firstQueryAfterRestart: { ms: number };
  queries: Record<string, { p99Ms: number }>;
};

/** Each goal of the scale work, with its measured value and whether it is met. */
function goalsOf(points: Point[], oneStream: Point[], last: Point) {
  const maxRss = Math.max(...points.map((p) => p.rssMB));
  const warm = (oneStream[1] ?? last).rssMB;
  const firstIngest = oneStream.find((p) => p.ingest)?.ingest;
  const worstP99 = Math.max(...Object.values(last.queries).map((q) => q.p99Ms));
  return [
    {
      // Flat: no growth with the log once warm — the last one-stream checkpoint within 10 % of the first after 0.
      goal: "sink RSS ≤ 300 MB at every checkpoint, and flat (RSS at the last one-stream checkpoint ≤ 1.1 × RSS at the first after 0)",
      measured: { maxMB: maxRss, warmMB: warm, lastMB: last.rssMB, lastOverWarm: round(last.rssMB / warm) },
      met: maxRss <= 300 && last.rssMB <= 1.1 * warm,
    },
    {
      goal: "restart (start → /healthz 200) ≤ 2 s at every checkpoint",
      measured: { maxSeconds: Math.max(...points.map((p) => p.restartToHealthySeconds)) },
      met: points.every((p) => p.restartToHealthySeconds <= 2),
    },
    {
      goal: "shutdown (SIGTERM → exit) ≤ 2 s at every checkpoint",
      measured: { maxSeconds: Math.max(...points.map((p) => p.shutdown.seconds)) },
      met: points.every((p) => p.shutdown.seconds <= 2),
    },
    {
      goal: `query p99 ≤ 50 ms at ${last.events} events (by agent, run, type, time window)`,
      measured: { worstP99Ms: worstP99, firstQueryAfterRestartMs: last.firstQueryAfterRestart.ms },
      met: worstP99 <= 50,
    },
    {
      goal: `ingest rate at ${last.events} events within 10 % of the rate at the start (last window vs first window)`,
      measured: {
        startEventsPerSecond: firstIngest?.firstWindowEventsPerSecond,
        endEventsPerSecond: last.ingest?.lastWindowEventsPerSecond,
      },
      met:
        firstIngest !== undefined &&
        last.ingest !== undefined &&
        last.ingest.lastWindowEventsPerSecond >= 0.9 * firstIngest.firstWindowEventsPerSecond,
    },
  ];
}

async function main() {
  // The commit the sink is built from: the run takes hours, and HEAD may move meanwhile.
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], {
    cwd: ROOT,
    encoding: "utf8",
  }).stdout.trim();
  process.stderr.write("building the CLI\n");
  if (spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: "inherit" }).status !== 0)
    throw new Error("npm run build failed");
  const work = process.env.WORK ?? mkdtempSync(join(tmpdir(), "auditsink-bench-scale-"));
  mkdirSync(work, { recursive: true });
  const dataDir = join(work, "data");
  if (process.env.REMEASURE) return remeasure(work, dataDir, commit);
  const keyFile = join(work, "scale-agent.key.pem");
  cliSync([
    "producer",
    "create",
    "--data-dir",
    dataDir,
    "--id",
    "scale-agent",
    "--streams",
    "agents.*",
    "--key-file",
    keyFile,
  ]);
  const privateKey = createPrivateKey(readFileSync(keyFile));
  const note = padding(privateKey);
  const port = await freePort();
  // A fresh keep-alive agent per sink process: a restart closes the old one's sockets.
  let agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const sink = new SinkProcess(dataDir, port, join(work, "sink.log"));
  const firstStart = await sink.start(agent);
  process.stderr.write(`sink up in ${round(firstStart)} s on port ${port}; work ${work}\n`);

  const measured: Point[] = [];
  /** Everything measured at one checkpoint; restarts the sink on the way. */
  const measure = async (phase: string, events: number, ingest: Ingest | undefined) => {
    const loadBefore = load1m();
    const { rss: rssMB, ...rssPartsMB } = sink.memoryMB();
    const metrics = await metricsMB(agent, port);
    const sizeMB = dataDirMB(dataDir);
    agent.destroy();
    const shutdown = await sink.stop();
    agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
    const started = await startAndQuery(sink, agent, port, events);
    const point = {
      phase,
      events,
      loadAverage1mBefore: loadBefore,
      ...(ingest ? { ingest } : {}),
      rssMB,
      rssPartsMB,
      sinkMetrics: metrics,
      dataDirMB: sizeMB,
      shutdown: { ...shutdown, command: SHUTDOWN },
      ...started,
    };
    measured.push(point);
    console.log(JSON.stringify(point));
  };

  let ingested = 0;
  const machineLoad: { step: string; loadAverage1m: number }[] = [];
  // A failure hours into a full run still writes what was measured up to it (and the error).
  let failure: string | undefined;
  try {
    for (const target of checkpoints) {
      machineLoad.push({ step: `ingest to ${target}`, loadAverage1m: load1m() });
      const interval =
        target > ingested
          ? await ingest(agent, port, privateKey, note, ingested, target, [STREAM], () => sink.rssMB())
          : undefined;
      ingested = target;
      await measure("one stream", ingested, interval);
    }
    const spreadStreams = Array.from(
      { length: STREAMS },
      (_, i) => `${STREAM}-${String(i).padStart(2, "0")}`,
    );
    machineLoad.push({ step: `ingest ${SPREAD_EVENTS} into ${STREAMS} streams`, loadAverage1m: load1m() });
    const spread = await ingest(
      agent,
      port,
      privateKey,
      note,
      ingested,
      ingested + SPREAD_EVENTS,
      spreadStreams,
      () => sink.rssMB(),
    );
    ingested += SPREAD_EVENTS;
    await measure(`${STREAMS} streams`, ingested, spread);
  } catch (e) {
    failure = (e as Error).stack ?? String(e);
    process.stderr.write(`bench:scale stopped at ${ingested} events: ${failure}\n`);
    process.exitCode = 1;
  }
  if (sink.child) await sink.stop();
  agent.destroy();

  const points = measured;
  const oneStream = points.filter((p) => p.phase === "one stream");
  const last = oneStream[oneStream.length - 1];
  const goals = last ? goalsOf(points, oneStream, last) : [];
  const result = {
    ...header("scale", "", commit),
    workload: {
      eventsOneStream: EVENTS,
      eventsSpread: SPREAD_EVENTS,
      spreadStreams: STREAMS,
      eventBytes: 1024,
      batch: BATCH,
      signing: "batch (one signature per request)",
      connections: CONNECTIONS,
      agents: ACTIVITY.agents,
      eventsPerRun: ACTIVITY.runLength,
      types: TYPES,
      producerTimeStepMs: ACTIVITY.stepMs,
      rateWindowEvents: WINDOW,
      queriesPerKind: QUERIES,
      queryPageSize: 100,
    },
    // Other work on the (shared) machine before each step: figures are comparable only between quiet runs.
    loadAverage: machineLoad,
    firstStartSeconds: round(firstStart, 3),
    ...(failure ? { error: failure } : {}),
    goals,
    checkpoints: measured,
  };
  console.table(
    points.map((p) => ({
      phase: p.phase,
      events: p.events,
      "RSS MB": p.rssMB,
      "RSS during ingest": p.ingest?.rssSampledMB.samples
        ? `${p.ingest.rssSampledMB.min}–${p.ingest.rssSampledMB.max}`
        : undefined,
      "events/s": p.ingest?.eventsPerSecond,
      "exit s": p.shutdown.seconds,
      "restart s": p.restartToHealthySeconds,
      "1st query ms": p.firstQueryAfterRestart.ms,
      ...Object.fromEntries(Object.entries(p.queries).map(([k, q]) => [`${k} p99`, q.p99Ms])),
    })),
  );
  for (const g of goals)
    console.log(`${g.met ? "met " : "MISSED"}  ${g.goal}  ${JSON.stringify(g.measured)}`);
  const out = process.env.RESULTS ?? join(ROOT, "bench", "results", "scale.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${out}`);
  if (!process.env.WORK) rmSync(work, { recursive: true, force: true });
}

/** What every result file of this benchmark starts with: which run, on what. */
function header(benchmark: string, env: string, commit: string) {
  return {
    benchmark,
    date: new Date().toISOString(),
    command: `${env}${EVENTS === FULL ? "" : `SCALE_EVENTS=${EVENTS} `}npm run bench:scale`,
    commit,
    node: process.version,
    machine: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      memoryGB: round(totalmem() / 2 ** 30, 1),
    },
  };
}

/**
 * `WORK=<dir of a finished run> REMEASURE=1 npm run bench:scale`: the sink built from this checkout, started on
 * that data directory (every event of the run ingested: SCALE_EVENTS and the 16-stream tenth), measured as at a
 * checkpoint — restart, first query, QUERIES queries of each kind — without ingesting; `RESULTS` (default
 * bench/results/scale-remeasure.json). For a change to the sink that reaches the queries, without hours of ingest.
 * REMEASURE_INGEST=<n> then sends n more events to the one stream, as the run did, and reports their rate: the
 * ingest rate at this size in a sink's first minute (before its first incremental verification, for n up to
 * about 100,000), to set beside a run's first window at 0. The directory keeps them (a later remeasure counts
 * them: set SCALE_EVENTS accordingly).
 */
async function remeasure(work: string, dataDir: string, commit: string) {
  const events = EVENTS + SPREAD_EVENTS;
  const port = await freePort();
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const sink = new SinkProcess(dataDir, port, join(work, "sink.log"));
  const loadBefore = load1m();
  const started = await startAndQuery(sink, agent, port, events);
  const more = Number(process.env.REMEASURE_INGEST ?? 0);
  const privateKey = more > 0 ? createPrivateKey(readFileSync(join(work, "scale-agent.key.pem"))) : undefined;
  const ingested = privateKey
    ? await ingest(agent, port, privateKey, padding(privateKey), events, events + more, [STREAM], () =>
        sink.rssMB(),
      )
    : undefined;
  const point = {
    phase: "remeasure",
    events,
    loadAverage1mBefore: loadBefore,
    ...started,
    ...(ingested ? { ingest: ingested } : {}),
    shutdown: { ...(await sink.stop()), command: SHUTDOWN },
  };
  agent.destroy();
  const result = {
    ...header(
      "scale (remeasure of a kept data directory)",
      `WORK=${work} REMEASURE=1 ${more > 0 ? `REMEASURE_INGEST=${more} ` : ""}`,
      commit,
    ),
    workload: { events, queriesPerKind: QUERIES, queryPageSize: 100, ingest: more },
    point,
  };
  console.log(JSON.stringify(point));
  const out = process.env.RESULTS ?? join(ROOT, "bench", "results", "scale-remeasure.json");
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

await main();

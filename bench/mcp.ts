/**
 * The MCP gateway: latency it adds to a tool call, against a direct connection, in the same run.
 *
 *   npm run bench:mcp            → prints the figures and writes bench/results/mcp.json
 *   CALLS=20000 CLOSED_CALLS=500 npm run bench:mcp
 *
 * The official SDK client calls `echo` on `@modelcontextprotocol/server-everything` (spawned over stdio)
 * directly, and through the gateway (agent ↔ gateway in-process over the SDK's InMemoryTransport, gateway ↔
 * server over stdio). The gateway decides each call (a policy with three rules), signs its event and writes it
 * to the spool (fdatasynced in the background) before answering; with `failMode: open` its delivery thread sends
 * the events to the embedded sink asynchronously, with `closed` each answer waits for the event's verified
 * receipt. The sink runs as its own process (packages/local/src/serve.ts), as in production — but on the same two
 * cores here, where it would have its own machine.
 *
 * Two orders with the gateway in the benchmark's process, same run, same gateway, CALLS calls per path in each:
 * - `shuffled`: the calls of both paths in one random order, so the work a call leaves behind (the gateway's
 *   delivery and spool sync, the sink's commit) falls on the next call of either path alike, and the difference
 *   is what the gateway adds on the call's path.
 * - `rounds`: alternating rounds of 100 calls per path, as earlier runs measured: the background work of the
 *   gateway's events then falls on the gateway's rounds only, so this also charges the gateway with the
 *   co-located sink's commits.
 * And, as users run it (the goal's figure): `auditsink mcp-proxy` in its own process (fail-open), the agent's
 * client speaking stdio to it, shuffled with the direct calls (`process`): one more stdio hop, and the gateway's
 * work off the agent's process.
 * Goal: ≤ 2 ms p99 added with asynchronous delivery.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { generateKeyPair, spkiDer } from "@auditsink/core";
import { AuditRecorder, type FailMode, GatewayMetrics, McpGateway, Policy } from "@auditsink/mcp";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { threadCpu } from "./proc-cpu.ts";

const CALLS = Number(process.env.CALLS ?? 10_000);
const CLOSED_CALLS = Number(process.env.CLOSED_CALLS ?? 1000);
const ROUND = 100;
/** The two orders alternate in blocks of this many calls per path, so that both see the run's whole span. */
const BLOCK = 2000;
const everything = createRequire(import.meta.url).resolve(
  "@modelcontextprotocol/server-everything/dist/index.js",
);
const server = { name: "everything", command: process.execPath, args: [everything, "stdio"] };

const work = mkdtempSync(join(tmpdir(), "auditsink-bench-mcp-"));

/** The embedded sink in its own process; resolves once it listens, with what the bench needs from its directory. */
function startSink(
  dataDir: string,
): Promise<{ child: ChildProcess; url: string; adminToken: string; verifierKey: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "packages/local/src/serve.ts", dataDir, "0"], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, AUDITSINK_QUIET: "1", AUDITSINK_VERIFY_INTERVAL: "0" },
    });
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m)
        resolve({
          child,
          url: m[1]!,
          adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim(),
          verifierKey: readFileSync(join(dataDir, "keys", "verifier-key.txt"), "utf8").trim(),
        });
    });
    child.on("exit", (code) => reject(new Error(`sink exited with ${code}`)));
  });
}
const sink = await startSink(join(work, "data"));
// SINK_CPUS=1 (with the bench under `taskset -c 0`) keeps the sink's commits off the gateway's core, as on its
// own machine.
if (process.env.SINK_CPUS)
  execFileSync("taskset", ["-a", "-pc", process.env.SINK_CPUS, String(sink.child.pid)]);

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const summary = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  const r = (x: number) => Number(x.toFixed(3));
  return {
    p50: r(quantile(s, 0.5)),
    p90: r(quantile(s, 0.9)),
    p99: r(quantile(s, 0.99)),
    max: r(s[s.length - 1]!),
  };
};

async function timed(client: Client, n: number, out: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await client.callTool({ name: "echo", arguments: { message: `call ${i}` } });
    out.push(performance.now() - t);
    if (r.isError) throw new Error(`echo failed: ${JSON.stringify(r.content)}`);
  }
}

/** The gateway's policy in every order: three rules, the call measured (`echo`) allowed by the second. */
const POLICY = {
  default: "deny",
  rules: [
    { name: "no-env", tool: "get-env", action: "deny" },
    { name: "echo", tool: "echo", action: "allow", redact: ["token"] },
    { name: "sum", tool: "get-sum", action: "allow", rateLimit: { calls: 10, perSeconds: 1 } },
  ],
} as const;

/**
 * `n` calls per path in one random order (Fisher–Yates): after a call, the next call is any path with the same
 * chance. `paths` are the clients, `out` their latencies, in the same order.
 */
async function shuffled(paths: Client[], n: number, out: number[][]): Promise<void> {
  const order = paths.flatMap((_, p) => Array<number>(n).fill(p));
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (const p of order) await timed(paths[p]!, 1, out[p]!);
}

/** `n` calls per path in alternating rounds of ROUND. */
async function rounds(direct: Client, gateway: Client, n: number, d: number[], g: number[]): Promise<void> {
  for (let done = 0; done < n; done += ROUND) {
    await timed(direct, Math.min(ROUND, n - done), d);
    await timed(gateway, Math.min(ROUND, n - done), g);
  }
}

const compare = (d: number[], g: number[]) => {
  const directMs = summary(d);
  const gatewayMs = summary(g);
  return {
    calls: g.length,
    directMs,
    gatewayMs,
    addedMs: {
      p50: Number((gatewayMs.p50 - directMs.p50).toFixed(3)),
      p99: Number((gatewayMs.p99 - directMs.p99).toFixed(3)),
    },
  };
};

async function run(
  failMode: FailMode,
  calls: number,
  producerKey: ReturnType<typeof generateKeyPair>["privateKey"],
) {
  const metrics = new GatewayMetrics();
  const recorder = await AuditRecorder.open({
    sink: {
      endpoint: sink.url,
      producerKey,
      sinkKey: sink.verifierKey,
      stream: `agents.bench-${failMode}`,
      source: "mcp-proxy://bench",
    },
    spoolDir: join(work, `spool-${failMode}`),
    failMode,
    metrics,
    ...(process.env.LINGER_MS ? { deliveryLingerMs: Number(process.env.LINGER_MS) } : {}),
  });
  const gateway = new McpGateway({
    servers: [server],
    policy: Policy.parse(POLICY),
    recorder,
    metrics,
  });
  const [agentSide, gatewaySide] = InMemoryTransport.createLinkedPair();
  await gateway.openSession(gatewaySide, "pipe");
  const viaGateway = new Client({ name: "bench-agent", version: "1" });
  await viaGateway.connect(agentSide);
  const direct = new Client({ name: "bench-agent", version: "1" });
  await direct.connect(new StdioClientTransport(server));
  const mixed = { d: [] as number[], g: [] as number[] };
  const inRounds = { d: [] as number[], g: [] as number[] };
  await timed(direct, 200, []); // warm-up, both paths
  await timed(viaGateway, 200, []);
  // Fail-closed waits ~50 ms per call for the sink's commit: only the shuffled order, which is its figure.
  for (let done = 0; done < calls; done += BLOCK) {
    const n = Math.min(BLOCK, calls - done);
    await shuffled([direct, viaGateway], n, [mixed.d, mixed.g]);
    if (failMode === "open") await rounds(direct, viaGateway, n, inRounds.d, inRounds.g);
  }
  await recorder.drain(60_000);
  const delivered = (await metrics.eventsDelivered.get()).values[0]?.value ?? 0;
  await direct.close();
  await viaGateway.close();
  await gateway.close();
  await recorder.close();
  return {
    failMode,
    shuffled: compare(mixed.d, mixed.g),
    ...(failMode === "open" ? { rounds: compare(inRounds.d, inRounds.g) } : {}),
    eventsDelivered: delivered,
  };
}

/** CPU time (user + system, ms) of a process's threads on Linux (/proc): its main thread and the others. */
function cpuMsOf(pid: number | null | undefined): { main: number; other: number } {
  const out = { main: 0, other: 0 };
  if (!pid) return out;
  try {
    for (const [name, seconds] of threadCpu(pid)) out[name === "main" ? "main" : "other"] += seconds * 1000;
  } catch {
    // Not Linux, or the process is gone: no figure.
  }
  return out;
}

/** The first child process of `pid` (a server a proxy spawned), from /proc. */
function childOf(pid: number | null | undefined): number | undefined {
  try {
    return (
      Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)[0]) || undefined
    );
  } catch {
    return undefined;
  }
}

/**
 * The gateway as users run it: `auditsink mcp-proxy` over stdio, fail-open, in its own process; beside it, in the
 * same shuffled order, the pass-through relay (bench/stdio-relay.ts), the floor of any proxy in its own process.
 * With it, the CPU each process took per call of its path in that order (the sink's per event of the gateway).
 */
async function runProcess(producerKey: ReturnType<typeof generateKeyPair>["privateKey"]) {
  const keyFile = join(work, "producer.key.pem");
  writeFileSync(keyFile, producerKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const stream = "agents.bench-process";
  const config = join(work, "gateway.json");
  writeFileSync(
    config,
    JSON.stringify({
      servers: [server],
      sink: { url: sink.url, keyFile, verifierKey: sink.verifierKey, stream, source: "mcp-proxy://bench" },
      spool: join(work, "spool-process"),
      failMode: "open",
      policy: POLICY,
    }),
  );
  const gatewayTransport = new StdioClientTransport({
    command: process.execPath,
    args: ["packages/cli/bin/auditsink.js", "mcp-proxy", "--config", config],
    stderr: "inherit",
  });
  const viaGateway = new Client({ name: "bench-agent", version: "1" });
  await viaGateway.connect(gatewayTransport);
  const directTransport = new StdioClientTransport(server);
  const direct = new Client({ name: "bench-agent", version: "1" });
  await direct.connect(directTransport);
  const relayTransport = new StdioClientTransport({
    command: process.execPath,
    args: ["--import", "tsx", "bench/stdio-relay.ts", server.command, ...server.args],
    stderr: "inherit",
  });
  const viaRelay = new Client({ name: "bench-agent", version: "1" });
  await viaRelay.connect(relayTransport);
  const mixed = { d: [] as number[], g: [] as number[], r: [] as number[] };
  for (const c of [direct, viaGateway, viaRelay]) await timed(c, 200, []);
  const processes = {
    gateway: gatewayTransport.pid,
    gatewayServer: childOf(gatewayTransport.pid),
    relay: relayTransport.pid,
    relayServer: childOf(relayTransport.pid),
    directServer: directTransport.pid,
    sink: sink.child.pid,
    benchmark: process.pid,
  };
  const before = Object.fromEntries(Object.entries(processes).map(([k, pid]) => [k, cpuMsOf(pid)]));
  const started = performance.now();
  await shuffled([direct, viaGateway, viaRelay], CALLS, [mixed.d, mixed.g, mixed.r]);
  const wallMs = performance.now() - started;
  const perCall = (ms: number) => Number((ms / CALLS).toFixed(3));
  const cpuMsPerCall = Object.fromEntries(
    Object.entries(processes).flatMap(([k, pid]) => {
      const [a, b] = [before[k]!, cpuMsOf(pid)];
      return k === "gateway"
        ? [
            ["gatewayMainThread", perCall(b.main - a.main)],
            ["gatewayOtherThreads", perCall(b.other - a.other)],
          ]
        : [[k, perCall(b.main + b.other - a.main - a.other)]];
    }),
  );
  await direct.close();
  await viaRelay.close();
  // Closing stdin ends the gateway, which delivers what is left (up to 5 s) before it exits.
  await viaGateway.close();
  let delivered = 0;
  for (const until = Date.now() + 10_000; Date.now() < until; ) {
    const r = await fetch(`${sink.url}/v1/streams/${stream}/checkpoint`);
    delivered = r.ok ? ((await r.json()) as { size: number }).size : 0;
    if (delivered >= CALLS + 200) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    failMode: "open" as const,
    shuffled: compare(mixed.d, mixed.g),
    relay: compare(mixed.d, mixed.r),
    eventsDelivered: delivered,
    cpuMsPerCall,
    /** The CPU time of all these processes over the calls' wall time: how many of the cores they kept busy. */
    busyCores: Number(((Object.values(cpuMsPerCall).reduce((a, b) => a + b, 0) * CALLS) / wallMs).toFixed(2)),
  };
}

/** What bounds the goal's figure: the share of the process hop itself (the relay) and the gateway's own. */
function verdict({
  shuffled: gateway,
  relay,
  cpuMsPerCall: cpu,
}: Awaited<ReturnType<typeof runProcess>>): string {
  const own = (q: "p50" | "p99") => (gateway.addedMs[q] - relay.addedMs[q]).toFixed(2);
  return (
    `auditsink mcp-proxy in its own process adds p50 ${gateway.addedMs.p50} / p99 ${gateway.addedMs.p99} ms; ` +
    `a process that only passes the messages on (bench/stdio-relay.ts) adds p50 ${relay.addedMs.p50} / p99 ` +
    `${relay.addedMs.p99} ms in the same run, the floor of any proxy in its own process on this machine, which ` +
    `leaves the gateway's own work (deciding, checking and spooling the event, and what its delivery and the ` +
    `co-located sink take from the two cores) p50 ${own("p50")} / p99 ${own("p99")} ms. CPU per call: the ` +
    `gateway's calling thread ${cpu.gatewayMainThread} ms against the relay's ${cpu.relay} ms, its other threads ` +
    `(delivery, garbage collection, disk syncs) ${cpu.gatewayOtherThreads} ms, the sink ${cpu.sink} ms per event`
  );
}

try {
  const producer = generateKeyPair("ed25519");
  const registered = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${sink.adminToken}` },
    body: JSON.stringify({
      id: "bench",
      publicKey: spkiDer(producer.publicKey).toString("base64"),
      streams: ["agents.*"],
    }),
  });
  if (registered.status !== 201) throw new Error(`register: ${registered.status}`);
  const before = loadavg();
  const open = await run("open", CALLS, producer.privateKey);
  const closed = await run("closed", CLOSED_CALLS, producer.privateKey);
  const separate = await runProcess(producer.privateKey);
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    loadavgBefore: before.map((x) => Number(x.toFixed(2))),
    loadavgAfter: loadavg().map((x) => Number(x.toFixed(2))),
    setup:
      "SDK client → echo on server-everything (stdio); direct vs through McpGateway (InMemoryTransport in front), delivery on its own thread; shuffled: the calls of both paths in one random order; rounds: alternating rounds of 100 per path; process: auditsink mcp-proxy spawned over stdio, shuffled with direct calls and calls through a pass-through relay process; embedded sink in its own process on the same cores",
    goal: "≤ 2 ms p99 added with asynchronous delivery, as users run it (process: auditsink mcp-proxy, fail-open)",
    goalMet: separate.shuffled.addedMs.p99 <= 2,
    verdict: verdict(separate),
    open,
    closed,
    process: separate,
  };
  const file = join(import.meta.dirname, "results", "mcp.json");
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
} finally {
  sink.child.kill("SIGTERM");
  await new Promise((r) => sink.child.once("exit", r));
  rmSync(work, { recursive: true, force: true });
}

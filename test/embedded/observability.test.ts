/**
 * Operators' view of a running embedded sink: one JSON request log line per request (levels, fields, client
 * aborts, no secrets, LOG_LEVEL filtering) and Prometheus `/metrics` scraped over HTTP and parsed with a
 * Prometheus text-format parser, whose values must match the traffic sent.
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { join } from "node:path";
import { METRICS, type SignedEvent } from "@auditsink/core";
import parsePrometheusTextFormat, { type MetricFamily } from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../packages/cli/src/program.ts";
import {
  createLogger,
  DirectoryObjects,
  type EmbeddedSink,
  parseLogLevel,
  startEmbeddedSink,
} from "../../packages/local/src/index.ts";
import { SERVE } from "../built.ts";
import { tempDir, testProducer } from "./helpers.ts";

interface LogLine {
  level: string;
  time: string;
  msg: string;
  requestId?: string;
  method?: string;
  route?: string;
  status?: number;
  durationMs?: number;
  stream?: string;
  events?: number;
  producer?: string | string[];
  problem?: string;
  aborted?: boolean;
  alert?: { code: string };
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function started(extra: Partial<Parameters<typeof startEmbeddedSink>[0]> = {}) {
  const t = await tempDir("auditsink-obs-");
  cleanups.push(t.remove);
  const lines: string[] = [];
  const sink = await startEmbeddedSink({
    dataDir: t.dir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: () => undefined,
    log: (l) => lines.push(l),
    ...extra,
  });
  cleanups.push(() => sink.close());
  const parsed = () => lines.map((l) => JSON.parse(l) as LogLine);
  return { sink, dataDir: t.dir, lines, parsed };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

async function scrape(sink: EmbeddedSink): Promise<Map<string, MetricFamily>> {
  const res = await fetch(`${sink.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return new Map(parsePrometheusTextFormat(await res.text()).map((f) => [f.name, f]));
}

/** The value of the sample with exactly these labels (0 when the series does not exist yet). */
function value(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = families.get(name);
  expect(family, name).toBeDefined();
  const sample = family!.metrics.find(
    (m) =>
      JSON.stringify(Object.entries(m.labels ?? {}).sort()) === JSON.stringify(Object.entries(labels).sort()),
  );
  return sample ? number(sample.value!) : 0;
}

/** A sample value in the text format (`+Inf`, `-Inf` and `NaN` are spelt out). */
const number = (text: string) =>
  text === "+Inf" ? Number.POSITIVE_INFINITY : text === "-Inf" ? -Infinity : Number(text);

function histogram(families: Map<string, MetricFamily>, name: string): { count: number; sum: number } {
  const [sample] = families.get(name)?.metrics ?? [];
  expect(sample, name).toBeDefined();
  return { count: Number(sample!.count), sum: Number(sample!.sum) };
}

async function until<T>(probe: () => T | undefined, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every checkpoint and segment object in the store, and the records they hold (the sink's own count of work). */
async function stored(dataDir: string): Promise<{ checkpoints: number }> {
  const keys = await new DirectoryObjects(join(dataDir, "objects"), "fanned").list("streams/");
  return { checkpoints: keys.filter((k) => k.split("/")[2] === "checkpoints").length };
}

describe("a running embedded sink, observed", () => {
  let sink: EmbeddedSink;
  let dataDir: string;
  let parsed: () => LogLine[];
  let lines: string[];
  let token: string;
  let webhook: Server;
  let webhookCalls = 0;
  const agent = testProducer("obs-agent");
  const stranger = testProducer("obs-stranger");
  const sent: SignedEvent[] = [];
  let keyId: string;

  beforeAll(async () => {
    // A webhook that refuses its first delivery and takes the rest: one failed attempt, then a retry.
    webhook = createServer((req, res) => {
      req.resume();
      webhookCalls++;
      res.statusCode = webhookCalls === 1 ? 500 : 204;
      res.end();
    });
    await new Promise<void>((r) => webhook.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => webhook.close(() => r())));
    const port = (webhook.address() as AddressInfo).port;
    ({ sink, dataDir, parsed, lines } = await started({ webhookUrl: `http://127.0.0.1:${port}/alerts` }));
    token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();

    // Prepare: a producer registered over HTTP with a heartbeat it will miss.
    const reg = await post(
      `${sink.url}/v1/producers`,
      { id: agent.id, publicKey: agent.publicKeySpki, streams: ["agents.*"], heartbeatSeconds: 1 },
      { authorization: `Bearer ${token}` },
    );
    expect(reg.status).toBe(201);
    // Act: 3 + 1 accepted events, a forged one, one from an unregistered key, one that is not an event.
    const batch = [agent.event(), agent.event(), agent.event()];
    const single = agent.event();
    sent.push(...batch, single);
    keyId = batch[0]!.sigkeyid;
    expect((await post(`${sink.url}/v1/streams/agents.obs/events`, batch)).status).toBe(200);
    expect(
      (await post(`${sink.url}/v1/streams/agents.obs/events`, single, { "x-request-id": "req-single-1" }))
        .status,
    ).toBe(200);
    const forged = { ...agent.event(), type: "ai.agent.other" };
    sent.push(forged);
    const refused = await post(`${sink.url}/v1/streams/agents.obs/events`, forged, {
      "x-request-id": "req-forged",
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("x-request-id")).toBe("req-forged");
    const unknown = stranger.event();
    sent.push(unknown);
    expect((await post(`${sink.url}/v1/streams/agents.obs/events`, unknown)).status).toBe(401);
    expect((await post(`${sink.url}/v1/streams/agents.obs/events`, "not an event")).status).toBe(400);
    // An admin call with a wrong token (a secret-shaped value that must not be logged either).
    expect(
      (await post(`${sink.url}/v1/producers`, {}, { authorization: "Bearer wrong-token-0123456789abcdef" }))
        .status,
    ).toBe(401);
  }, 20_000);

  describe("GET /metrics", () => {
    it("counts accepted and rejected events, commits, signatures and requests exactly", async () => {
      // Act
      const m = await scrape(sink);
      const { checkpoints } = await stored(dataDir);
      // Assess
      expect(value(m, METRICS.eventsAccepted.name)).toBe(4);
      expect(value(m, METRICS.eventsRejected.name, { code: "bad-signature" })).toBe(1);
      expect(value(m, METRICS.eventsRejected.name, { code: "unknown-producer" })).toBe(1);
      expect(value(m, METRICS.eventsRejected.name, { code: "invalid-event" })).toBe(1);
      expect(value(m, METRICS.producerSignatures.name)).toBe(4);
      // Every checkpoint in the store was signed by this process (a fresh data directory): the registration and
      // the stream's creation in `_system`, and the two submissions in agents.obs.
      expect(checkpoints).toBe(4);
      expect(value(m, METRICS.checkpointSignatures.name)).toBe(checkpoints);
      const commits = histogram(m, METRICS.commitDuration.name);
      expect(commits.count).toBe(checkpoints);
      expect(commits.sum).toBeGreaterThan(0);
      const batches = histogram(m, METRICS.commitBatchSize.name);
      expect(batches.count).toBe(checkpoints);
      expect(batches.sum).toBe(4 + 2); // agents.obs records + the two `_system` records
      const route = "/v1/streams/:stream/events";
      expect(value(m, METRICS.httpRequests.name, { method: "POST", route, status: "200" })).toBe(2);
      expect(value(m, METRICS.httpRequests.name, { method: "POST", route, status: "401" })).toBe(2);
      expect(
        value(m, METRICS.httpRequests.name, { method: "POST", route: "/v1/producers", status: "201" }),
      ).toBe(1);
      expect(m.get("process_cpu_seconds_total")?.type).toBe("COUNTER");
      expect(m.get("nodejs_eventloop_lag_seconds")?.type).toBe("GAUGE");
    });

    it("reports verifier runs, the age of the last full run, open findings and alert deliveries", async () => {
      // Prepare: before any run, no full verification has completed.
      const before = await scrape(sink);
      expect(value(before, METRICS.verifierLastFullRunAge.name)).toBe(Number.POSITIVE_INFINITY);
      expect(value(before, METRICS.findingsOpen.name)).toBe(0);
      // A stray file in the store (a finding), and the producer stays silent past its heartbeat (an alert).
      await writeFile(join(dataDir, "objects", "stray.txt"), "not an object");
      await new Promise((r) => setTimeout(r, 1_100));
      // Act
      const first = await sink.verifier.runOnce({ full: true });
      await sink.verifier.runOnce();
      await until(() => (webhookCalls >= 1 ? true : undefined), "the first webhook attempt");
      await new Promise((r) => setTimeout(r, 1_100)); // the outbox's first backoff is 1 s
      await sink.flushAlerts();
      const m = await scrape(sink);
      // Assess
      const codes = first.alerts.map((a) => a.code).sort();
      expect(codes).toEqual(["producer-silent", "unexpected-object"]);
      expect(value(m, METRICS.verifierRuns.name, { mode: "full" })).toBe(1);
      expect(value(m, METRICS.verifierRuns.name, { mode: "incremental" })).toBe(1);
      expect(value(m, METRICS.verifierRunFailures.name, { mode: "full" })).toBe(0);
      const age = value(m, METRICS.verifierLastFullRunAge.name);
      expect(age).toBeGreaterThanOrEqual(0);
      expect(age).toBeLessThan(10);
      expect(value(m, METRICS.findingsOpen.name)).toBe(sink.verifier.findings.open.length);
      expect(value(m, METRICS.findingsOpen.name)).toBe(1);
      expect(value(m, METRICS.alertsRaised.name, { code: "unexpected-object" })).toBe(1);
      expect(value(m, METRICS.alertsRaised.name, { code: "producer-silent" })).toBe(1);
      expect(webhookCalls).toBe(2);
      expect(value(m, METRICS.alertDeliveries.name, { result: "failed" })).toBe(1);
      expect(value(m, METRICS.alertDeliveries.name, { result: "delivered" })).toBe(1);
      expect(value(m, METRICS.alertRetries.name)).toBe(1);
      expect(value(m, METRICS.alertBacklog.name, { sink: "webhook" })).toBe(0);
    }, 15_000);

    it("is declared in the OpenAPI document", async () => {
      const doc = (await (await fetch(`${sink.url}/openapi.json`)).json()) as {
        paths: Record<string, unknown>;
      };
      expect(Object.keys(doc.paths)).toContain("/metrics");
    });
  });

  describe("the request log", () => {
    it("writes one JSON line per request with route pattern, status, duration, stream, producer and count", async () => {
      // Act
      const requests = parsed().filter((l) => l.msg === "request");
      const submissions = requests.filter((l) => l.route === "/v1/streams/:stream/events");
      // Assess
      expect(submissions).toHaveLength(5);
      const [batch, single, forged, unknown, notEvent] = submissions;
      expect(batch).toMatchObject({
        level: "info",
        method: "POST",
        status: 200,
        stream: "agents.obs",
        events: 3,
        producer: keyId,
      });
      expect(batch!.durationMs).toBeGreaterThan(0);
      expect(batch!.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(single).toMatchObject({ requestId: "req-single-1", events: 1, producer: keyId, status: 200 });
      // Refused authentication is a warning; the producer is named only once authenticated.
      expect(forged).toMatchObject({
        level: "warn",
        status: 401,
        problem: "bad-signature",
        events: 1,
        requestId: "req-forged",
      });
      expect(forged!.producer).toBeUndefined();
      expect(unknown).toMatchObject({ level: "warn", status: 401, problem: "unknown-producer" });
      expect(notEvent).toMatchObject({ level: "info", status: 400, problem: "invalid-event" });
      expect(new Set(requests.map((l) => l.requestId)).size).toBe(requests.length);
      expect(parsed().filter((l) => l.level === "error" && l.msg === "request")).toEqual([]);
    });

    it("never writes the admin token, bearer tokens or signatures", () => {
      const all = lines.join("\n");
      expect(all).not.toContain(token);
      expect(all).not.toContain("wrong-token-0123456789abcdef");
      expect(all.toLowerCase()).not.toContain("bearer");
      for (const e of sent) expect(all).not.toContain(e.signature);
    });

    it("logs a client that hung up mid-request as a warning, never an error", async () => {
      // Prepare: a submission whose body never finishes arriving.
      const { port } = new URL(sink.url);
      const socket = connect(Number(port), "127.0.0.1");
      await new Promise<void>((r) => socket.once("connect", () => r()));
      socket.write(
        "POST /v1/streams/agents.obs/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n[{",
      );
      await new Promise((r) => setTimeout(r, 100));
      // Act
      socket.destroy();
      const line = await until(
        () => parsed().find((l) => l.aborted === true),
        "the aborted request's log line",
      );
      // Assess
      expect(line).toMatchObject({
        level: "warn",
        msg: "request aborted by the client",
        method: "POST",
        route: "/v1/streams/:stream/events",
        stream: "agents.obs",
        status: 499,
      });
      expect(line.problem).toBeUndefined();
      const m = await scrape(sink);
      const route = "/v1/streams/:stream/events";
      expect(value(m, METRICS.httpRequests.name, { method: "POST", route, status: "499" })).toBe(1);
      expect(value(m, METRICS.eventsRejected.name, { code: "internal" })).toBe(0);
      expect(parsed().filter((l) => l.level === "error" && l.msg !== "auditsink alert")).toEqual([]);
    });
  });
});

describe("log levels", () => {
  it("LOG_LEVEL=warn keeps warnings and drops info lines", async () => {
    // Prepare
    const { sink, parsed } = await started({ logLevel: parseLogLevel("WARN") });
    // Act
    await fetch(`${sink.url}/v1/keys`);
    await post(`${sink.url}/v1/producers`, {}, { authorization: "Bearer nope-nope-nope-nope" });
    // Assess
    const lines = await until(() => (parsed().length > 0 ? parsed() : undefined), "a log line");
    expect(lines.map((l) => [l.level, l.route, l.status])).toEqual([["warn", "/v1/producers", 401]]);
  });

  it("a process started with LOG_LEVEL=warn writes only warnings and above, as JSON lines on stderr", async () => {
    // Prepare: the sink as its own process, stdout and stderr pipes (not a terminal).
    const t = await tempDir("auditsink-obs-env-");
    cleanups.push(t.remove);
    const child = spawn(process.execPath, [SERVE, t.dir, "0"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LOG_LEVEL: "warn", AUDITSINK_VERIFY_INTERVAL: "0" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise((r) => child.once("exit", r));
    try {
      const url = await until(() => /listening (\S+)/.exec(stdout)?.[1], "the sink to listen", 20_000);
      // Act
      await fetch(`${url}/v1/keys`);
      await post(`${url}/v1/producers`, {}, { authorization: "Bearer nope-nope-nope-nope" });
      await until(() => (stderr.includes("\n") ? true : undefined), "a log line");
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
    // Assess: no banner on a pipe, no info lines (not even `auditsink started`), the refusal as a warning.
    expect(stdout).not.toContain("auditsink is running");
    const logged = stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as LogLine);
    expect(logged.map((l) => [l.level, l.msg, l.status])).toEqual([["warn", "request", 401]]);
  }, 30_000);

  it("scrapes and health checks are debug lines", async () => {
    const { sink, parsed } = await started({ logLevel: "debug" });
    await fetch(`${sink.url}/healthz`);
    await fetch(`${sink.url}/metrics`);
    const polled = await until(() => {
      const found = parsed().filter((l) => l.msg === "request");
      return found.length === 2 ? found : undefined;
    }, "two request lines");
    expect(polled.map((l) => [l.level, l.route])).toEqual([
      ["debug", "/healthz"],
      ["debug", "/metrics"],
    ]);
  });

  it("censors secret-named fields should an object carrying one be logged", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    log.warn(
      {
        token: "t0k3n-secret",
        headers: { authorization: "Bearer abc-secret" },
        event: { signature: "c2lnLXNlY3JldA" },
      },
      "careless",
    );
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toMatch(/secret|c2lnLXNlY3JldA/);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      token: "[redacted]",
      headers: { authorization: "[redacted]" },
    });
  });

  it("refuses an unknown level, naming the levels", async () => {
    expect(() => parseLogLevel("verbose")).toThrow(/fatal, error, warn, info, debug, trace, silent/);
    const err: string[] = [];
    const code = await run(["start", "--log-level", "verbose", "--data", "/nonexistent/obs"], {
      out: () => undefined,
      err: (t) => err.push(t),
      isTTY: false,
      setExitCode: () => undefined,
    });
    expect(code).toBe(2);
    expect(err.join("")).toMatch(/log level must be one of/);
  });
});

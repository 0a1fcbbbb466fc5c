/**
 * The gateway when the sink goes away: fail-open keeps serving and delivers everything it spooled, in order,
 * after both the sink and the gateway restart; fail-closed withholds what it cannot record and refuses calls
 * until the sink is back. A sink that rolls its log back is caught by the receipt check and reported.
 */
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Worker } from "node:worker_threads";
import { startEmbeddedSink } from "@auditsink/local";
import { serveHttp } from "@auditsink/mcp";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { cli, sinkWithProducer, tempDir } from "../cli/helpers.ts";
import { gateway, gatewayConfig, keptReceipts, records } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** The sink again over the same data directory and port (the gateway's configured URL). */
async function restartSink(dataDir: string, port: number) {
  const sink = await startEmbeddedSink({
    dataDir,
    port,
    verifyIntervalSeconds: 0,
    print: () => {},
    log: () => {},
  });
  cleanups.push(() => sink.close());
  return sink;
}

async function setup(
  failMode: "open" | "closed",
  extra: Record<string, unknown> = {},
  stream = "agents.mcp",
) {
  const work = await tempDir("auditsink-mcp-delivery-");
  const s = await sinkWithProducer(work, "mcp-gateway");
  let sink = s.sink;
  cleanups.push(() => sink.close());
  const config = gatewayConfig({ url: s.sink.url, keyFile: s.keyFile, verifierKey: s.verifierKey }, work, {
    failMode,
    policy: { default: "allow" },
    ...extra,
  });
  config.sink.stream = stream;
  let running = await gateway(config);
  let http = await serveHttp(running, { port: 0 });
  let client: Client;
  const connect = async () => {
    client = new Client({ name: "test-agent", version: "1" });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
  };
  await connect();
  const stopGateway = async () => {
    await client.close();
    await http.close();
    await running.close();
  };
  cleanups.push(stopGateway);
  return {
    work,
    s,
    config,
    get running() {
      return running;
    },
    /** The gateway's listener base URL (`/healthz`, `/metrics`). */
    get base() {
      return http.url.replace(/\/mcp$/, "");
    },
    echo: (message: string) => client.callTool({ name: "echo", arguments: { message } }),
    stopSink: () => sink.close(),
    async startSink() {
      sink = await restartSink(s.dataDir, s.sink.port);
    },
    stopGateway,
    async restartGateway() {
      await stopGateway();
      running = await gateway(config);
      http = await serveHttp(running, { port: 0 });
      await connect();
    },
  };
}

/** The size of the sink's newest checkpoint of agents.mcp. */
const streamSize = async (sinkUrl: string) =>
  ((await (await fetch(`${sinkUrl}/v1/streams/agents.mcp/checkpoint`)).json()) as { size: number }).size;

const messages = async (dataDir: string) =>
  (await records(dataDir)).map((r) => {
    const d = r.event.data as Record<string, unknown>;
    return [(d["gen_ai.tool.call.arguments"] as { message: string }).message, d["auditsink.mcp.rule"]];
  });

describe("fail-open", () => {
  it("serves while the sink is down and delivers every spooled event, in order, after both restart", async () => {
    // Prepare
    const t = await setup("open");
    await t.echo("m1");
    await t.echo("m2");
    await t.running.recorder.drain(5000);

    // Act: the sink stops; the agent goes on; the gateway restarts with events still spooled
    await t.stopSink();
    const during = [await t.echo("m3"), await t.echo("m4"), await t.echo("m5")];
    const spooled = t.running.recorder.status().backlog;
    await t.restartGateway();
    const afterRestart = t.running.recorder.status().backlog;
    await t.startSink();
    await t.running.recorder.drain(10_000);
    await t.echo("m6");
    await t.running.recorder.drain(5000);
    const metrics = await t.running.metrics.registry.getSingleMetricAsString(
      "auditsink_mcp_events_delivered_total",
    );
    await t.stopGateway();
    await t.stopSink();

    // Assess
    expect(during.every((r) => !r.isError)).toBe(true);
    expect(spooled).toBe(3);
    expect(afterRestart).toBe(3);
    expect(metrics).toContain("auditsink_mcp_events_delivered_total 4");
    expect(await messages(t.s.dataDir)).toEqual(
      ["m1", "m2", "m3", "m4", "m5", "m6"].map((m) => [m, "default"]),
    );
    expect(await keptReceipts(join(t.work, "spool"), t.s.verifierKey)).toHaveLength(6);
    const verified = await cli(["verify", t.s.dataDir, "--verifier-key", t.s.verifierKey]);
    expect(verified.code, verified.out + verified.err).toBe(0);
  }, 30_000);
});

/**
 * An HTTP proxy in front of the sink that passes every request on and, while `dropReplies` is set, drops the
 * sink's answer to each event submission (the sink has committed it; the gateway never hears so).
 */
async function replyLosingProxy(target: string) {
  const state = { dropReplies: true, dropped: 0 };
  const server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([k]) => !["host", "connection", "content-length"].includes(k)),
      ) as Record<string, string>;
      const answer = await fetch(`${target}${req.url}`, {
        method: req.method!,
        headers,
        ...(chunks.length ? { body: Buffer.concat(chunks) } : {}),
      });
      const body = Buffer.from(await answer.arrayBuffer());
      if (state.dropReplies && req.method === "POST" && req.url!.includes("/events")) {
        state.dropped++;
        res.socket!.destroy();
        return;
      }
      res.writeHead(answer.status, {
        "content-type": answer.headers.get("content-type") ?? "application/json",
      });
      res.end(body);
    })().catch(() => res.socket?.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe("fail-open, a sink's answers lost", () => {
  it("sends the same signed bytes again, after a restart too: the sink's original receipts, one record per call", async () => {
    // Prepare: the gateway reaches the sink through a proxy that loses every answer to a submission; no linger,
    // so each event goes in a request of its own
    const t = await setup("open", { deliveryLingerMs: 0 });
    const proxy = await replyLosingProxy(t.s.sink.url);
    t.config.sink.url = proxy.url;
    await t.restartGateway();

    // Act: three calls; the sink commits each event, the gateway hears nothing and keeps them; it restarts
    for (const m of ["m1", "m2", "m3"]) await t.echo(m);
    for (const until = Date.now() + 10_000; Date.now() < until; ) {
      const cp = await fetch(`${t.s.sink.url}/v1/streams/agents.mcp/checkpoint`);
      if (cp.ok && ((await cp.json()) as { size: number }).size >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const backlog = t.running.recorder.status().backlog;
    await t.stopGateway();
    const signatures = (await readFile(join(t.work, "spool", "signatures.jsonl"), "utf8")).trim().split("\n");
    proxy.state.dropReplies = false;
    await t.restartGateway();
    await t.running.recorder.drain(10_000);
    const status = t.running.recorder.status();
    await t.stopGateway();
    await t.stopSink();

    // Assess
    expect(proxy.state.dropped).toBeGreaterThanOrEqual(3);
    expect(backlog).toBe(3);
    expect(signatures.length).toBeGreaterThanOrEqual(1);
    expect(status).toMatchObject({ backlog: 0, sinkReachable: true });
    expect(await messages(t.s.dataDir)).toEqual(["m1", "m2", "m3"].map((m) => [m, "default"]));
    const receipts = await keptReceipts(join(t.work, "spool"), t.s.verifierKey);
    expect(receipts.map((r) => r.index)).toEqual([0, 1, 2]);
    await expect(readFile(join(t.work, "spool", "rejected.jsonl"), "utf8")).rejects.toMatchObject({
      code: "ENOENT",
    });
    const kept = (await readFile(join(t.work, "spool", "signatures.jsonl"), "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { first: number; sigbatch: string[] });
    expect(kept.every((b) => b.first + b.sigbatch.length <= 3)).toBe(true); // only delivered events
    const verified = await cli(["verify", t.s.dataDir, "--verifier-key", t.s.verifierKey]);
    expect(verified.code, verified.out + verified.err).toBe(0);
  }, 40_000);
});

describe("fail-open delivery", () => {
  it("waits out the linger so calls in a burst share one batch, and delivers it with no further call", async () => {
    // Prepare
    const t = await setup("open", { deliveryLingerMs: 3000 });

    // Act: five calls well within the linger, then nothing
    for (let i = 1; i <= 5; i++) await t.echo(`b${i}`);
    const waiting = t.running.recorder.status().backlog;
    await vi.waitFor(() => expect(t.running.recorder.status().backlog).toBe(0), {
      timeout: 15_000,
      interval: 100,
    });
    await t.stopGateway();

    // Assess: one request, so one commit: every receipt carries the same checkpoint, of all five
    expect(waiting).toBe(5);
    const receipts = await keptReceipts(join(t.work, "spool"), t.s.verifierKey);
    expect(receipts).toHaveLength(5);
    expect(new Set(receipts.map((r) => r.checkpoint)).size).toBe(1);
    expect(await messages(t.s.dataDir)).toEqual(["b1", "b2", "b3", "b4", "b5"].map((m) => [m, "default"]));
  }, 30_000);
});

describe("fail-closed", () => {
  it("withholds a result it cannot record, refuses calls while the sink is down, and recovers", async () => {
    // Prepare
    const t = await setup("closed", { closedTimeoutMs: 1000 });

    // Act
    const ok = await t.echo("m1");
    const committedBeforeAnswer = await streamSize(t.s.sink.url);
    await t.stopSink();
    const withheld = await t.echo("m2").then(
      () => "answered",
      (e: Error) => e.message,
    );
    const refused = await t.echo("m3");
    const healthDown = t.running.recorder.admits();
    const health = await fetch(`${t.base}/healthz`);
    const healthBody = (await health.json()) as Record<string, unknown>;
    const metricsText = await (await fetch(`${t.base}/metrics`)).text();
    await t.startSink();
    await t.running.recorder.drain(10_000);
    const again = await t.echo("m4");
    await t.stopGateway();
    await t.stopSink();

    // Assess: m2 ran but its result was withheld, and it is still recorded (late); m3 never reached the tool
    expect(ok.isError).toBeFalsy();
    expect(committedBeforeAnswer).toBe(1);
    expect(withheld).toContain("withheld");
    expect(refused.isError).toBe(true);
    expect(JSON.stringify(refused.content)).toContain("fail-closed");
    expect(healthDown).toBe(false);
    expect(health.status).toBe(503);
    expect(healthBody).toMatchObject({ ok: false, failMode: "closed", sinkReachable: false, backlog: 2 });
    expect(metricsText).toContain("auditsink_mcp_fail_closed_refusals_total 2");
    expect(metricsText).toContain("auditsink_mcp_sink_reachable 0");
    expect(again.isError).toBeFalsy();
    expect(await messages(t.s.dataDir)).toEqual([
      ["m1", "default"],
      ["m2", "default"],
      ["m3", "fail-closed"],
      ["m4", "default"],
    ]);
    const verified = await cli(["verify", t.s.dataDir, "--verifier-key", t.s.verifierKey]);
    expect(verified.code, verified.out + verified.err).toBe(0);
  }, 30_000);
});

describe("a spool that cannot keep a delivery (disk error)", () => {
  it("answers the call once its receipt verifies, retries the delivery, and keeps the sink's receipt once it can", async () => {
    // Prepare: the receipts file cannot be opened (a directory in its place)
    const t = await setup("closed", { closedTimeoutMs: 5000 });
    const receiptsFile = join(t.work, "spool", "receipts.jsonl");
    await mkdir(receiptsFile);

    // Act
    const answered = await t.echo("m1");
    await vi.waitFor(() => expect(t.running.recorder.status().lastError).toContain("the spool"), {
      timeout: 5000,
    });
    const failing = t.running.recorder.status();
    const metricsText = await (await fetch(`${t.base}/metrics`)).text();
    await rm(receiptsFile, { recursive: true });
    await t.running.recorder.drain(15_000);
    const after = t.running.recorder.status();
    await t.stopGateway();
    await t.stopSink();

    // Assess: answered (the sink committed it, its receipt verified); kept once the disk took it, one record
    expect(answered.isError).toBeFalsy();
    expect(failing.backlog).toBe(1);
    expect(metricsText).toMatch(/auditsink_mcp_delivery_failures_total\{code="spool"\} [1-9]/);
    expect(after).toMatchObject({ backlog: 0 });
    expect(after.lastError).toBeUndefined();
    expect(await messages(t.s.dataDir)).toEqual([["m1", "default"]]);
    expect((await keptReceipts(join(t.work, "spool"), t.s.verifierKey)).map((r) => r.index)).toEqual([0]);
  }, 30_000);
});

describe("receipt checks", () => {
  it("reports a sink that rolled its log back as a fork, in the metrics and the health, and keeps the event", async () => {
    // Prepare: a copy of the sink's data after two events
    const t = await setup("open");
    await t.echo("m1");
    await t.echo("m2");
    await t.running.recorder.drain(5000);
    await t.stopSink();
    const saved = join(t.work, "data-saved");
    await cp(t.s.dataDir, saved, { recursive: true });
    await t.startSink();
    await t.echo("m3");
    await t.running.recorder.drain(5000);

    // Act: the operator puts the old copy back; the next event gets a checkpoint that contradicts m3's
    await t.stopSink();
    await rm(t.s.dataDir, { recursive: true, force: true });
    await cp(saved, t.s.dataDir, { recursive: true });
    await t.startSink();
    await t.echo("m4");
    await expect(t.running.recorder.drain(1500)).rejects.toThrow(/undelivered/);
    const status = t.running.recorder.status();
    const metric = await t.running.metrics.registry.getSingleMetricAsString(
      "auditsink_mcp_receipt_failures_total",
    );

    // Assess
    expect(status.integrityError).toMatch(/log-fork/);
    expect(status.backlog).toBe(1);
    expect(metric).toContain('auditsink_mcp_receipt_failures_total{code="log-fork"}');
  }, 30_000);
});

describe("delivery thread", () => {
  it("sets aside every event the sink refuses for good, with the refusal, and keeps delivering", async () => {
    // Prepare: the producer may write agents.* only; this gateway records to another stream
    const t = await setup("open", {}, "billing.mcp");

    // Act
    const answers = [await t.echo("r1"), await t.echo("r2")];
    await t.running.recorder.drain(10_000);
    const rejected = (await readFile(join(t.work, "spool", "rejected.jsonl"), "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { seq: number; stream: string; reason: string; bytes?: number });
    const metric = await t.running.metrics.registry.getSingleMetricAsString(
      "auditsink_mcp_events_rejected_total",
    );

    // Assess: the calls were answered (fail-open); both events are set aside in order, with the sink's refusal
    expect(answers.every((a) => !a.isError)).toBe(true);
    expect(rejected.map((r) => [r.seq, r.stream])).toEqual([
      [0, "billing.mcp"],
      [1, "billing.mcp"],
    ]);
    expect(rejected[0]!.reason).toMatch(/billing\.mcp/);
    expect(rejected[0]!.bytes).toBeUndefined();
    expect(metric).toContain("auditsink_mcp_events_rejected_total 2");
    expect(t.running.recorder.status()).toMatchObject({ backlog: 0, sinkReachable: true });
  }, 30_000);

  it("delivers on after its thread dies: a new one picks up the spool and the witness state", async () => {
    // Prepare
    const t = await setup("open");
    await t.echo("m1");
    await t.running.recorder.drain(5000);

    // Act: the delivery thread is ended (fault injection through the recorder's private thread), then calls go on
    const { delivery } = t.running.recorder as unknown as { delivery: { worker?: Worker } };
    const first = delivery.worker;
    await first?.terminate();
    await t.echo("m2");
    await t.echo("m3");
    await t.running.recorder.drain(10_000);
    const status = t.running.recorder.status();
    const second = delivery.worker;
    await t.stopGateway();
    await t.stopSink();

    // Assess: a thread was there and ended, and another one delivered the rest
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(status).toMatchObject({ backlog: 0, sinkReachable: true });
    expect(status.integrityError).toBeUndefined();
    expect(await messages(t.s.dataDir)).toEqual(["m1", "m2", "m3"].map((m) => [m, "default"]));
    expect(await keptReceipts(join(t.work, "spool"), t.s.verifierKey)).toHaveLength(3);
  }, 30_000);

  it("does not start on a witness state file it cannot read, and leaves the spool to the next start", async () => {
    // Prepare
    const work = await tempDir("auditsink-mcp-witness-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    const config = gatewayConfig({ url: s.sink.url, keyFile: s.keyFile, verifierKey: s.verifierKey }, work);
    await mkdir(join(work, "spool"), { recursive: true });
    await writeFile(join(work, "spool", "witness.json"), "{not json");

    // Act
    const failed = await gateway(config).then(
      async (g) => {
        await g.close();
        return "started";
      },
      (e: Error) => e.message,
    );
    await rm(join(work, "spool", "witness.json"));
    const running = await gateway(config);
    const status = running.recorder.status();
    await running.close();

    // Assess
    expect(failed).toMatch(/witness\.json/);
    expect(status).toMatchObject({ backlog: 0, sinkReachable: true });
  }, 30_000);
});

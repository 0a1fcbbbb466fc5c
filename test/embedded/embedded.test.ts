import { spawn } from "node:child_process";
import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { parseVerifierKey, type Receipt, verifyReceipt } from "@auditsink/core";
import { afterEach, describe, expect, it } from "vitest";
import { type EmbeddedSink, openLocalSink, startEmbeddedSink } from "../../packages/local/src/index.ts";
import { SERVE } from "../built.ts";
import { objectFile, tempDir, testProducer } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function started(dataDir: string, extra: Partial<Parameters<typeof startEmbeddedSink>[0]> = {}) {
  const printed: string[] = [];
  const logged: string[] = [];
  const sink = await startEmbeddedSink({
    dataDir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: (t) => printed.push(t),
    log: (l) => logged.push(l),
    ...extra,
  });
  cleanups.push(() => sink.close());
  return { sink, printed, logged };
}

async function fresh() {
  const t = await tempDir("auditsink-embedded-");
  cleanups.push(t.remove);
  return t.dir;
}

async function registerOverHttp(
  sink: EmbeddedSink,
  dataDir: string,
  p: ReturnType<typeof testProducer>,
  extra = {},
) {
  const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"], ...extra }),
  });
  expect(res.status).toBe(201);
}

async function send(sink: EmbeddedSink, stream: string, events: unknown[]): Promise<Receipt[]> {
  const res = await fetch(`${sink.url}/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { receipts: Receipt[] }).receipts;
}

function runChild(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SERVE, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, AUDITSINK_VERIFY_INTERVAL: "0" },
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe("startEmbeddedSink: a fresh data directory", () => {
  it("creates the signing key (0600), exports its public key and prints how to start", async () => {
    // Prepare
    const dataDir = await fresh();
    // Act
    const { sink, printed } = await started(dataDir);
    // Assess
    expect((await stat(join(dataDir, "keys", "checkpoint-key.pem"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dataDir, "admin-token"))).mode & 0o777).toBe(0o600);
    const vkey = (await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim();
    expect(vkey).toBe(sink.local.signingKey.verifierKey);
    expect(await readFile(join(dataDir, "keys", "checkpoint-key.pub.pem"), "utf8")).toContain(
      "BEGIN PUBLIC KEY",
    );
    const text = printed.join("");
    for (const part of [sink.url, dataDir, sink.local.signingKey.fingerprint, vkey, "producer create"]) {
      expect(text).toContain(part);
    }
  });

  it("commits events to read-only files and returns receipts that verify with the exported verifier key", async () => {
    const dataDir = await fresh();
    const { sink } = await started(dataDir);
    const p = testProducer("planner");
    await registerOverHttp(sink, dataDir, p);
    const receipts = await send(sink, "agents.prod", [p.event(), p.event(), p.event()]);
    const trusted = [
      parseVerifierKey((await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim()),
    ];
    for (const r of receipts)
      expect(verifyReceipt(r, { trusted, deployment: sink.local.deployment }).ok).toBe(true);
    const segment = objectFile(dataDir, "streams/agents.prod/segments/00000000000000000000");
    expect((await stat(segment)).mode & 0o777).toBe(0o444);
  });
});

describe("the data directory lock", () => {
  it("makes a second process refuse clearly while the sink runs", async () => {
    const dataDir = await fresh();
    await started(dataDir);
    const second = await runChild([dataDir, "0"]);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain(`is in use by process ${process.pid}`);
  });

  it("refuses a second opener in the same process, and is free again after close", async () => {
    const dataDir = await fresh();
    const first = await openLocalSink({ dataDir });
    await expect(openLocalSink({ dataDir })).rejects.toMatchObject({ code: "data-dir-locked" });
    await first.close();
    const again = await openLocalSink({ dataDir });
    await again.close();
  });
});

describe("a lock left by a killed process", () => {
  it("is taken over at once when its process is gone (or its pid is now ours)", async () => {
    const { hostname } = await import("node:os");
    for (const pid of [2 ** 22 + 17, process.pid]) {
      const dataDir = await fresh();
      await writeFile(
        join(dataDir, "lock.json"),
        JSON.stringify({
          pid,
          host: hostname(),
          purpose: "auditsink start",
          since: "2026-11-24T00:00:00.000Z",
        }),
      );
      const local = await openLocalSink({ dataDir });
      expect(JSON.parse(await readFile(join(dataDir, "lock.json"), "utf8")).since).not.toBe(
        "2026-11-24T00:00:00.000Z",
      );
      await local.close();
    }
  });
});

describe("restart", () => {
  it("keeps the key and the log, and answers a replay with the original receipt", async () => {
    const dataDir = await fresh();
    const p = testProducer("coder");
    const event = p.event();
    const first = await started(dataDir);
    await registerOverHttp(first.sink, dataDir, p);
    const [original] = await send(first.sink, "agents.dev", [event]);
    const fingerprint = first.sink.local.signingKey.fingerprint;
    await first.sink.close();
    const second = await started(dataDir);
    expect(second.sink.local.signingKey.fingerprint).toBe(fingerprint);
    const [replayed] = await send(second.sink, "agents.dev", [event]);
    expect({ index: replayed!.index, hash: replayed!.recordHash }).toEqual({
      index: original!.index,
      hash: original!.recordHash,
    });
    const [next] = await send(second.sink, "agents.dev", [p.event()]);
    expect(next!.index).toBe(1);
  });
});

describe("the scheduled verifier", () => {
  it("finds a clean log clean", async () => {
    const dataDir = await fresh();
    const { sink } = await started(dataDir);
    const p = testProducer("clean");
    await registerOverHttp(sink, dataDir, p);
    await send(sink, "agents.ok", [p.event(), p.event()]);
    const run = await sink.verifier.runOnce({ full: true });
    expect(run.failures).toEqual([]);
    // The registration and the stream's creation in _system, and the two events.
    expect(run.records).toBe(4);
  });

  it("alerts on a tampered record, an unexpected file and a rolled-back head, to the log, the alerts file and the webhook", async () => {
    // Prepare
    const received: unknown[] = [];
    const hook = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        received.push(JSON.parse(body));
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => hook.close(() => r())));
    const dataDir = await fresh();
    const { sink, logged } = await started(dataDir, {
      webhookUrl: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`,
    });
    const p = testProducer("victim");
    await registerOverHttp(sink, dataDir, p);
    await send(sink, "agents.x", [p.event(), p.event()]);
    await send(sink, "agents.x", [p.event()]);
    await sink.verifier.runOnce();
    const segment = objectFile(dataDir, "streams/agents.x/segments/00000000000000000000");
    await chmod(segment, 0o644);
    await writeFile(segment, (await readFile(segment, "utf8")).replace('"web_search"', '"web_fetch!"'));
    await writeFile(join(dataDir, "objects", "streams", "agents.x", "notes.txt"), "hello");
    const headPath = join(dataDir, "heads", "agents.x.json");
    const head = JSON.parse(await readFile(headPath, "utf8"));
    await writeFile(headPath, JSON.stringify({ ...head, size: 1 }));
    // Act
    const run = await sink.verifier.runOnce({ full: true });
    // Assess
    const codes = new Set(run.alerts.map((a) => a.code));
    for (const code of [
      "producer-signature-invalid",
      "checkpoint-root-mismatch",
      "unexpected-object",
      "head-rollback",
    ]) {
      expect(codes).toContain(code);
    }
    const fileCodes = (await readFile(join(dataDir, "alerts.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).code);
    expect(new Set(fileCodes)).toEqual(codes);
    expect(logged.filter((l) => l.includes('"auditsink alert"')).length).toBe(run.alerts.length);
    expect((received as { alerts: unknown[] }[]).flatMap((b) => b.alerts)).toHaveLength(run.alerts.length);
  });

  it("alerts when a producer with a heartbeat has been silent for longer", async () => {
    const dataDir = await fresh();
    const { sink } = await started(dataDir);
    // The verifier thread's first run loads its modules: done before the one-second heartbeat starts counting.
    await sink.verifier.runOnce();
    const quiet = testProducer("nightly-bot");
    await registerOverHttp(sink, dataDir, quiet, { heartbeatSeconds: 1 });
    await send(sink, "agents.cron", [quiet.event()]);
    const before = await sink.verifier.runOnce();
    await new Promise((r) => setTimeout(r, 1_100));
    const after = await sink.verifier.runOnce();
    expect(before.alerts.map((a) => a.code)).not.toContain("producer-silent");
    expect(after.alerts.map((a) => [a.code, a.at])).toContainEqual(["producer-silent", "nightly-bot"]);
  });
});

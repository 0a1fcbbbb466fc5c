/**
 * Findings of the scheduled verifier stand until acknowledged (issue 10 item 17): /healthz answers 503 while one
 * stands, whatever later incremental runs see and across restarts; an acknowledgement is recorded in `_system`
 * before the finding closes; a full verification catches a change to an old segment within the configured
 * bound; webhook deliveries are retried with backoff and survive a restart (a durable outbox).
 */
import { chmod, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { SYSTEM_STREAM } from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { type EmbeddedSink, FINDING_ACKNOWLEDGED, systemRecords } from "../../packages/local/src/index.ts";
import { cli } from "../cli/helpers.ts";
import { adminToken, postEvents } from "./faults.ts";
import { objectFile, testProducer, testSinks } from "./helpers.ts";

const { after, fresh, start } = testSinks("auditsink-findings-");

async function withProducerAndEvents(sink: EmbeddedSink, dataDir: string) {
  const p = testProducer("agent");
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${await adminToken(dataDir)}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
  expect((await postEvents(sink.url, "agents.f", [p.event(), p.event()])).status).toBe(200);
  return p;
}

async function tamperFirstSegment(dataDir: string) {
  const segment = objectFile(dataDir, "streams/agents.f/segments/00000000000000000000");
  await chmod(segment, 0o644);
  await writeFile(segment, (await readFile(segment, "utf8")).replace('"web_search"', '"web_fetch!"'));
}

async function health(sink: EmbeddedSink) {
  const res = await fetch(`${sink.url}/healthz`);
  return { status: res.status, body: (await res.json()) as { status: string; reasons?: string[] } };
}

async function acknowledge(sink: EmbeddedSink, token: string | undefined, body: unknown) {
  return fetch(`${sink.url}/v1/findings/acknowledge`, {
    method: "POST",
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 50));
};

describe("a finding of the scheduled verifier", () => {
  it("stands through incremental runs and a restart (health 503) until an acknowledgement recorded in _system closes it", {
    timeout: 60_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const first = await start(dataDir);
    const p = await withProducerAndEvents(first.sink, dataDir);
    await first.sink.verifier.runOnce({ full: true });
    await postEvents(first.sink.url, "agents.f", [p.event()]);
    await tamperFirstSegment(dataDir);
    // Act
    const found = await first.sink.verifier.runOnce({ full: true });
    const incremental = await first.sink.verifier.runOnce();
    const healthBefore = await health(first.sink);
    await first.close();
    const second = await start(dataDir);
    const healthAfterRestart = await health(second.sink);
    const token = await adminToken(dataDir);
    const listed = (await (
      await fetch(`${second.sink.url}/v1/findings`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as { open: { id: string; code: string }[] };
    const ids = listed.open.map((f) => f.id);
    const unauthorized = await acknowledge(second.sink, undefined, { findings: ids, note: "known" });
    const unknown = await acknowledge(second.sink, token, { findings: ["0123456789abcdef"], note: "x" });
    const acked = await acknowledge(second.sink, token, {
      findings: ids,
      note: "segment 0 damaged by a disk fault; restored copy verified offline",
      by: "oncall@example.com",
    });
    const healthAfterAck = await health(second.sink);
    const rerun = await second.sink.verifier.runOnce({ full: true });
    await second.close();
    const third = await start(dataDir);
    const healthThird = await health(third.sink);
    const log = await systemRecords(
      third.sink.local.objects,
      third.sink.local.signingKey,
      0,
      (await third.sink.local.heads.get(SYSTEM_STREAM))!.size,
    );
    // Assess
    expect(found.failures.length).toBeGreaterThan(0);
    expect(incremental.full).toBe(false);
    expect(incremental.open.length).toBe(found.open.length);
    expect(healthBefore.status).toBe(503);
    expect(healthBefore.body.reasons).toEqual(["unacknowledged-findings"]);
    expect(healthAfterRestart.status).toBe(503);
    expect(new Set(listed.open.map((f) => f.code))).toEqual(new Set(found.failures.map((f) => f.code)));
    expect(unauthorized.status).toBe(401);
    expect(unknown.status).toBe(409);
    expect(acked.status).toBe(200);
    expect(healthAfterAck.status).toBe(200);
    expect(rerun.open).toEqual([]);
    expect(rerun.alerts).toEqual([]);
    expect(healthThird.status).toBe(200);
    const ack = log.find((r) => r.event.type === FINDING_ACKNOWLEDGED)!;
    expect(ack.event.data).toMatchObject({ findings: ids, by: "oncall@example.com" });
  });
});

describe("auditsink findings list|ack", () => {
  it("lists the open findings of a running sink and acknowledges them", { timeout: 60_000 }, async () => {
    // Prepare
    const dataDir = await fresh();
    const { sink } = await start(dataDir);
    await withProducerAndEvents(sink, dataDir);
    await tamperFirstSegment(dataDir);
    await sink.verifier.runOnce({ full: true });
    const token = await adminToken(dataDir);
    const target = ["--url", sink.url, "--admin-token", token];
    // Act
    const listed = await cli(["findings", "list", ...target, "--json"]);
    const ids = (JSON.parse(listed.out) as { open: { id: string }[] }).open.map((f) => f.id);
    const acked = await cli([
      "findings",
      "ack",
      ...ids,
      ...target,
      "--note",
      "restored from backup",
      "--by",
      "ops",
    ]);
    const after = await cli(["findings", "list", ...target]);
    // Assess
    expect(listed.code).toBe(0);
    expect(ids.length).toBeGreaterThan(0);
    expect(acked.code).toBe(0);
    expect(acked.out).toContain(`${ids.length} finding(s) acknowledged`);
    expect(after.out).toBe("no open findings\n");
    expect((await health(sink)).status).toBe(200);
  });
});

describe("the bound on catching a change to an old segment", () => {
  it("is the full-verification interval: with 0 s a sweep starts at once and reads every object again", {
    timeout: 60_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const { sink } = await start(dataDir, { fullVerifyIntervalSeconds: 0, fullVerifyEvery: 1_000 });
    await withProducerAndEvents(sink, dataDir);
    await sink.verifier.runOnce();
    await tamperFirstSegment(dataDir);
    // Act: the sweep's slices (the first lists every key; a small archive's streams then take one more)
    const slices = [await sink.verifier.sweepSlice()];
    while (slices.at(-1)!.sweep?.resumeAt) slices.push(await sink.verifier.sweepSlice());
    // Assess: the last slice completes the sweep, which read the old segment again
    expect(slices).toHaveLength(2);
    expect(slices[1]!.full).toBe(true);
    expect(slices.flatMap((s) => s.failures).map((f) => f.code)).toContain("checkpoint-root-mismatch");
  });

  it("on the schedule: found by the first sweep that starts after the change", {
    timeout: 60_000,
  }, async () => {
    // Prepare: runs every second, sweeps back to back in slices of one segment
    const dataDir = await fresh();
    const { sink } = await start(dataDir, {
      verifyIntervalSeconds: 1,
      fullVerifyIntervalSeconds: 0,
      verifySweepSliceMs: 0,
      verifySweepShare: 0.5,
    });
    await withProducerAndEvents(sink, dataDir);
    await until(() => sink.verifier.findings.lastFullRun !== undefined);
    // Act
    const changed = new Date().toISOString();
    await tamperFirstSegment(dataDir);
    await until(() => (sink.verifier.findings.lastFullRun ?? "") > changed);
    // Assess: every object was read again by a sweep that started after the change, and it reported it
    expect(sink.verifier.findings.open.map((f) => f.code)).toContain("checkpoint-root-mismatch");
  });

  it("and within the interval runs are incremental (an hour here: the old segment is not read again)", {
    timeout: 60_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const { sink } = await start(dataDir, { fullVerifyIntervalSeconds: 3_600, fullVerifyEvery: 1_000 });
    await withProducerAndEvents(sink, dataDir);
    await sink.verifier.runOnce();
    await tamperFirstSegment(dataDir);
    // Act
    const next = await sink.verifier.runOnce();
    // Assess
    expect(next.full).toBe(false);
    expect(next.failures).toEqual([]);
  });
});

describe("webhook delivery", () => {
  it("retries with backoff until the webhook accepts, delivers what was pending after a restart, and closes only after a delivery in flight is recorded", {
    timeout: 60_000,
  }, async () => {
    // Prepare: a webhook that fails until told otherwise.
    let accept = false;
    const attempts: number[] = [];
    const delivered: { code: string }[] = [];
    const hook = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        attempts.push(Date.now());
        if (!accept) {
          res.statusCode = 503;
          res.end();
          return;
        }
        delivered.push(...(JSON.parse(body) as { alerts: { code: string }[] }).alerts);
        // Answered late, so the sink is asked to close while this delivery is in flight.
        setTimeout(() => res.end(), 200);
      });
    });
    await new Promise<void>((r) => hook.listen(0, "127.0.0.1", r));
    after(() => new Promise((r) => hook.close(() => r())));
    const webhookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`;
    const dataDir = await fresh();
    const first = await start(dataDir, { webhookUrl });
    await writeFile(join(dataDir, "objects", "stray-1.txt"), "x");
    // Act: alerts while the webhook refuses; the sink stops with them pending.
    await first.sink.verifier.runOnce({ full: true });
    await until(() => attempts.length >= 2);
    const outbox = JSON.parse(await readFile(join(dataDir, "alert-outbox.json"), "utf8")) as {
      entries: { attempts: number; next: number }[];
    };
    await first.close();
    accept = true;
    const second = await start(dataDir, { webhookUrl });
    await until(() => delivered.length > 0);
    await second.close();
    // Assess
    expect(outbox.entries).toHaveLength(1);
    expect(outbox.entries[0]!.attempts).toBeGreaterThanOrEqual(1);
    expect(delivered.map((a) => a.code)).toEqual(["unexpected-object"]);
    expect(JSON.parse(await readFile(join(dataDir, "alert-outbox.json"), "utf8"))).toEqual({ entries: [] });
  });
});

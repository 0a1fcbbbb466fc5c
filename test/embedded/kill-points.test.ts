/**
 * SIGKILL at every step of first start and of producer registration and revocation (a deterministic crash point,
 * AUDITSINK_CRASH_AT, read only by the test hook in packages/local/src/crashpoint.ts), then a restart with no
 * manual step: the sink starts, every stream verifies clean, every acknowledged event is present once, the
 * registry says exactly what `_system` says, and a key whose revocation `_system` records is refused.
 * Also: two sinks racing for a data directory after an unclean stop — exactly one gets it.
 */

import { chmod, cp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Alert, type SignedEvent, SYSTEM_STREAM } from "@auditsink/core";
import { afterEach, describe, expect, it } from "vitest";
import { openLocalSink, systemRecords } from "../../packages/local/src/index.ts";
import {
  Acked,
  adminToken,
  assertConsistent,
  exited,
  postEvents,
  type SinkProcess,
  startChild,
} from "./faults.ts";
import { objectFile, tempDir, testProducer } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fresh(): Promise<string> {
  const t = await tempDir("auditsink-kill-");
  cleanups.push(t.remove);
  return t.dir;
}

/**
 * Copies a data directory after its sink was killed. index.db-wal can still vanish while the copy reads the
 * directory (about one run in three): SQLite deletes it when the last connection closes, and a connection this
 * process closed earlier (prepared()) appears to finish closing late. The copy then starts again.
 */
async function copyDirectory(from: string, to: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await cp(from, to, { recursive: true });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || attempt === 5) throw e;
      await rm(to, { recursive: true, force: true });
    }
  }
}

async function running(dataDir: string, env: Record<string, string> = {}): Promise<SinkProcess | undefined> {
  const p = await startChild(dataDir, env);
  if (p) cleanups.push(() => p.stop());
  return p;
}

/** A directory with producers registered and events acknowledged, set up in-process. */
async function prepared(ids: string[]) {
  const dataDir = await fresh();
  const producers = ids.map((id) => testProducer(id));
  const acked = new Acked();
  const local = await openLocalSink({ dataDir });
  for (const p of producers)
    await local.producers.register({ id: p.id, publicKey: p.publicKey, streams: ["agents.*"] });
  for (const p of producers) {
    const events = [p.event(), p.event()];
    acked.add(events, await local.sink.submit("agents.kill", events));
  }
  await local.close();
  return { dataDir, producers, acked };
}

async function recorded(dataDir: string, type: string): Promise<SignedEvent[]> {
  const local = await openLocalSink({ dataDir });
  try {
    const size = (await local.heads.get(SYSTEM_STREAM))?.size ?? 0;
    return (await systemRecords(local.objects, local.signingKey, 0, size))
      .map((r) => r.event)
      .filter((e) => e.type === type);
  } finally {
    await local.close();
  }
}

const FIRST_START = ["sink-json", "signing-key", "admin-token"].flatMap((file) =>
  ["temp-written", "linked", "dir-synced"].map((step) => `${file}:${step}`),
);

/**
 * The durable steps of a registry change, in order: producers.json written with the change and its pending
 * entry, the change recorded in `_system`, then the pending entry cleared (the second producers.json write).
 */
const ADMIN_STEPS = [
  "registry:before-write",
  "registry:written",
  "object:linked:streams/_system/segments",
  "index:written",
  "object:linked:streams/_system/checkpoints",
  `head:written:${SYSTEM_STREAM}`,
  "registry:before-write#2",
  "registry:written#2",
];

describe("SIGKILL during the very first start", () => {
  for (const point of FIRST_START) {
    it(`at ${point}: the next start needs no manual step and the sink works`, {
      timeout: 60_000,
    }, async () => {
      // Prepare
      const dataDir = await fresh();
      // Act
      const killed = await startChild(dataDir, { AUDITSINK_CRASH_AT: point });
      const sink = await running(dataDir);
      const p = testProducer("after-crash");
      const reg = await fetch(`${sink!.url}/v1/producers`, {
        method: "POST",
        headers: { authorization: `Bearer ${await adminToken(dataDir)}`, "content-type": "application/json" },
        body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
      });
      const events = [p.event()];
      const sent = await postEvents(sink!.url, "agents.first", events);
      const health = await fetch(`${sink!.url}/healthz`);
      await sink!.stop();
      // Assess
      expect(killed).toBeUndefined();
      expect(reg.status).toBe(201);
      expect(sent.status).toBe(200);
      expect(health.status).toBe(200);
      const acked = new Acked();
      acked.add(events, sent.receipts);
      await assertConsistent(dataDir, acked);
    });
  }
});

describe("SIGKILL at every step of registering a producer", () => {
  for (const point of ADMIN_STEPS) {
    it(`at ${point}: after restart the registry and _system agree, and the key works exactly when it is recorded`, {
      timeout: 60_000,
    }, async () => {
      // Prepare
      const { dataDir, producers, acked } = await prepared(["existing"]);
      const newcomer = testProducer("newcomer");
      const sink = await running(dataDir, { AUDITSINK_CRASH_AT: point });
      // Act
      await fetch(`${sink!.url}/v1/producers`, {
        method: "POST",
        headers: { authorization: `Bearer ${await adminToken(dataDir)}`, "content-type": "application/json" },
        body: JSON.stringify({ id: newcomer.id, publicKey: newcomer.publicKeySpki, streams: ["agents.*"] }),
      }).catch(() => undefined);
      await exited(sink!.child);
      const restarted = await running(dataDir);
      const fromExisting = [producers[0]!.event()];
      const existingSent = await postEvents(restarted!.url, "agents.kill", fromExisting);
      acked.add(fromExisting, existingSent.receipts);
      const fromNewcomer = [newcomer.event()];
      const newcomerSent = await postEvents(restarted!.url, "agents.kill", fromNewcomer);
      acked.add(fromNewcomer, newcomerSent.receipts);
      await restarted!.stop();
      // Assess
      expect(sink!.child.signalCode).toBe("SIGKILL");
      expect(existingSent.status).toBe(200);
      const registered = (await recorded(dataDir, "dev.auditsink.producer.registered")).some(
        (e) => (e.data as { producer: string }).producer === "newcomer",
      );
      expect(newcomerSent.status).toBe(registered ? 200 : 401);
      await assertConsistent(dataDir, acked);
    });
  }
});

describe("SIGKILL at every step of revoking a key", () => {
  for (const point of ADMIN_STEPS) {
    it(`at ${point}: after restart a key whose revocation _system records is refused, and the registry agrees`, {
      timeout: 60_000,
    }, async () => {
      // Prepare
      const { dataDir, producers, acked } = await prepared(["suspect", "bystander"]);
      const [suspect, bystander] = producers as [
        ReturnType<typeof testProducer>,
        ReturnType<typeof testProducer>,
      ];
      const sink = await running(dataDir, { AUDITSINK_CRASH_AT: point });
      // Act
      await fetch(`${sink!.url}/v1/producers/suspect/revoke`, {
        method: "POST",
        headers: { authorization: `Bearer ${await adminToken(dataDir)}` },
      }).catch(() => undefined);
      await exited(sink!.child);
      const restarted = await running(dataDir);
      const fromSuspect = [suspect.event()];
      const suspectSent = await postEvents(restarted!.url, "agents.kill", fromSuspect);
      acked.add(fromSuspect, suspectSent.receipts);
      const fromBystander = [bystander.event()];
      const bystanderSent = await postEvents(restarted!.url, "agents.kill", fromBystander);
      acked.add(fromBystander, bystanderSent.receipts);
      await restarted!.stop();
      // Assess
      expect(sink!.child.signalCode).toBe("SIGKILL");
      const revoked = (await recorded(dataDir, "dev.auditsink.producer.revoked")).length > 0;
      if (revoked) expect([suspectSent.status, suspectSent.code]).toEqual([401, "revoked-key"]);
      else expect(suspectSent.status).toBe(200);
      expect(bystanderSent.status).toBe(200);
      await assertConsistent(dataDir, acked);
    });
  }
});

/** The durable steps of committing events to a stream (core sink.ts, commitGroup), in order. */
const COMMIT_STEPS = [
  "object:linked:streams/agents.kill/segments",
  "index:written",
  "object:linked:streams/agents.kill/checkpoints",
  "head:written:agents.kill",
];

describe("SIGKILL at every step of committing events", () => {
  for (const point of COMMIT_STEPS) {
    it(`at ${point}: after restart the batch is stored at most once, a retry gets it, and the stream verifies with its head`, {
      timeout: 60_000,
    }, async () => {
      // Prepare
      const { dataDir, producers, acked } = await prepared(["agent"]);
      const sink = await running(dataDir, { AUDITSINK_CRASH_AT: point });
      const batch = [producers[0]!.event(), producers[0]!.event()];
      // Act
      const killed = await postEvents(sink!.url, "agents.kill", batch).catch(() => undefined);
      await exited(sink!.child);
      // The restart opens the directory in this process: the same start-up repair as `auditsink start`, one
      // child process fewer.
      const alerts: Alert[] = [];
      const restarted = await openLocalSink({
        dataDir,
        alerts: { send: async (a) => void alerts.push(...a) },
      });
      const retried = await restarted.sink.submit("agents.kill", batch);
      acked.add(batch, retried);
      const after = [producers[0]!.event()];
      const next = await restarted.sink.submit("agents.kill", after);
      acked.add(after, next);
      await restarted.close();
      // Assess
      expect(killed).toBeUndefined();
      expect(sink!.child.signalCode).toBe("SIGKILL");
      expect(retried.map((r) => r.index)).toEqual([2, 3]);
      expect(next.map((r) => r.index)).toEqual([4]);
      expect(alerts).toEqual([]);
      await assertConsistent(dataDir, acked);
    });
  }
});

/**
 * What a crash of the machine (not only of the process) may leave of a head, which is written without fsync:
 * the previous head, none, an empty file or one cut short.
 */
const LOST_HEADS: { what: string; damage: (path: string, older: string) => Promise<void> }[] = [
  { what: "the head before the last commits", damage: (path, older) => writeFile(path, older) },
  { what: "no head file", damage: (path) => rm(path) },
  { what: "an empty head file", damage: (path) => writeFile(path, "") },
  {
    what: "a head file cut short",
    damage: async (path) => writeFile(path, (await readFile(path, "utf8")).slice(0, 37)),
  },
];

describe("acknowledged commits whose head a machine crash lost (heads are not fsynced)", () => {
  it("every acknowledged event survives each head a crash may leave: the start repairs it from the store, with no alert", {
    timeout: 60_000,
  }, async () => {
    // Prepare: three batches acknowledged by a sink process, the first head kept, then SIGKILL.
    const { dataDir, producers, acked } = await prepared(["agent"]);
    const sink = await running(dataDir);
    const headPath = join(dataDir, "heads", "agents.kill.json");
    const older = await readFile(headPath, "utf8");
    for (let i = 0; i < 3; i++) {
      const batch = [producers[0]!.event(), producers[0]!.event()];
      const sent = await postEvents(sink!.url, "agents.kill", batch);
      expect(sent.status).toBe(200);
      acked.add(batch, sent.receipts);
    }
    sink!.child.kill("SIGKILL");
    await exited(sink!.child);
    const all = [...acked.byKey.values()];
    for (const { what, damage } of LOST_HEADS) {
      const copy = await fresh();
      await copyDirectory(dataDir, copy);
      await damage(join(copy, "heads", "agents.kill.json"), older);
      // Act
      const alerts: Alert[] = [];
      const local = await openLocalSink({
        dataDir: copy,
        alerts: { send: async (a) => void alerts.push(...a) },
      });
      const repaired = await local.heads.get("agents.kill");
      const replayed = await local.sink.submit(
        "agents.kill",
        all.map((a) => a.event),
      );
      const fresher = [producers[0]!.event()];
      const appended = await local.sink.submit("agents.kill", fresher);
      await local.close();
      // Assess
      expect(repaired?.size, what).toBe(all.length);
      expect(alerts, what).toEqual([]);
      expect(
        replayed.map((r) => [r.index, r.recordHash]),
        what,
      ).toEqual(all.map((a) => [a.receipt.index, a.receipt.recordHash]));
      expect(
        appended.map((r) => r.index),
        what,
      ).toEqual([all.length]);
      const withFresher = new Acked();
      for (const a of all) withFresher.add([a.event], [a.receipt]);
      withFresher.add(fresher, appended);
      await assertConsistent(copy, withFresher);
    }
  });
});

describe("SIGKILL between recording an acknowledgement and closing the findings", () => {
  it("closes them at the next start, from the _system record", { timeout: 60_000 }, async () => {
    // Prepare: a changed record, found by the full run a start makes.
    const { dataDir } = await prepared(["agent"]);
    const segment = objectFile(dataDir, "streams/agents.kill/segments/00000000000000000000");
    await chmod(segment, 0o644);
    await writeFile(segment, (await readFile(segment, "utf8")).replace('"web_search"', '"web_fetch!"'));
    const sink = await running(dataDir, {
      AUDITSINK_VERIFY_INTERVAL: "3600",
      AUDITSINK_CRASH_AT: "findings:recorded",
    });
    const token = await adminToken(dataDir);
    const list = async (url: string) =>
      (await (
        await fetch(`${url}/v1/findings`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as {
        open: { id: string }[];
        acknowledged: { id: string }[];
      };
    let open: { id: string }[] = [];
    while (open.length === 0) {
      await new Promise((r) => setTimeout(r, 100));
      open = (await list(sink!.url)).open;
    }
    // Act
    await fetch(`${sink!.url}/v1/findings/acknowledge`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ findings: open.map((f) => f.id), note: "known damage" }),
    }).catch(() => undefined);
    await exited(sink!.child);
    const restarted = await running(dataDir);
    const after = await list(restarted!.url);
    const health = await fetch(`${restarted!.url}/healthz`);
    await restarted!.stop();
    // Assess
    expect(sink!.child.signalCode).toBe("SIGKILL");
    expect(after.open).toEqual([]);
    expect(after.acknowledged.map((f) => f.id).sort()).toEqual(open.map((f) => f.id).sort());
    expect(health.status).toBe(200);
    expect(await recorded(dataDir, "dev.auditsink.finding.acknowledged")).toHaveLength(1);
  });
});

describe("two sinks racing for one data directory after an unclean stop", () => {
  it("exactly one gets it, every time (flock: the kernel decides, no stale-lock takeover)", {
    timeout: 120_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const outcomes: string[] = [];
    for (let trial = 0; trial < 5; trial++) {
      const holder = await startChild(dataDir);
      holder!.child.kill("SIGKILL");
      await exited(holder!.child);
      // Act: two processes start at the same instant.
      const results = await Promise.allSettled([startChild(dataDir), startChild(dataDir)]);
      // Assess (per trial)
      const winners = results.filter((r) => r.status === "fulfilled" && r.value !== undefined);
      const losers = results.filter((r) => r.status === "rejected");
      outcomes.push(`${winners.length}/${losers.length}`);
      for (const l of losers) expect(String((l as PromiseRejectedResult).reason)).toContain("is in use");
      for (const w of winners) await (w as PromiseFulfilledResult<SinkProcess>).value.stop();
    }
    expect(outcomes).toEqual(Array(5).fill("1/1"));
  });
});

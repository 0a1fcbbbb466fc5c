/**
 * Durable under storage faults (issue 16): a full disk (a real tmpfs mounted by the test), short writes and EIO
 * (injected through the adapters' FileSystem port), and damaged files left by earlier faults. In every case a
 * write that did not reach the disk is not acknowledged, /healthz answers 503 while writes fail, and after a
 * restart without manual steps every stream verifies clean, every acknowledged event is present once and the
 * registry agrees with `_system`.
 */
import { execFileSync } from "node:child_process";
import { copyFile, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SignedEvent } from "@auditsink/core";
import { describe, expect, it } from "vitest";
import type { EmbeddedSink } from "../../packages/local/src/index.ts";
import {
  Acked,
  adminToken,
  assertConsistent,
  assertIndexClean,
  type Fault,
  FaultyFileSystem,
  postEvents,
} from "./faults.ts";
import { testProducer, testSinks } from "./helpers.ts";

const { after, fresh, start } = testSinks("auditsink-faults-");

async function register(sink: EmbeddedSink, dataDir: string, p: ReturnType<typeof testProducer>) {
  return fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${await adminToken(dataDir)}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
  });
}

/** A data directory whose (stopped) sink acknowledged `batches` batches of `size` events on `stream`. */
async function stoppedWithAcked(stream: string, batches: number, size: number) {
  const dataDir = await fresh();
  const first = await start(dataDir);
  const producer = testProducer("agent");
  expect((await register(first.sink, dataDir, producer)).status).toBe(201);
  const acked = new Acked();
  for (let i = 0; i < batches; i++) {
    const batch = Array.from({ length: size }, () => producer.event());
    acked.add(batch, (await postEvents(first.sink.url, stream, batch)).receipts);
  }
  await first.close();
  return { dataDir, acked, producer };
}

async function health(sink: EmbeddedSink) {
  const res = await fetch(`${sink.url}/healthz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("a full disk (ENOSPC on a tmpfs the test mounts)", () => {
  it("refuses writes without acknowledging them, reports 503 on /healthz, and recovers cleanly once space is freed", {
    timeout: 120_000,
  }, async () => {
    // Prepare: a 4 MiB tmpfs holds the data directory. Mounting needs root; the suite fails without it.
    const mountPoint = await fresh();
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mountPoint]);
    after(async () => {
      execFileSync("umount", ["-l", mountPoint]);
    });
    const dataDir = join(mountPoint, "data");
    const { sink, close } = await start(dataDir);
    const producer = testProducer("disk-filler");
    expect((await register(sink, dataDir, producer)).status).toBe(201);
    const acked = new Acked();
    const refused: number[] = [];
    // Leave about 256 KiB, then four concurrent writers send padded batches until the disk is full.
    const filler = join(mountPoint, "filler");
    const free = () =>
      Number(execFileSync("df", ["-B1", "--output=avail", mountPoint]).toString().split("\n")[1]);
    await writeFile(filler, Buffer.alloc(Math.max(0, free() - 256 * 1024)));
    let full = false;
    const writer = async () => {
      for (let i = 0; i < 400 && !full; i++) {
        const events: SignedEvent[] = Array.from({ length: 8 }, () => producer.event({ pad: 2_000 }));
        const r = await postEvents(sink.url, "agents.disk", events);
        if (r.status === 200) acked.add(events, r.receipts);
        else {
          refused.push(r.status);
          full = true;
        }
      }
    };
    // Act
    await Promise.all([writer(), writer(), writer(), writer()]);
    // A failed request frees what it had written: take the last blocks too, so the disk stays full.
    const topUp = join(mountPoint, "top-up");
    await writeFile(topUp, Buffer.alloc(free())).catch(() => undefined);
    const more = Array.from({ length: 3 }, () => producer.event({ pad: 2_000 }));
    const refusedWhileFull = await postEvents(sink.url, "agents.disk", more);
    const whileFull = await health(sink);
    await close();
    // An operator restarts it at 3 a.m. with the disk still full: it starts, serves reads, and says it is degraded.
    const onFullDisk = await start(dataDir);
    const startedFull = await health(onFullDisk.sink);
    const readsWhileFull = await fetch(`${onFullDisk.sink.url}/v1/streams/agents.disk/checkpoint`);
    await rm(filler);
    await rm(topUp);
    const afterFreeing = await postEvents(onFullDisk.sink.url, "agents.disk", more);
    acked.add(more, afterFreeing.receipts);
    const recovered = await health(onFullDisk.sink);
    await onFullDisk.close();
    const restarted = await start(dataDir);
    const replay = await postEvents(
      restarted.sink.url,
      "agents.disk",
      [...acked.byKey.values()].slice(0, 500).map((a) => a.event),
    );
    await restarted.close();
    // Assess
    expect(full).toBe(true);
    expect(new Set(refused)).toEqual(new Set([503]));
    expect(whileFull.status).toBe(503);
    expect(whileFull.body).toMatchObject({ status: "degraded", storage: { writable: false } });
    expect(refusedWhileFull.status).toBe(503);
    expect(startedFull.status).toBe(503);
    expect(readsWhileFull.status).toBe(200);
    expect(afterFreeing.status).toBe(200);
    expect(recovered.status).toBe(200);
    expect(replay.status).toBe(200);
    for (const r of replay.receipts) {
      const original = [...acked.byKey.values()].find(
        (a) => a.event.id === r.id && a.event.source === r.source,
      )!;
      expect([r.index, r.recordHash]).toEqual([original.receipt.index, original.receipt.recordHash]);
    }
    await assertIndexClean(dataDir);
    await assertConsistent(dataDir, acked);
  });
});

describe("short writes and EIO injected at the file-system port", () => {
  const cases: { fault: Fault; target: RegExp; what: string }[] = [
    {
      fault: "short-write-then-eio",
      target: /\/tmp\//,
      what: "every new object, head and registry file (EIO)",
    },
    { fault: "eio-on-link", target: /segments\//, what: "creating a segment (EIO)" },
    { fault: "eio-on-fsync", target: /\/tmp\//, what: "fsync of new files (EIO)" },
  ];
  for (const { fault, target, what } of cases) {
    it(`${what}: the request fails unacknowledged, health is 503, and the log recovers on restart`, {
      timeout: 60_000,
    }, async () => {
      // Prepare
      const dataDir = await fresh();
      const fs = new FaultyFileSystem();
      const { sink, close } = await start(dataDir, { fs });
      const producer = testProducer("agent");
      expect((await register(sink, dataDir, producer)).status).toBe(201);
      const acked = new Acked();
      const before = [producer.event(), producer.event()];
      acked.add(before, (await postEvents(sink.url, "agents.io", before)).receipts);
      // Act
      fs.arm(fault, target);
      const failedBatch = [producer.event(), producer.event(), producer.event()];
      const failed = await postEvents(sink.url, "agents.io", failedBatch);
      const late = testProducer("late");
      const failedRegister = await register(sink, dataDir, late);
      const degraded = await health(sink);
      fs.heal();
      const after = [producer.event()];
      const ok = await postEvents(sink.url, "agents.io", after);
      acked.add(after, ok.receipts);
      // The failed batch is sent again, as a client would: it is stored once.
      const retried = await postEvents(sink.url, "agents.io", failedBatch);
      acked.add(failedBatch, retried.receipts);
      const healthy = await health(sink);
      await close();
      const restarted = await start(dataDir);
      const replay = await postEvents(restarted.sink.url, "agents.io", [...before, ...failedBatch, ...after]);
      await restarted.close();
      // Assess
      expect(fs.injected).toBeGreaterThan(0);
      expect(failed.status).toBe(503);
      expect(failed.receipts).toEqual([]);
      expect(degraded.status).toBe(503);
      expect(degraded.body).toMatchObject({ status: "degraded", reasons: ["storage-unwritable"] });
      expect([201, 503]).toContain(failedRegister.status);
      expect(ok.status).toBe(200);
      expect(retried.status).toBe(200);
      expect(healthy.status).toBe(200);
      expect(replay.receipts.map((r) => r.index)).toEqual(
        [...before, ...failedBatch, ...after].map(
          (e) => acked.byKey.get(`${e.source}\u0000${e.id}`)?.receipt.index ?? -1,
        ),
      );
      await assertIndexClean(dataDir);
      await assertConsistent(dataDir, acked);
    });
  }
});

describe("an index write that fails (SQLite: database or disk is full)", () => {
  it("fails the commit unacknowledged, reports 503 on /healthz, and the next commit works once space returns", {
    timeout: 60_000,
  }, async () => {
    // Prepare: the sink's own index connection may grow by no page more — SQLite's real SQLITE_FULL path.
    const dataDir = await fresh();
    const { sink, close } = await start(dataDir);
    const producer = testProducer("agent");
    expect((await register(sink, dataDir, producer)).status).toBe(201);
    const acked = new Acked();
    const before = [producer.event(), producer.event()];
    acked.add(before, (await postEvents(sink.url, "agents.full", before)).receipts);
    const db = sink.local.index.database;
    const pages = (db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count;
    // Act
    db.pragma(`max_page_count = ${pages}`);
    const failedBatch = Array.from({ length: 40 }, () => producer.event({ pad: 2_000 }));
    const failed = await postEvents(sink.url, "agents.full", failedBatch);
    const degraded = await health(sink);
    db.pragma("max_page_count = 4294967294");
    const after = [producer.event()];
    const ok = await postEvents(sink.url, "agents.full", after);
    acked.add(after, ok.receipts);
    const retried = await postEvents(sink.url, "agents.full", failedBatch);
    acked.add(failedBatch, retried.receipts);
    const healthy = await health(sink);
    await close();
    const restarted = await start(dataDir);
    const replay = await postEvents(restarted.sink.url, "agents.full", [...before, ...failedBatch, ...after]);
    await restarted.close();
    // Assess
    expect(failed.status).toBe(503);
    expect(failed.receipts).toEqual([]);
    expect(degraded.status).toBe(503);
    expect(degraded.body).toMatchObject({ storage: { writable: false, failing: ["index"] } });
    expect(ok.status).toBe(200);
    expect(retried.status).toBe(200);
    expect(healthy.status).toBe(200);
    expect(replay.receipts.map((r) => r.index)).toEqual(
      [...before, ...failedBatch, ...after].map(
        (e) => acked.byKey.get(`${e.source}\u0000${e.id}`)!.receipt.index,
      ),
    );
    await assertIndexClean(dataDir);
    await assertConsistent(dataDir, acked);
  });
});

/** Replays every acknowledged event after a restart: each must get its original index and record hash. */
async function expectOriginalReceipts(url: string, stream: string, acked: Acked) {
  const replay = await postEvents(
    url,
    stream,
    [...acked.byKey.values()].map((a) => a.event),
  );
  expect(replay.status).toBe(200);
  expect(replay.receipts.map((r) => [r.index, r.recordHash])).toEqual(
    [...acked.byKey.values()].map((a) => [a.receipt.index, a.receipt.recordHash]),
  );
}

async function removeIndex(dataDir: string) {
  for (const suffix of ["", "-wal", "-shm"]) await rm(join(dataDir, `index.db${suffix}`), { force: true });
}

describe("index.db damaged, or not this store's", () => {
  const cases: { what: string; damage: (dataDir: string) => Promise<void> }[] = [
    {
      what: "overwritten with bytes that are not a database",
      damage: async (dataDir) => {
        await removeIndex(dataDir);
        await writeFile(join(dataDir, "index.db"), Buffer.alloc(64 * 1024, 0x5a));
      },
    },
    {
      what: "copied from another data directory with the same streams",
      damage: async (dataDir) => {
        const other = await stoppedWithAcked("agents.torn", 4, 6);
        await removeIndex(dataDir);
        await copyFile(join(other.dataDir, "index.db"), join(dataDir, "index.db"));
      },
    },
  ];
  for (const { what, damage } of cases) {
    it(`${what}: is moved aside and rebuilt from the store; replays get their original receipts`, {
      timeout: 60_000,
    }, async () => {
      // Prepare
      const { dataDir, acked } = await stoppedWithAcked("agents.torn", 4, 6);
      await damage(dataDir);
      // Act
      const second = await start(dataDir);
      await expectOriginalReceipts(second.sink.url, "agents.torn", acked);
      const found = (await (await fetch(`${second.sink.url}/v1/events?limit=100`)).json()) as {
        events: unknown[];
      };
      await second.close();
      // Assess
      expect(second.logged.some((l) => l.includes("moved aside, rebuilding it from the store"))).toBe(true);
      expect((await readdir(dataDir)).some((n) => n.startsWith("index.db.damaged-"))).toBe(true);
      expect(found.events.length).toBeGreaterThanOrEqual(24);
      await assertIndexClean(dataDir);
      await assertConsistent(dataDir, acked);
    });
  }
});

describe("a data directory from before index.db (dedup entries in dedup.jsonl)", () => {
  it("builds the index from the store once at first open and no longer reads dedup.jsonl: replays keep their receipts, a conflicting reuse is refused", {
    timeout: 60_000,
  }, async () => {
    // Prepare: the layout an earlier version left — the store, the heads and dedup.jsonl, no index.db.
    const { dataDir, acked, producer } = await stoppedWithAcked("agents.old", 3, 5);
    await removeIndex(dataDir);
    const legacy = [...acked.byKey.values()]
      .map(({ event, receipt }) =>
        JSON.stringify({
          key: `agent\u0000${event.source}\u0000${event.id}`,
          stream: receipt.stream,
          index: receipt.index,
          recordHash: receipt.recordHash,
          eventHash: "0".repeat(64),
        }),
      )
      .join("\n");
    await writeFile(join(dataDir, "dedup.jsonl"), `${legacy}\n`);
    // Act
    const second = await start(dataDir);
    await expectOriginalReceipts(second.sink.url, "agents.old", acked);
    const [first] = acked.byKey.values();
    const reused = await postEvents(second.sink.url, "agents.old", [
      producer.event({ id: first!.event.id, type: "other" }),
    ]);
    await second.close();
    const third = await start(dataDir);
    await third.close();
    // Assess
    expect(reused.status).toBe(409);
    expect(second.logged.some((l) => l.includes("building the index from the store"))).toBe(true);
    expect(second.logged.some((l) => l.includes("dedup.jsonl is no longer used"))).toBe(true);
    expect(third.logged.some((l) => l.includes("index.db: indexed stored records"))).toBe(false);
    expect(await readFile(join(dataDir, "dedup.jsonl"), "utf8")).toBe(`${legacy}\n`);
    await assertIndexClean(dataDir);
    await assertConsistent(dataDir, acked);
  });
});

describe("alerts while the alerts file cannot be written", () => {
  it("still go to the log, and are written to the file once it can be", { timeout: 60_000 }, async () => {
    // Prepare
    const dataDir = await fresh();
    const fs = new FaultyFileSystem();
    const { sink, logged, close } = await start(dataDir, { fs });
    await writeFile(join(dataDir, "objects", "stray.txt"), "not an object");
    fs.arm("short-write-then-enospc", /alerts\.jsonl$/);
    // Act
    const run = await sink.verifier.runOnce({ full: true });
    const fileWhileFull = await readFile(join(dataDir, "alerts.jsonl"), "utf8").catch(() => "");
    const backlog = ((await health(sink)).body as { alerts: { fileBacklog: number } }).alerts.fileBacklog;
    fs.heal();
    await sink.flushAlerts();
    const fileAfter = await readFile(join(dataDir, "alerts.jsonl"), "utf8");
    await close();
    // Assess
    expect(run.alerts.map((a) => a.code)).toContain("unexpected-object");
    expect(fileWhileFull).toBe("");
    expect(backlog).toBe(run.alerts.length);
    expect(logged.some((l) => l.includes('"auditsink alert"') && l.includes("unexpected-object"))).toBe(true);
    expect(logged.some((l) => l.includes("alert delivery failed"))).toBe(true);
    const written = fileAfter
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { code: string });
    expect(written.map((a) => a.code)).toEqual(run.alerts.map((a) => a.code));
  });
});

/**
 * The embedded index (index.db) against real sinks and real files: repair of an index a SIGKILL left behind the
 * store, dedup across restarts at a few thousand events, cursors that stay stable while another client ingests,
 * query answers that are the stored, verifiable records, the read-only view another process opens, and the
 * migration of an index an older version wrote.
 */
import { createPrivateKey } from "node:crypto";
import { cp, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type FoundEvent,
  type Receipt,
  readSegment,
  type SignedEvent,
  signEvent,
  toHex,
  verifyReceipt,
} from "@auditsink/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  isCurrentIndex,
  LocalIndex,
  openDataDirQuery,
  openIndexDatabase,
  openLocalSink,
} from "../../packages/local/src/index.ts";
import { Acked, adminToken, assertConsistent, exited, postEvents, startChild } from "./faults.ts";
import { testProducer, testSinks } from "./helpers.ts";

const { fresh, start } = testSinks("auditsink-index-");
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The index's own record of how far it has read each stream (read-only, beside or without a running sink). */
function indexedSizes(dataDir: string): Record<string, number> {
  const db = openIndexDatabase(join(dataDir, "index.db"), { readOnly: true });
  try {
    const rows = db.prepare("SELECT stream, size FROM streams").all() as { stream: string; size: number }[];
    return Object.fromEntries(rows.map((r) => [r.stream, r.size]));
  } finally {
    db.close();
  }
}

async function register(url: string, dataDir: string, p: ReturnType<typeof testProducer>) {
  const res = await fetch(`${url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${await adminToken(dataDir)}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
}

async function page(url: string, query: string) {
  const res = await fetch(`${url}/v1/events?${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as { events: FoundEvent[]; cursor?: string };
}

describe("an index a SIGKILL left behind the store", () => {
  it("is repaired at the next open from the segments past it, and dedup stays exact", {
    timeout: 60_000,
  }, async () => {
    // Prepare: two batches acknowledged, then a sink process killed after the third batch's segment is stored
    // and before its index transaction.
    const dataDir = await fresh();
    const producer = testProducer("agent");
    const acked = new Acked();
    const local = await openLocalSink({ dataDir });
    await local.producers.register({ id: producer.id, publicKey: producer.publicKey, streams: ["agents.*"] });
    for (let i = 0; i < 2; i++) {
      const batch = [producer.event(), producer.event()];
      acked.add(batch, await local.sink.submit("agents.kill", batch));
    }
    await local.close();
    const child = await startChild(dataDir, {
      AUDITSINK_CRASH_AT: "object:linked:streams/agents.kill/segments",
    });
    const killed = [producer.event(), producer.event(), producer.event()];
    const sent = await postEvents(child!.url, "agents.kill", killed).catch(() => undefined);
    await exited(child!.child);
    const behind = indexedSizes(dataDir)["agents.kill"];
    // Act
    const restarted = await openLocalSink({ dataDir });
    const repaired = restarted.index.stream("agents.kill")?.size;
    const head = (await restarted.heads.get("agents.kill"))?.size;
    const retried = await restarted.sink.submit("agents.kill", killed);
    acked.add(killed, retried);
    const again = await restarted.sink.submit(
      "agents.kill",
      [...acked.byKey.values()].map((a) => a.event),
    );
    const conflict = await restarted.sink
      .submit("agents.kill", [producer.event({ id: killed[0]!.id, type: "other" })])
      .catch((e: unknown) => e);
    await restarted.close();
    // Assess
    expect(sent).toBeUndefined();
    expect(behind).toBe(4);
    expect(head).toBe(7);
    expect(repaired).toBe(7);
    expect(retried.map((r) => r.index)).toEqual([4, 5, 6]);
    expect(again.map((r) => r.index)).toEqual([...acked.byKey.values()].map((a) => a.receipt.index));
    expect(conflict).toMatchObject({ code: "id-conflict" });
    await assertConsistent(dataDir, acked);
  });
});

describe("dedup across restarts", () => {
  it("gives every replay of 3,000 events its original receipt after a restart and refuses a conflicting reuse", {
    timeout: 60_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const producer = testProducer("agent");
    const acked = new Acked();
    const first = await openLocalSink({ dataDir, maxSegmentRecords: 250 });
    await first.producers.register({ id: producer.id, publicKey: producer.publicKey, streams: ["agents.*"] });
    const events: SignedEvent[] = Array.from({ length: 3_000 }, () => producer.event());
    // 120 events a commit: the index writes each segment's rows as two 50-row INSERTs and 20 single rows.
    for (let i = 0; i < events.length; i += 120) {
      const batch = events.slice(i, i + 120);
      acked.add(batch, await first.sink.submit(`agents.dedup-${(i / 120) % 3}`, batch));
    }
    await first.close();
    // Act
    const second = await openLocalSink({ dataDir });
    const replays: Receipt[] = [];
    for (let i = 0; i < events.length; i += 120) {
      replays.push(...(await second.sink.submit(`agents.dedup-${(i / 120) % 3}`, events.slice(i, i + 120))));
    }
    const elsewhere = await second.sink.submit("agents.other", [events[7]!]).catch((e: unknown) => e);
    const changed = await second.sink
      .submit("agents.dedup-0", [producer.event({ id: events[0]!.id, type: "changed" })])
      .catch((e: unknown) => e);
    const sizes = await Promise.all(
      [0, 1, 2].map(async (s) => (await second.heads.get(`agents.dedup-${s}`))?.size),
    );
    await second.close();
    // Assess
    expect(replays.map((r) => [r.stream, r.index, r.recordHash])).toEqual(
      events.map((e) => {
        const { receipt } = acked.byKey.get(`${e.source}\u0000${e.id}`)!;
        return [receipt.stream, receipt.index, receipt.recordHash];
      }),
    );
    expect(elsewhere).toMatchObject({ code: "id-conflict" });
    expect(changed).toMatchObject({ code: "id-conflict" });
    expect(sizes).toEqual([1_080, 960, 960]);
  });
});

describe("GET /v1/events over the index", () => {
  it("pages through every pre-existing match exactly once while another client ingests more", {
    timeout: 60_000,
  }, async () => {
    // Prepare: 300 events of agent a-1 and 300 of a-2, with producer times spread over an hour
    const dataDir = await fresh();
    const { sink } = await start(dataDir);
    const producer = testProducer("agent");
    await register(sink.url, dataDir, producer);
    const base = Date.parse("2026-01-01T00:00:00Z");
    const at = (i: number) => new Date(base + ((i * 7919) % 3_600) * 1_000).toISOString();
    const before: SignedEvent[] = [];
    for (let i = 0; i < 600; i += 50) {
      const batch = Array.from({ length: 50 }, (_, j) =>
        producer.event({ agent: `a-${((i + j) % 2) + 1}`, time: at(i + j) }),
      );
      expect((await postEvents(sink.url, "agents.page", batch)).status).toBe(200);
      before.push(...batch);
    }
    // Act: page by agent (and by agent within a time window) while a second client sends more of both agents,
    // with producer times before, inside and after the pages already read
    let sending = true;
    const sender = (async () => {
      for (let i = 0; sending && i < 400; i++) {
        const batch = Array.from({ length: 5 }, (_, j) =>
          producer.event({ agent: "a-1", time: at(i * 5 + j) }),
        );
        expect((await postEvents(sink.url, "agents.page", batch)).status).toBe(200);
      }
    })();
    const readAll = async (query: string) => {
      const ids: string[] = [];
      let cursor: string | undefined;
      do {
        const p = await page(sink.url, `${query}&limit=17${cursor ? `&cursor=${cursor}` : ""}`);
        ids.push(...p.events.map((e) => e.event.id));
        cursor = p.cursor;
      } while (cursor);
      return ids;
    };
    const byAgent = await readAll("agent=a-1");
    const windowed = await readAll("agent=a-1&since=2026-01-01T00:10:00Z&until=2026-01-01T00:40:00Z");
    const all = await readAll("");
    sending = false;
    await sender;
    // Assess
    const wanted = (pick: (e: SignedEvent) => boolean) => before.filter(pick).map((e) => e.id);
    const inWindow = (e: SignedEvent) => e.time >= "2026-01-01T00:10:00" && e.time < "2026-01-01T00:40:00";
    for (const [seen, expected] of [
      [byAgent, wanted((e) => (e.data as Record<string, unknown>)["gen_ai.agent.id"] === "a-1")],
      [
        windowed,
        wanted((e) => (e.data as Record<string, unknown>)["gen_ai.agent.id"] === "a-1" && inWindow(e)),
      ],
      [all, wanted(() => true)],
    ] as const) {
      expect(new Set(seen).size).toBe(seen.length);
      const got = new Set(seen);
      expect(expected.filter((id) => !got.has(id))).toEqual([]);
    }
    expect(windowed.length).toBeGreaterThan(0);
  });

  it("answers with the stored records: each verifies against the store and through its receipt", {
    timeout: 30_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const { sink } = await start(dataDir);
    const producer = testProducer("agent");
    await register(sink.url, dataDir, producer);
    const runs = Array.from({ length: 120 }, (_, i) => producer.event({ run: `run-${i % 4}` }));
    expect((await postEvents(sink.url, "agents.verify", runs)).status).toBe(200);
    // Act
    const found = await page(sink.url, "run=run-2&limit=100");
    const receipts = await Promise.all(
      found.events.map(async (e) => {
        const res = await fetch(
          `${sink.url}/v1/receipts?source=${encodeURIComponent(e.event.source)}&id=${encodeURIComponent(e.event.id)}`,
        );
        return (await res.json()) as Receipt;
      }),
    );
    const stored = new Map<number, { hash: string; event: SignedEvent }>();
    for (const key of await sink.local.objects.list("streams/agents.verify/segments/")) {
      for (const r of readSegment((await sink.local.objects.get(key))!)) {
        stored.set(r.record.index, { hash: toHex(r.hash), event: r.record.event });
      }
    }
    // Assess
    expect(found.events.map((e) => e.event.id).sort()).toEqual(
      runs
        .filter((_, i) => i % 4 === 2)
        .map((e) => e.id)
        .sort(),
    );
    const trusted = [sink.local.signingKey.signer.key];
    for (const [i, e] of found.events.entries()) {
      expect(stored.get(e.index)).toEqual({ hash: e.recordHash, event: e.event });
      expect([receipts[i]!.stream, receipts[i]!.index, receipts[i]!.recordHash]).toEqual([
        e.stream,
        e.index,
        e.recordHash,
      ]);
      expect(verifyReceipt(receipts[i]!, { trusted, deployment: sink.local.deployment }).ok).toBe(true);
    }
  });
});

describe("openDataDirQuery", () => {
  it("answers from another connection while the sink runs, as the sink does, and writes nothing", {
    timeout: 30_000,
  }, async () => {
    // Prepare
    const dataDir = await fresh();
    const { sink } = await start(dataDir);
    const producer = testProducer("agent");
    await register(sink.url, dataDir, producer);
    const events = Array.from({ length: 40 }, (_, i) => producer.event({ type: i % 2 ? "odd" : "even" }));
    expect((await postEvents(sink.url, "agents.ro", events)).status).toBe(200);
    const query = await openDataDirQuery(dataDir);
    cleanups.push(() => query.close());
    // Act
    const viaSink = await page(sink.url, "type=odd&limit=100");
    const viaQuery = await query.find({ type: "odd", limit: 100 });
    const more = [producer.event({ type: "odd" })];
    expect((await postEvents(sink.url, "agents.ro", more)).status).toBe(200);
    const afterMore = await query.find({ type: "odd", limit: 100 });
    const missing = await openDataDirQuery(join(dataDir, "nowhere")).catch((e: unknown) => e);
    // A copy of the objects alone, without index.db, is answered by scanning its segments.
    const copy = await fresh();
    await cp(join(dataDir, "objects"), join(copy, "objects"), { recursive: true });
    const scanned = await openDataDirQuery(copy);
    const viaScan = await scanned.find({ type: "odd", limit: 100 });
    // Assess
    expect(viaQuery.events).toEqual(viaSink.events);
    expect(viaQuery.events).toHaveLength(20);
    expect(afterMore.events.map((e) => e.event.id)).toContain(more[0]!.id);
    expect(missing).toMatchObject({ code: "data-dir-invalid" });
    expect(viaScan.events.map((e) => e.event.id).sort()).toEqual(
      afterMore.events.map((e) => e.event.id).sort(),
    );
  });
});

describe("an index of schema version 1 (dedup keyed by a hash of the id)", () => {
  it("is read by scanning until a sink opens it, then migrated in place: rows kept, replays keep their receipts", {
    timeout: 30_000,
  }, async () => {
    // Prepare: a copy of the directory that version wrote (test/fixtures/index-v1/README.md)
    const fixture = join(import.meta.dirname, "../fixtures/index-v1");
    const dataDir = await fresh();
    await cp(join(fixture, "datadir"), dataDir, { recursive: true });
    const events = JSON.parse(await readFile(join(fixture, "events.json"), "utf8")) as SignedEvent[];
    const receipts = JSON.parse(await readFile(join(fixture, "receipts.json"), "utf8")) as Receipt[];
    const key = createPrivateKey(await readFile(join(fixture, "producer.pem"), "utf8"));
    const path = join(dataDir, "index.db");
    const before = await openDataDirQuery(dataDir);
    const scanned = await before.find({ id: "call-3", limit: 10 });
    await before.close();
    // Act
    const migrations: string[] = [];
    const opened = await LocalIndex.open(path, undefined, (from, to) => migrations.push(`${from} → ${to}`));
    const db = opened.index.database;
    const current = isCurrentIndex(db);
    const rows = (db.prepare("SELECT count(*) AS n FROM events").get() as { n: number }).n;
    const idIndex = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'events_id'").get() as {
      sql: string;
    };
    const indexed = opened.index.stream("agents.old");
    await opened.index.close();
    const local = await openLocalSink({ dataDir });
    const replays = await local.sink.submit("agents.old", events);
    const { signature: _, ...unsigned } = events[0]!;
    const reused = signEvent({ ...unsigned, type: "changed" }, key);
    const conflict = await local.sink.submit("agents.old", [reused]).catch((e: unknown) => e);
    await local.close();
    const after = await openDataDirQuery(dataDir);
    const byId = await after.find({ id: "call-3", limit: 10 });
    await after.close();
    // Assess
    expect(scanned.events.map((e) => [e.stream, e.index])).toEqual([["agents.old", 2]]);
    expect(migrations).toEqual(["1 → 2"]);
    expect([opened.created, opened.moved]).toEqual([false, undefined]);
    expect(current).toBe(true);
    expect(rows).toBe(7);
    expect(idIndex.sql).toBe("CREATE INDEX events_id ON events (id)");
    expect(indexed?.size).toBe(5);
    expect(replays.map((r) => [r.stream, r.index, r.recordHash])).toEqual(
      receipts.map((r) => [r.stream, r.index, r.recordHash]),
    );
    expect(conflict).toMatchObject({ code: "id-conflict" });
    expect(byId.events.map((e) => [e.stream, e.index, e.recordHash])).toEqual([
      ["agents.old", 2, receipts[2]!.recordHash],
    ]);
  });
});

describe("an index of a schema version with no migration", () => {
  it("is moved aside and a new one made, for a newer version and for a name like `constructor` alike", async () => {
    // Prepare: two index files whose meta names a version this code has no migration from
    const dir = await fresh();
    const paths = ["3", "constructor"].map((version) => {
      const path = join(dir, `index-${version}.db`);
      const db = openIndexDatabase(path);
      db.exec("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)");
      db.prepare("INSERT INTO meta (name, value) VALUES ('schema', ?)").run(version);
      db.close();
      return path;
    });
    // Act
    const migrations: string[] = [];
    const opened = [];
    for (const path of paths) {
      const o = await LocalIndex.open(path, undefined, (from, to) => migrations.push(`${from} → ${to}`));
      opened.push({ created: o.created, reason: o.moved?.reason, current: isCurrentIndex(o.index.database) });
      await o.index.close();
    }
    // Assess
    expect(migrations).toEqual([]);
    expect(opened).toEqual([
      { created: true, reason: "schema version 3, not 2", current: true },
      { created: true, reason: "schema version constructor, not 2", current: true },
    ]);
  });
});

/**
 * The data directory's fanned object layout (docs/EMBEDDED.md §2): a directory written in the flat layout (every
 * key a file at its own path, as before the fanned layout) is read as it is by `auditsink verify` and `auditsink
 * query`, and moved by the next sink to open it — also after a crash part-way through the move — with nothing lost:
 * the same bytes, and replays across the move find their original records.
 */
import { link, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Receipt, SignedEvent } from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { DirectoryObjects, type EmbeddedSink } from "../../packages/local/src/index.ts";
import { cli } from "../cli/helpers.ts";
import { adminToken, postEvents } from "./faults.ts";
import { objectFile, testProducer, testSinks } from "./helpers.ts";

const { fresh, start } = testSinks("auditsink-layout-");
const STREAMS = ["agents.a", "agents.b"];
/** The streams of a written directory: the two sent to, and `_system` (the producer's registration). */
const STORED = [...STREAMS, "_system"];

/** Keys of the numbered objects (segments, checkpoints) of a data directory in the fanned layout. */
async function numberedKeys(dataDir: string): Promise<string[]> {
  const keys = await new DirectoryObjects(join(dataDir, "objects"), "fanned").list("streams/");
  return keys.filter((k) => /\/(segments|checkpoints|cosigned)\/\d{20}$/.test(k));
}

/** The flat layout's file of `key`. */
const flatFile = (dataDir: string, key: string) => join(dataDir, "objects", ...key.split("/"));

/** Moves every numbered object back to its flat path and removes the fanned directories. */
async function flatten(dataDir: string, keys: string[]): Promise<void> {
  for (const key of keys) await rename(objectFile(dataDir, key), flatFile(dataDir, key));
  for (const key of keys)
    await rm(dirname(dirname(objectFile(dataDir, key))), { recursive: true, force: true });
}

/** Files directly in a stream's numbered directories and fanned top directories, per directory. */
async function layoutOf(dataDir: string): Promise<{ flat: number; fannedDirs: number }> {
  let flat = 0;
  let fannedDirs = 0;
  for (const stream of STORED)
    for (const kind of ["segments", "checkpoints"]) {
      for (const e of await readdir(join(dataDir, "objects/streams", stream, kind), {
        withFileTypes: true,
      })) {
        if (e.isDirectory()) fannedDirs++;
        else flat++;
      }
    }
  return { flat, fannedDirs };
}

/** A data directory with three batches in each of two streams, its sink closed; and what it acknowledged. */
async function written() {
  const dataDir = await fresh();
  const { sink, close } = await start(dataDir);
  const p = testProducer("layout-bot");
  const reg = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${await adminToken(dataDir)}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(reg.status).toBe(201);
  const sent: { stream: string; event: SignedEvent; receipt: Receipt }[] = [];
  for (const stream of STREAMS)
    for (let b = 0; b < 3; b++) {
      const events = [p.event(), p.event(), p.event()];
      const res = await postEvents(sink.url, stream, events);
      expect(res.status).toBe(200);
      for (const [i, event] of events.entries()) sent.push({ stream, event, receipt: res.receipts[i]! });
    }
  const verifierKey = sink.local.signingKey.verifierKey;
  await close();
  return { dataDir, p, sent, verifierKey, keys: await numberedKeys(dataDir) };
}

async function verify(dataDir: string, verifierKey: string) {
  const r = await cli(["verify", dataDir, "--verifier-key", verifierKey, "--no-progress", "--json"]);
  const report = JSON.parse(r.out || "{}") as { ok: boolean; streams?: { records: number }[] };
  const records = (report.streams ?? []).reduce((n, s) => n + s.records, 0);
  return { code: r.code, report: { ok: report.ok, records }, err: r.err };
}

async function resend(sink: EmbeddedSink, sent: { stream: string; event: SignedEvent; receipt: Receipt }[]) {
  for (const { stream, event, receipt } of sent) {
    const again = await postEvents(sink.url, stream, [event]);
    expect(again.status).toBe(200);
    // The same record (a replay's receipt proves it against the newest checkpoint)
    const { stream: s, index, recordHash, id } = again.receipts[0]!;
    expect({ s, index, recordHash, id }).toEqual({
      s: receipt.stream,
      index: receipt.index,
      recordHash: receipt.recordHash,
      id: receipt.id,
    });
  }
}

describe("a data directory in the flat layout", () => {
  it("verifies as it is, then the next sink moves it into the fanned layout: same bytes, and replays find their original records", {
    timeout: 60_000,
  }, async () => {
    // Prepare: the sink's directory with every numbered object at its flat path
    const { dataDir, p, sent, verifierKey, keys } = await written();
    expect(keys.length).toBeGreaterThanOrEqual(2 * 2 * 3); // a segment and a checkpoint per batch, and _system's
    const bytes = new Map(
      await Promise.all(keys.map(async (k) => [k, await readFile(objectFile(dataDir, k))] as const)),
    );
    await flatten(dataDir, keys);
    expect(await layoutOf(dataDir)).toEqual({ flat: keys.length, fannedDirs: 0 });
    // Act 1: read-only readers, which move nothing
    const before = await verify(dataDir, verifierKey);
    const query = await cli(["query", dataDir, "--agent", "layout-bot", "--all", "--json"]);
    // Assess 1
    expect(before.report).toMatchObject({ ok: true });
    expect(before.code).toBe(0);
    expect(query.out.trim().split("\n")).toHaveLength(sent.length);
    expect(await layoutOf(dataDir)).toEqual({ flat: keys.length, fannedDirs: 0 });
    // Act 2: a sink opens it
    const { sink, logged } = await start(dataDir);
    // Assess 2: every object moved, byte for byte; replays find their original records; new events commit
    expect(logged.some((l) => l.includes(`"moved":${keys.length}`) && l.includes("fanned layout"))).toBe(
      true,
    );
    expect(await layoutOf(dataDir)).toEqual({ flat: 0, fannedDirs: 2 * STORED.length });
    for (const [k, b] of bytes) expect(await readFile(objectFile(dataDir, k))).toEqual(b);
    await resend(sink, sent);
    expect((await postEvents(sink.url, "agents.a", [p.event(), p.event()])).status).toBe(200);
    const after = await verify(dataDir, verifierKey);
    expect(after.report).toMatchObject({ ok: true, records: before.report.records + 2 });
  });

  it("finishes a move a crash left part-way (objects under both names, or either one) at the next start", {
    timeout: 60_000,
  }, async () => {
    // Prepare: a third of the objects moved and unlinked, a third linked under both names, a third not moved
    const { dataDir, sent, verifierKey, keys } = await written();
    await flatten(dataDir, keys);
    for (const [i, key] of keys.entries()) {
      if (i % 3 === 2) continue;
      await mkdir(dirname(objectFile(dataDir, key)), { recursive: true });
      await link(flatFile(dataDir, key), objectFile(dataDir, key));
      if (i % 3 === 0) await rm(flatFile(dataDir, key));
    }
    // Act 1: a read-only reader refuses the half-moved directory, naming what to do
    const refused = await verify(dataDir, verifierKey);
    // Assess 1
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/both layouts.*start the sink on it once/);
    // Act 2
    const { sink } = await start(dataDir);
    // Assess 2
    expect(await layoutOf(dataDir)).toEqual({ flat: 0, fannedDirs: 2 * STORED.length });
    await resend(sink, sent);
    expect((await verify(dataDir, verifierKey)).report).toMatchObject({ ok: true });
  });

  it("refuses to start when an object is under both names with different bytes, and changes neither", {
    timeout: 60_000,
  }, async () => {
    // Prepare
    const { dataDir, keys } = await written();
    await flatten(dataDir, keys);
    const key = keys.find((k) => k.includes("agents.b/segments/"))!;
    await mkdir(dirname(objectFile(dataDir, key)), { recursive: true });
    await writeFile(objectFile(dataDir, key), "not what the sink wrote\n");
    const flatBytes = await readFile(flatFile(dataDir, key));
    // Act
    const started = start(dataDir);
    // Assess
    await expect(started).rejects.toThrow(/twice with different bytes/);
    expect(await readFile(flatFile(dataDir, key))).toEqual(flatBytes);
    expect(await readFile(objectFile(dataDir, key), "utf8")).toBe("not what the sink wrote\n");
  });

  it("a file spelt flat inside a fanned directory is refused by every reader, naming it, until a restart's move drops the copy", {
    timeout: 60_000,
  }, async () => {
    // Prepare: a running sink on its own (fanned) directory; a segment's bytes planted at the flat spelling too
    const { dataDir, verifierKey, keys } = await written();
    const { sink, close } = await start(dataDir);
    const key = keys.find((k) => k.includes("agents.b/segments/"))!;
    await writeFile(flatFile(dataDir, key), await readFile(objectFile(dataDir, key)));
    // Act
    const cliRun = await verify(dataDir, verifierKey);
    const run = await sink.verifier.runOnce({ full: true });
    // Assess
    expect(cliRun.code).toBe(2);
    expect(cliRun.err).toContain(key.split("/").pop());
    expect(run.failed).toBe(true);
    expect(run.alerts.map((a) => [a.code, a.message])).toContainEqual([
      "verifier-error",
      expect.stringContaining(`${flatFile(dataDir, key)} is spelt in the flat layout`),
    ]);
    // Act 2: the next start's move finds the same bytes under both names and keeps one
    await close();
    await start(dataDir);
    // Assess 2
    expect(await layoutOf(dataDir)).toEqual({ flat: 0, fannedDirs: 2 * STORED.length });
    expect(await verify(dataDir, verifierKey)).toMatchObject({ code: 0, report: { ok: true } });
  });
});

describe("byte ranges of a stored object (DirectoryObjects.getRanges, how a query reads record lines)", () => {
  it("answers each range from one read, clips a range at the object's end, and answers no object for a missing key or a directory", async () => {
    const root = await fresh();
    const key = "streams/s/segments/00000000000000000100";
    const objects = new DirectoryObjects(root, "fanned");
    await mkdir(dirname(objects.pathOf(key)), { recursive: true });
    await writeFile(objects.pathOf(key), "first line\nsecond line\n");
    const got = objects.getRanges(key, [
      { offset: 11, length: 12 },
      { offset: 0, length: 11 },
      { offset: 18, length: 100 },
    ]);
    expect(got?.map((b) => b.toString())).toEqual(["second line\n", "first line\n", "line\n"]);
    expect(objects.getRanges(key, [])).toEqual([]);
    expect(objects.getRanges("streams/s/segments/00000000000000000200", [{ offset: 0, length: 1 }])).toBe(
      undefined,
    );
    // A 12-digit key names the fanned directory that holds segment files: not an object.
    expect(objects.getRanges("streams/s/segments/000000000000", [{ offset: 0, length: 1 }])).toBe(undefined);
  });
});

/**
 * Core's TlogReader on a log nobody here wrote: Tessera's POSIX driver (github.com/transparency-dev/tessera
 * v1.0.4, its posix-oneshot example) writes a tlog-tiles log with an x/mod note Ed25519 key, in two runs (sizes
 * 300 and 1,100). Core reads it by directory and over HTTP; the Go reader (x/mod sumdb note + tlog) reads the
 * same log, so the Go program used against auditsink's tiles is itself proven on a reference log.
 */
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "@auditsink/cli";
import { DirectoryTlogSource, HttpTlogSource } from "@auditsink/client";
import { parseVerifierKey, type TlogCheckpoint, TlogReader, type TlogSource } from "@auditsink/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GoTools, goTools, runTool, serveDirectory } from "./helpers.ts";

const ORIGIN = "tessera.test/log";
const FIRST = 300;
const SIZE = 1_100;

/** Entry i: 0 to 1,499 bytes, derived from i (some binary, one empty). */
function entryBytes(i: number): Buffer {
  const length = (i * 37) % 1500;
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += 32)
    createHash("sha256").update(`entry ${i} ${at}`).digest().copy(out, at);
  return out;
}

let tools: GoTools;
let work: string;
let logDir: string;
let vkey: string;
let firstCheckpoint: string;
let server: Awaited<ReturnType<typeof serveDirectory>>;

async function appendWithTessera(from: number, to: number, skeyFile: string): Promise<void> {
  const dir = join(work, `entries-${from}`);
  await mkdir(dir);
  // posix-oneshot adds the files its glob matches, in lexical order: zero-padded names keep the indices.
  for (let i = from; i < to; i++) await writeFile(join(dir, String(i).padStart(6, "0")), entryBytes(i));
  await runTool(tools.posixOneshot, [
    `--storage_dir=${logDir}`,
    `--entries=${dir}/*`,
    `--private_key=${skeyFile}`,
  ]);
}

// Building the Go tools from a cold module and build cache downloads and compiles Tessera (about a minute on a
// loaded 2-core machine); later runs reuse the built binaries.
beforeAll(async () => {
  tools = await goTools();
  work = await mkdtemp(join(tmpdir(), "auditsink-tessera-"));
  logDir = join(work, "log");
  const [skey, verifier] = (await runTool(tools.notekey, [ORIGIN])).trim().split("\n") as [string, string];
  vkey = verifier;
  const skeyFile = join(work, "skey");
  await writeFile(skeyFile, skey, { mode: 0o600 });
  await appendWithTessera(0, FIRST, skeyFile);
  firstCheckpoint = await readFile(join(logDir, "checkpoint"), "utf8");
  await appendWithTessera(FIRST, SIZE, skeyFile);
  server = await serveDirectory(logDir);
}, 300_000);

afterAll(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const INDICES = [0, 1, 40, 255, 256, 299, 300, 777, 1023, 1024, SIZE - 1];

async function readsTheLog(source: TlogSource): Promise<void> {
  const reader = new TlogReader(source, { origin: ORIGIN, verifiers: [parseVerifierKey(vkey)] });
  const cp: TlogCheckpoint = await reader.checkpoint();
  expect(cp).toMatchObject({ origin: ORIGIN, size: SIZE, extensions: [] });
  expect(cp.key.name).toBe(ORIGIN);
  for (const i of INDICES) expect(Buffer.from(await reader.entry(i, cp)).equals(entryBytes(i))).toBe(true);
  await expect(reader.proveInclusion(5, entryBytes(6), cp)).rejects.toMatchObject({ code: "proof-failed" });
  const old = reader.openCheckpoint(firstCheckpoint);
  expect(old.size).toBe(FIRST);
  expect((await reader.proveConsistency(old, cp)).length).toBeGreaterThan(0);
  expect(Buffer.from(await reader.entry(FIRST - 1, old)).equals(entryBytes(FIRST - 1))).toBe(true);
}

describe("core TlogReader on a Tessera POSIX log", () => {
  it("by directory: verifies Tessera's checkpoint with the x/mod key, entries' inclusion and 300 → 1,100", async () => {
    await readsTheLog(new DirectoryTlogSource(logDir));
  });

  it("over HTTP: the same, reading O(log n) resources per entry", async () => {
    await readsTheLog(new HttpTlogSource(server.url));
    const reader = new TlogReader(new HttpTlogSource(server.url), {
      origin: ORIGIN,
      verifiers: [parseVerifierKey(vkey)],
    });
    const cp = await reader.checkpoint();
    const before = server.requests.length;
    await reader.entry(500, cp);
    // Entry bundle 1, level-0 tiles 1 and 4 (partial), level-1 tile 0 (partial): never the whole tree.
    expect(server.requests.length - before).toBeLessThanOrEqual(5);
  });

  it("reads the older checkpoint's entries through the full tiles once Tessera's partial ones are gone", async () => {
    const pruned = join(work, "pruned");
    await cp(logDir, pruned, { recursive: true });
    await rm(join(pruned, "tile/0/001.p/44"));
    await rm(join(pruned, "tile/entries/001.p/44"));
    const reader = new TlogReader(new DirectoryTlogSource(pruned), {
      origin: ORIGIN,
      verifiers: [parseVerifierKey(vkey)],
    });
    const old = reader.openCheckpoint(firstCheckpoint);
    expect(Buffer.from(await reader.entry(290, old)).equals(entryBytes(290))).toBe(true);
  });

  it("refuses Tessera's checkpoint under another pinned key or origin", async () => {
    const [, otherKey] = (await runTool(tools.notekey, [ORIGIN])).trim().split("\n") as [string, string];
    const stranger = new TlogReader(new DirectoryTlogSource(logDir), {
      origin: ORIGIN,
      verifiers: [parseVerifierKey(otherKey)],
    });
    await expect(stranger.checkpoint()).rejects.toMatchObject({ code: "checkpoint-not-verified" });
    const elsewhere = new TlogReader(new DirectoryTlogSource(logDir), {
      origin: "tessera.test/other",
      verifiers: [parseVerifierKey(vkey)],
    });
    await expect(elsewhere.checkpoint()).rejects.toMatchObject({ code: "bad-checkpoint" });
  });
});

describe("the Go reader (x/mod sumdb note + tlog) on the same Tessera log", () => {
  const entryArgs = (indices: number[]) =>
    indices.flatMap((i) => ["-entry", `${i}=${entryBytes(i).toString("hex")}`]);

  it("verifies the checkpoint, proves entries included and 300 → 1,100 consistent", async () => {
    const oldFile = join(work, "checkpoint-300");
    await writeFile(oldFile, firstCheckpoint);
    const out = await runTool(tools.reader, [
      ...["-url", server.url, "-origin", ORIGIN, "-vkey", vkey, "-old", oldFile],
      ...entryArgs(INDICES.filter((i) => (i * 37) % 1500 < 1000)), // keeps the command line short
    ]);
    const result = JSON.parse(out);
    expect(result).toMatchObject({ origin: ORIGIN, size: SIZE, consistency: { from: FIRST, to: SIZE } });
    expect(result.entries.map((e: { index: number }) => e.index)).toEqual(
      INDICES.filter((i) => (i * 37) % 1500 < 1000),
    );
  });

  it("reads an older checkpoint's tree through the full tiles once its partial ones are gone", async () => {
    const pruned = join(work, "pruned-go");
    await cp(logDir, pruned, { recursive: true });
    await rm(join(pruned, "tile/0/001.p/44"));
    await rm(join(pruned, "tile/entries/001.p/44"));
    await writeFile(join(pruned, "checkpoint"), firstCheckpoint); // a mirror that stopped at size 300
    const mirror = await serveDirectory(pruned);
    try {
      const out = await runTool(tools.reader, [
        ...["-url", mirror.url, "-origin", ORIGIN, "-vkey", vkey],
        ...entryArgs([290]),
      ]);
      expect(JSON.parse(out)).toMatchObject({ size: FIRST, entries: [{ index: 290 }] });
      expect(mirror.requests).toEqual(expect.arrayContaining(["tile/0/001.p/44", "tile/0/001"]));
    } finally {
      await mirror.close();
    }
  });

  it("fails on an entry the log does not hold, and on a key it was not signed with", async () => {
    const base = ["-url", server.url, "-origin", ORIGIN];
    await expect(runTool(tools.reader, [...base, "-vkey", vkey, "-entry", "7=00"])).rejects.toThrow(
      /entry 7 in the bundle is/,
    );
    const [, otherKey] = (await runTool(tools.notekey, [ORIGIN])).trim().split("\n") as [string, string];
    await expect(runTool(tools.reader, [...base, "-vkey", otherKey])).rejects.toThrow(/does not verify/);
  });
});

describe("auditsink tlog check on the Tessera log", () => {
  async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const code = await run(args, {
      out: (t) => {
        out += t;
      },
      err: (t) => {
        err += t;
      },
      isTTY: false,
      setExitCode: () => undefined,
    });
    return { code, out, err };
  }

  it("over HTTP and by directory: verifies, proves entries and, with --state, consistency since last time", async () => {
    const state = join(work, "monitor-state");
    await writeFile(state, firstCheckpoint);
    const first = await cli([
      "tlog",
      "check",
      server.url,
      "--key",
      vkey,
      "--entry-index",
      "7",
      "--state",
      state,
    ]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.out)).toMatchObject({
      ok: true,
      origin: ORIGIN,
      size: SIZE,
      entries: [{ index: 7, entry: entryBytes(7).toString("hex") }],
      consistency: { from: FIRST, to: SIZE },
    });
    expect(await readFile(state, "utf8")).toBe(await readFile(join(logDir, "checkpoint"), "utf8"));
    const again = await cli(["tlog", "check", logDir, "--key", vkey, "--state", state]);
    expect(JSON.parse(again.out)).toMatchObject({ ok: true, consistency: { from: SIZE, to: SIZE } });
  });

  it("exits 1 with the failure when the log serves a wrong tile, and 2 when it cannot be read", async () => {
    const tampered = join(work, "tampered");
    await cp(logDir, tampered, { recursive: true });
    const tile = await readFile(join(tampered, "tile/0/000"));
    tile[100] = tile[100]! ^ 1;
    await writeFile(join(tampered, "tile/0/000"), tile);
    const bad = await cli(["tlog", "check", tampered, "--key", vkey, "--entry-index", "9"]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.out)).toMatchObject({ ok: false, failure: { code: "proof-failed" } });
    const missing = await cli(["tlog", "check", join(work, "nowhere"), "--key", vkey]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/not a directory or URL/);
  });
});

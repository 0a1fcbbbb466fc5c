import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describePortContracts } from "@auditsink/core/contract";
import fc from "fast-check";
import * as vitest from "vitest";
import { afterEach, describe, expect, it } from "vitest";
import {
  DirectoryObjects,
  LocalHeadStore,
  LocalIndex,
  LocalObjectStore,
} from "../../packages/local/src/index.ts";
import { tempDir } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function fresh() {
  const t = await tempDir();
  cleanups.push(t.remove);
  await mkdir(join(t.dir, "tmp"));
  return {
    dir: t.dir,
    objects: new LocalObjectStore(join(t.dir, "objects"), join(t.dir, "tmp")),
    heads: new LocalHeadStore(join(t.dir, "heads"), join(t.dir, "tmp")),
    dedup: await openIndex(join(t.dir, "index.db")),
  };
}

async function openIndex(path: string): Promise<LocalIndex> {
  const { index } = await LocalIndex.open(path);
  cleanups.unshift(() => index.close());
  return index;
}

describePortContracts(vitest, "local files", fresh);

describe("LocalHeadStore: a head is read as stored JSON", () => {
  it("takes a head with a member written twice as no head (repaired from the store), never first- or last-wins", async () => {
    const { dir, heads } = await fresh();
    const head = { size: 2, headHash: "ab".repeat(32), frontier: ["cd".repeat(32)] };
    expect(await heads.advance("s", 0, head)).toBe(true);
    expect(await heads.get("s")).toEqual(head);
    const file = join(dir, "heads", "s.json");
    await writeFile(file, (await readFile(file, "utf8")).replace('{"size":2', '{"size":900,"size":2'));
    expect(await heads.get("s")).toBeUndefined();
    await writeFile(file, "");
    expect(await heads.get("s")).toBeUndefined();
  });
});

describe("LocalObjectStore: write-once files", () => {
  it("creates objects read-only and leaves no temporary file behind", async () => {
    // Prepare
    const { dir, objects } = await fresh();
    // Act
    await objects.putIfAbsent("streams/s/segments/00000000000000000000", Buffer.from("one\n"));
    // Assess
    const info = await stat(join(dir, "objects/streams/s/segments/000000000000/0000/0000"));
    expect(info.mode & 0o777).toBe(0o444);
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
  });

  it("refuses keys that would leave the object directory", async () => {
    const { objects } = await fresh();
    await expect(objects.putIfAbsent("streams/../../etc/x", Buffer.from("x"))).rejects.toMatchObject({
      name: "StoreError",
    });
    await expect(objects.get("/abs")).rejects.toMatchObject({ name: "StoreError" });
  });
});

describe("LocalObjectStore.list", () => {
  /** What list must answer: every key under the prefix, after startAfter, ascending, the first `limit`. */
  const expected = (keys: string[], prefix: string, startAfter?: string, limit?: number) =>
    keys
      .filter((k) => k.startsWith(prefix) && (startAfter === undefined || k > startAfter))
      .sort()
      .slice(0, limit);

  /** list() over prefixes, startAfters and limits drawn from `probes` answers `expected` of `stored`. */
  const listsAsFilter = (
    objects: LocalObjectStore,
    stored: string[],
    probes: string[],
    run: { numRuns: number; seed: number },
  ) =>
    fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...probes),
        fc.option(fc.constantFrom(...probes), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
        async (prefix, startAfter, limit) => {
          const got = await objects.list(prefix, {
            ...(startAfter !== undefined ? { startAfter } : {}),
            ...(limit !== undefined ? { limit } : {}),
          });
          expect(got).toEqual(expected(stored, prefix, startAfter, limit));
        },
      ),
      run,
    );

  it("answers every prefix, startAfter and limit as a sorted filter of every key (nested directories too)", async () => {
    // Prepare: keys in nested directories whose names share prefixes ("a", "a.b", "ab")
    const { objects } = await fresh();
    const names = ["a", "a.b", "ab", "b", "x001", "x002", "00000000000000000000", "00000000000000000100"];
    const keys = fc.sample(
      fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 4 }).map((p) => p.join("/")),
      { numRuns: 120, seed: 7 },
    );
    // A key cannot also be a directory of another key: keep the first of each such pair.
    const stored: string[] = [];
    for (const k of keys)
      if (!stored.some((o) => o === k || o.startsWith(`${k}/`) || k.startsWith(`${o}/`))) stored.push(k);
    for (const k of stored) await objects.putIfAbsent(k, Buffer.from(k));
    const probes = [...stored, ...stored.map((k) => k.slice(0, -1)), ...names, "", "a/", "zzz"];
    // Act + Assess
    await listsAsFilter(objects, stored, probes, { numRuns: 400, seed: 11 });
  });

  it("answers every prefix of numbered keys kept in the fanned layout as a sorted filter of every key", async () => {
    // Prepare: segment, checkpoint and tile keys on both sides of the fanned layout's directory boundaries
    const { dir, objects } = await fresh();
    const numbers = [0, 1, 99, 9_999, 10_000, 10_001, 99_999_999, 100_000_000, 123_456_789_012, 10 ** 15];
    const stored = [
      ...numbers.map((n) => `streams/s/segments/${String(n).padStart(20, "0")}`),
      ...numbers.slice(0, 6).map((n) => `streams/s/checkpoints/${String(n + 3).padStart(20, "0")}`),
      "streams/s/tile/0/x001/234",
      "streams/t/cosigned/00000000000000000009",
      "keys/0badc0de.json",
    ];
    for (const k of stored) await objects.putIfAbsent(k, Buffer.from(k));
    // Every prefix of every key (the partial names a page's startAfter or prefix can be), and a few strangers
    const probes = [
      ...new Set(stored.flatMap((k) => Array.from({ length: k.length + 1 }, (_, i) => k.slice(0, i)))),
      "streams/s/segments/0000000000001x",
      "streams/s/segments/000000000000.",
      "zzz",
    ];
    // Act + Assess
    await listsAsFilter(objects, stored, probes, { numRuns: 600, seed: 12 });
    // The files are where docs/EMBEDDED.md §2 says
    expect((await stat(join(dir, "objects/streams/s/segments/000000001234/5678/9012"))).mode & 0o777).toBe(
      0o444,
    );
    expect((await readdir(join(dir, "objects/streams/s/segments"))).sort()).toEqual([
      "000000000000",
      "000000000001",
      "000000001234",
      "000010000000",
    ]);
  });

  it("keeps a large directory's listing only while it is unchanged: files added, removed or hidden behind an old mtime show at once", async () => {
    // Prepare: a flat directory of 1,200 objects (an evidence bundle's layout), settled (its last change over a
    // second old), listed once
    const t = await tempDir();
    cleanups.push(t.remove);
    const segments = join(t.dir, "streams", "s", "segments");
    await mkdir(segments, { recursive: true });
    const name = (n: number) => String(n * 100).padStart(20, "0");
    const key = (n: number) => `streams/s/segments/${name(n)}`;
    for (let n = 0; n < 1200; n++) await writeFile(join(segments, name(n)), `${n}\n`);
    const objects = new DirectoryObjects(t.dir);
    await new Promise((r) => setTimeout(r, 1_100));
    const all = Array.from({ length: 1200 }, (_, n) => key(n));
    expect(await objects.list("streams/s/segments/", { limit: 1000 })).toEqual(all.slice(0, 1000));
    const before = await stat(segments);
    // Act: changes made around the store, as an intruder would; the last one sets the mtime back
    await writeFile(join(segments, "00000000000000000050"), "planted\n");
    const planted = await objects.list("streams/s/segments/", { startAfter: key(0), limit: 2 });
    await rm(join(segments, name(5)), { force: true });
    const removed = await objects.list("streams/s/segments/", { startAfter: key(4), limit: 1 });
    await writeFile(join(segments, "00000000000000099999"), "late\n");
    await utimes(segments, before.atime, before.mtime);
    const hidden = await objects.list("streams/s/segments/", { startAfter: key(999) });
    // Assess
    expect(planted).toEqual(["streams/s/segments/00000000000000000050", key(1)]);
    expect(removed).toEqual([key(6)]);
    expect(hidden).toEqual(["streams/s/segments/00000000000000099999", ...all.slice(1000)]);
  });
});

describe("LocalIndex: a file that is not an index", () => {
  it("is moved aside as index.db.damaged-<time> and an empty index takes its place", async () => {
    // Prepare
    const t = await tempDir();
    cleanups.push(t.remove);
    const path = join(t.dir, "index.db");
    await writeFile(path, "this is not a SQLite database, it is a damaged file ".repeat(200));
    // Act
    const { index, moved, created } = await LocalIndex.open(path);
    cleanups.unshift(() => index.close());
    // Assess
    expect(created).toBe(true);
    expect(moved?.to).toMatch(/index\.db\.damaged-/);
    expect(await readFile(moved!.to, "utf8")).toContain("not a SQLite database");
    expect(index.streams().size).toBe(0);
    expect((await index.getMany(["p\u0000src\u0000a"])).size).toBe(0);
  });
});

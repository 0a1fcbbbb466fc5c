import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describePortContracts } from "@auditsink/core/contract";
import * as vitest from "vitest";
import { afterEach, describe, expect, it } from "vitest";
import { LocalHeadStore, LocalIndex, LocalObjectStore } from "../../packages/local/src/index.ts";
import { tempDir } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function fresh() {
  const t = await tempDir();
  cleanups.push(t.remove);
  const { mkdir } = await import("node:fs/promises");
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

describe("LocalObjectStore: write-once files", () => {
  it("creates objects read-only and leaves no temporary file behind", async () => {
    // Prepare
    const { dir, objects } = await fresh();
    // Act
    await objects.putIfAbsent("streams/s/segments/00000000000000000000", Buffer.from("one\n"));
    // Assess
    const info = await stat(join(dir, "objects", "streams", "s", "segments", "00000000000000000000"));
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

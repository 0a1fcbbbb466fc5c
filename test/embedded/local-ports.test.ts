import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describePortContracts } from "@auditsink/core/contract";
import * as vitest from "vitest";
import { afterEach, describe, expect, it } from "vitest";
import { LocalDedupStore, LocalHeadStore, LocalObjectStore } from "../../packages/local/src/index.ts";
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
    dedup: await LocalDedupStore.open(join(t.dir, "dedup.jsonl"), join(t.dir, "tmp")),
  };
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

describe("LocalDedupStore: crash recovery", () => {
  it("drops a torn last line at open and keeps every complete entry", async () => {
    // Prepare
    const { dir, dedup } = await fresh();
    const entry = {
      key: "p\u0000src\u0000a",
      stream: "s",
      index: 0,
      recordHash: "a".repeat(64),
      eventHash: "b".repeat(64),
    };
    await dedup.putMany([entry]);
    await dedup.close();
    const path = join(dir, "dedup.jsonl");
    await writeFile(path, `${await readFile(path, "utf8")}{"key":"p\\u0000src\\u0000b","str`);
    // Act
    const reopened = await LocalDedupStore.open(path, join(dir, "tmp"));
    await reopened.putMany([{ ...entry, key: "p\u0000src\u0000c", index: 1 }]);
    await reopened.close();
    const again = await LocalDedupStore.open(path, join(dir, "tmp"));
    // Assess
    const found = await again.getMany(["p\u0000src\u0000a", "p\u0000src\u0000b", "p\u0000src\u0000c"]);
    expect([...found.keys()]).toEqual(["p\u0000src\u0000a", "p\u0000src\u0000c"]);
    await again.close();
  });
});

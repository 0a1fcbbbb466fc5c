/**
 * The data directory's object layout over time (LocalObjectStore.ts ObjectLayout): a sink moves a directory
 * written before the fanned layout into it when it opens it (fanOutObjects), and read-only openers that move
 * nothing (`auditsink verify`, `auditsink query`) read either layout (dataDirLayout).
 */
import { readdir, readFile, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { StoreError } from "@auditsink/core";
import { LocalError } from "./errors.ts";
import { fsyncDir, isErrno, mkdirDurable, nodeFileSystem } from "./fsutil.ts";
import {
  DirectoryObjects,
  NUMBERED_KINDS,
  NUMBERED_NAME,
  type ObjectLayout,
  storedStreams,
} from "./LocalObjectStore.ts";

const FANNED_TOP = /^\d{12}$/;

/** The entries of one stream's directory of numbered objects, split by layout. */
async function numberedEntries(dir: string): Promise<{ flat: string[]; fanned: boolean }> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((e: unknown) => {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  });
  return {
    flat: entries
      .filter((e) => !e.isDirectory() && NUMBERED_NAME.test(e.name))
      .map((e) => e.name)
      .sort(),
    fanned: entries.some((e) => e.isDirectory() && FANNED_TOP.test(e.name)),
  };
}

async function* numberedDirs(objectsDir: string): AsyncGenerator<{ dir: string; prefix: string }> {
  for (const stream of await storedStreams(objectsDir))
    for (const kind of NUMBERED_KINDS)
      yield { dir: join(objectsDir, "streams", stream, kind), prefix: `streams/${stream}/${kind}/` };
}

/**
 * Moves a data directory's segments, checkpoints and cosigned checkpoints from the flat layout into the fanned
 * one (docs/EMBEDDED.md §2): each file named by 20 digits directly in its directory is linked at its fanned path,
 * the new directories are fsynced, and only then is the old name removed. Every object has a name at every
 * moment, so a crash part-way leaves both names of some objects, which the next call finishes. An object found
 * under both names with different bytes stops it (StoreError): one of the two is not what the sink wrote, and
 * which one is for a person to decide. Call it only holding the data directory's lock. Returns how many objects
 * it moved; 0, after one directory listing per stream and kind, for a directory already fanned.
 */
export async function fanOutObjects(objectsDir: string): Promise<number> {
  const fanned = new DirectoryObjects(objectsDir, "fanned");
  let moved = 0;
  for await (const { dir, prefix } of numberedDirs(objectsDir)) {
    const { flat } = await numberedEntries(dir);
    // By destination directory (at most 10,000 names each): linked together, then that directory fsynced.
    const leaves = new Map<string, string[]>();
    for (const name of flat) {
      const leaf = dirname(fanned.pathOf(prefix + name));
      leaves.get(leaf)?.push(name) ?? leaves.set(leaf, [name]);
    }
    for (const [leaf, names] of leaves) {
      await mkdirDurable(leaf);
      for (const chunk of chunks(names))
        await Promise.all(chunk.map((n) => linkOrSame(join(dir, n), fanned.pathOf(prefix + n), prefix + n)));
      await fsyncDir(leaf);
    }
    for (const chunk of chunks(flat)) await Promise.all(chunk.map((n) => unlink(join(dir, n))));
    if (flat.length) await fsyncDir(dir);
    moved += flat.length;
  }
  return moved;
}

/** Names in slices of 64: file operations of one slice are in flight together (libuv's thread pool). */
function* chunks(names: string[]): Generator<string[]> {
  for (let i = 0; i < names.length; i += 64) yield names.slice(i, i + 64);
}

async function linkOrSame(from: string, to: string, key: string): Promise<void> {
  try {
    await nodeFileSystem.link(from, to);
    return;
  } catch (e) {
    if (!isErrno(e, "EEXIST")) throw e;
  }
  const [a, b] = await Promise.all([stat(from, { bigint: true }), stat(to, { bigint: true })]);
  if (a.ino === b.ino && a.dev === b.dev) return;
  if (Buffer.compare(await readFile(from), await readFile(to)) === 0) return;
  throw new StoreError(
    "store-failed",
    `object ${key} is in the data directory twice with different bytes, at ${from} and ${to}: one of them is ` +
      "not what the sink wrote; run `auditsink verify` on a copy of each, keep the one that verifies, remove the other",
  );
}

/**
 * The layout of a data directory's objects, for a reader that moves nothing: "flat" when its numbered objects
 * are all still files named by 20 digits (a directory no sink has opened since the fanned layout came in),
 * "fanned" otherwise. A directory holding both is refused (LocalError "data-dir-invalid"): a sink moving it
 * stopped part-way, or files were put beside the layout.
 */
export async function dataDirLayout(objectsDir: string): Promise<ObjectLayout> {
  let flat: string | undefined;
  let fanned = false;
  for await (const { dir, prefix } of numberedDirs(objectsDir)) {
    const found = await numberedEntries(dir);
    if (found.flat.length) flat ??= prefix + found.flat[0]!;
    fanned ||= found.fanned;
  }
  if (flat && fanned) {
    throw new LocalError(
      "data-dir-invalid",
      `${objectsDir} holds objects in both layouts (${flat} directly in its directory): a sink moving it to the ` +
        "fanned layout stopped part-way, or the file was put there by hand; start the sink on it once to finish the move",
    );
  }
  return flat ? "flat" : "fanned";
}

/** A data directory's objects, read-only, in whichever layout it has (dataDirLayout). */
export async function dataDirObjects(objectsDir: string): Promise<DirectoryObjects> {
  return new DirectoryObjects(objectsDir, await dataDirLayout(objectsDir));
}

/**
 * Read-only ObjectStores for the places an auditor verifies from: a data directory or evidence bundle on disk
 * (here), and an S3 bucket (S3ReadStore.ts, loaded only for s3:// sources). They implement only the read half
 * of core's ObjectStore port; a write is refused, so verification can never change what it checks.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, sep } from "node:path";
import { type ObjectStore, StoreError } from "@auditsink/core";

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export abstract class ReadOnlyStore implements ObjectStore {
  async putIfAbsent(key: string): Promise<boolean> {
    throw new StoreError("store-failed", `refusing to write ${key}: this store is opened read-only`);
  }
  abstract get(key: string): Promise<Uint8Array | undefined>;
  abstract list(prefix: string, options?: { startAfter?: string; limit?: number }): Promise<string[]>;
}

const isErrno = (e: unknown, code: string) => (e as NodeJS.ErrnoException | undefined)?.code === code;

/** Objects as files under `root`, one per key (the layout of `<data>/objects` and `<bundle>/objects`). */
export class DirectoryStore extends ReadOnlyStore {
  constructor(readonly root: string) {
    super();
  }

  private pathOf(key: string): string {
    if (!KEY.test(key) || key.split("/").some((s) => s === "." || s === "..")) {
      throw new StoreError("store-failed", `object key ${JSON.stringify(key)} is not a valid key`);
    }
    return join(this.root, ...key.split("/"));
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      return await readFile(this.pathOf(key));
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return undefined;
      throw new StoreError("store-failed", `reading ${key}`, { cause: e });
    }
  }

  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const slash = prefix.lastIndexOf("/");
    const dir = slash < 0 ? this.root : this.pathOf(prefix.slice(0, slash));
    let entries: { name: string; parentPath: string; isDirectory(): boolean }[];
    try {
      entries = await readdir(dir, { recursive: true, withFileTypes: true });
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return [];
      throw new StoreError("store-failed", `listing ${prefix}`, { cause: e });
    }
    const keys: string[] = [];
    for (const entry of entries) {
      if (entry.isDirectory()) continue;
      const key = join(entry.parentPath, entry.name)
        .slice(this.root.length + 1)
        .split(sep)
        .join("/");
      if (!key.startsWith(prefix)) continue;
      if (options.startAfter !== undefined && !(key > options.startAfter)) continue;
      keys.push(key);
    }
    keys.sort();
    return options.limit === undefined ? keys : keys.slice(0, options.limit);
  }
}

export interface S3Location {
  bucket: string;
  /** Key prefix the sink's objects live under ("" or ending in "/"). */
  prefix: string;
}

/** Parses `s3://bucket[/prefix]`. */
export function parseS3Url(url: string): S3Location | undefined {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) return undefined;
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  return { bucket: m[1]!, prefix: prefix ? `${prefix}/` : "" };
}

export interface S3ReadOptions {
  /** Endpoint override for S3-compatible stores and emulators; implies path-style addressing. */
  endpoint?: string;
  region?: string;
  /**
   * Credentials; default: the SDK's chain (environment, profile, instance role) — give it a read-only identity.
   * Typed here rather than with the SDK's types: `@aws-sdk/client-s3` is an optional peer, absent from an
   * auditor's offline install, and these declarations must compile there too.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

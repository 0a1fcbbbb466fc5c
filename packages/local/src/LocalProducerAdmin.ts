/**
 * The producer registry on disk: `<data>/producers.json`, replaced atomically on every change. Wrap it in core's
 * AuditedProducerAdmin so each change is also recorded in the system stream (openLocalSink does).
 */

import type { KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  keyAlgorithm,
  keyFingerprint,
  type ProducerAdmin,
  type ProducerInfo,
  type ProducerKey,
  type ProducerStore,
  publicKeyFromSpki,
  StoreError,
  spkiDer,
} from "@auditsink/core";
import { isErrno, replaceFile, storeError } from "./fsutil.ts";

interface File {
  producers: ProducerInfo[];
}

export class LocalProducerAdmin implements ProducerStore {
  private producers: ProducerInfo[] = [];
  private readonly byKey = new Map<string, ProducerKey>();
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly tmpDir: string,
  ) {}

  static async open(path: string, tmpDir: string): Promise<LocalProducerAdmin> {
    const admin = new LocalProducerAdmin(path, tmpDir);
    try {
      const file = JSON.parse(await readFile(path, "utf8")) as File;
      admin.producers = file.producers;
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw storeError("reading producers.json", e);
    }
    admin.index();
    return admin;
  }

  private index(): void {
    this.byKey.clear();
    for (const p of this.producers) {
      for (const k of p.keys) {
        this.byKey.set(k.keyId, {
          keyId: k.keyId,
          publicKey: publicKeyFromSpki(k.publicKey),
          producer: p.id,
          streams: p.streams,
          revoked: k.revokedAt !== undefined,
        });
      }
    }
  }

  async key(keyId: string): Promise<ProducerKey | undefined> {
    return this.byKey.get(keyId);
  }

  async list(): Promise<ProducerInfo[]> {
    return structuredClone(this.producers);
  }

  /** Every registered public key, revoked or not: what a verifier needs to re-check stored signatures. */
  publicKeys(): Map<string, KeyObject> {
    return new Map([...this.byKey.values()].map((k) => [k.keyId, k.publicKey]));
  }

  register(input: Parameters<ProducerAdmin["register"]>[0]): Promise<ProducerInfo> {
    return this.change(() => {
      const keyId = keyFingerprint(input.publicKey);
      if (this.byKey.has(keyId)) throw new StoreError("conflict", `key ${keyId} is already registered`);
      const now = new Date().toISOString();
      let p = this.producers.find((x) => x.id === input.id);
      if (!p) {
        p = { id: input.id, streams: input.streams, keys: [], createdAt: now };
        this.producers.push(p);
      }
      // A later registration of the same producer sets its streams and heartbeat for all its keys.
      p.streams = input.streams;
      if (input.heartbeatSeconds !== undefined) p.heartbeatSeconds = input.heartbeatSeconds;
      p.keys.push({
        keyId,
        publicKey: spkiDer(input.publicKey).toString("base64"),
        algorithm: keyAlgorithm(input.publicKey),
        createdAt: now,
      });
      return p;
    });
  }

  async revoke(id: string, keyId?: string): Promise<ProducerInfo> {
    await this.revokeKeys(id, keyId, new Date().toISOString());
    return (await this.list()).find((p) => p.id === id)!;
  }

  revokeKeys(id: string, keyId: string | undefined, at: string): Promise<string[]> {
    return this.change(() => {
      const p = this.producers.find((x) => x.id === id);
      if (!p) throw new StoreError("conflict", `no producer ${id}`);
      const keys = p.keys.filter((k) => keyId === undefined || k.keyId === keyId);
      if (keys.length === 0) throw new StoreError("conflict", `producer ${id} has no key ${keyId}`);
      const revoked = keys.filter((k) => k.revokedAt === undefined);
      for (const k of revoked) k.revokedAt = at;
      return revoked.map((k) => k.keyId);
    });
  }

  unregister(id: string, keyId: string): Promise<void> {
    return this.change(() => {
      const p = this.producers.find((x) => x.id === id);
      if (!p) return;
      p.keys = p.keys.filter((k) => k.keyId !== keyId);
      if (p.keys.length === 0) this.producers = this.producers.filter((x) => x !== p);
    });
  }

  /** Applies a change to a copy, writes it durably, then makes it visible. */
  private change<T>(apply: () => T): Promise<T> {
    const run = this.chain.then(async () => {
      const before = structuredClone(this.producers);
      let changed: T;
      try {
        changed = apply();
        await replaceFile(
          this.tmpDir,
          this.path,
          `${JSON.stringify({ producers: this.producers }, null, 2)}\n`,
        );
      } catch (e) {
        this.producers = before;
        if (e instanceof StoreError) throw e;
        throw storeError("writing producers.json", e);
      }
      this.index();
      return structuredClone(changed);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

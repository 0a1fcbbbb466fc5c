/**
 * The producer registry on disk: `<data>/producers.json`, replaced atomically on every change. Wrap it in core's
 * AuditedProducerAdmin so each change is first recorded in the system stream (openLocalSink does).
 *
 * The `_system` stream is the source of truth; this file is a cache of it. Each change is recorded in `_system`
 * before it is applied here, so a crash between the two leaves a record the file does not reflect yet:
 * `reconcile()` (run by openLocalSink at every start) applies every `_system` record from the file's
 * `systemSize` watermark onward — registrations and revocations alike, idempotently — and then moves the
 * watermark to the stream's size. A revocation is also in force before it is recorded (suspend), and stays in
 * force in memory if writing this file fails afterwards.
 */

import type { KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  keyAlgorithm,
  keyFingerprint,
  PRODUCER_REGISTERED,
  PRODUCER_REVOKED,
  type ProducerInfo,
  type ProducerKey,
  publicKeyFromSpki,
  type SignedEvent,
  StoreError,
  type SuspendingProducerAdmin,
  spkiDer,
} from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";
import { type FileSystem, isErrno, nodeFileSystem, replaceFile, storeError } from "./fsutil.ts";

interface File {
  producers: ProducerInfo[];
  /** How many `_system` records this file reflects (every change recorded below this index is applied). */
  systemSize?: number;
}

export class LocalProducerAdmin implements SuspendingProducerAdmin {
  private producers: ProducerInfo[] = [];
  private readonly byKey = new Map<string, ProducerKey>();
  private readonly suspended = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  /** The `_system` size reconcile() last brought the file up to. */
  systemSize = 0;

  private constructor(
    readonly path: string,
    private readonly tmpDir: string,
    private readonly fs: FileSystem,
  ) {}

  static async open(
    path: string,
    tmpDir: string,
    fs: FileSystem = nodeFileSystem,
  ): Promise<LocalProducerAdmin> {
    const admin = new LocalProducerAdmin(path, tmpDir, fs);
    let text: string | undefined;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw storeError(`reading the producer registry ${path}`, e);
    }
    if (text !== undefined) {
      try {
        const file = JSON.parse(text) as File;
        if (!Array.isArray(file.producers)) throw new Error("no producers array");
        admin.producers = file.producers;
        admin.systemSize = Number.isSafeInteger(file.systemSize) ? file.systemSize! : 0;
      } catch (e) {
        // The file is replaced atomically, so this is damage from outside. The registry is derived from the
        // `_system` stream: start from nothing and let reconcile() rebuild it from the whole stream.
        admin.producers = [];
        admin.systemSize = 0;
        admin.damaged = `${path} is not a valid registry (${(e as Error).message}); rebuilt from the _system stream`;
      }
    }
    admin.index();
    return admin;
  }

  /** Set when the file was unreadable and the registry is being rebuilt from `_system` (for the start-up log). */
  damaged: string | undefined;

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
    const k = this.byKey.get(keyId);
    if (k && !k.revoked && this.suspended.has(keyId)) return { ...k, revoked: true };
    return k;
  }

  async list(): Promise<ProducerInfo[]> {
    return structuredClone(this.producers);
  }

  /** Every registered public key, revoked or not: what a verifier needs to re-check stored signatures. */
  publicKeys(): Map<string, KeyObject> {
    return new Map([...this.byKey.values()].map((k) => [k.keyId, k.publicKey]));
  }

  suspend(keyIds: readonly string[]): () => void {
    const added = keyIds.filter((k) => !this.suspended.has(k));
    for (const k of added) this.suspended.add(k);
    return () => {
      for (const k of added) this.suspended.delete(k);
    };
  }

  register(input: {
    id: string;
    publicKey: KeyObject;
    streams: string[];
    heartbeatSeconds?: number;
  }): Promise<ProducerInfo> {
    return this.change(() => {
      const keyId = keyFingerprint(input.publicKey);
      if (this.byKey.has(keyId)) throw new StoreError("conflict", `key ${keyId} is already registered`);
      return this.addKey(
        {
          producer: input.id,
          keyId,
          publicKey: spkiDer(input.publicKey).toString("base64"),
          algorithm: keyAlgorithm(input.publicKey),
          streams: input.streams,
          ...(input.heartbeatSeconds !== undefined ? { heartbeatSeconds: input.heartbeatSeconds } : {}),
        },
        new Date().toISOString(),
      );
    });
  }

  revoke(id: string, keyId?: string): Promise<ProducerInfo> {
    return this.change(() => {
      const p = this.producers.find((x) => x.id === id);
      if (!p) throw new StoreError("conflict", `no producer ${id}`);
      const keys = p.keys.filter((k) => keyId === undefined || k.keyId === keyId);
      if (keys.length === 0) throw new StoreError("conflict", `producer ${id} has no key ${keyId}`);
      const now = new Date().toISOString();
      for (const k of keys) k.revokedAt ??= now;
      return p;
    });
  }

  /**
   * Applies the `_system` records from index `systemSize` on (the caller reads them from the store and checks
   * each event's signature against the sink's key), then records the new watermark. Registrations of a key that
   * is already registered and revocations already applied change nothing, so records applied live before a
   * crash are harmless to apply again.
   */
  async reconcile(records: readonly { index: number; event: SignedEvent }[], size: number): Promise<number> {
    let applied = 0;
    const write = records.length > 0 || size !== this.systemSize;
    await this.change(
      () => {
        for (const { event } of records) if (this.applyEvent(event)) applied++;
        this.systemSize = Math.max(this.systemSize, size);
        return undefined;
      },
      write,
      false,
    );
    return applied;
  }

  private applyEvent(event: SignedEvent): boolean {
    const data = event.data as Record<string, unknown> | undefined;
    if (!data || typeof data !== "object" || typeof data.producer !== "string") return false;
    if (event.type === PRODUCER_REGISTERED) {
      if (typeof data.keyId !== "string" || typeof data.publicKey !== "string" || this.byKey.has(data.keyId))
        return false;
      const streams = Array.isArray(data.streams) ? data.streams.filter((s) => typeof s === "string") : [];
      this.addKey(
        {
          producer: data.producer,
          keyId: data.keyId,
          publicKey: data.publicKey,
          algorithm: data.algorithm === "ed25519" ? "ed25519" : "ecdsa-p256",
          streams,
          ...(typeof data.heartbeatSeconds === "number" ? { heartbeatSeconds: data.heartbeatSeconds } : {}),
        },
        event.time ?? new Date().toISOString(),
      );
      this.index();
      return true;
    }
    if (event.type === PRODUCER_REVOKED) {
      const p = this.producers.find((x) => x.id === data.producer);
      const ids = Array.isArray(data.keyIds) ? data.keyIds : [];
      let changed = false;
      for (const k of p?.keys ?? []) {
        if (ids.includes(k.keyId) && k.revokedAt === undefined) {
          k.revokedAt = event.time ?? new Date().toISOString();
          changed = true;
        }
      }
      if (changed) this.index();
      return changed;
    }
    return false;
  }

  private addKey(
    k: {
      producer: string;
      keyId: string;
      publicKey: string;
      algorithm: "ed25519" | "ecdsa-p256";
      streams: string[];
      heartbeatSeconds?: number;
    },
    at: string,
  ): ProducerInfo {
    let p = this.producers.find((x) => x.id === k.producer);
    if (!p) {
      p = { id: k.producer, streams: k.streams, keys: [], createdAt: at };
      this.producers.push(p);
    }
    // A later registration of the same producer sets its streams and heartbeat for all its keys.
    p.streams = k.streams;
    if (k.heartbeatSeconds !== undefined) p.heartbeatSeconds = k.heartbeatSeconds;
    p.keys.push({ keyId: k.keyId, publicKey: k.publicKey, algorithm: k.algorithm, createdAt: at });
    return p;
  }

  /**
   * Applies a change in memory, then writes the file. The change was already recorded in `_system`, so memory
   * keeps it even when the write fails (the request fails, and the next write or reconcile() stores it); a
   * change the registry itself refuses (StoreError "conflict") leaves everything as it was.
   */
  private change<T extends ProducerInfo | undefined>(apply: () => T, write = true, live = true): Promise<T> {
    const run = this.chain.then(async () => {
      const before = structuredClone(this.producers);
      let changed: T;
      try {
        changed = apply();
      } catch (e) {
        this.producers = before;
        this.index();
        throw e;
      }
      this.index();
      if (write) {
        if (live) crashPoint("registry:before-write");
        try {
          await replaceFile(
            this.tmpDir,
            this.path,
            `${JSON.stringify({ producers: this.producers, systemSize: this.systemSize }, null, 2)}\n`,
            0o600,
            this.fs,
          );
        } catch (e) {
          throw storeError(`writing the producer registry ${this.path}`, e);
        }
        if (live) crashPoint("registry:written");
      }
      return changed === undefined ? changed : (structuredClone(changed) as T);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

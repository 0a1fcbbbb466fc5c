/**
 * The producer registry on disk: `<data>/producers.json`, replaced atomically on every change. It stores; core's
 * AuditedProducerAdmin holds the rules and records each change in the system stream (openLocalSink wraps it).
 *
 * The registry and the `_system` stream may never disagree after a crash (docs/EMBEDDED.md §6.3). A change is
 * written here first — the write is the conditional step that picks one winner of concurrent changes — together
 * with a `pending` entry naming it, and the pending entry is cleared once the change's `_system` event is
 * recorded (recorded()). At every start openLocalSink calls reconcile(), which works in both directions from the
 * file's `systemSize` watermark:
 *   - every `_system` record from the watermark on is applied (registrations and revocations alike,
 *     idempotently), which also rebuilds a damaged file from the whole stream;
 *   - a pending change whose event is among those records is done; one whose event is missing is resolved: an
 *     unrecorded registration is undone, an unrecorded revocation is returned for the caller to record
 *     (revocations are in force from the write here on, and never undone).
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
  type ProducerStore,
  publicKeyFromSpki,
  type RegistryChange,
  type SignedEvent,
  StoreError,
  spkiDer,
} from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";
import { type FileSystem, isErrno, nodeFileSystem, replaceFile, storeError } from "./fsutil.ts";

interface File {
  producers: ProducerInfo[];
  /** How many `_system` records this file reflects (every change recorded below this index is applied). */
  systemSize?: number;
  /** Changes written here whose `_system` event is not known to be recorded yet. */
  pending?: RegistryChange[];
}

export class LocalProducerAdmin implements ProducerStore {
  private producers: ProducerInfo[] = [];
  private pending: RegistryChange[] = [];
  private readonly byKey = new Map<string, ProducerKey>();
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
        admin.pending = Array.isArray(file.pending) ? file.pending.filter(isChange) : [];
      } catch (e) {
        // The file is replaced atomically, so this is damage from outside. The registry is derived from the
        // `_system` stream: start from nothing and let reconcile() rebuild it from the whole stream.
        admin.producers = [];
        admin.pending = [];
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

  /** Whether a change here still waits for its `_system` event (reconcile() resolves it at start-up). */
  hasPending(): boolean {
    return this.pending.length > 0;
  }

  private hasKey(keyId: string): boolean {
    return this.producers.some((p) => p.keys.some((k) => k.keyId === keyId));
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

  register(input: {
    id: string;
    publicKey: KeyObject;
    streams: string[];
    heartbeatSeconds?: number;
  }): Promise<ProducerInfo> {
    return this.change(() => {
      const keyId = keyFingerprint(input.publicKey);
      if (this.hasKey(keyId)) throw new StoreError("conflict", `key ${keyId} is already registered`);
      this.pending.push({ kind: "register", producer: input.id, keyIds: [keyId] });
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
      if (revoked.length > 0)
        this.pending.push({ kind: "revoke", producer: id, keyIds: revoked.map((k) => k.keyId) });
      return revoked.map((k) => k.keyId);
    });
  }

  /**
   * Undoes a registration whose event could not be recorded. The key stops authenticating at once, even if the
   * file cannot be written: its pending entry then stays in the file, and the next start undoes it.
   */
  unregister(id: string, keyId: string): Promise<void> {
    return this.change(
      () => {
        this.pending = this.pending.filter((c) => !(c.kind === "register" && c.keyIds.includes(keyId)));
        this.removeKey(id, keyId);
      },
      { keepOnWriteFailure: true },
    );
  }

  /** The change's `_system` event is recorded: its pending entry is cleared (in memory even if the write fails). */
  recorded(change: RegistryChange): Promise<void> {
    return this.change(
      () => {
        this.pending = this.pending.filter((c) => !sameChange(c, change));
      },
      { keepOnWriteFailure: true },
    );
  }

  /**
   * Brings the registry in line with `_system` at start-up. `records` are the `_system` records from index
   * `systemSize` on (the caller reads them from the store and checks each event's signature against the sink's
   * key) and `size` the stream's size. Applies the records — registrations of a key already registered and
   * revocations already applied change nothing, so records applied live before a crash are harmless to apply
   * again — then resolves the pending changes: those whose event is among the records are done, an unrecorded
   * registration is undone, and the unrecorded revocations are returned, still pending, for the caller to record
   * (AuditedProducerAdmin.completeRevocation). Moves the watermark to `size`.
   */
  async reconcile(
    records: readonly { index: number; event: SignedEvent }[],
    size: number,
  ): Promise<{
    applied: number;
    undone: RegistryChange[];
    unrecorded: RegistryChange[];
    writeError?: Error;
  }> {
    const outcome: Awaited<ReturnType<LocalProducerAdmin["reconcile"]>> = {
      applied: 0,
      undone: [],
      unrecorded: [],
    };
    await this.change(
      () => {
        for (const { event } of records) if (this.applyEvent(event)) outcome.applied++;
        const registered = new Set<string>();
        const revoked = new Set<string>();
        for (const { event } of records) {
          const data = event.data as { keyId?: unknown; keyIds?: unknown } | null;
          if (event.type === PRODUCER_REGISTERED && typeof data?.keyId === "string")
            registered.add(data.keyId);
          if (event.type === PRODUCER_REVOKED && Array.isArray(data?.keyIds))
            for (const k of data.keyIds) if (typeof k === "string") revoked.add(k);
        }
        this.pending = this.pending.filter((c) => {
          if (c.keyIds.every((k) => (c.kind === "register" ? registered : revoked).has(k))) return false;
          if (c.kind === "revoke") {
            outcome.unrecorded.push(c);
            return true;
          }
          for (const k of c.keyIds) this.removeKey(c.producer, k);
          outcome.undone.push(c);
          return false;
        });
        this.systemSize = Math.max(this.systemSize, size);
      },
      { write: "if-changed", live: false, keepOnWriteFailure: true },
    ).catch((e: unknown) => {
      // Memory follows the log regardless; the file catches up on the next change or start.
      outcome.writeError = e as Error;
    });
    return outcome;
  }

  /** Removes a key, and its producer when that was its only key. */
  private removeKey(id: string, keyId: string): void {
    const p = this.producers.find((x) => x.id === id);
    if (!p) return;
    p.keys = p.keys.filter((k) => k.keyId !== keyId);
    if (p.keys.length === 0) this.producers = this.producers.filter((x) => x !== p);
  }

  private applyEvent(event: SignedEvent): boolean {
    const data = event.data as Record<string, unknown> | undefined;
    if (!data || typeof data !== "object" || typeof data.producer !== "string") return false;
    if (event.type === PRODUCER_REGISTERED) {
      if (typeof data.keyId !== "string" || typeof data.publicKey !== "string" || this.hasKey(data.keyId))
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
   * Applies a change in memory, writes the file, then makes the change visible to key(). A change the registry
   * refuses (StoreError "conflict") leaves everything as it was. When the write fails, register and revokeKeys
   * are rolled back (nothing happened: the call fails and nothing is recorded); changes that must hold in this
   * process whatever the disk does — an undo, a cleared pending entry, reconcile() following the log — are kept
   * in memory, and the file catches up on the next write or start.
   */
  private change<T>(
    apply: () => T,
    opts: { write?: boolean | "if-changed"; live?: boolean; keepOnWriteFailure?: boolean } = {},
  ): Promise<T> {
    const { write = true, live = true, keepOnWriteFailure = false } = opts;
    const run = this.chain.then(async () => {
      const before = {
        producers: structuredClone(this.producers),
        pending: structuredClone(this.pending),
        systemSize: this.systemSize,
      };
      const rollback = () => {
        this.producers = before.producers;
        this.pending = before.pending;
        this.systemSize = before.systemSize;
      };
      const fileText = () =>
        `${JSON.stringify({ producers: this.producers, systemSize: this.systemSize, pending: this.pending }, null, 2)}\n`;
      const unchanged = write === "if-changed" ? fileText() : undefined;
      let changed: T;
      try {
        changed = apply();
      } catch (e) {
        rollback();
        throw e;
      }
      const text = fileText();
      if (write === true || (write === "if-changed" && text !== unchanged)) {
        if (live) crashPoint("registry:before-write");
        try {
          await replaceFile(this.tmpDir, this.path, text, 0o600, this.fs);
        } catch (e) {
          if (!keepOnWriteFailure) rollback();
          this.index();
          throw storeError(`writing the producer registry ${this.path}`, e);
        }
        if (live) crashPoint("registry:written");
      }
      this.index();
      return structuredClone(changed);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

function isChange(c: unknown): c is RegistryChange {
  const x = c as Partial<RegistryChange> | null;
  return (
    typeof x === "object" &&
    x !== null &&
    (x.kind === "register" || x.kind === "revoke") &&
    typeof x.producer === "string" &&
    Array.isArray(x.keyIds) &&
    x.keyIds.every((k) => typeof k === "string")
  );
}

function sameChange(a: RegistryChange, b: RegistryChange): boolean {
  return (
    a.kind === b.kind &&
    a.producer === b.producer &&
    a.keyIds.length === b.keyIds.length &&
    a.keyIds.every((k, i) => k === b.keyIds[i])
  );
}

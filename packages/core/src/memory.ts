/**
 * In-memory implementations of every port: for tests, the benchmark and embedding the core in a test harness.
 * They keep the same contracts as the durable adapters (create-only, forward-only compare-and-set).
 */
import type { KeyObject } from "node:crypto";
import { signBytes } from "./keys.ts";
import { makeNoteKey, type NoteKey } from "./note.ts";
import type {
  Alert,
  AlertSink,
  DedupEntry,
  DedupStore,
  Head,
  HeadStore,
  ObjectStore,
  ProducerKey,
  ProducerRegistry,
  Signer,
} from "./ports.ts";

export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, Uint8Array>();

  async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    if (this.objects.has(key)) return false;
    this.objects.set(key, Uint8Array.from(bytes));
    return true;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    return this.objects.get(key);
  }

  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix) && (options.startAfter === undefined || k > options.startAfter))
      .sort();
    return options.limit === undefined ? keys : keys.slice(0, options.limit);
  }
}

export class MemoryHeadStore implements HeadStore {
  readonly heads = new Map<string, Head>();

  async get(stream: string): Promise<Head | undefined> {
    const h = this.heads.get(stream);
    return h && structuredClone(h);
  }

  async advance(stream: string, expectedSize: number, next: Head): Promise<boolean> {
    const current = this.heads.get(stream)?.size ?? 0;
    if (current !== expectedSize || next.size <= current) return false;
    this.heads.set(stream, structuredClone(next));
    return true;
  }

  async streams(): Promise<string[]> {
    return [...this.heads.keys()].sort();
  }
}

export class MemoryDedupStore implements DedupStore {
  readonly entries = new Map<string, DedupEntry>();

  async getMany(keys: readonly string[]): Promise<Map<string, DedupEntry>> {
    const out = new Map<string, DedupEntry>();
    for (const k of keys) {
      const e = this.entries.get(k);
      if (e) out.set(k, e);
    }
    return out;
  }

  async putMany(entries: readonly DedupEntry[]): Promise<void> {
    for (const e of entries) if (!this.entries.has(e.key)) this.entries.set(e.key, e);
  }
}

export class MemoryProducerRegistry implements ProducerRegistry {
  readonly keys = new Map<string, ProducerKey>();

  async key(keyId: string): Promise<ProducerKey | undefined> {
    return this.keys.get(keyId);
  }

  add(key: ProducerKey): void {
    this.keys.set(key.keyId, key);
  }
}

/** A Signer over a private key held in memory (the local key file adapter loads one of these). */
export class KeyObjectSigner implements Signer {
  readonly key: NoteKey;

  constructor(
    name: string,
    private readonly privateKey: KeyObject,
    publicKey: KeyObject,
  ) {
    this.key = makeNoteKey(name, publicKey);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return signBytes(this.privateKey, message);
  }
}

export class MemoryAlertSink implements AlertSink {
  readonly alerts: Alert[] = [];
  async send(alerts: readonly Alert[]): Promise<void> {
    this.alerts.push(...alerts);
  }
}

/**
 * The ports the core needs from the outside world. Adapters (packages/local, packages/aws, memory.ts) implement
 * them and translate their own errors into StoreError with `cause`; nothing above an adapter sees EEXIST or
 * ConditionalCheckFailedException. One contract suite (test/contract) runs against every implementation.
 */
import type { KeyObject } from "node:crypto";
import type { NoteKey } from "./note.ts";
import type { SealedRecord } from "./record.ts";

/** Write-once object storage: the commit point of the sink (local files, S3 with Object Lock). */
export interface ObjectStore {
  /**
   * Creates `key` holding `bytes` if and only if no object exists at `key`.
   * Resolves true once the object is durable. Resolves false, changing nothing, when the key already exists.
   * Throws StoreError otherwise; the object may or may not exist then, and retrying is safe.
   */
  putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean>;
  /**
   * Optional: does ahead of time the part of putIfAbsent that does not depend on the key (the embedded store
   * writes and fsyncs the temp file), so that a create which must wait for an earlier one (a checkpoint for its
   * segment) costs only the name once that one is done. Stores without it are used through putIfAbsent.
   */
  stage?(bytes: Uint8Array): Promise<StagedObject>;
  /** The object's bytes, or undefined when there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Keys under `prefix` in ascending byte order, strictly after `startAfter`, at most `limit` of them. */
  list(prefix: string, options?: { startAfter?: string; limit?: number }): Promise<string[]>;
}

/** Bytes staged by ObjectStore.stage, waiting for their key. */
export interface StagedObject {
  /** Creates `key` holding the staged bytes, exactly as ObjectStore.putIfAbsent would; releases them either way. */
  putIfAbsent(key: string): Promise<boolean>;
  /** Releases the staged bytes unused. */
  discard(): Promise<void>;
}

/** The head of a stream: a cache of what the store holds, repairable from it. */
export interface Head {
  size: number;
  /** Hex record hash of record size−1 (64 zeros when size is 0). */
  headHash: string;
  /** Hex frontier hashes, leftmost first (see Frontier). */
  frontier: string[];
  /** The newest signed checkpoint text the writer produced, if any. */
  checkpoint?: string;
}

export interface HeadStore {
  /** The stored head, or undefined when there is none (or, for a store that may lose it, none that is readable). */
  get(stream: string): Promise<Head | undefined>;
  /**
   * Replaces the head of `stream` with `next` only if its current size is `expectedSize` (0 when there is no
   * head) and `next.size` is larger: heads only move forward. Resolves true once `get` returns `next`, false on
   * conflict (nothing changed). Throws StoreError otherwise. A head need not be durable: writers never trust it
   * and repair one that a crash left behind, missing or unreadable from the object store (catchUp in sink.ts),
   * so the embedded store skips the fsync (docs/EMBEDDED.md §6.1) while DynamoDB's writes are durable anyway.
   */
  advance(stream: string, expectedSize: number, next: Head): Promise<boolean>;
  /** Every stream that has a head, ascending. */
  streams(): Promise<string[]>;
}

/** Where an accepted event lives, by its producer, `source` and `id`. */
export interface DedupEntry {
  /** dedupKey(producer, event). Stores keep it as given (the embedded file drops keys of another shape at open). */
  key: string;
  stream: string;
  index: number;
  /** Hex record hash. */
  recordHash: string;
  /** Hex SHA-256 of the event's RFC 8785 bytes: a reused id with other content is a conflict, not a replay. */
  eventHash: string;
}

export interface DedupStore {
  /** The entries that exist for the given keys. */
  getMany(keys: readonly string[]): Promise<Map<string, DedupEntry>>;
  /**
   * Records entries; an entry that already exists is left as it is (first writer wins). Durable on resolve.
   * Writers call this before they advance a head, so every record below a head has its entry.
   * `segment` is the stored segment the entries were made from (`entries[i]` is the entry of
   * `segment.records[i]`): a store that also indexes events (the embedded index) takes their facets from it, in
   * the same write; other stores need only the entries.
   */
  putMany(entries: readonly DedupEntry[], segment: CommittedSegment): Promise<void>;
}

/** A segment as the store holds it: records `first` … `first + records.length − 1` of `stream`. */
export interface CommittedSegment {
  stream: string;
  first: number;
  records: readonly SealedRecord[];
}

/**
 * Told of every segment a writer creates or catches up on, once the segment is durable and before the head moves
 * past it (beside DedupStore.putMany), so an index kept outside the store can name every committed record. Must be
 * idempotent: after a crash between the segment and this call, the next writer's catch-up passes the same segment
 * again. A rejection fails the commit like a store error (nothing is acknowledged; the retry repairs it).
 */
export interface SegmentIndexer {
  indexSegment(stream: string, first: number, records: readonly SealedRecord[]): Promise<void>;
}

export interface ProducerKey {
  /** keyFingerprint of the key: the event's `sigkeyid`. */
  keyId: string;
  publicKey: KeyObject;
  producer: string;
  /** Stream names or patterns ending in '*' (prefix match) the producer may write. */
  streams: string[];
  revoked: boolean;
}

export interface ProducerRegistry {
  /** The registered key with this id, revoked or not, or undefined. */
  key(keyId: string): Promise<ProducerKey | undefined>;
}

/** A producer as an operator sees it. Public keys are base64 DER SPKI. */
export interface ProducerInfo {
  id: string;
  streams: string[];
  /** Alert when the producer sends nothing for longer than this (seconds); absent = no expectation. */
  heartbeatSeconds?: number;
  keys: {
    keyId: string;
    publicKey: string;
    algorithm: "ed25519" | "ecdsa-p256";
    createdAt: string;
    revokedAt?: string;
  }[];
  createdAt: string;
}

/**
 * Registration and revocation (embedded: files in the data directory; AWS: DynamoDB). Callers also record each
 * change as an event in the system stream, so the registry's history is itself in the audit log.
 */
export interface ProducerAdmin extends ProducerRegistry {
  /** Registers a producer, or adds a key to an existing one. Throws StoreError("conflict") if the key is taken. */
  register(input: {
    id: string;
    publicKey: KeyObject;
    streams: string[];
    heartbeatSeconds?: number;
  }): Promise<ProducerInfo>;
  /** Revokes one key, or every key of the producer when keyId is omitted. Throws StoreError("conflict") if unknown. */
  revoke(id: string, keyId?: string): Promise<ProducerInfo>;
  list(): Promise<ProducerInfo[]>;
}

/**
 * The storage primitives of a producer registry (embedded: a file; AWS: DynamoDB). The rules — what may be
 * registered, and that every change is recorded once in the system stream — live in core's
 * AuditedProducerAdmin, which is the ProducerAdmin the HTTP app and the CLI use.
 */
export interface ProducerStore extends ProducerAdmin {
  /**
   * Deletes a key that register() added, and the producer too when that was its only key: the undo of a
   * registration whose event could not be recorded. Resolves once durable; a key already gone is not an error.
   */
  unregister(id: string, keyId: string): Promise<void>;
  /**
   * Marks as revoked, at `at`, each of the producer's keys (or only `keyId`) that is not revoked yet, each with
   * a conditional write, and resolves with the ids this call revoked: of concurrent calls revoking one key,
   * exactly one gets its id. Throws StoreError("conflict") for an unknown producer or key.
   */
  revokeKeys(id: string, keyId: string | undefined, at: string): Promise<string[]>;
  /**
   * Optional: the system event of a change this store made (register, revokeKeys) is now recorded. A store that
   * keeps each change's intent durable with the change until then (the embedded registry: `pending` in
   * producers.json, resolved from the log at the next start after a crash) clears it here.
   */
  recorded?(change: RegistryChange): Promise<void>;
}

/** A change a ProducerStore made, as its system event records it. */
export interface RegistryChange {
  kind: "register" | "revoke";
  producer: string;
  keyIds: string[];
}

/** The sink's checkpoint signing key (local key file, KMS). */
export interface Signer {
  readonly key: NoteKey;
  /** Signs the message as its note signature type requires (Ed25519, or ECDSA P-256 DER over SHA-256). */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export interface Alert {
  /** A verification failure code (docs/FORMAT.md §Failure codes) or an operational code such as `producer-silent`. */
  code: string;
  stream?: string;
  /** Record index, size or object key the alert is about. */
  at?: string | number;
  message: string;
  time: string;
}

export interface AlertSink {
  /** Delivers alerts; resolves when they are handed off durably (or throws StoreError). */
  send(alerts: readonly Alert[]): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/**
 * Opens a data directory for writing: takes the lock, creates the layout and the signing key on first use,
 * builds the core Sink over the local adapters and repairs every stream head from the store (a crash may have
 * left segments or a checkpoint the head does not know yet). `startEmbeddedSink` and the CLI's
 * `producer create --data <dir>` both start here.
 *
 * Layout of `<data>`:
 *   sink.json            deployment name (fixed at first start: it is the checkpoint key name)
 *   admin-token          bearer token for the producer admin routes (0600)
 *   keys/                checkpoint-key.pem (0600), checkpoint-key.pub.pem, verifier-key.txt
 *   objects/streams/…    the write-once store (read-only files); objects/keys/<key id>.json its public key
 *   heads/<stream>.json  head store
 *   index.db             the index: dedup entries, query facets, last-seen per producer (SQLite; -wal, -shm beside it)
 *   producers.json       producer registry
 *   alerts.jsonl         alerts of the scheduled verifier
 *   verifier-state.json  where the incremental verifier resumes
 *   findings.json        verification findings standing until acknowledged (FindingsLedger)
 *   alert-outbox.json    webhook deliveries not yet acknowledged by the webhook
 *   tmp/                 objects being written
 *   lock, lock.json      the flock(2) lock while a process has the directory open, and who holds it
 *
 * Start-up recovery (docs/EMBEDDED.md §6): first-start files are created atomically; every stream head is
 * repaired from the store; the index is brought level with the store (repairIndex: the segments past what it has
 * indexed; rebuilt when it is damaged or not this store's); the producer registry is reconciled with `_system` in both
 * directions (reconcileRegistry). Errors that need a person name the file and the repair.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rm, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  type AlertSink,
  AuditedProducerAdmin,
  type EventIndex,
  type KeyAlgorithm,
  keyFingerprint,
  parseStoreKey,
  publicKeyDocument,
  publicKeyDocumentKey,
  readSegment,
  type SignedEvent,
  Sink,
  type SinkObserver,
  StoreError,
  SYSTEM_STREAM,
  segmentPrefix,
  verifyEventSignature,
} from "@auditsink/core";
import { lockDataDirectory } from "./DataDirectoryLock.ts";
import { LocalError } from "./errors.ts";
import { createFileOnce, type FileSystem, isErrno, mkdirDurable, nodeFileSystem } from "./fsutil.ts";
import { IndexedEvents } from "./IndexedEvents.ts";
import { LocalHeadStore } from "./LocalHeadStore.ts";
import { LocalIndex } from "./LocalIndex.ts";
import { LocalObjectStore, storedStreams } from "./LocalObjectStore.ts";
import { LocalProducerAdmin } from "./LocalProducerAdmin.ts";
import { type LocalSigningKey, loadOrCreateSigningKey } from "./LocalSigner.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { fanOutObjects } from "./objectLayout.ts";
import { repairIndex } from "./repairIndex.ts";
import { StorageHealth } from "./StorageHealth.ts";

export const DEFAULT_DEPLOYMENT = "auditsink.local/embedded";

export interface LocalSinkOptions {
  /** The data directory; created when missing. */
  dataDir: string;
  /**
   * The deployment name (checkpoint origin prefix and key name), fixed at first start. Defaults to the stored
   * name, or `auditsink.local/embedded` for a new directory. A different name for an existing directory is refused.
   */
  deployment?: string;
  /**
   * The checkpoint key's algorithm when the directory's key is first created (default ECDSA P-256; Ed25519 is the
   * one Go's sumdb/note and most witnesses accept). An existing key is never replaced: naming another algorithm
   * for it is refused (LocalError `config-mismatch`).
   */
  checkpointKey?: KeyAlgorithm;
  /** What the process opening the directory is (shown to a second process that is refused). */
  purpose?: string;
  /** Most records per segment (core default 10,000). */
  maxSegmentRecords?: number;
  /**
   * Store each stream's full tlog-tiles tiles and entry bundles as records are committed (default true; core
   * SinkOptions.tiles, docs/EMBEDDED.md). `auditsink start --tiles off` / AUDITSINK_TILES=off turns it off.
   */
  tiles?: boolean;
  /** The file-system calls that write (tests inject faults here); default node:fs. */
  fs?: FileSystem;
  /** Start-up log lines (recovery steps taken); default none. */
  log?: Logger;
  /** Told of commits and signatures (the embedded sink's metrics). */
  observer?: SinkObserver;
  /** Where the sink reports a stored head it refused (`head-mismatch`) or a store it will not sign over. */
  alerts?: AlertSink;
}

export interface LocalSink {
  dataDir: string;
  deployment: string;
  sink: Sink;
  /** The producer registry, recording each change in the `_system` stream. */
  producers: AuditedProducerAdmin;
  /** The registry file itself (publicKeys() for verification). */
  registry: LocalProducerAdmin;
  objects: LocalObjectStore;
  heads: LocalHeadStore;
  /** Dedup entries, query facets and last-seen times (the sink's DedupStore). */
  index: LocalIndex;
  /** `GET /v1/events` over the index. */
  events: EventIndex;
  signingKey: LocalSigningKey;
  /** Bearer token for `POST /v1/producers` and revocation. */
  adminToken: string;
  /** Whether writes to the data directory succeed (fed by every write of the adapters). */
  storage: StorageHealth;
  /** The write port every adapter uses (monitored by `storage`). */
  fs: FileSystem;
  /** Flushes, closes files and releases the lock. */
  close(): Promise<void>;
}

export const dataPaths = (dataDir: string) => ({
  config: join(dataDir, "sink.json"),
  adminToken: join(dataDir, "admin-token"),
  objects: join(dataDir, "objects"),
  heads: join(dataDir, "heads"),
  index: join(dataDir, "index.db"),
  /** Dedup entries of versions before index.db; read by nothing now (docs/EMBEDDED.md §Upgrading). */
  legacyDedup: join(dataDir, "dedup.jsonl"),
  producers: join(dataDir, "producers.json"),
  alerts: join(dataDir, "alerts.jsonl"),
  verifierState: join(dataDir, "verifier-state.json"),
  findings: join(dataDir, "findings.json"),
  alertOutbox: join(dataDir, "alert-outbox.json"),
  tmp: join(dataDir, "tmp"),
});

/**
 * @example
 *   const local = await openLocalSink({ dataDir: "/var/lib/auditsink" });
 *   await local.producers.register({ id: "agent-a", publicKey, streams: ["agents.*"] });
 *   await local.close();
 */
export async function openLocalSink(options: LocalSinkOptions): Promise<LocalSink> {
  const dataDir = resolve(options.dataDir);
  const paths = dataPaths(dataDir);
  await mkdirDurable(dataDir);
  const lock = await lockDataDirectory(dataDir, options.purpose ?? "auditsink");
  const log = options.log ?? silentLogger;
  const storage = new StorageHealth((status) =>
    status.writable
      ? log.info({ ...status }, "storage writable again")
      : log.error({ ...status }, "storage degraded: writes fail"),
  );
  const fs = storage.monitor(options.fs ?? nodeFileSystem);
  let index: LocalIndex | undefined;
  try {
    // Left by a crash in the middle of a write; never referenced by anything (objects are linked, not renamed).
    await rm(paths.tmp, { recursive: true, force: true });
    for (const d of [paths.tmp, paths.objects, paths.heads]) await mkdirDurable(d);
    const deployment = await deploymentName(paths.config, paths.tmp, options.deployment, fs);
    const signingKey = await loadOrCreateSigningKey(
      dataDir,
      deployment,
      paths.tmp,
      fs,
      options.checkpointKey,
    );
    const adminToken = await loadOrCreateToken(paths.adminToken, paths.tmp, fs, log);
    const moved = await fanOutObjects(paths.objects);
    if (moved > 0)
      log.info({ dir: paths.objects, moved }, "objects moved to the fanned layout (docs/EMBEDDED.md §2)");
    const objects = new LocalObjectStore(paths.objects, paths.tmp, fs);
    const heads = new LocalHeadStore(paths.heads, paths.tmp, fs);
    const opened = await LocalIndex.open(
      paths.index,
      { failed: (e) => storage.failed(e, "index"), succeeded: () => storage.succeeded("index") },
      (from, to) =>
        log.info(
          { file: paths.index, from, to },
          "index.db: migrating to a newer schema (docs/EMBEDDED.md §4)",
        ),
    );
    index = opened.index;
    const ready = index;
    if (opened.moved) {
      log.warn(
        { file: paths.index, movedTo: opened.moved.to, reason: opened.moved.reason },
        "index.db could not be opened: moved aside, rebuilding it from the store",
      );
    }
    const registry = await LocalProducerAdmin.open(paths.producers, paths.tmp, fs);
    if (registry.damaged) log.warn({ file: paths.producers }, registry.damaged);
    // The public key goes into the write-once store too, so the archive alone verifies its old checkpoints.
    const keyDoc = publicKeyDocument(signingKey.signer.key);
    const keyDocKey = publicKeyDocumentKey(signingKey.signer.key);
    if (!(await objects.get(keyDocKey))) {
      await objects.putIfAbsent(keyDocKey, Buffer.from(`${JSON.stringify(keyDoc, null, 2)}\n`));
    }
    const sink = new Sink({
      deployment,
      objects,
      heads,
      dedup: index,
      producers: registry,
      signer: signingKey.signer,
      ...(options.maxSegmentRecords ? { maxSegmentRecords: options.maxSegmentRecords } : {}),
      ...(options.tiles === false ? { tiles: false } : {}),
      ...(options.alerts ? { alerts: options.alerts } : {}),
      ...(options.observer ? { observer: options.observer } : {}),
    });
    // Crash repair: committing nothing to a stream makes its writer fold stored segments past the head into it
    // and sign the checkpoint a crash may have left unsigned (reading only the segments past the head).
    const stored = await storedStreams(paths.objects);
    for (const stream of stored) {
      await sink.commit(stream, []).catch((e: unknown) => {
        // A full or failing disk: start anyway (reads are served, /healthz says degraded); the stream's writer
        // repairs its head at its next commit.
        if (!(e instanceof StoreError)) throw e;
        log.error({ stream, error: e.message }, "could not repair the stream's head yet");
      });
    }
    const building = opened.created && stored.length > 0;
    if (building)
      log.info({ file: paths.index, streams: stored.length }, "index.db: building the index from the store");
    const repaired = await repairIndex(ready, objects, stored, log).catch((e: unknown) => {
      // As above; and every dedup look-up first finishes the repair (and fails until it can), so no event is
      // ever checked against an index that lacks the store's tail.
      if (!(e instanceof StoreError)) throw e;
      log.error({ file: paths.index, error: e.message }, "index.db: could not index the store's tail yet");
      ready.deferRepair(() => repairIndex(ready, objects, stored, log));
      return { indexed: 0 };
    });
    if (building || repaired.indexed > 0) {
      log.info(
        { file: paths.index, indexed: repaired.indexed },
        "index.db: indexed stored records it lacked",
      );
    }
    if (building && existsSync(paths.legacyDedup)) {
      log.info(
        { file: paths.legacyDedup },
        "dedup.jsonl is no longer used (index.db holds the dedup entries): it may be deleted",
      );
    }
    const producers = new AuditedProducerAdmin(registry, sink);
    await reconcileRegistry(objects, heads, registry, producers, signingKey, log);
    await storage.probe(paths.tmp, options.fs ?? nodeFileSystem, true);
    const local: LocalSink = {
      dataDir,
      deployment,
      sink,
      producers,
      registry,
      objects,
      heads,
      index: ready,
      events: new IndexedEvents(() => ready.database, objects),
      signingKey,
      adminToken,
      storage,
      fs,
      close: async () => {
        // Writers stop reading back tiles between commits (the next start goes on where they stopped).
        await sink.close();
        await ready.close();
        await lock.release();
      },
    };
    return local;
  } catch (e) {
    await index?.close().catch(() => undefined);
    await lock.release().catch(() => undefined);
    throw e;
  }
}

/** Stored segments of `stream` from the one holding record `from` onward, in order. */
async function* segmentsFrom(objects: LocalObjectStore, stream: string, from: number) {
  const keys = await objects.list(segmentPrefix(stream));
  let first = 0;
  for (const [i, key] of keys.entries()) {
    const parsed = parseStoreKey(key);
    if (parsed?.kind === "segments" && parsed.n <= from) first = i;
  }
  for (const key of keys.slice(first)) {
    const bytes = await objects.get(key);
    if (bytes) yield readSegment(bytes);
  }
}

/**
 * The `_system` records with index in [from, size) whose event the sink's own key signed (others are logged and
 * skipped: only the sink writes that stream). Reads only the segments holding them.
 */
export async function systemRecords(
  objects: LocalObjectStore,
  signingKey: LocalSigningKey,
  from: number,
  size: number,
  log: Logger = silentLogger,
): Promise<{ index: number; event: SignedEvent }[]> {
  const keyId = keyFingerprint(signingKey.signer.key.publicKey);
  const records: { index: number; event: SignedEvent }[] = [];
  if (from >= size) return records;
  for await (const segment of segmentsFrom(objects, SYSTEM_STREAM, from)) {
    for (const r of segment) {
      if (r.record.index < from || r.record.index >= size) continue;
      const event = r.record.event;
      if (event.sigkeyid !== keyId || !verifyEventSignature(event, signingKey.signer.key.publicKey)) {
        log.warn({ index: r.record.index }, "_system record not signed by the sink's key: ignored");
        continue;
      }
      records.push({ index: r.record.index, event });
    }
  }
  return records;
}

/**
 * Brings producers.json in line with `_system` (LocalProducerAdmin.reconcile): applies the records the file does
 * not reflect yet, undoes a registration whose event a crash kept out of the log, and records a revocation whose
 * event a crash kept out of the log. Only records whose event the sink's own key signed count.
 */
async function reconcileRegistry(
  objects: LocalObjectStore,
  heads: LocalHeadStore,
  registry: LocalProducerAdmin,
  producers: AuditedProducerAdmin,
  signingKey: LocalSigningKey,
  log: Logger,
): Promise<void> {
  const size = (await heads.get(SYSTEM_STREAM))?.size ?? 0;
  if (size === registry.systemSize && !registry.hasPending()) return;
  const records = await systemRecords(
    objects,
    signingKey,
    size < registry.systemSize ? 0 : registry.systemSize,
    size,
    log,
  );
  const outcome = await registry.reconcile(records, size);
  if (outcome.writeError) {
    // The registry in memory follows the log; the file catches up on the next change or start.
    log.error({ file: registry.path, error: outcome.writeError.message }, "producer registry not written");
  }
  if (outcome.applied > 0) {
    log.warn(
      { applied: outcome.applied },
      "producer registry: applied _system records it did not reflect (a change was interrupted)",
    );
  }
  for (const change of outcome.undone) {
    log.warn(
      { ...change },
      "producer registry: undid a registration _system does not record (interrupted before it was recorded)",
    );
  }
  for (const change of outcome.unrecorded) {
    // The revocation is in force since producers.json held it; now the log says so too. If that fails (a full
    // disk), it stays pending and in force, and the next start records it.
    try {
      await producers.completeRevocation(change);
    } catch (e) {
      log.error(
        { ...change, error: (e as Error).message },
        "producer registry: could not record a revocation _system lacks; it stays in force and pending",
      );
      continue;
    }
    log.warn(
      { ...change },
      "producer registry: recorded a revocation _system lacked (interrupted before it was recorded)",
    );
  }
}

async function deploymentName(
  path: string,
  tmp: string,
  wanted: string | undefined,
  fs: FileSystem,
): Promise<string> {
  let stored: string | undefined;
  try {
    const text = await readFile(path, "utf8");
    try {
      stored = (JSON.parse(text) as { deployment: string }).deployment;
      if (typeof stored !== "string") throw new Error("no deployment name");
    } catch (e) {
      throw new LocalError(
        "data-dir-invalid",
        `${path} is not valid (${(e as Error).message}). It names the deployment the checkpoints are signed under: ` +
          `restore it, or write {"deployment":"<name>"} with the name shown in keys/verifier-key.txt.`,
        { cause: e },
      );
    }
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw e;
  }
  if (stored === undefined) {
    const deployment = wanted ?? DEFAULT_DEPLOYMENT;
    const created = await createFileOnce(
      tmp,
      path,
      `${JSON.stringify({ deployment, createdAt: new Date().toISOString() }, null, 2)}\n`,
      0o644,
      fs,
      "sink-json",
    );
    stored = (JSON.parse(created.text) as { deployment: string }).deployment;
  }
  if (wanted !== undefined && wanted !== stored) {
    throw new LocalError(
      "config-mismatch",
      `the data directory belongs to deployment ${stored}, not ${wanted}: its checkpoints are signed under that name`,
    );
  }
  return stored;
}

async function loadOrCreateToken(path: string, tmp: string, fs: FileSystem, log: Logger): Promise<string> {
  try {
    if ((await stat(path)).size > 0) {
      const token = (await readFile(path, "utf8")).trim();
      if (token.length >= 16) return token;
    }
    // Empty or cut short: left by an older version killed while writing it. Nobody can hold a token that was
    // never stored, so a new one replaces it.
    await unlink(path);
    log.warn({ file: path }, "admin-token was empty or incomplete: a new token was made");
  } catch (e) {
    if (!isErrno(e, "ENOENT")) {
      throw new LocalError(
        "data-dir-invalid",
        `cannot read the admin token ${path} (${(e as Error).message}); delete it to have a new one made`,
        { cause: e },
      );
    }
  }
  const token = randomBytes(32).toString("base64url");
  return (await createFileOnce(tmp, path, `${token}\n`, 0o600, fs, "admin-token")).text.trim();
}

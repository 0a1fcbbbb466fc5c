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
 *   dedup.jsonl          dedup entries
 *   producers.json       producer registry
 *   alerts.jsonl         alerts of the scheduled verifier
 *   verifier-state.json  where the incremental verifier resumes
 *   tmp/                 objects being written
 *   lock.json            the owner's pid while a process has the directory open
 */
import { randomBytes } from "node:crypto";
import { open, readdir, readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  type AlertSink,
  AuditedProducerAdmin,
  publicKeyDocument,
  publicKeyDocumentKey,
  ScanningEventIndex,
  Sink,
} from "@auditsink/core";
import { lockDataDirectory } from "./DataDirectoryLock.ts";
import { LocalError } from "./errors.ts";
import { isErrno, mkdirDurable, replaceFile } from "./fsutil.ts";
import { LocalDedupStore } from "./LocalDedupStore.ts";
import { LocalHeadStore } from "./LocalHeadStore.ts";
import { LocalObjectStore } from "./LocalObjectStore.ts";
import { LocalProducerAdmin } from "./LocalProducerAdmin.ts";
import { type LocalSigningKey, loadOrCreateSigningKey } from "./LocalSigner.ts";

export const DEFAULT_DEPLOYMENT = "auditsink.local/embedded";

export interface LocalSinkOptions {
  /** The data directory; created when missing. */
  dataDir: string;
  /**
   * The deployment name (checkpoint origin prefix and key name), fixed at first start. Defaults to the stored
   * name, or `auditsink.local/embedded` for a new directory. A different name for an existing directory is refused.
   */
  deployment?: string;
  /** What the process opening the directory is (shown to a second process that is refused). */
  purpose?: string;
  /** Most records per segment (core default 10,000). */
  maxSegmentRecords?: number;
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
  dedup: LocalDedupStore;
  events: ScanningEventIndex;
  signingKey: LocalSigningKey;
  /** Bearer token for `POST /v1/producers` and revocation. */
  adminToken: string;
  /** Flushes, closes files and releases the lock. */
  close(): Promise<void>;
}

export const dataPaths = (dataDir: string) => ({
  config: join(dataDir, "sink.json"),
  adminToken: join(dataDir, "admin-token"),
  objects: join(dataDir, "objects"),
  heads: join(dataDir, "heads"),
  dedup: join(dataDir, "dedup.jsonl"),
  producers: join(dataDir, "producers.json"),
  alerts: join(dataDir, "alerts.jsonl"),
  verifierState: join(dataDir, "verifier-state.json"),
  tmp: join(dataDir, "tmp"),
});

/**
 * @example
 *   const local = await openLocalSink({ dataDir: "./auditsink-data" });
 *   await local.producers.register({ id: "agent-a", publicKey, streams: ["agents.*"] });
 *   await local.close();
 */
export async function openLocalSink(options: LocalSinkOptions): Promise<LocalSink> {
  const dataDir = resolve(options.dataDir);
  const paths = dataPaths(dataDir);
  await mkdirDurable(dataDir);
  const lock = await lockDataDirectory(dataDir, options.purpose ?? "auditsink");
  try {
    // Left by a crash in the middle of a write; never referenced by anything (objects are linked, not renamed).
    await rm(paths.tmp, { recursive: true, force: true });
    for (const d of [paths.tmp, paths.objects, paths.heads]) await mkdirDurable(d);
    const deployment = await deploymentName(paths.config, paths.tmp, options.deployment);
    const signingKey = await loadOrCreateSigningKey(dataDir, deployment, paths.tmp);
    const adminToken = await loadOrCreateToken(paths.adminToken);
    const objects = new LocalObjectStore(paths.objects, paths.tmp);
    const heads = new LocalHeadStore(paths.heads, paths.tmp);
    const dedup = await LocalDedupStore.open(paths.dedup);
    const registry = await LocalProducerAdmin.open(paths.producers, paths.tmp);
    // The public key goes into the write-once store too, so the archive alone verifies its old checkpoints.
    const keyDoc = publicKeyDocument(signingKey.signer.key);
    await objects.putIfAbsent(
      publicKeyDocumentKey(signingKey.signer.key),
      Buffer.from(`${JSON.stringify(keyDoc, null, 2)}\n`),
    );
    const sink = new Sink({
      deployment,
      objects,
      heads,
      dedup,
      producers: registry,
      signer: signingKey.signer,
      ...(options.maxSegmentRecords ? { maxSegmentRecords: options.maxSegmentRecords } : {}),
      ...(options.alerts ? { alerts: options.alerts } : {}),
    });
    const streams = async () =>
      [...new Set([...(await storedStreams(paths.objects)), ...(await heads.streams())])].sort();
    // Crash repair: committing nothing to a stream makes its writer fold stored segments past the head into it
    // and sign the checkpoint a crash may have left unsigned.
    for (const stream of await storedStreams(paths.objects)) await sink.commit(stream, []);
    const local: LocalSink = {
      dataDir,
      deployment,
      sink,
      producers: new AuditedProducerAdmin(registry, sink),
      registry,
      objects,
      heads,
      dedup,
      events: new ScanningEventIndex(objects, streams),
      signingKey,
      adminToken,
      close: async () => {
        await dedup.close();
        await lock.release();
      },
    };
    return local;
  } catch (e) {
    await lock.release().catch(() => undefined);
    throw e;
  }
}

/** Stream names that have objects: the directories under objects/streams. */
export async function storedStreams(objectsDir: string): Promise<string[]> {
  try {
    return (await readdir(join(objectsDir, "streams"), { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch (e) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
}

async function deploymentName(path: string, tmp: string, wanted: string | undefined): Promise<string> {
  try {
    const stored = (JSON.parse(await readFile(path, "utf8")) as { deployment: string }).deployment;
    if (wanted !== undefined && wanted !== stored) {
      throw new LocalError(
        "config-mismatch",
        `the data directory belongs to deployment ${stored}, not ${wanted}: its checkpoints are signed under that name`,
      );
    }
    return stored;
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw e;
  }
  const deployment = wanted ?? DEFAULT_DEPLOYMENT;
  await replaceFile(
    tmp,
    path,
    `${JSON.stringify({ deployment, createdAt: new Date().toISOString() }, null, 2)}\n`,
    0o644,
  );
  return deployment;
}

async function loadOrCreateToken(path: string): Promise<string> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw e;
  }
  const token = randomBytes(32).toString("base64url");
  const fh = await open(path, "wx", 0o600);
  try {
    await fh.writeFile(`${token}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return token;
}

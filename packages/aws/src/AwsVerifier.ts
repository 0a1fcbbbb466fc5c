/**
 * The scheduled verifier's run on AWS. Stream verification itself is core's (`verifyStoredStream`, pure checks
 * over what it fetched); around it, this adds what only the AWS archive can show, at a cost that follows what
 * changed since the last run, never the archive's size (docs/AWS.md §The incremental verifier):
 *
 *   1. Trust: the live KMS key, plus key documents in the archive whose fingerprint the operator pinned. A key
 *      document merely found in `keys/` is reported (`key-document-untrusted`), never trusted.
 *   2. Changes: S3 reports every object created and every delete marker (bucket → EventBridge → queue). Each
 *      changed key below a watermark has its versions listed and checked; keys at or past a watermark are the
 *      listing's (3). The notification only says where to look; what is found is read from S3.
 *   3. Each stream from its watermark on: the versions listed from the watermark's key onward (keys sort by
 *      index), each new version's lock fields read, and core verification over the *original* (oldest) version
 *      of each key, so a later version or delete marker is a finding of its own and cannot hide the records
 *      Object Lock kept.
 *   4. A resumable sweep of every version in the bucket (lock fields, extra versions, delete markers, unexpected
 *      keys), a few pages per run from a persisted cursor, restarted every `sweepIntervalDays`.
 *
 * Findings are de-duplicated (an id per code, stream and subject) and stored; only a finding seen for the first
 * time is alerted. A finding is acknowledged by an event in the `_system` stream (`acknowledgeFinding`), which
 * this verifier reads while verifying `_system`. A stream's watermark advances only when every finding of the
 * run about that stream is acknowledged; acknowledged findings stay in the report.
 */

import {
  type Alert,
  admit,
  allFailures,
  checkpointKey,
  checkpointPrefix,
  checkStreamWitnessed,
  type FailureCode,
  keyFingerprint,
  listStoredStreams,
  makeNoteKey,
  type NoteKey,
  type ObjectStore,
  parseStoreKey,
  publicKeyFromSpki,
  type Receipt,
  readSegment,
  runVerification,
  StoreError,
  SYSTEM_PRODUCER,
  SYSTEM_STREAM,
  segmentKey,
  segmentPrefix,
  signSystemEvent,
  streamAllowed,
  streamPrefix,
  tileRange,
  type VerificationTrust,
  type VerifierState,
  type WitnessRequirement,
  witnessRequirement,
} from "@auditsink/core";
import { DescribeKeyCommand } from "@aws-sdk/client-kms";
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { findingId, type StoredFinding } from "./DynamoWatermarkStore.ts";
import { storeFailure } from "./errors.ts";
import { KmsSigner } from "./KmsSigner.ts";
import type { AwsRuntime } from "./runtime.ts";
import type { ObjectVersion, S3WriteOnceStore } from "./S3WriteOnceStore.ts";

const DAY_MS = 86_400_000;

/** Failure codes only the AWS archive checks produce (docs/AWS.md §Verifier failure codes). */
export type ArchiveFailureCode =
  | "object-delete-marker"
  | "object-version-extra"
  | "object-unexpected"
  | "retention-missing"
  | "retention-not-compliance"
  | "retention-short"
  | "archive-lock-disabled"
  | "key-document-untrusted"
  | "acknowledgement-unconfirmed"
  | "signing-key-disabled"
  | "signing-key-pending-deletion"
  | "signing-key-unavailable"
  | "producer-silent";

/** The `_system` event type that acknowledges a finding; its data is `{ finding: <id>, reason: <text> }`. */
export const FINDING_ACKNOWLEDGED = "dev.auditsink.finding.acknowledged";

export interface VerifierRunOptions {
  /** Milliseconds left before the Lambda times out (context.getRemainingTimeInMillis). */
  remainingMs: () => number;
  /** Stop starting new work when less than this is left (default 30 s). */
  reserveMs?: number;
  /** Verify every stream from the start and check every version's lock fields (a deliberate full run). */
  full?: boolean;
  /** Versions per sweep page (default and S3's maximum: 1,000). */
  sweepPageSize?: number;
}

/** How this run chose the keys it verified checkpoints with. */
export interface TrustReport {
  /** Fingerprint (SHA-256 of the DER SPKI) of the live KMS key, when it could be read. */
  live?: string;
  /** Pinned fingerprints whose key document was found and used. */
  pinned: string[];
  /** Key documents found in the archive and not trusted (neither pinned nor the live key). */
  untrusted: string[];
}

export interface VerifierRunResult {
  streamsVerified: string[];
  /** False when time ran out before every stream was verified; the next run resumes at the cursor. */
  complete: boolean;
  /** Findings seen for the first time in this run (these, and only these, were sent as alerts). */
  alerts: Alert[];
  /** Every stored finding: open ones block their stream's watermark and keep the alarm on. */
  findings: { open: StoredFinding[]; acknowledged: StoredFinding[] };
  trust: TrustReport;
  /** Change notifications read from the queue, and how many keys they named below a watermark. */
  changes: { notifications: number; keysChecked: number };
  /** Versions the sweep checked this run, and whether it finished a pass. */
  sweep: { versions: number; passCompleted: boolean };
  /** With witnesses: per stream checked, the newest cosigned size meeting the policy and who cosigned it. */
  witnessed?: Record<string, { size: number; witnesses: string[] }>;
}

type Code = FailureCode | ArchiveFailureCode;
interface Found {
  code: Code;
  message: string;
  stream?: string;
  at?: string | number;
}

/** Versions of one key, newest first (S3's order), delete markers after them. */
type KeyVersions = { key: string; versions: ObjectVersion[] };

export class AwsVerifier {
  /**
   * The configured witnesses as a policy (docs/TRANSPARENCY.md §3): each run reports `witness-policy-unmet` for
   * a checkpoint older than the allowed lag that no quorum has cosigned. Kept for the container's life, so a run
   * lists only the cosigned keys stored since the last one.
   */
  private readonly witnesses: WitnessRequirement | undefined;

  constructor(
    private readonly runtime: AwsRuntime,
    private readonly now: () => Date = () => new Date(),
  ) {
    const options = runtime.settings.witnesses;
    this.witnesses = options ? witnessRequirement(options) : undefined;
  }

  async run(options: VerifierRunOptions): Promise<VerifierRunResult> {
    const { objects, heads, watermarks } = this.runtime;
    const time = this.now().toISOString();
    const reserve = options.reserveMs ?? 30_000;
    const hasTime = () => options.remainingMs() >= reserve;
    const run = new RunFindings(this.runtime, time);

    await this.checkKey(run);
    if (!(await objects.lockEnabled()))
      run.add({
        code: "archive-lock-disabled",
        message: `bucket ${objects.bucket} does not have Object Lock enabled`,
      });
    const { keys: trustedKeys, report: trust } = await this.trust(run);
    const trusted: VerificationTrust = {
      keys: trustedKeys,
      basis: trust.pinned.length > 0 ? "fingerprint" : "signing-key",
      detail:
        `live KMS key ${this.runtime.settings.signingKeyId}` +
        (trust.pinned.length > 0
          ? `; key documents with pinned fingerprints ${trust.pinned.join(", ")}`
          : ""),
    };
    // The exported public keys are few and are what old checkpoints verify with: check all of them every run.
    for await (const group of groupVersions(objects.versions("keys/")))
      await this.checkVersionsOf(group, run, undefined);
    await run.flush();

    // Heartbeats: only when some producer expects one are records read for who sent them.
    const producers = (await this.runtime.producers.list()).filter((p) => p.heartbeatSeconds !== undefined);
    const lastSeen = producers.length > 0 ? await watermarks.lastSeen() : {};

    const names = new Set(await heads.streams());
    const changes = await this.drainChanges(run, names, hasTime, options.full === true);
    await run.flush();
    if (options.full) for (const s of await listStoredStreams(objects)) names.add(s);
    // `_system` first: the acknowledgements it holds apply to the findings of the streams after it.
    const all = [...names].sort((a, b) =>
      a === SYSTEM_STREAM ? -1 : b === SYSTEM_STREAM ? 1 : a < b ? -1 : 1,
    );
    const cursor = options.full ? undefined : await watermarks.cursor();
    const start = cursor ? Math.max(0, all.indexOf(cursor)) : 0;
    const order = [...all.slice(start), ...all.slice(0, start)];

    const verified: string[] = [];
    const witnessed: Record<string, { size: number; witnesses: string[] }> = {};
    let complete = true;
    for (const [i, stream] of order.entries()) {
      if (!hasTime()) {
        await watermarks.setCursor(stream);
        complete = false;
        break;
      }
      await this.verifyStream(
        stream,
        options.full === true,
        trusted,
        run,
        producers.length > 0 ? lastSeen : undefined,
      );
      const cosigned = await this.checkWitnessed(stream, trustedKeys, run);
      if (cosigned) witnessed[stream] = cosigned;
      verified.push(stream);
      if (i === order.length - 1) await watermarks.setCursor(undefined);
    }

    const sweep =
      !options.full && complete && hasTime()
        ? await this.sweepStep(run, hasTime, options.sweepPageSize ?? 1000)
        : { versions: 0, passCompleted: false };

    if (producers.length > 0) {
      await watermarks.setLastSeen(lastSeen);
      const now = this.now().getTime();
      for (const p of producers) {
        const since = lastSeen[p.id] ?? p.createdAt;
        if (now - Date.parse(since) > p.heartbeatSeconds! * 1000)
          run.add({
            code: "producer-silent",
            message: `producer ${p.id} has sent nothing since ${since} (expects one every ${p.heartbeatSeconds} s)`,
            at: p.id,
          });
      }
    }
    await run.flush();

    const stored = await watermarks.findings();
    const open = stored.filter((f) => !f.acknowledged);
    await this.runtime.alerts.report(run.fresh, open.length);
    return {
      streamsVerified: verified,
      complete,
      alerts: run.fresh,
      findings: { open, acknowledged: stored.filter((f) => f.acknowledged) },
      ...(this.witnesses ? { witnessed } : {}),
      trust,
      changes,
      sweep,
    };
  }

  /**
   * The witness policy for one stream (core's checkStreamWitnessed over the archive, the embedded verifier's
   * check): findings `witness-policy-unmet` and `cosigned-checkpoint-invalid`. Checked after the stream's
   * verification, so they alert and stay open like every finding but do not hold back its watermark: the records
   * verified; what is missing is a witness's signature, which a later round may still bring.
   */
  private async checkWitnessed(
    stream: string,
    trusted: readonly NoteKey[],
    run: RunFindings,
  ): Promise<{ size: number; witnesses: string[] } | undefined> {
    const requirement = this.witnesses;
    if (!requirement || (requirement.streams && !streamAllowed(requirement.streams, stream)))
      return undefined;
    const checked = await checkStreamWitnessed(
      this.runtime.objects,
      stream,
      trusted,
      requirement,
      this.now(),
    );
    for (const f of checked.failures)
      run.add({
        code: f.code as Code,
        message: f.message,
        stream,
        ...(f.at !== undefined ? { at: f.at } : {}),
      });
    return checked.witnessed;
  }

  /**
   * Verifies `stream` from its watermark (or from the start), then advances the watermark if every finding
   * about the stream in this run is acknowledged.
   */
  private async verifyStream(
    stream: string,
    full: boolean,
    trust: VerificationTrust,
    run: RunFindings,
    lastSeen: Record<string, string> | undefined,
  ): Promise<void> {
    const { objects, heads, watermarks, settings } = this.runtime;
    const mark = full ? undefined : await watermarks.mark(stream);
    const from = mark?.state;
    const size = from?.size ?? 0;
    // List from the watermark's keys onward (S3 KeyMarker: keys strictly after it). The keys stored with the
    // watermark are keys that exist, which is also what moto needs (docs/AWS.md §moto gaps).
    const segmentsAfter = size > 0 ? (mark?.segmentKey ?? segmentKey(stream, size - 1)) : undefined;
    const checkpointsAfter = size > 0 ? (mark?.checkpointKey ?? checkpointKey(stream, size - 1)) : undefined;
    const listings: [AsyncIterable<ObjectVersion>, string | undefined][] =
      size > 0
        ? [
            [objects.versions(segmentPrefix(stream), { after: segmentsAfter! }), segmentsAfter],
            [objects.versions(checkpointPrefix(stream), { after: checkpointsAfter! }), checkpointsAfter],
          ]
        : [[objects.versions(streamPrefix(stream)), undefined]];
    const originals = new Map<string, string>();
    for (const [listing, after] of listings) {
      for await (const group of groupVersions(listing)) {
        if (after !== undefined && group.key <= after) continue;
        const original = group.versions.filter((v) => !v.deleteMarker).at(-1);
        if (original) originals.set(group.key, original.versionId);
        await this.checkVersionsOf(group, run, stream);
      }
    }

    const acks: { id: string; index: number; reason: string; time: string }[] = [];
    // Tiles are not listed past the watermark (their keys do not sort by index): the walk asks for the ones its
    // records complete, and each is looked up then — its versions checked like a listed key's, its original read.
    const tileOriginal = async (key: string): Promise<string | undefined> => {
      const versions: ObjectVersion[] = [];
      for await (const v of objects.versions(key)) if (v.key === key) versions.push(v);
      if (versions.length === 0) return undefined;
      await this.checkVersionsOf({ key, versions }, run, stream);
      return versions.filter((v) => !v.deleteMarker).at(-1)?.versionId;
    };
    const view = new OriginalVersions(objects, originals, tileOriginal, (bytes) => {
      if (stream !== SYSTEM_STREAM && !lastSeen) return;
      let records: ReturnType<typeof readSegment>;
      try {
        records = readSegment(bytes);
      } catch {
        return; // core reports the malformed segment
      }
      for (const { record } of records) {
        if (lastSeen) {
          const seen = lastSeen[record.producer];
          if (!seen || seen < record.received) lastSeen[record.producer] = record.received;
        }
        if (stream === SYSTEM_STREAM) {
          const ack = acknowledgementIn(record);
          if (ack) acks.push({ ...ack, index: record.index });
        }
      }
    });
    // Core's one verification run, over the original versions past the watermark. The watermark's own keys are
    // listed (never read) so that a stream with nothing new still counts as stored.
    const present = [segmentsAfter, checkpointsAfter].filter((k): k is string => k !== undefined);
    const result = await runVerification(
      {
        objects: new ListingWith(view, present),
        deployment: settings.origin,
        heads: { get: (s) => heads.get(s), streams: async () => [stream] },
      },
      trust,
      {
        mode: full ? "full" : "incremental",
        ...(from ? { states: { [stream]: from } } : {}),
        streams: [stream],
      },
    );
    const failures = allFailures(result);
    const report = {
      failures,
      state: result.streams[0]?.state ?? from ?? emptyState(),
    };
    for (const f of failures)
      run.add({
        code: f.code as Code,
        message: f.message,
        stream,
        ...(f.at !== undefined ? { at: f.at } : {}),
      });
    // Acknowledgements count only from a `_system` stream that verified cleanly: a forged record in a broken
    // chain acknowledges nothing.
    if (stream === SYSTEM_STREAM && report.failures.length === 0)
      for (const a of acks) {
        // Any signer role can append to `_system`; only producer administration can confirm (IAM LeadingKeys).
        if ((await watermarks.confirmedAcknowledgement(a.id)) !== a.index) {
          run.add({
            code: "acknowledgement-unconfirmed",
            message: `_system record ${a.index} acknowledges finding ${a.id}, but producer administration never confirmed it`,
            stream,
            at: a.index,
          });
          continue;
        }
        await watermarks.acknowledge(a.id, { index: a.index, reason: a.reason, time: a.time });
      }
    const blocking = await run.flush(stream);
    if (blocking > 0) return;
    // The keys the next listing starts after: the newest segment verified, and the newest checkpoint below the
    // new size (core re-reads the checkpoint at the size itself).
    let newestSegment = segmentsAfter;
    let newestCheckpoint = checkpointsAfter;
    for (const key of originals.keys()) {
      const parsed = parseStoreKey(key);
      if (parsed?.stream !== stream) continue;
      if (
        parsed.kind === "segments" &&
        parsed.n < report.state.size &&
        (!newestSegment || key > newestSegment)
      )
        newestSegment = key;
      if (
        parsed.kind === "checkpoints" &&
        parsed.n < report.state.size &&
        (!newestCheckpoint || key > newestCheckpoint)
      )
        newestCheckpoint = key;
    }
    await watermarks.put(stream, report.state, run.time, {
      ...(newestSegment ? { segmentKey: newestSegment } : {}),
      ...(newestCheckpoint ? { checkpointKey: newestCheckpoint } : {}),
    });
  }

  /**
   * Reads the queue of S3 change notifications. A changed key at or past its stream's watermark is left to the
   * stream's listing; one below it (an object the verifier already passed) has its versions listed and checked
   * now; a key outside the archive's layout is reported. Streams named by a change join this run.
   */
  private async drainChanges(
    run: RunFindings,
    streams: Set<string>,
    hasTime: () => boolean,
    full: boolean,
  ): Promise<VerifierRunResult["changes"]> {
    const { clients, settings, objects, watermarks } = this.runtime;
    const url = settings.archiveChangesQueueUrl;
    const result = { notifications: 0, keysChecked: 0 };
    if (!url) return result;
    const marks = new Map<string, VerifierState | undefined>();
    const watermarkOf = async (stream: string) => {
      if (!marks.has(stream)) marks.set(stream, full ? undefined : await watermarks.get(stream));
      return marks.get(stream);
    };
    while (hasTime()) {
      let messages: { Body?: string; ReceiptHandle?: string; MessageId?: string }[];
      try {
        const out = await clients.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: url,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: 0,
            VisibilityTimeout: 300,
          }),
        );
        messages = out.Messages ?? [];
      } catch (e) {
        throw storeFailure("SQS ReceiveMessage archive changes", e);
      }
      if (messages.length === 0) break;
      result.notifications += messages.length;
      const changed = new Set<string>();
      for (const m of messages) {
        const key = changedKey(m.Body);
        if (key !== undefined) changed.add(key);
      }
      for (const key of changed) {
        if (key.startsWith("keys/")) continue; // every version under keys/ is checked on every run
        const parsed = parseStoreKey(key);
        if (!parsed) {
          run.add({
            code: "object-unexpected",
            message: `${key} is not part of the archive's layout`,
            at: key,
            ...streamOf(key),
          });
          continue;
        }
        streams.add(parsed.stream);
        const mark = await watermarkOf(parsed.stream);
        // Past the watermark, the next incremental walk reads it (a tile: when the walk reaches its last record).
        const last = parsed.kind === "tiles" ? tileRange(parsed.tile).end - 1 : parsed.n;
        if (!mark || last >= mark.size) continue;
        result.keysChecked++;
        const versions: ObjectVersion[] = [];
        for await (const v of objects.versions(key)) if (v.key === key) versions.push(v);
        await this.checkVersionsOf({ key, versions }, run, parsed.stream);
      }
      // Findings are stored before the notifications are deleted: a crash in between re-reads them, no loss.
      await run.flush();
      const entries = messages
        .filter((m) => m.ReceiptHandle)
        .map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! }));
      try {
        await clients.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: entries }));
      } catch (e) {
        throw storeFailure("SQS DeleteMessageBatch archive changes", e);
      }
    }
    return result;
  }

  /**
   * Checks up to `sweepPagesPerRun` pages of the whole bucket's version listing from the persisted cursor. The
   * cursor is the last key fully checked, so a key whose versions span two pages is listed again from its first
   * version; a pass that ends records when, and the next starts `sweepIntervalDays` after the last began.
   */
  private async sweepStep(
    run: RunFindings,
    hasTime: () => boolean,
    pageSize: number,
  ): Promise<VerifierRunResult["sweep"]> {
    const { objects, watermarks, settings } = this.runtime;
    const cursor = await watermarks.sweep();
    const now = this.now();
    if (
      cursor.keyMarker === undefined &&
      cursor.startedAt !== undefined &&
      now.getTime() - Date.parse(cursor.startedAt) < settings.sweepIntervalDays * DAY_MS
    )
      return { versions: 0, passCompleted: false };
    const startedAt =
      cursor.keyMarker === undefined ? now.toISOString() : (cursor.startedAt ?? now.toISOString());
    let keyMarker = cursor.keyMarker;
    let versions = 0;
    for (let page = 0; page < settings.sweepPagesPerRun && hasTime(); page++) {
      const listed = await objects.versionPage("", keyMarker ? { keyMarker } : {}, pageSize);
      // S3 lists only keys after the marker; moto also returns the marker key's older versions (docs/AWS.md).
      const groups = [...groupList(listed.versions)].filter(
        (g) => keyMarker === undefined || g.key > keyMarker,
      );
      // The last key of a truncated page may have more versions on the next page: leave it for the next listing,
      // unless it is the page's only key (a key with over a thousand versions is a finding in itself).
      const last = listed.next && groups.length > 1 ? groups.pop() : undefined;
      for (const group of groups) {
        versions += group.versions.length;
        const parsed = parseStoreKey(group.key);
        if (!parsed && !/^keys\/[0-9a-f]{8}\.json$/.test(group.key))
          run.add({
            code: "object-unexpected",
            message: `${group.key} is not part of the archive's layout`,
            at: group.key,
            ...streamOf(group.key),
          });
        await this.checkVersionsOf(group, run, parsed?.stream);
      }
      await run.flush();
      if (!listed.next) {
        await watermarks.setSweep({ startedAt, completedAt: this.now().toISOString() });
        return { versions, passCompleted: true };
      }
      keyMarker = (last ? groups.at(-1)?.key : undefined) ?? listed.next.keyMarker;
      await watermarks.setSweep({
        keyMarker,
        startedAt,
        ...(cursor.completedAt ? { completedAt: cursor.completedAt } : {}),
      });
    }
    return { versions, passCompleted: false };
  }

  /**
   * The keys checkpoints are verified with: the live KMS key, and each key document in the archive whose key's
   * fingerprint is pinned. The key's name is this deployment's, whatever the document says.
   */
  private async trust(run: RunFindings): Promise<{ keys: NoteKey[]; report: TrustReport }> {
    const { objects, settings, clients } = this.runtime;
    const keys: NoteKey[] = [];
    const report: TrustReport = { pinned: [], untrusted: [] };
    try {
      const signer = await KmsSigner.create(clients.kms, settings.signingKeyId, settings.origin);
      keys.push(signer.key);
      report.live = keyFingerprint(signer.key.publicKey);
    } catch {
      // reported by checkKey
    }
    const pinned = new Set(settings.trustedKeyFingerprints);
    for (const key of await objects.list("keys/")) {
      const bytes = await objects.get(key);
      let material: NoteKey | undefined;
      try {
        const doc = JSON.parse(Buffer.from(bytes ?? []).toString("utf8")) as { publicKey?: unknown };
        if (typeof doc.publicKey === "string")
          material = makeNoteKey(settings.origin, publicKeyFromSpki(Buffer.from(doc.publicKey, "base64")));
      } catch {
        // not a key document
      }
      const fingerprint = material ? keyFingerprint(material.publicKey) : undefined;
      if (fingerprint && fingerprint === report.live) continue;
      if (material && fingerprint && pinned.has(fingerprint)) {
        keys.push(material);
        report.pinned.push(fingerprint);
        continue;
      }
      report.untrusted.push(key);
      run.add({
        code: "key-document-untrusted",
        message: `${key} is neither the live signing key nor a pinned key; checkpoints it would verify are not trusted`,
        at: key,
      });
    }
    return { keys, report };
  }

  private async checkKey(run: RunFindings): Promise<void> {
    const { clients, settings } = this.runtime;
    let state: string;
    try {
      const out = await clients.kms.send(new DescribeKeyCommand({ KeyId: settings.signingKeyId }));
      state = out.KeyMetadata?.KeyState ?? "Unknown";
    } catch (e) {
      run.add({
        code: "signing-key-unavailable",
        message: `the signing key cannot be described: ${(e as Error).name}`,
      });
      return;
    }
    if (state === "Disabled")
      run.add({ code: "signing-key-disabled", message: "the checkpoint signing key is disabled" });
    else if (state === "PendingDeletion")
      run.add({
        code: "signing-key-pending-deletion",
        message: "the checkpoint signing key is scheduled for deletion",
      });
    else if (state !== "Enabled")
      run.add({ code: "signing-key-unavailable", message: `the signing key is in state ${state}` });
  }

  /**
   * The checks on one key's versions: a delete marker or a second version is a finding wherever it is (the sink
   * only ever creates, once); every version must be COMPLIANCE-locked for at least the floor past its creation.
   */
  private async checkVersionsOf(
    { key, versions }: KeyVersions,
    run: RunFindings,
    stream: string | undefined,
  ): Promise<void> {
    const { objects } = this.runtime;
    const at = { at: key, ...(stream !== undefined ? { stream } : {}) };
    if (versions.some((v) => v.deleteMarker))
      run.add({ code: "object-delete-marker", message: `a delete marker hides ${key}`, ...at });
    const real = versions.filter((v) => !v.deleteMarker);
    if (real.length > 1)
      run.add({ code: "object-version-extra", message: `${key} has ${real.length} versions`, ...at });
    const floorMs = objects.retentionDays * DAY_MS;
    for (const v of real) {
      const lock = await objects.lock(key, v.versionId);
      const created = (lock.lastModified ?? v.lastModified ?? new Date(0)).getTime();
      if (!lock.mode || !lock.retainUntil)
        run.add({
          code: "retention-missing",
          message: `${key} (version ${v.versionId}) has no Object Lock retention`,
          ...at,
        });
      else if (lock.mode !== "COMPLIANCE")
        run.add({
          code: "retention-not-compliance",
          message: `${key} (version ${v.versionId}) is locked in ${lock.mode} mode, not COMPLIANCE`,
          ...at,
        });
      // One minute of slack: S3 stamps LastModified when the upload completes, after the writer set the date.
      else if (lock.retainUntil.getTime() < created + floorMs - 60_000)
        run.add({
          code: "retention-short",
          message: `${key} (version ${v.versionId}) is retained until ${lock.retainUntil.toISOString()}, less than ${objects.retentionDays} days`,
          ...at,
        });
    }
  }
}

export type AcknowledgeErrorCode = "bad-finding" | "bad-reason" | "unknown-finding";

/** An acknowledgement was refused before anything was recorded. */
export class AcknowledgeError extends Error {
  override readonly name = "AcknowledgeError";
  constructor(
    readonly code: AcknowledgeErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Records an acknowledgement of finding `id` as an event in the `_system` stream, signed by the sink's key.
 * The verifier reads it on its next run; from then on the finding no longer blocks its stream's watermark or
 * counts as open, and it stays in the report with the acknowledgement. Needs a role that may sign and append
 * to `_system` (the producer-admin function's).
 */
export async function acknowledgeFinding(runtime: AwsRuntime, id: string, reason: string): Promise<Receipt> {
  if (typeof id !== "string" || !/^[0-9a-f]{32}$/.test(id))
    throw new AcknowledgeError("bad-finding", "finding must be a finding id (32 hex digits)");
  if (typeof reason !== "string" || reason.trim() === "" || reason.length > 1000)
    throw new AcknowledgeError("bad-reason", "reason must be a non-empty text of at most 1,000 characters");
  const finding = await runtime.watermarks.finding(id);
  if (!finding) throw new AcknowledgeError("unknown-finding", `finding ${id} does not exist`);
  const { sink, signer } = await runtime.start();
  const event = await signSystemEvent(signer, FINDING_ACKNOWLEDGED, {
    finding: id,
    code: finding.code,
    ...(finding.stream !== undefined ? { stream: finding.stream } : {}),
    ...(finding.at !== undefined ? { at: String(finding.at) } : {}),
    reason,
  });
  const [receipt] = await sink.commit(SYSTEM_STREAM, [admit(event, SYSTEM_PRODUCER)]);
  await runtime.watermarks.confirmAcknowledgement(id, receipt!.index, reason);
  return receipt!;
}

/** The acknowledgement a `_system` record carries, if it is one the sink itself recorded. */
function acknowledgementIn(record: {
  producer: string;
  event: { type?: unknown; time?: unknown; data?: unknown };
}): { id: string; reason: string; time: string } | undefined {
  if (record.producer !== SYSTEM_PRODUCER || record.event.type !== FINDING_ACKNOWLEDGED) return undefined;
  const data = record.event.data;
  if (typeof data !== "object" || data === null) return undefined;
  const { finding, reason } = data as { finding?: unknown; reason?: unknown };
  if (typeof finding !== "string" || !/^[0-9a-f]{32}$/.test(finding) || typeof reason !== "string")
    return undefined;
  return { id: finding, reason, time: typeof record.event.time === "string" ? record.event.time : "" };
}

/** The object key an S3 EventBridge notification (Object Created, Object Deleted, …) names, if any. */
function changedKey(body: string | undefined): string | undefined {
  if (!body) return undefined;
  try {
    const event = JSON.parse(body) as { detail?: { object?: { key?: unknown } } };
    const key = event?.detail?.object?.key;
    return typeof key === "string" && key !== "" ? key : undefined;
  } catch {
    return undefined;
  }
}

function streamOf(key: string): { stream?: string } {
  const m = /^streams\/([^/]+)\//.exec(key);
  return m ? { stream: m[1]! } : {};
}

/** Groups a key-ordered version listing by key. */
async function* groupVersions(listing: AsyncIterable<ObjectVersion>): AsyncGenerator<KeyVersions> {
  let current: KeyVersions | undefined;
  for await (const v of listing) {
    if (current && current.key === v.key) current.versions.push(v);
    else {
      if (current) yield current;
      current = { key: v.key, versions: [v] };
    }
  }
  if (current) yield current;
}

function* groupList(listing: readonly ObjectVersion[]): Generator<KeyVersions> {
  let current: KeyVersions | undefined;
  for (const v of listing) {
    if (current && current.key === v.key) current.versions.push(v);
    else {
      if (current) yield current;
      current = { key: v.key, versions: [v] };
    }
  }
  if (current) yield current;
}

function emptyState(): VerifierState {
  return { size: 0, headHash: "0".repeat(64), frontier: [], checkpointSize: 0 };
}

/** A view that also lists `present` (keys known to exist, never read by an incremental walk). */
class ListingWith implements ObjectStore {
  private readonly present: string[];
  constructor(
    private readonly inner: ObjectStore,
    present: readonly string[],
  ) {
    this.present = [...present].sort();
  }
  putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    return this.inner.putIfAbsent(key, bytes);
  }
  get(key: string): Promise<Uint8Array | undefined> {
    return this.inner.get(key);
  }
  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const extra = this.present.filter(
      (k) => k.startsWith(prefix) && (options.startAfter === undefined || k > options.startAfter),
    );
    const merged = [...new Set([...(await this.inner.list(prefix, options)), ...extra])].sort();
    return options.limit === undefined ? merged : merged.slice(0, options.limit);
  }
}

/**
 * The archive as the sink wrote it, for core verification: the keys the version listing found (including keys
 * a delete marker hides), each read at its original version. Read-only.
 */
class OriginalVersions implements ObjectStore {
  private readonly sorted: string[];
  constructor(
    private readonly objects: S3WriteOnceStore,
    private readonly originals: ReadonlyMap<string, string>,
    /** The original version of a tile key the listing did not cover (undefined: none stored). */
    private readonly tileOriginal: (key: string) => Promise<string | undefined>,
    private readonly onSegment: (bytes: Uint8Array) => void,
  ) {
    this.sorted = [...originals.keys()].sort();
  }

  putIfAbsent(key: string): Promise<boolean> {
    return Promise.reject(
      new StoreError("store-failed", `the verifier's view of the archive is read-only (${key})`),
    );
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const version =
      this.originals.get(key) ??
      (parseStoreKey(key)?.kind === "tiles" ? await this.tileOriginal(key) : undefined);
    if (!version) return undefined;
    const bytes = await this.objects.getVersion(key, version);
    if (bytes && parseStoreKey(key)?.kind === "segments") this.onSegment(bytes);
    return bytes;
  }

  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const out: string[] = [];
    for (const key of this.sorted) {
      if (!key.startsWith(prefix) || (options.startAfter !== undefined && key <= options.startAfter))
        continue;
      out.push(key);
      if (options.limit !== undefined && out.length >= options.limit) break;
    }
    return out;
  }
}

/**
 * The findings of one run, stored as they are made: `flush` records them (one write each), keeps those seen
 * for the first time as alerts, and says how many about a stream are still unacknowledged.
 */
class RunFindings {
  private pending = new Map<string, Found>();
  readonly fresh: Alert[] = [];
  constructor(
    private readonly runtime: AwsRuntime,
    readonly time: string,
  ) {}

  add(f: Found): void {
    this.pending.set(findingId(f), f);
  }

  /** Stores pending findings; resolves how many of them about `stream` are not acknowledged. */
  async flush(stream?: string): Promise<number> {
    let blocking = 0;
    for (const f of this.pending.values()) {
      const { isNew, stored } = await this.runtime.watermarks.recordFinding(f, this.time);
      if (isNew)
        this.fresh.push({
          code: f.code,
          message: f.message,
          time: this.time,
          ...(f.stream !== undefined ? { stream: f.stream } : {}),
          ...(f.at !== undefined ? { at: f.at } : {}),
        });
      if (stream !== undefined && f.stream === stream && !stored.acknowledged) blocking++;
    }
    this.pending.clear();
    return blocking;
  }
}

/**
 * The scheduled verifier's run on AWS. Stream verification itself is core's (`verifyStoredStream`, pure checks
 * over what it fetched); this adds what only the AWS archive can show:
 *   - every object version and delete marker under a stream (Object Lock still allows both over a key);
 *   - each version's lock fields: COMPLIANCE mode, retained at least the floor past its creation;
 *   - the bucket's Object Lock configuration, the KMS key's state, and the versions of the exported keys.
 * It also alerts `producer-silent` when a producer that declared a heartbeat has sent nothing for longer.
 * Trusted checkpoint keys are those exported to the archive (`keys/*.json`) plus the live KMS key.
 * Incremental: each stream resumes from its watermark, and the run stops starting new streams when the
 * Lambda's remaining time runs low, leaving a cursor for the next run. Watermarks only advance for streams
 * without failures, so a failure is re-detected (and re-alerted) until someone resolves it.
 */

import {
  type Alert,
  type FailureCode,
  listStoredStreams,
  type NoteKey,
  parseStoreKey,
  parseVerifierKey,
  readSegment,
  segmentKey,
  segmentPrefix,
  streamPrefix,
  type VerifierState,
  verifyStoredStream,
} from "@auditsink/core";
import { DescribeKeyCommand } from "@aws-sdk/client-kms";
import { KmsSigner } from "./KmsSigner.ts";
import type { AwsRuntime } from "./runtime.ts";

const DAY_MS = 86_400_000;

/** Failure codes only the AWS archive checks produce (docs/AWS.md §Verifier failure codes). */
export type ArchiveFailureCode =
  | "object-delete-marker"
  | "object-version-extra"
  | "retention-missing"
  | "retention-not-compliance"
  | "retention-short"
  | "archive-lock-disabled"
  | "signing-key-disabled"
  | "signing-key-pending-deletion"
  | "signing-key-unavailable"
  | "producer-silent";

export interface VerifierRunOptions {
  /** Milliseconds left before the Lambda times out (context.getRemainingTimeInMillis). */
  remainingMs: () => number;
  /** Stop starting streams when less than this is left (default 30 s). */
  reserveMs?: number;
  /** Verify every stream from the start and check every version's lock fields. */
  full?: boolean;
}

export interface VerifierRunResult {
  streamsVerified: string[];
  /** False when time ran out before every stream was verified; the next run resumes at `cursor`. */
  complete: boolean;
  alerts: Alert[];
}

export class AwsVerifier {
  constructor(
    private readonly runtime: AwsRuntime,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async run(options: VerifierRunOptions): Promise<VerifierRunResult> {
    const { objects, heads, watermarks, settings } = this.runtime;
    const time = this.now().toISOString();
    const alerts: Alert[] = [];
    const alert = (
      code: FailureCode | ArchiveFailureCode,
      message: string,
      stream?: string,
      at?: string | number,
    ) =>
      alerts.push({
        code,
        message,
        time,
        ...(stream ? { stream } : {}),
        ...(at !== undefined ? { at } : {}),
      });

    await this.checkKey(alert);
    if (!(await objects.lockEnabled()))
      alert("archive-lock-disabled", `bucket ${objects.bucket} does not have Object Lock enabled`);
    const trusted = await this.trustedKeys();
    // The exported public keys are few and are what old checkpoints verify with: check all of them every run.
    await this.checkVersions("keys/", undefined, undefined, true, alert);

    // Heartbeats: only when some producer expects one, read the records past each watermark for who sent them.
    const producers = (await this.runtime.producers.list()).filter((p) => p.heartbeatSeconds !== undefined);
    const lastSeen = producers.length > 0 ? await watermarks.lastSeen() : {};

    const names = new Set(await heads.streams());
    if (options.full) for (const s of await listStoredStreams(objects)) names.add(s);
    const all = [...names].sort();
    const cursor = options.full ? undefined : await watermarks.cursor();
    const start = cursor
      ? Math.max(
          0,
          all.findIndex((s) => s >= cursor),
        )
      : 0;
    const order = [...all.slice(start), ...all.slice(0, start)];
    const reserve = options.reserveMs ?? 30_000;
    const verified: string[] = [];
    for (const [i, stream] of order.entries()) {
      if (options.remainingMs() < reserve) {
        await watermarks.setCursor(stream);
        if (producers.length > 0) await watermarks.setLastSeen(lastSeen);
        await this.runtime.alerts.send(alerts);
        return { streamsVerified: verified, complete: false, alerts };
      }
      const from = options.full ? undefined : await watermarks.get(stream);
      const head = await heads.get(stream);
      const report = await verifyStoredStream(objects, stream, {
        trusted,
        deployment: settings.origin,
        ...(from ? { from } : {}),
        ...(head ? { head } : {}),
      });
      for (const f of report.failures) alert(f.code, f.message, stream, f.at);
      if (producers.length > 0) await this.readLastSeen(stream, from, report.state.size, lastSeen);
      const archiveFailures = await this.checkVersions(
        streamPrefix(stream),
        stream,
        from,
        options.full ?? false,
        alert,
      );
      if (report.failures.length === 0 && archiveFailures === 0)
        await watermarks.put(stream, report.state, time);
      verified.push(stream);
      if (i === order.length - 1) await watermarks.setCursor(undefined);
    }
    if (producers.length > 0) {
      await watermarks.setLastSeen(lastSeen);
      const now = this.now().getTime();
      for (const p of producers) {
        const since = lastSeen[p.id] ?? p.createdAt;
        if (now - Date.parse(since) > p.heartbeatSeconds! * 1000)
          alert(
            "producer-silent",
            `producer ${p.id} has sent nothing since ${since} (expects one every ${p.heartbeatSeconds} s)`,
            undefined,
            p.id,
          );
      }
    }
    await this.runtime.alerts.send(alerts);
    return { streamsVerified: verified, complete: true, alerts };
  }

  /** Folds the producers of records [from.size, size) into `lastSeen` (newest `received` per producer). */
  private async readLastSeen(
    stream: string,
    from: VerifierState | undefined,
    size: number,
    lastSeen: Record<string, string>,
  ): Promise<void> {
    const { objects } = this.runtime;
    const start = from?.size ?? 0;
    if (size <= start) return;
    const keys = await objects.list(
      segmentPrefix(stream),
      start > 0 ? { startAfter: segmentKey(stream, start - 1) } : {},
    );
    for (const key of keys) {
      const bytes = await objects.get(key);
      for (const r of bytes ? readSegment(bytes) : []) {
        const seen = lastSeen[r.record.producer];
        if (!seen || seen < r.record.received) lastSeen[r.record.producer] = r.record.received;
      }
    }
  }

  /** Keys the archive holds (`keys/*.json`, exported at first use), so rotated keys still verify. */
  private async trustedKeys(): Promise<NoteKey[]> {
    const { objects } = this.runtime;
    const out: NoteKey[] = [];
    for (const key of await objects.list("keys/")) {
      const bytes = await objects.get(key);
      if (!bytes) continue;
      try {
        const doc = JSON.parse(Buffer.from(bytes).toString("utf8")) as { verifierKey?: string };
        if (doc.verifierKey) out.push(parseVerifierKey(doc.verifierKey));
      } catch {
        // A malformed key document trusts nothing; checkpoints it would have verified report unknown-key.
      }
    }
    // The live KMS key too, so a hidden or missing key document (itself alerted) does not also fail every
    // checkpoint. Its state is checked separately; a key that cannot be read adds nothing here.
    try {
      const signer = await KmsSigner.create(
        this.runtime.clients.kms,
        this.runtime.settings.signingKeyId,
        this.runtime.settings.origin,
      );
      if (!out.some((k) => k.keyId.equals(signer.key.keyId))) out.push(signer.key);
    } catch {
      // reported by checkKey
    }
    return out;
  }

  private async checkKey(alert: (code: ArchiveFailureCode, message: string) => void): Promise<void> {
    const { clients, settings } = this.runtime;
    let state: string;
    try {
      const out = await clients.kms.send(new DescribeKeyCommand({ KeyId: settings.signingKeyId }));
      state = out.KeyMetadata?.KeyState ?? "Unknown";
    } catch (e) {
      alert("signing-key-unavailable", `the signing key cannot be described: ${(e as Error).name}`);
      return;
    }
    if (state === "Disabled") alert("signing-key-disabled", "the checkpoint signing key is disabled");
    else if (state === "PendingDeletion")
      alert("signing-key-pending-deletion", "the checkpoint signing key is scheduled for deletion");
    else if (state !== "Enabled") alert("signing-key-unavailable", `the signing key is in state ${state}`);
  }

  /**
   * Lists every version under `prefix` (a stream's, or `keys/`). Extra versions and delete markers are failures
   * wherever they are; lock fields are read (one HEAD each) for objects past the watermark, or for all of them
   * on a full run.
   */
  private async checkVersions(
    prefix: string,
    stream: string | undefined,
    from: VerifierState | undefined,
    full: boolean,
    alert: (code: ArchiveFailureCode, message: string, stream: string | undefined, at: string) => void,
  ): Promise<number> {
    const { objects } = this.runtime;
    const floorMs = objects.retentionDays * DAY_MS;
    let failures = 0;
    const fail = (code: ArchiveFailureCode, message: string, at: string) => {
      failures++;
      alert(code, message, stream, at);
    };
    const seen = new Map<string, number>();
    for await (const v of objects.versions(prefix)) {
      if (v.deleteMarker) {
        fail("object-delete-marker", `a delete marker hides ${v.key}`, v.key);
        continue;
      }
      const count = (seen.get(v.key) ?? 0) + 1;
      seen.set(v.key, count);
      if (count === 2) fail("object-version-extra", `${v.key} has more than one version`, v.key);
      const parsed = parseStoreKey(v.key);
      const isNew =
        !from ||
        !parsed ||
        (parsed.kind === "segments" ? parsed.n >= from.size : parsed.n > from.checkpointSize);
      if (!full && !isNew && count === 1) continue;
      const lock = await objects.lock(v.key, v.versionId);
      const created = (lock.lastModified ?? v.lastModified ?? new Date(0)).getTime();
      if (!lock.mode || !lock.retainUntil)
        fail("retention-missing", `${v.key} has no Object Lock retention`, v.key);
      else if (lock.mode !== "COMPLIANCE")
        fail("retention-not-compliance", `${v.key} is locked in ${lock.mode} mode, not COMPLIANCE`, v.key);
      // One minute of slack: S3 stamps LastModified when the upload completes, after the writer set the date.
      else if (lock.retainUntil.getTime() < created + floorMs - 60_000)
        fail(
          "retention-short",
          `${v.key} is retained until ${lock.retainUntil.toISOString()}, less than ${objects.retentionDays} days`,
          v.key,
        );
    }
    return failures;
  }
}

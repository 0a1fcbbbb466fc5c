/**
 * One verification run over a whole archive: the pipeline every verifier calls (`auditsink verify`, the embedded
 * ScheduledVerifier, the AWS verifier), so that none of them orchestrates core on its own. Trust and policy are
 * values the caller chooses; the report says how the keys were chosen. I/O goes only through the ports given
 * (ObjectStore, and optionally the head store); every check is core's StreamVerifier (verify.ts).
 *
 * What a run checks, beyond each stream's own walk (docs/FORMAT.md §11):
 *   - the set of streams (FORMAT.md §4): every stream `_system` records must exist in the store
 *     (`stream-missing`), every stored stream must be recorded (`stream-unrecorded`), and every stream the head
 *     store or a receipt names must exist (`stream-missing`);
 *   - the layout (full runs, or `layout: true`): every key outside `streams/<stream>/…` and `keys/<id>.json` is
 *     `unexpected-object`;
 *   - the head store, when given: each stream's head is checked against the records (head-* codes), and a
 *     head that looks rolled back is re-read after a pause (the writer stores a checkpoint just before it moves
 *     the head), `settle.tries` times — this is the only place that race is handled.
 *
 * @example
 *   const report = await runVerification(
 *     { objects: store, deployment: "auditsink.example/prod", heads },
 *     { keys: [parseVerifierKey(pinned)], basis: "pinned", detail: "--verifier-key" },
 *     { mode: "full", producerKeys },
 *   );
 *   if (!report.ok) for (const f of allFailures(report)) console.log(f.code, f.stream, f.at);
 */
import type { KeyObject } from "node:crypto";
import { VerificationStoppedError } from "./errors.ts";
import { STREAM_NAME, SYSTEM_STREAM } from "./event.ts";
import { type FetchProgress, listEveryKey, listStoredStreams, verifyStoredStream } from "./fetch.ts";
import { keyFingerprint } from "./keys.ts";
import type { NoteKey } from "./note.ts";
import type { Head, ObjectStore } from "./ports.ts";
import type { Receipt } from "./receipt.ts";
import { parseStoreKey, streamPrefix } from "./record.ts";
import { streamAllowed } from "./sink.ts";
import { checkStreamReceipts, type Finding, type StreamReport, type VerifierState } from "./verify.ts";
import { checkStreamWitnessed, type WitnessRequirement } from "./witnessed.ts";

/**
 * How the trusted checkpoint keys were chosen — never "whatever the archive says":
 *   - `pinned`: verifier key strings the auditor or operator gave out of band;
 *   - `fingerprint`: keys the source offered, each accepted only because its pinned fingerprint matched;
 *   - `trust-on-first-use`: keys saved to a state file on a first run and pinned from then on (the report and
 *     the CLI say so loudly; `detail` names the file and whether this run created it);
 *   - `signing-key`: the live signing key of the deployment itself (the embedded signer, or KMS's public key):
 *     the scheduled verifiers, which run beside the signer.
 */
export type TrustBasis = "pinned" | "fingerprint" | "trust-on-first-use" | "signing-key";

export interface VerificationTrust {
  keys: readonly NoteKey[];
  basis: TrustBasis;
  /** One line for the report: where the keys came from (file, flag, KMS key ARN, …). */
  detail: string;
}

/** What a run reads: the write-once store, and optionally the head store (never trusted; it is checked). */
export interface ArchiveSource {
  objects: ObjectStore;
  /** Expected deployment name: checkpoint origins must be `<deployment>/<stream>`. */
  deployment?: string;
  /**
   * Lists the names under `streams/` more cheaply than the ObjectStore can (a directory read, an S3 delimiter
   * listing). Default: core's listStoredStreams, one `list` call per stream.
   */
  listStreams?: () => Promise<string[]>;
  heads?: {
    /** The head store's value; anything that is not a head (a corrupted file) is reported as `head-malformed`. */
    get(stream: string): Promise<unknown>;
    /** Every stream that has a head. */
    streams(): Promise<string[]>;
  };
}

export interface VerificationPolicy {
  /** `full` walks every stream from record 0; `incremental` resumes from `states` where a stream has one. */
  mode: "full" | "incremental";
  /** Per-stream positions saved by earlier runs (a report's `states`). */
  states?: Readonly<Record<string, VerifierState>>;
  /** Only these streams (default: every stream the store, the head store, `_system` or a receipt names). */
  streams?: readonly string[];
  /** Re-verify every producer signature with these keys (by key id); include the sink's own for `_system`. */
  producerKeys?: ReadonlyMap<string, KeyObject>;
  receipts?: readonly Receipt[];
  /** Check every key of the store against the layout (default: in full runs). */
  layout?: boolean;
  /** Check the set of streams (default: when every stream is verified, i.e. `streams` is not given). */
  streamSet?: boolean;
  /** Check stored tlog tiles (default true; false for a source without them by design, VerifyOptions.tiles). */
  tiles?: boolean;
  /** Re-reads of a head that looks rolled back, and of a recorded stream not yet visible (default 4, from 250 ms, doubling). */
  settle?: { tries: number; delayMs: number };
  /** Injected for tests; default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /**
   * Stops the run between segments, streams and listed keys (a sink shutting down does not wait for a full run):
   * the run reports nothing and rejects with a VerificationStoppedError that carries the positions it reached, so
   * the next run need not repeat what this one verified (a sweep slice is stopped by its `pause` instead).
   */
  signal?: AbortSignal;
  progress?: FetchProgress & {
    onStream?: (stream: string) => void | Promise<void>;
    onStreamDone?: () => void;
  };
  /**
   * Makes this run one slice of a resumable full sweep (mode `full`): streams are walked in name order from
   * `from` (a stream and where in it), and the run stops — between two segments — as soon as `pause()` says so,
   * returning the cursor to resume from in `resumeAt`. Each stream is still walked from record 0 across slices
   * (the state carries its chain and Merkle frontier), so the slices of a sweep verify what one full run does,
   * except what a slice cannot judge alone: the head store is not read and the set of streams is not checked
   * (incremental runs check both every time), and the report's `states` are the ones given. `pause` is also
   * how a slice is stopped for shutdown: its cursor then survives, where `signal` would throw it away. A stream
   * whose walk found a gap cannot be resumed past it: the sweep reports it and moves on to the next stream.
   */
  sweep?: { from?: SweepCursor; pause: () => boolean };
  /**
   * Each stream's checkpoints must be cosigned by a quorum of these witnesses within the allowed lag
   * (witnessed.ts; findings `witness-policy-unmet`, `cosigned-checkpoint-invalid`). Not checked by sweep slices.
   */
  witnesses?: WitnessRequirement;
  /** The time the witness lag is measured against (default: now). */
  now?: () => Date;
}

/** Where a full sweep resumes: a stream, and where in it (absent: from record 0). */
export interface SweepCursor {
  stream: string;
  state?: VerifierState;
}

export interface ArchiveReport {
  ok: boolean;
  mode: "full" | "incremental";
  trust: { basis: TrustBasis; detail: string; fingerprints: string[] };
  /** One report per stream walked, in name order (`_system` among them). */
  streams: StreamReport[];
  /** Findings about the archive as a whole: `unexpected-object` outside any stream, `stream-*`, receipts for streams not stored. */
  archive: Finding[];
  failures: number;
  warnings: number;
  /**
   * Positions to resume from next time: the new state of every stream verified without failures, and the old
   * state (as given) of every other one, so a stream with failures is checked again from its last clean point.
   */
  states: Record<string, VerifierState>;
  /** A sweep slice (`policy.sweep`) that stopped before the end: where the next slice resumes. */
  resumeAt?: SweepCursor;
}

/** Every failure of a report, archive-level first. */
export function allFailures(report: ArchiveReport): Finding<string>[] {
  return [...report.archive, ...report.streams.flatMap((s) => s.failures)];
}

const KEY_DOCUMENT = /^keys\/[0-9a-f]{8}\.json$/;

const isStreamName = (name: string) => name === SYSTEM_STREAM || STREAM_NAME.test(name);

function isHead(value: unknown): value is Head {
  const h = value as Head;
  return (
    typeof h === "object" &&
    h !== null &&
    Number.isSafeInteger(h.size) &&
    h.size >= 0 &&
    typeof h.headHash === "string" &&
    Array.isArray(h.frontier) &&
    h.frontier.every((f) => typeof f === "string") &&
    (h.checkpoint === undefined || typeof h.checkpoint === "string")
  );
}

/** Runs one verification of the archive. Never throws for stored bytes; throws StoreError when a port fails. */
export async function runVerification(
  source: ArchiveSource,
  trust: VerificationTrust,
  policy: VerificationPolicy,
): Promise<ArchiveReport> {
  const archive: Finding[] = [];
  const fail = (code: Finding["code"], stream: string, at: number | string | undefined, message: string) =>
    archive.push({ code, stream, ...(at !== undefined ? { at } : {}), message });
  const sleep = policy.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const settle = policy.settle ?? { tries: 4, delayMs: 250 };
  const receipts = policy.receipts ?? [];
  const signal = policy.signal;
  const sweep = policy.sweep;
  // A stopped walk pauses between two segments, so the position it reached survives (a sweep's own pause also
  // stops it for shutdown).
  const pause = sweep ? sweep.pause : signal ? () => signal.aborted : undefined;
  const progress: VerificationPolicy["progress"] = pause
    ? { ...policy.progress, pause, ...(signal ? { signal } : {}) }
    : policy.progress;
  signal?.throwIfAborted();

  // The stored streams are listed before `_system` is read: the sink records a stream before it writes the
  // stream's first segment, so every stream listed here is already recorded in what the walk of `_system` reads.
  let listed: string[];
  if (!source.listStreams) listed = await listStoredStreams(source.objects);
  else {
    // A directory listing also names emptied directories: a stream counts only if it still has an object.
    const names = await source.listStreams();
    const present = await Promise.all(
      names.map(async (s) => (await source.objects.list(streamPrefix(s), { limit: 1 })).length > 0),
    );
    listed = names.filter((_, i) => present[i]);
  }
  const stored = new Set(listed.filter(isStreamName));
  const headStreams = source.heads ? await source.heads.streams() : [];
  const everything = policy.streams === undefined;
  let targets: string[];
  if (policy.streams) targets = [...new Set(policy.streams)];
  else {
    const named = [...stored, ...headStreams, ...receipts.map((r) => r?.stream)].filter(
      (s): s is string => typeof s === "string" && isStreamName(s),
    );
    targets = [...new Set(named)];
  }
  targets.sort();
  const cursor = sweep?.from;
  if (cursor) targets = targets.filter((s) => s >= cursor.stream);

  const layout = policy.layout ?? policy.mode === "full";
  if (layout) {
    // Keys under a stored stream's prefix are the stream walk's to judge in a full walk; everything else is here.
    const walkedInFull = (s: string) => stored.has(s) && (policy.mode === "full" || !policy.states?.[s]);
    for await (const key of listEveryKey(source.objects)) {
      signal?.throwIfAborted();
      if (KEY_DOCUMENT.test(key)) continue;
      const name = key.startsWith("streams/") ? key.slice(8).split("/")[0] : undefined;
      const underStream = name !== undefined && key.length > 8 + name.length && stored.has(name);
      if (underStream && walkedInFull(name!)) continue;
      // A key of the layout belongs, also under a stream created after the streams were listed (its first commit
      // raced this listing): whether that stream should exist is the set of streams' question, not the layout's.
      if (name !== undefined && isStreamName(name) && parseStoreKey(key)?.stream === name) continue;
      fail(
        "unexpected-object",
        underStream ? name! : "",
        key,
        `object ${key} does not belong to the store layout`,
      );
    }
  }

  const reports: StreamReport[] = [];
  const states: Record<string, VerifierState> = { ...(policy.states ?? {}) };
  const walk = async (stream: string): Promise<StreamReport> => {
    const rawHead = source.heads && !sweep ? await source.heads.get(stream) : undefined;
    const head = isHead(rawHead) ? rawHead : undefined;
    const from =
      policy.mode === "incremental"
        ? policy.states?.[stream]
        : cursor?.stream === stream
          ? cursor.state
          : undefined;
    signal?.throwIfAborted();
    await progress?.onStream?.(stream);
    try {
      const report = await verifyStoredStream(
        source.objects,
        stream,
        {
          trusted: trust.keys,
          ...(source.deployment ? { deployment: source.deployment } : {}),
          ...(from ? { from } : {}),
          ...(head ? { head } : {}),
          receipts: receipts.filter((r) => r?.stream === stream),
          ...(policy.producerKeys ? { producerKeys: policy.producerKeys } : {}),
          ...(policy.tiles === false ? { tiles: false } : {}),
        },
        progress ?? {},
      );
      const witnesses = policy.witnesses;
      if (witnesses && !sweep && (!witnesses.streams || streamAllowed(witnesses.streams, stream))) {
        const checked = await checkStreamWitnessed(
          source.objects,
          stream,
          trust.keys,
          witnesses,
          policy.now?.() ?? new Date(),
        );
        report.failures.push(...checked.failures);
        if (checked.witnessed) report.witnessed = checked.witnessed;
      }
      if (rawHead !== undefined && !head) {
        report.failures.unshift({
          code: "head-malformed",
          stream,
          message: `the head store's value for ${stream} is not a head (size, headHash, frontier)`,
        });
      }
      return report;
    } finally {
      progress?.onStreamDone?.();
    }
  };

  let resumeAt: SweepCursor | undefined;
  const stopped = () =>
    !sweep && signal?.aborted ? new VerificationStoppedError(states, signal.reason) : undefined;
  try {
    for (const stream of targets) {
      if (sweep?.pause()) {
        resumeAt = { stream, ...(cursor?.stream === stream && cursor.state ? { state: cursor.state } : {}) };
        break;
      }
      if (!stored.has(stream)) {
        const why = headStreams.includes(stream)
          ? "the head store has a head for it"
          : receipts.some((r) => r?.stream === stream)
            ? "receipts name it"
            : "it was asked for";
        fail(
          "stream-missing",
          stream,
          undefined,
          `the store holds no object of stream ${stream}, but ${why}`,
        );
        // Never skipped (FORMAT.md §9): each receipt still gets the first of checks 1–5 it fails, and only one
        // that passes them all is `receipt-not-in-log` — a receipt relabelled with a stream that is gone is
        // reported for what is wrong with it, as it would be were the stream there.
        archive.push(
          ...checkStreamReceipts(
            stream,
            receipts.filter((r) => r?.stream === stream),
            { trusted: trust.keys, ...(source.deployment ? { deployment: source.deployment } : {}) },
            undefined,
          ),
        );
        continue;
      }
      const report = await walk(stream);
      // A head behind the newest checkpoint the walk reached is a rollback, or a head read before the commits
      // the walk went on to reach (a writer stores a checkpoint, then moves the head): read the head again, not
      // the stream, and it stands only if the head stays behind.
      for (let i = 0; i < settle.tries && report.failures.some((f) => f.code === "head-rollback"); i++) {
        await sleep(settle.delayMs * 2 ** i);
        const again = await source.heads?.get(stream);
        if (isHead(again) && again.size >= (report.newestCheckpoint ?? 0))
          report.failures = report.failures.filter((f) => f.code !== "head-rollback");
      }
      reports.push(report);
      if (sweep) {
        if (report.paused && report.gapAt === undefined) {
          resumeAt = { stream, state: report.state };
          break;
        }
        continue;
      }
      if (report.failures.length === 0) states[stream] = report.state;
      if (report.paused) break; // stopped by the signal, inside this stream
    }
    // A stopped run reports nothing, however little was left to do (the catch below says how far it got).
    if (!sweep) signal?.throwIfAborted();

    if (policy.streamSet ?? (everything && !sweep)) {
      const system = reports.find((r) => r.stream === SYSTEM_STREAM);
      const recorded = new Set(system?.state.streams ?? policy.states?.[SYSTEM_STREAM]?.streams ?? []);
      const others = [...stored].filter((s) => s !== SYSTEM_STREAM);
      if (others.length > 0 && !stored.has(SYSTEM_STREAM) && !targets.includes(SYSTEM_STREAM)) {
        fail(
          "stream-missing",
          SYSTEM_STREAM,
          undefined,
          "the system stream, which records every stream, is not in the store",
        );
      }
      for (const s of others) {
        if (!recorded.has(s))
          fail(
            "stream-unrecorded",
            s,
            undefined,
            `stream ${s} is in the store but ${SYSTEM_STREAM} never recorded its creation`,
          );
      }
      for (const s of [...recorded].sort()) {
        if (stored.has(s) || targets.includes(s)) continue;
        // The sink records a stream just before writing its first segment: give a writer between the two a moment.
        let present = false;
        for (let i = 0; i < settle.tries && !present; i++) {
          await sleep(settle.delayMs * 2 ** i);
          present = (await source.objects.list(streamPrefix(s), { limit: 1 })).length > 0;
        }
        if (!present)
          fail(
            "stream-missing",
            s,
            undefined,
            `${SYSTEM_STREAM} records stream ${s}, but the store holds none of its objects`,
          );
      }
    }
  } catch (e) {
    throw stopped() ?? e;
  }

  const failures = archive.length + reports.reduce((n, r) => n + r.failures.length, 0);
  return {
    ok: failures === 0,
    mode: policy.mode,
    trust: {
      basis: trust.basis,
      detail: trust.detail,
      fingerprints: trust.keys.map((k) => keyFingerprint(k.publicKey)),
    },
    streams: reports,
    archive,
    failures,
    warnings: reports.reduce((n, r) => n + r.warnings.length, 0),
    states,
    ...(resumeAt ? { resumeAt } : {}),
  };
}

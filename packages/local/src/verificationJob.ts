/**
 * One run of the scheduled verifier — an incremental or full run, or one slice of a sweep — as a value: what
 * ScheduledVerifier asks for, and what it gets back. `runJob` carries it out with core's runVerification over
 * the ports it is given. The sink runs it on its verifier thread (VerifierThread), where the ports are the data
 * directory's own; a ScheduledVerifier built without a thread runs it on the caller's thread.
 */
import type { KeyObject } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  allFailures,
  type Finding,
  type HeadStore,
  type NoteKey,
  type ObjectStore,
  runVerification,
  type SweepCursor,
  type VerifierState,
  type WitnessRequirement,
} from "@auditsink/core";

export interface VerificationJob {
  kind: "incremental" | "full" | "sweep";
  /** Incremental runs: where each stream resumes. */
  states?: Record<string, VerifierState>;
  /** Sweep slices: where the slice starts (absent: the first slice, which only lists every key). */
  from?: SweepCursor;
  /** Sweep slices: a slice stops at the first segment boundary after this long. */
  sliceMs?: number;
  /** Public keys by key id: every producer key, revoked or not, and the sink's own. */
  producerKeys: ReadonlyMap<string, KeyObject>;
  /** The time the witness lag is measured against. */
  now: Date;
  /** First wait before re-reading a head that looks rolled back (doubles, 4 tries). */
  settleMs?: number;
}

export interface JobResult {
  streams: number;
  records: number;
  failures: Finding[];
  /** Incremental and full runs: each stream's position after the run. */
  states: Record<string, VerifierState>;
  /** Sweep slices: where the next slice starts (absent: this slice completed the sweep). */
  resumeAt?: SweepCursor;
}

/** What a job reads and trusts. */
export interface JobPorts {
  objects: ObjectStore;
  heads: HeadStore;
  deployment: string;
  /** The sink's own live signing key. */
  trusted: readonly NoteKey[];
  witnesses?: WitnessRequirement;
  /** Every name under `objects/streams/` (a directory read). */
  streams?: () => Promise<string[]>;
}

export interface JobHooks {
  /** Stops an incremental or full run (VerificationStoppedError) or a slice (at its next segment). */
  signal: AbortSignal;
  /** The records of each verified segment, as the run goes. */
  onRecords?: (records: number) => void;
}

export type JobRunner = (job: VerificationJob, hooks: JobHooks) => Promise<JobResult>;

/** Carries out one job with core's runVerification; rejects as it does (VerificationStoppedError when stopped). */
export async function runJob(ports: JobPorts, job: VerificationJob, hooks: JobHooks): Promise<JobResult> {
  const { signal } = hooks;
  const slice = job.kind === "sweep";
  const deadline = performance.now() + (job.sliceMs ?? 250);
  // Every slice verifies at least one segment, however short the budget: a sweep always moves forward. The
  // first slice of a sweep only lists every key (the layout check), which cannot be paused, only aborted.
  let progressed = false;
  const report = await runVerification(
    {
      objects: ports.objects,
      deployment: ports.deployment,
      ...(slice ? {} : { heads: ports.heads }),
      ...(ports.streams ? { listStreams: ports.streams } : {}),
    },
    { keys: ports.trusted, basis: "signing-key", detail: "the embedded sink's own signing key" },
    {
      mode: job.kind === "incremental" ? "incremental" : "full",
      producerKeys: job.producerKeys,
      signal,
      progress: {
        onSegment: (_position: number, _bytes: number, records: number) => {
          progressed = true;
          hooks.onRecords?.(records);
        },
      },
      ...(slice
        ? {
            layout: job.from === undefined,
            sweep: {
              ...(job.from ? { from: job.from } : {}),
              pause: () =>
                job.from === undefined || signal.aborted || (progressed && performance.now() >= deadline),
            },
          }
        : {
            states: job.states ?? {},
            ...(job.settleMs !== undefined ? { settle: { tries: 4, delayMs: job.settleMs } } : {}),
            // The pause before re-reading a head that looks rolled back ends at once when the verifier stops.
            sleep: (ms: number) => sleep(ms, undefined, { signal }),
            ...(ports.witnesses ? { witnesses: ports.witnesses, now: () => job.now } : {}),
          }),
    },
  );
  return {
    streams: report.streams.length,
    records: report.streams.reduce((n, r) => n + r.records, 0),
    failures: allFailures(report) as Finding[],
    states: report.states,
    ...(report.resumeAt ? { resumeAt: report.resumeAt } : {}),
  };
}

/**
 * The embedded sink's scheduled verifier. Every interval it runs core's runVerification — the same run as
 * `auditsink verify` — incrementally from where the last clean run ended; and it sweeps the whole archive (every
 * object from record 0, files outside the layout included) in slices: a sweep starts when none has completed
 * for `fullIntervalMs` (or after `fullEvery` incremental runs), and proceeds `sweepSliceMs` at a time, resting
 * between slices so that it takes at most `sweepShare` of the sink's time. Its cursor (stream and position, with
 * the chain and Merkle frontier reached) is saved after every slice, so a sweep interrupted by a shutdown or a
 * crash resumes where it was. It turns findings into alerts:
 *   - every failure code of docs/FORMAT.md §Failure codes (chain, segments, checkpoints, producer signatures,
 *     the head store, the set of streams, objects outside the layout, …);
 *   - `producer-silent` for a producer registered with a heartbeat that has sent nothing for longer;
 *   - `verifier-error` when a run itself fails.
 * A verification finding is alerted once when it opens and then stands (FindingsLedger, `<data>/findings.json`)
 * until an operator acknowledges it — an acknowledgement recorded in the `_system` stream. While one stands,
 * health is degraded, whatever later incremental runs see. A stream with failures is re-verified from its last
 * clean state.
 *
 * The runs and slices are carried out on a thread of their own (VerifierThread, the `runner`); only their
 * results — findings, positions, the sweep's cursor — come back to the sink's thread, where they are turned into
 * alerts and saved (docs/EMBEDDED.md §5).
 *
 * Bound on catching a change to an old object: a sweep starts at the latest `fullIntervalMs` (default 300 s)
 * after the previous one started — the time survives restarts — and takes D = (the archive's verification time
 * on one thread) / sweepShare; a change is reported at most max(fullIntervalMs, D) + D after it is made.
 */
import type { KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  type Alert,
  type AlertSink,
  type Clock,
  type Finding,
  type ProducerInfo,
  type SweepCursor,
  systemClock,
  VerificationStoppedError,
  type VerifierState,
} from "@auditsink/core";
import { crashPoint } from "./crashpoint.ts";
import {
  type Acknowledgement,
  FINDING_ACKNOWLEDGED,
  FindingsLedger,
  type OpenFinding,
} from "./FindingsLedger.ts";
import { type FileSystem, isErrno, nodeFileSystem, replaceFile } from "./fsutil.ts";
import type { JobHooks, JobResult, JobRunner } from "./verificationJob.ts";

export interface ScheduledVerifierOptions {
  /** Carries out each run and slice: the sink's VerifierThread (`thread.run`). */
  runner: JobRunner;
  /** Public keys by key id (every producer key, revoked or not, and the sink's own). */
  producerKeys: () => ReadonlyMap<string, KeyObject>;
  producers: () => Promise<ProducerInfo[]>;
  /** Newest `received` time per producer, brought up to date by the call. */
  lastSeen: () => Promise<ReadonlyMap<string, string>>;
  alerts: AlertSink;
  /** Where incremental state survives restarts; absent = memory only. */
  statePath?: string;
  tmpDir: string;
  intervalMs: number;
  /** A sweep starts after this many incremental runs without one (default 10). */
  fullEvery?: number;
  /** A sweep starts at the latest this long after the last completed one started (default 300,000 ms). */
  fullIntervalMs?: number;
  /** Length of one slice of a sweep (default 250 ms): a slice stops at the first segment boundary past it. */
  sweepSliceMs?: number;
  /** Share of the sink's time a sweep may take, in (0, 1] (default 0.1): a slice of t ms rests t·(1−share)/share. */
  sweepShare?: number;
  /** Where open and acknowledged findings survive restarts; absent = memory only. */
  findingsPath?: string;
  /** Records an acknowledgement in the `_system` stream (resolves its index once committed). */
  record?: (type: string, data: Record<string, unknown>) => Promise<{ index: number }>;
  fs?: FileSystem;
  /** First wait before re-reading a head that looks rolled back (a writer may be between steps 5 and 6); doubles, 4 tries. */
  settleMs?: number;
  clock?: Clock;
  /** Told of every finished run (the metrics). */
  onRun?: (run: VerifierRun) => void;
  /** Told of the records each verified segment held, as a run goes (the metrics). */
  onRecords?: (mode: "incremental" | "full" | "sweep", records: number) => void;
}

export interface VerifierRun {
  at: string;
  /** Every object was verified: a forced full run, or the slice that completed a sweep. */
  full: boolean;
  /** A slice of a sweep: where the sweep stands after it (`resumeAt` absent: this slice completed it). */
  sweep?: { startedAt: string; from?: SweepCursor; resumeAt?: SweepCursor };
  streams: number;
  records: number;
  /** What this run found (an incremental run sees only new records: see `open`). */
  failures: Finding[];
  /** Every finding that stands after this run: found now or earlier, not acknowledged. */
  open: OpenFinding[];
  alerts: Alert[];
  durationMs: number;
  /** The run itself could not complete (alert `verifier-error`): its findings are not the whole story. */
  failed: boolean;
}

/** A sweep under way, as saved after every slice (in the verifier state file, beside the incremental states). */
interface Sweep {
  /** When it started: when it completes, the time of the last full verification (FindingsLedger.lastFullRun). */
  startedAt: string;
  /** Where the next slice starts (absent: at the beginning, with the check of the layout). */
  cursor?: SweepCursor;
}

/** The verifier state file: incremental positions per stream, and the sweep under way. */
interface SavedState {
  version: 2;
  states: Record<string, VerifierState>;
  sweep?: Sweep;
}

export class ScheduledVerifier {
  private timer: NodeJS.Timeout | undefined;
  private states = new Map<string, VerifierState>();
  /** The sweep under way, if any. */
  sweep: Sweep | undefined;
  private nextIncremental = 0;
  private sinceSweep = 0;
  private lock: Promise<unknown> = Promise.resolve();
  readonly findings: FindingsLedger;
  private readonly silent = new Set<string>();
  private running: Promise<VerifierRun> | undefined;
  last: VerifierRun | undefined;

  constructor(private readonly o: ScheduledVerifierOptions) {
    this.findings = new FindingsLedger(o.findingsPath, o.tmpDir, o.fs ?? nodeFileSystem);
  }

  /** Loads standing findings; call before start() when `_system` acknowledgements are reconciled. */
  async load(): Promise<void> {
    await this.findings.load();
    this.findingsLoaded = true;
  }

  private findingsLoaded = false;

  /**
   * Acknowledges open findings: records `dev.auditsink.finding.acknowledged` in `_system`, then closes them.
   * Throws StoreError("conflict") naming an id that is not open, before recording anything.
   */
  async acknowledge(ids: readonly string[], by: string, note: string): Promise<OpenFinding[]> {
    if (!this.o.record) throw new Error("this verifier cannot record acknowledgements");
    this.findings.assertOpen(ids);
    const time = this.now().toISOString();
    const { index } = await this.o.record(FINDING_ACKNOWLEDGED, { findings: [...ids], by, note });
    crashPoint("findings:recorded");
    const ack: Acknowledgement = { ids: [...ids], by, note, time };
    const closed = this.findings.apply(ack, index);
    await this.findings.save();
    return closed;
  }

  async start(): Promise<void> {
    if (this.abort.signal.aborted) this.abort = new AbortController();
    if (!this.findingsLoaded) await this.load();
    if (this.o.statePath) {
      try {
        const saved = JSON.parse(await readFile(this.o.statePath, "utf8")) as
          | SavedState
          | Record<string, VerifierState>;
        // Before sweeps, the file held only the per-stream states.
        const v2 = (saved as SavedState).version === 2 ? (saved as SavedState) : undefined;
        this.states = new Map(Object.entries(v2 ? v2.states : saved));
        this.sweep = v2?.sweep;
      } catch (e) {
        if (!isErrno(e, "ENOENT")) this.states = new Map();
      }
    }
    this.nextIncremental = 0;
    if (this.o.intervalMs > 0) this.schedule(0);
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      void this.tick().then(
        (next) => this.timer && this.schedule(next),
        () => this.timer && this.schedule(this.o.intervalMs),
      );
    }, delay);
    this.timer.unref();
  }

  /** One turn of the schedule: an incremental run when one is due, then a slice of a sweep when one is due. */
  private async tick(): Promise<number> {
    if (Date.now() >= this.nextIncremental) {
      await this.runOnce().catch(() => undefined);
      this.nextIncremental = Date.now() + this.o.intervalMs;
    }
    let rest = Number.POSITIVE_INFINITY;
    if (this.sweep || this.sweepDue()) {
      const started = performance.now();
      await this.sweepSlice().catch(() => undefined);
      const share = Math.min(1, Math.max(0.001, this.o.sweepShare ?? 0.1));
      if (this.sweep) rest = ((performance.now() - started) * (1 - share)) / share;
    }
    const untilIncremental = Math.max(0, this.nextIncremental - Date.now());
    const lastFull = this.findings.lastFullRun;
    const untilSweep = this.sweep
      ? rest
      : lastFull === undefined
        ? 0
        : Math.max(0, Date.parse(lastFull) + this.fullIntervalMs - this.now().getTime());
    return Math.min(untilIncremental, untilSweep, rest);
  }

  private get fullIntervalMs(): number {
    return this.o.fullIntervalMs ?? 300_000;
  }

  private sweepDue(): boolean {
    const lastFull = this.findings.lastFullRun;
    return (
      lastFull === undefined ||
      this.now().getTime() - Date.parse(lastFull) >= this.fullIntervalMs ||
      this.sinceSweep >= (this.o.fullEvery ?? 10)
    );
  }

  /**
   * Stops the schedule and aborts a run in progress between two segments (shutdown does not wait for a
   * verification): an aborted incremental or full run raises no alert and saves the position it reached in each
   * stream it found clean, so the next start goes on from there (a stream with findings is re-checked from its
   * last clean state, and the findings are raised then); an aborted slice of a sweep saves its cursor and what it
   * found, and the sweep resumes there after the next start.
   */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort(new Error("the verifier is stopping"));
    await Promise.all([this.running?.catch(() => undefined), this.slicing?.catch(() => undefined)]);
  }

  private abort = new AbortController();

  /** Runs one verification now (or joins the one in progress): incremental, or `full` (the whole archive at once). */
  runOnce(options: { full?: boolean } = {}): Promise<VerifierRun> {
    this.running ??= this.exclusive(() => this.run(options.full ?? false)).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Runs one slice of the sweep under way, or starts a sweep (or joins the slice in progress). */
  sweepSlice(): Promise<VerifierRun> {
    this.slicing ??= this.exclusive(() => this.slice()).finally(() => {
      this.slicing = undefined;
    });
    return this.slicing;
  }

  private slicing: Promise<VerifierRun> | undefined;

  /** Runs and slices take turns: one at a time. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.lock.then(work);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private now(): Date {
    return (this.o.clock ?? systemClock).now();
  }

  private async run(full: boolean): Promise<VerifierRun> {
    this.abort.signal.throwIfAborted();
    const started = Date.now();
    if (!full) this.sinceSweep++;
    const fresh: Alert[] = [];
    let runFailed = false;
    const raise = this.raiser(fresh);
    let result: JobResult | undefined;
    try {
      result = await this.o.runner(
        {
          kind: full ? "full" : "incremental",
          states: Object.fromEntries(this.states),
          producerKeys: this.o.producerKeys(),
          now: this.now(),
          ...(this.o.settleMs !== undefined ? { settleMs: this.o.settleMs } : {}),
        },
        this.hooks(full ? "full" : "incremental"),
      );
      for (const f of result.failures) raise(alertOf(f));
      this.states = new Map(Object.entries(result.states));
      await this.checkHeartbeats(raise);
      await this.saveState();
    } catch (e) {
      if (e instanceof VerificationStoppedError) {
        // Stopped for shutdown: keep the positions reached, so the next start does not verify the same again.
        this.states = new Map(Object.entries(e.states));
        await this.saveState().catch(() => undefined);
      }
      if (this.abort.signal.aborted) throw e;
      runFailed = true;
      raise({ code: "verifier-error", message: `verification run failed: ${(e as Error).message}` }, false);
    }
    if (full && !runFailed) {
      // A whole run at once also completes any sweep under way.
      this.findings.fullRunFinished(new Date(started).toISOString());
      this.sweep = undefined;
      this.sinceSweep = 0;
      await this.saveState().catch(() => undefined);
    }
    return this.finishRun({ started, full, result, fresh, runFailed });
  }

  /**
   * One slice of the sweep: the archive from the cursor, in name order, from record 0 of each stream, until
   * `sweepSliceMs` has passed (or the verifier stops); its findings are raised as a full run's, and its cursor
   * is saved. The slice that reaches the end completes the sweep (FindingsLedger.fullRunFinished).
   */
  private async slice(): Promise<VerifierRun> {
    this.abort.signal.throwIfAborted();
    const started = Date.now();
    this.sweep ??= { startedAt: this.now().toISOString() };
    const sweep = this.sweep;
    const from = sweep.cursor;
    if (!from) this.sinceSweep = 0;
    const fresh: Alert[] = [];
    let runFailed = false;
    let completed = false;
    const raise = this.raiser(fresh);
    let result: JobResult | undefined;
    try {
      result = await this.o.runner(
        {
          kind: "sweep",
          ...(from ? { from } : {}),
          sliceMs: this.o.sweepSliceMs ?? 250,
          producerKeys: this.o.producerKeys(),
          now: this.now(),
        },
        this.hooks("sweep"),
      );
      for (const f of result.failures) raise(alertOf(f));
      if (result.resumeAt) sweep.cursor = result.resumeAt;
      else {
        completed = true;
        this.sweep = undefined;
        this.findings.fullRunFinished(sweep.startedAt);
      }
      await this.saveState();
    } catch (e) {
      if (this.abort.signal.aborted) throw e; // stopped while listing every key: the cursor stays where it was
      runFailed = true;
      raise({ code: "verifier-error", message: `verification sweep failed: ${(e as Error).message}` }, false);
    }
    return this.finishRun({
      started,
      full: completed,
      result,
      fresh,
      runFailed,
      sweep: {
        startedAt: sweep.startedAt,
        ...(from ? { from } : {}),
        ...(this.sweep?.cursor ? { resumeAt: this.sweep.cursor } : {}),
      },
    });
  }

  /** The job's stop signal, and a count of the records of each verified segment (the metrics). */
  private hooks(mode: "incremental" | "full" | "sweep"): JobHooks {
    return { signal: this.abort.signal, onRecords: (records) => this.o.onRecords?.(mode, records) };
  }

  /** A finding (once = true) is alerted when it opens; it then stands until acknowledged. */
  private raiser(fresh: Alert[]): (a: Omit<Alert, "time">, once?: boolean) => void {
    return (a, once = true) => {
      const time = this.now().toISOString();
      if (once && this.findings.observe([a], time).length === 0) return;
      fresh.push({ ...a, time });
    };
  }

  private async finishRun(r: {
    started: number;
    full: boolean;
    /** What the thread found (absent: the run failed before it answered). */
    result: JobResult | undefined;
    fresh: Alert[];
    runFailed: boolean;
    sweep?: VerifierRun["sweep"];
  }): Promise<VerifierRun> {
    const raise = this.raiser(r.fresh);
    try {
      await this.findings.save();
    } catch (e) {
      raise({ code: "verifier-error", message: `findings not saved: ${(e as Error).message}` }, false);
    }
    if (r.fresh.length > 0) await this.o.alerts.send(r.fresh);
    this.last = {
      at: new Date(r.started).toISOString(),
      full: r.full,
      ...(r.sweep ? { sweep: r.sweep } : {}),
      streams: r.result?.streams ?? 0,
      records: r.result?.records ?? 0,
      failures: r.result?.failures ?? [],
      open: [...this.findings.open],
      alerts: r.fresh,
      durationMs: Date.now() - r.started,
      failed: r.runFailed,
    };
    this.o.onRun?.(this.last);
    return this.last;
  }

  private async checkHeartbeats(raise: (a: Omit<Alert, "time">, once?: boolean) => void): Promise<void> {
    const producers = (await this.o.producers()).filter(
      (p) => p.heartbeatSeconds !== undefined && p.keys.some((k) => !k.revokedAt),
    );
    if (producers.length === 0) return;
    const seen = await this.o.lastSeen();
    const now = this.now().getTime();
    for (const p of producers) {
      const last = seen.get(p.id) ?? p.createdAt;
      const quietMs = now - Date.parse(last);
      if (quietMs > p.heartbeatSeconds! * 1000) {
        if (!this.silent.has(p.id)) {
          this.silent.add(p.id);
          raise(
            {
              code: "producer-silent",
              at: p.id,
              message: `producer ${p.id} has sent nothing since ${last} (expected every ${p.heartbeatSeconds}s)`,
            },
            false,
          );
        }
      } else this.silent.delete(p.id);
    }
  }

  private async saveState(): Promise<void> {
    if (!this.o.statePath) return;
    const saved: SavedState = {
      version: 2,
      states: Object.fromEntries(this.states),
      ...(this.sweep ? { sweep: this.sweep } : {}),
    };
    await replaceFile(this.o.tmpDir, this.o.statePath, JSON.stringify(saved), 0o644);
  }
}

function alertOf(f: Finding): Omit<Alert, "time"> {
  return {
    code: f.code,
    ...(f.stream ? { stream: f.stream } : {}),
    ...(f.at !== undefined ? { at: f.at } : {}),
    message: f.message,
  };
}

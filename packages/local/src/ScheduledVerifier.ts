/**
 * The in-process scheduled verifier. Every interval it runs core's runVerification — the same run as
 * `auditsink verify` — incrementally from where the last clean run ended, and in full (every object, files
 * outside the layout included) on the first run and every `fullEvery` runs, and turns findings into alerts:
 *   - every failure code of docs/FORMAT.md §Failure codes (chain, segments, checkpoints, producer signatures,
 *     the head store, the set of streams, objects outside the layout, …);
 *   - `producer-silent` for a producer registered with a heartbeat that has sent nothing for longer;
 *   - `verifier-error` when a run itself fails.
 * A verification finding is alerted once when it opens and then stands (FindingsLedger, `<data>/findings.json`)
 * until an operator acknowledges it — an acknowledgement recorded in the `_system` stream. While one stands,
 * health is degraded, whatever later incremental runs see. A stream with failures is re-verified from its last
 * clean state.
 *
 * It runs on the sink's own thread, without the worker threads `auditsink verify` uses: it shares the cores with
 * ingest, and incremental runs read little (docs/EMBEDDED.md §5).
 *
 * Bound on catching a change to an old object: a full run (every object read again) starts at the latest
 * `fullIntervalMs` (default 300 s) after the previous full run finished — the time survives restarts — or every
 * `fullEvery` runs, whichever comes first; so a change is reported at most fullIntervalMs + intervalMs + one full
 * run's duration after it is made.
 */
import type { KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  type Alert,
  type AlertSink,
  allFailures,
  type Clock,
  type Finding,
  type HeadStore,
  type NoteKey,
  type ObjectStore,
  type ProducerInfo,
  runVerification,
  systemClock,
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

export interface ScheduledVerifierOptions {
  objects: ObjectStore;
  heads: HeadStore;
  deployment: string;
  /** The sink's own live signing key (the report's trust basis is `signing-key`). */
  trusted: readonly NoteKey[];
  /** Public keys by key id (every producer key, revoked or not, and the sink's own). */
  producerKeys: () => ReadonlyMap<string, KeyObject>;
  /** Every name under `objects/streams/` (a directory read; default: listed through `objects`). */
  streams?: () => Promise<string[]>;
  producers: () => Promise<ProducerInfo[]>;
  /** Newest `received` time per producer, brought up to date by the call. */
  lastSeen: () => Promise<ReadonlyMap<string, string>>;
  alerts: AlertSink;
  /** Where incremental state survives restarts; absent = memory only. */
  statePath?: string;
  tmpDir: string;
  intervalMs: number;
  /** A full verification every this many runs (default 10); the first run is always full. */
  fullEvery?: number;
  /** A full verification at the latest this long after the last one finished (default 300,000 ms). */
  fullIntervalMs?: number;
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
}

export interface VerifierRun {
  at: string;
  full: boolean;
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

export class ScheduledVerifier {
  private timer: NodeJS.Timeout | undefined;
  private states = new Map<string, VerifierState>();
  readonly findings: FindingsLedger;
  private readonly silent = new Set<string>();
  private runs = 0;
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
        const saved = JSON.parse(await readFile(this.o.statePath, "utf8")) as Record<string, VerifierState>;
        this.states = new Map(Object.entries(saved));
      } catch (e) {
        if (!isErrno(e, "ENOENT")) this.states = new Map();
      }
    }
    if (this.o.intervalMs > 0) this.schedule(0);
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      void this.runOnce()
        .catch(() => undefined)
        .finally(() => {
          if (this.timer) this.schedule(this.o.intervalMs);
        });
    }, delay);
    this.timer.unref();
  }

  /**
   * Stops the schedule and aborts a run in progress between two segments (shutdown does not wait for a full
   * verification); an aborted run raises no alert and saves no verifier state, so the next start re-checks
   * from the last completed run.
   */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort(new Error("the verifier is stopping"));
    await this.running?.catch(() => undefined);
  }

  private abort = new AbortController();

  /** Runs one verification now (or joins the one in progress). */
  runOnce(options: { full?: boolean } = {}): Promise<VerifierRun> {
    this.running ??= this.run(options.full ?? false).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private now(): Date {
    return (this.o.clock ?? systemClock).now();
  }

  private async run(forceFull: boolean): Promise<VerifierRun> {
    const started = Date.now();
    const lastFull = this.findings.lastFullRun;
    const fullDue =
      lastFull === undefined ||
      this.now().getTime() - Date.parse(lastFull) >= (this.o.fullIntervalMs ?? 300_000);
    const full = forceFull || fullDue || this.runs % (this.o.fullEvery ?? 10) === 0;
    this.runs++;
    const failures: Finding[] = [];
    let records = 0;
    const fresh: Alert[] = [];
    let runFailed = false;
    // A finding (once = true) is alerted when it opens; it then stands until acknowledged.
    const raise = (a: Omit<Alert, "time">, once = true) => {
      const time = this.now().toISOString();
      if (once && this.findings.observe([a], time).length === 0) return;
      fresh.push({ ...a, time });
    };
    let streams = 0;
    try {
      const report = await runVerification(
        {
          objects: this.o.objects,
          deployment: this.o.deployment,
          heads: this.o.heads,
          ...(this.o.streams ? { listStreams: this.o.streams } : {}),
        },
        { keys: this.o.trusted, basis: "signing-key", detail: "the embedded sink's own signing key" },
        {
          mode: full ? "full" : "incremental",
          states: Object.fromEntries(this.states),
          producerKeys: this.o.producerKeys(),
          ...(this.o.settleMs !== undefined ? { settle: { tries: 4, delayMs: this.o.settleMs } } : {}),
          signal: this.abort.signal,
        },
      );
      streams = report.streams.length;
      records = report.streams.reduce((n, r) => n + r.records, 0);
      for (const f of allFailures(report) as Finding[]) {
        failures.push(f);
        raise({
          code: f.code,
          ...(f.stream ? { stream: f.stream } : {}),
          ...(f.at !== undefined ? { at: f.at } : {}),
          message: f.message,
        });
      }
      this.states = new Map(Object.entries(report.states));
      await this.checkHeartbeats(raise);
      await this.saveState();
    } catch (e) {
      if (this.abort.signal.aborted) throw e;
      runFailed = true;
      raise({ code: "verifier-error", message: `verification run failed: ${(e as Error).message}` }, false);
    }
    if (full && !runFailed) this.findings.fullRunFinished(new Date(started).toISOString());
    try {
      await this.findings.save();
    } catch (e) {
      raise({ code: "verifier-error", message: `findings not saved: ${(e as Error).message}` }, false);
    }
    if (fresh.length > 0) await this.o.alerts.send(fresh);
    this.last = {
      at: new Date(started).toISOString(),
      full,
      streams,
      records,
      failures,
      open: [...this.findings.open],
      alerts: fresh,
      durationMs: Date.now() - started,
      failed: runFailed,
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
    await replaceFile(
      this.o.tmpDir,
      this.o.statePath,
      JSON.stringify(Object.fromEntries(this.states)),
      0o644,
    );
  }
}

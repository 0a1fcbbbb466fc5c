/**
 * The in-process scheduled verifier. Every interval it runs core's runVerification — the same run as
 * `auditsink verify` — incrementally from where the last clean run ended, and in full (every object, files
 * outside the layout included) on the first run and every `fullEvery` runs, and turns findings into alerts:
 *   - every failure code of docs/FORMAT.md §Failure codes (chain, segments, checkpoints, producer signatures,
 *     the head store, the set of streams, objects outside the layout, …);
 *   - `producer-silent` for a producer registered with a heartbeat that has sent nothing for longer;
 *   - `verifier-error` when a run itself fails.
 * A finding is alerted once per process; a stream with failures is re-verified from its last clean state.
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
import { isErrno, replaceFile } from "./fsutil.ts";

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
  /** First wait before re-reading a head that looks rolled back (a writer may be between steps 5 and 6); doubles, 4 tries. */
  settleMs?: number;
  clock?: Clock;
}

export interface VerifierRun {
  at: string;
  full: boolean;
  streams: number;
  records: number;
  failures: Finding[];
  alerts: Alert[];
  durationMs: number;
}

export class ScheduledVerifier {
  private timer: NodeJS.Timeout | undefined;
  private states = new Map<string, VerifierState>();
  private readonly alerted = new Set<string>();
  private readonly silent = new Set<string>();
  private runs = 0;
  private running: Promise<VerifierRun> | undefined;
  last: VerifierRun | undefined;

  constructor(private readonly o: ScheduledVerifierOptions) {}

  async start(): Promise<void> {
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

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

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
    const full = forceFull || this.runs % (this.o.fullEvery ?? 10) === 0;
    this.runs++;
    const failures: Finding[] = [];
    let records = 0;
    const fresh: Alert[] = [];
    const raise = (a: Omit<Alert, "time">, once = true) => {
      const id = `${a.code}|${a.stream ?? ""}|${a.at ?? ""}`;
      if (once && this.alerted.has(id)) return;
      this.alerted.add(id);
      fresh.push({ ...a, time: this.now().toISOString() });
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
      raise({ code: "verifier-error", message: `verification run failed: ${(e as Error).message}` }, false);
    }
    if (fresh.length > 0) await this.o.alerts.send(fresh);
    this.last = {
      at: new Date(started).toISOString(),
      full,
      streams,
      records,
      failures,
      alerts: fresh,
      durationMs: Date.now() - started,
    };
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

/**
 * Records audit events for the gateway: fill in and check as the sink will check them signed, append durably to
 * the Spool, and deliver in order in the background: each delivery window's new events signed as one batch
 * (docs/FORMAT.md §3b) with the producer key, the signature kept in the spool before they are sent, and each
 * receipt verified by AuditClient (pinned sink key, inclusion proof, consistency with the newest checkpoint
 * seen, kept across restarts in the spool's witness.json). Checking and spooling happen on the calling thread,
 * before the call is answered; signing, sending and the receipt checks on the DeliveryThread, so they do not hold
 * up tool calls.
 *
 * Fail modes, chosen by the operator:
 * - `closed`: record() resolves only once the event has a verified receipt (within `closedTimeoutMs`), and
 *   admits() is false while the sink is unreachable or a receipt failed, so the gateway refuses calls.
 * - `open`: record() returns once the event is written to the spool (fdatasynced in the background, so the call
 *   never waits for a disk flush). Delivery may wait up to `deliveryLingerMs` for more events (or a full batch),
 *   so a gateway sends fewer, larger batches; it catches up when the sink is back.
 * Either way the event stays spooled until it is receipted: nothing recorded is lost across a restart.
 */

import { join } from "node:path";
import {
  type AuditClientOptions,
  type AuditEventInput,
  ClientError,
  fillEvent,
  ReceiptError,
  WitnessError,
} from "@auditsink/client";
import { checkUnsignedEvent, type Receipt, type SignedEvent, type UnsignedEvent } from "@auditsink/core";
import { DeliveryThread } from "./DeliveryThread.ts";
import { GatewayError } from "./errors.ts";
import type { GatewayMetrics } from "./GatewayMetrics.ts";
import { Spool, type Spooled } from "./Spool.ts";

export type FailMode = "closed" | "open";

export interface SinkOptions
  extends Pick<
    AuditClientOptions,
    "endpoint" | "producerKey" | "sinkKey" | "deployment" | "headers" | "timeoutMs"
  > {
  /** Stream the events go to, for example `agents.mcp`. */
  stream: string;
  /** CloudEvents `source` of the events, for example `mcp-proxy://gateway-1`. */
  source: string;
}

export interface RecorderOptions {
  sink: SinkOptions;
  /** The spool directory (created): events waiting for delivery, receipts, witness state. */
  spoolDir: string;
  failMode: FailMode;
  metrics: GatewayMetrics;
  /** Fail-closed: longest a call waits for its event's receipt (default 10 s). */
  closedTimeoutMs?: number;
  /** Most events per delivery batch (default 100). */
  maxBatchEvents?: number;
  /**
   * Fail-open: longest an event waits for others to share its delivery batch (default DEFAULT_LINGER_MS, 20; 0:
   * sent at once, with whatever else arrived while the previous batch was in flight).
   */
  deliveryLingerMs?: number;
  /** Delay between failed delivery attempts: doubles from `min` to `max` (default 200 ms … 10 s). */
  retryDelayMs?: { min: number; max: number };
  /** Called for each delivery problem (the gateway logs it). */
  onError?: (error: unknown) => void;
}

export interface RecorderStatus {
  failMode: FailMode;
  sinkReachable: boolean;
  backlog: number;
  /** The last receipt or witness failure (a rollback or fork is evidence of tampering), until a delivery verifies. */
  integrityError?: string;
  lastError?: string;
}

const maxBatchEvents = (options: RecorderOptions) => options.maxBatchEvents ?? 100;

/**
 * Fail-open's default linger. A busy gateway then sends a request per 20 ms rather than per event or two: in
 * probes like bench:mcp's process order it cut the sink's CPU per event by about 40 % and the gateway's other
 * threads' (delivery, garbage collection, disk syncs) by about 30 %, with the calls' added latency lower at p50
 * and no higher at p99 (docs/MCP.md §Benchmark). Nobody waits for a fail-open receipt; each event is in the
 * spool before its call is answered.
 */
export const DEFAULT_LINGER_MS = 20;

/** The bytes of one delivery batch stay under AuditClient's 1 MiB batch, so a window is always one request. */
const MAX_BATCH_BYTES = 900 * 1024;

export class AuditRecorder {
  private readonly waiters = new Map<
    number,
    { resolve: (r: Receipt) => void; reject: (e: unknown) => void }
  >();
  private delivering: Promise<void> | undefined;
  /** The next delivery pass, waiting out a retry delay or the fail-open linger. */
  private scheduled: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private reachable = true;
  private integrityError: string | undefined;
  private lastError: string | undefined;
  /** After a refusal of a whole batch, events go one at a time to find the one the sink refuses. */
  private isolate = false;
  private closing = false;

  private constructor(
    private readonly options: RecorderOptions,
    private readonly delivery: DeliveryThread,
    readonly spool: Spool,
  ) {
    this.retryDelay = options.retryDelayMs?.min ?? 200;
    options.metrics.sinkReachable.set(1);
    options.metrics.backlog.set(spool.pending().length);
  }

  static async open(options: RecorderOptions): Promise<AuditRecorder> {
    const spool = await Spool.open(options.spoolDir);
    try {
      const delivery = await DeliveryThread.start({
        ...options.sink,
        stateFile: join(options.spoolDir, "witness.json"),
        batch: { maxEvents: maxBatchEvents(options), maxBytes: 1024 * 1024, lingerMs: 60_000 },
        retry: { maxAttempts: 2, baseDelayMs: 50, maxDelayMs: 200 },
        timeoutMs: options.sink.timeoutMs ?? 5000,
      });
      const recorder = new AuditRecorder(options, delivery, spool);
      recorder.kick();
      return recorder;
    } catch (e) {
      await spool.close();
      throw e;
    }
  }

  get stream(): string {
    return this.options.sink.stream;
  }

  /** Fail-closed: whether a call may go through now (the sink answers and its receipts verify). */
  admits(): boolean {
    return this.options.failMode === "open" || (this.reachable && !this.integrityError);
  }

  status(): RecorderStatus {
    return {
      failMode: this.options.failMode,
      sinkReachable: this.reachable,
      backlog: this.spool.pending().length,
      ...(this.integrityError ? { integrityError: this.integrityError } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /**
   * Fills in and checks an event as the sink will check it once signed; `fallback` is taken instead when `input`
   * would not be accepted (arguments nested too deep, too large). Throws IngestError when neither would be.
   * `reserveBytes` is room for members the caller adds later (each a JSON value the sink takes), before it hands
   * the event to append(): the gateway checks a call's event while the call is under way and completes it with
   * the answer, so the check is not on the call's path.
   */
  check(input: AuditEventInput, fallback?: () => AuditEventInput, reserveBytes = 0): UnsignedEvent {
    const checked = (i: AuditEventInput) => {
      const event = fillEvent(i, this.options.sink.source);
      checkUnsignedEvent(event, "event", reserveBytes);
      return event;
    };
    try {
      return checked(input);
    } catch (e) {
      if (!fallback) throw e;
      return checked(fallback());
    }
  }

  /** Checks (check()) and spools one event: append() of what check() returns. */
  async record(
    input: AuditEventInput,
    fallback?: () => AuditEventInput,
    options: { receipt?: boolean } = {},
  ): Promise<{ seq: number; receipt?: Receipt }> {
    return this.append(this.check(input, fallback), options);
  }

  /**
   * Spools one event check() returned (it is signed when it is delivered). Fail-open: resolves once it is written
   * to the spool.
   * Fail-closed: once it has a verified receipt, else rejects with GatewayError("sink-unavailable"), the event
   * still spooled (`receipt: false`: once fdatasynced, for a refusal the sink cannot record now anyway).
   */
  async append(
    event: UnsignedEvent,
    options: { receipt?: boolean } = {},
  ): Promise<{ seq: number; receipt?: Receipt }> {
    const entry = this.spool.append(this.stream, event);
    if (this.options.failMode === "open") {
      // The call is answered first; its metrics and the start of its delivery come right after.
      setImmediate(() => this.spooled());
      return { seq: entry.seq };
    }
    if (options.receipt === false) {
      this.spooled();
      await this.spool.durable();
      return { seq: entry.seq };
    }
    const receipt = new Promise<Receipt>((resolve, reject) =>
      this.waiters.set(entry.seq, { resolve, reject }),
    );
    this.spooled();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new GatewayError(
              "sink-unavailable",
              `the audit sink did not receipt the event within ${this.options.closedTimeoutMs ?? 10_000} ms${this.lastError ? ` (${this.lastError})` : ""}`,
            ),
          ),
        this.options.closedTimeoutMs ?? 10_000,
      );
    });
    try {
      return { seq: entry.seq, receipt: await Promise.race([receipt, timeout]) };
    } finally {
      clearTimeout(timer);
      this.waiters.delete(entry.seq);
    }
  }

  private spooled(): void {
    this.options.metrics.eventsSpooled.inc();
    this.options.metrics.backlog.set(this.spool.pending().length);
    this.kick();
  }

  /** Resolves once every event spooled so far is delivered (or rejects after `timeoutMs`). */
  async drain(timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.spool.pending().length > 0) {
      if (Date.now() > until)
        throw new GatewayError(
          "sink-unavailable",
          `${this.spool.pending().length} event(s) still undelivered`,
        );
      this.kick(true);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Starts a delivery pass unless one runs or is scheduled; `now` skips the wait of a pending retry or linger.
   * Fail-open, a pass starts after the linger unless a full batch is waiting.
   */
  private kick(now = false): void {
    if (this.closing) return;
    if (now && this.scheduled) {
      clearTimeout(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.delivering || this.scheduled) return;
    if (!now && this.lingers()) {
      this.schedule(this.lingerMs());
      return;
    }
    this.delivering = this.deliver()
      .catch((e: unknown) => this.spoolFailed(e))
      .finally(() => {
        this.delivering = undefined;
      });
  }

  /**
   * The spool could not keep what a delivery pass decided (its receipts, its cursor, a refused event: a disk
   * error): those events stay pending and go again after the retry delay, and the sink answers the same signed
   * events with the receipts it gave them.
   */
  private spoolFailed(error: unknown): void {
    this.lastError = `the spool: ${error instanceof Error ? error.message : String(error)}`;
    this.options.onError?.(error);
    this.options.metrics.deliveryFailures.inc({ code: "spool" });
    if (this.closing) return;
    this.schedule(this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, this.options.retryDelayMs?.max ?? 10_000);
  }

  private schedule(ms: number): void {
    this.scheduled = setTimeout(() => {
      this.scheduled = undefined;
      this.kick(true);
    }, ms);
  }

  private lingerMs(): number {
    return this.options.failMode === "open" ? (this.options.deliveryLingerMs ?? DEFAULT_LINGER_MS) : 0;
  }

  /** Whether the events waiting should wait for more: fail-open with a linger, less than a full batch. */
  private lingers(): boolean {
    return this.lingerMs() > 0 && this.spool.pending().length < maxBatchEvents(this.options);
  }

  private async deliver(): Promise<void> {
    const { metrics } = this.options;
    while (!this.closing) {
      const window = this.window();
      if (window.length === 0) return;
      const { receipts, failure } = await this.sign(window)
        .then(() =>
          this.delivery.send({
            kind: "send",
            stream: window[0]!.stream,
            events: window.map((e) => e.event as SignedEvent),
          }),
        )
        .catch((e: Error) => ({ receipts: [] as Receipt[], failure: e }));
      if (receipts.length > 0) {
        // Fail-closed calls are answered once their receipts are verified, before the spool's bookkeeping syncs:
        // if the gateway stops before those, a restart sends the same signed events again and keeps the sink's
        // original receipts.
        for (const [i, e] of window.slice(0, receipts.length).entries())
          this.waiters.get(e.seq)?.resolve(receipts[i]!);
        await this.spool.markDelivered(receipts.length, receipts);
        metrics.eventsDelivered.inc(receipts.length);
        metrics.backlog.set(this.spool.pending().length);
      }
      if (failure === undefined) {
        this.reachable = true;
        this.integrityError = undefined;
        this.lastError = undefined;
        this.isolate = false;
        this.retryDelay = this.options.retryDelayMs?.min ?? 200;
        metrics.sinkReachable.set(1);
        // What arrived during this batch waits out the linger like any event, unless it already fills a batch.
        if (this.lingers()) {
          if (this.spool.pending().length > 0) this.schedule(this.lingerMs());
          return;
        }
        continue;
      }
      if (await this.failed(failure, window.length)) continue;
      this.schedule(this.retryDelay);
      this.retryDelay = Math.min(this.retryDelay * 2, this.options.retryDelayMs?.max ?? 10_000);
      return;
    }
  }

  /**
   * Signs the window's events that have no signature yet (the newest: a window starts with those a failed delivery
   * left signed) as one batch on the delivery thread, and keeps the signature in the spool, synced, before any of
   * them is sent: a resend, in this process or after a restart, sends the same bytes.
   */
  private async sign(window: readonly Spooled[]): Promise<void> {
    const unsigned = window.filter((e) => typeof e.event.signature !== "string");
    if (unsigned.length === 0) return;
    const batch = await this.delivery.sign(unsigned.map((e) => e.event));
    await this.spool.addSignature({ first: unsigned[0]!.seq, ...batch });
  }

  /** Accounts for a failed delivery; true when delivery can go on at once (the refused event was set aside). */
  private async failed(error: unknown, windowSize: number): Promise<boolean> {
    const { metrics } = this.options;
    const message = error instanceof Error ? error.message : String(error);
    this.lastError = message;
    this.options.onError?.(error);
    if (error instanceof ReceiptError || error instanceof WitnessError) {
      metrics.receiptFailures.inc({ code: error.code });
      this.integrityError = `${error.code}: ${message}`;
      metrics.sinkReachable.set(0);
      return false;
    }
    const code = error instanceof ClientError ? error.code : "unavailable";
    metrics.deliveryFailures.inc({ code });
    if (code === "rejected") {
      if (windowSize > 1) {
        this.isolate = true;
        return true;
      }
      const refused = await this.spool.reject(message);
      metrics.eventsRejected.inc();
      metrics.backlog.set(this.spool.pending().length);
      if (refused)
        this.waiters
          .get(refused.seq)
          ?.reject(
            new GatewayError("sink-unavailable", `the sink refused the event: ${message}`, { cause: error }),
          );
      return true;
    }
    this.reachable = false;
    metrics.sinkReachable.set(0);
    return false;
  }

  private window(): Spooled[] {
    const pending = this.spool.pending();
    const max = this.isolate ? 1 : maxBatchEvents(this.options);
    const out: Spooled[] = [];
    let bytes = 0;
    for (const e of pending) {
      if (out.length >= max) break;
      if (out.length > 0 && (bytes + e.bytes > MAX_BATCH_BYTES || e.stream !== out[0]!.stream)) break;
      out.push(e);
      bytes += e.bytes;
    }
    return out;
  }

  /** Stops delivering (what is spooled stays for the next start) and releases the spool. */
  async close(options: { drainMs?: number } = {}): Promise<void> {
    if (options.drainMs) await this.drain(options.drainMs).catch(() => undefined);
    this.closing = true;
    if (this.scheduled) clearTimeout(this.scheduled);
    await this.delivering;
    await this.delivery.close();
    await this.spool.close();
  }
}

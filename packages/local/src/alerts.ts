/**
 * Alert sinks of the embedded runtime: a structured log line, a JSON-lines file and an optional webhook.
 * FanOutAlertSink delivers to all of them; one failing does not stop the others, so an alert the alerts file
 * cannot take (a full disk) still reaches the log and the webhook, and the file sink keeps it and retries.
 * Webhook deliveries go through a durable outbox (OutboxWebhookAlertSink): retried with backoff, across restarts.
 */
import { readFile } from "node:fs/promises";
import { type Alert, type AlertSink, StoreError } from "@auditsink/core";
import { type FileSystem, nodeFileSystem, replaceFile, type WritableFile, writeFully } from "./fsutil.ts";
import type { Logger } from "./logger.ts";

/** One log line per alert (`level: "error"`, `msg: "auditsink alert"`, the alert under `alert`), for journald, Loki… */
export class LogAlertSink implements AlertSink {
  constructor(private readonly log: Logger) {}

  async send(alerts: readonly Alert[]): Promise<void> {
    for (const a of alerts) this.log.error({ alert: a }, "auditsink alert");
  }
}

/**
 * Appends alerts to a JSON-lines file and fsyncs it, checking every byte. Alerts it could not write are kept (up
 * to `maxPending`, oldest dropped first, with a count in the next line written) and written before the next
 * ones, on the next send or retry(); a failed append is cut off before the next, so no torn line is left between
 * good ones.
 */
export class JsonLinesAlertSink implements AlertSink {
  private pending: Alert[] = [];
  private droppedPending = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly fs: FileSystem = nodeFileSystem,
    private readonly maxPending = 10_000,
  ) {}

  /** Alerts waiting for the file. */
  get backlog(): number {
    return this.pending.length;
  }

  send(alerts: readonly Alert[]): Promise<void> {
    this.pending.push(...alerts);
    if (this.pending.length > this.maxPending) {
      this.droppedPending += this.pending.length - this.maxPending;
      this.pending.splice(0, this.pending.length - this.maxPending);
    }
    return this.flush();
  }

  /** Writes what is pending (a no-op when nothing is). */
  retry(): Promise<void> {
    return this.flush();
  }

  private flush(): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.pending.length === 0) return;
      const batch = [...this.pending];
      const lost = this.droppedPending;
      const lines = batch.map((a) => `${JSON.stringify(a)}\n`);
      if (lost > 0) {
        lines.unshift(
          `${JSON.stringify({ code: "alerts-dropped", message: `${lost} alerts could not be written while the file was unwritable (they went to the log)`, time: new Date().toISOString() })}\n`,
        );
      }
      let fh: WritableFile | undefined;
      let size = 0;
      try {
        fh = await this.fs.open(this.path, "a", 0o644);
        size = (await fh.stat()).size;
        await writeFully(fh, Buffer.from(lines.join(""), "utf8"), null);
        await fh.datasync();
      } catch (cause) {
        await fh?.truncate(size).catch(() => undefined);
        throw new StoreError(
          "store-failed",
          `appending to ${this.path} (${batch.length} alerts kept for retry)`,
          {
            cause,
          },
        );
      } finally {
        await fh?.close().catch(() => undefined);
      }
      this.pending.splice(0, batch.length);
      this.droppedPending -= lost;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** POSTs `{ "alerts": [...] }` as JSON to a webhook; a non-2xx answer or a timeout is a failure. */
export class WebhookAlertSink implements AlertSink {
  constructor(
    readonly url: string,
    private readonly timeoutMs = 5_000,
  ) {}

  async send(alerts: readonly Alert[]): Promise<void> {
    if (alerts.length === 0) return;
    let status: number;
    try {
      const res = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ alerts }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.status;
      await res.body?.cancel();
    } catch (cause) {
      throw new StoreError("store-failed", `webhook ${this.url} failed`, { cause });
    }
    if (status < 200 || status > 299)
      throw new StoreError("store-failed", `webhook ${this.url} answered ${status}`);
  }
}

export class FanOutAlertSink implements AlertSink {
  constructor(
    private readonly sinks: readonly AlertSink[],
    private readonly onFailure: (error: unknown) => void = () => undefined,
  ) {}

  async send(alerts: readonly Alert[]): Promise<void> {
    const results = await Promise.allSettled(this.sinks.map((s) => s.send(alerts)));
    for (const r of results) if (r.status === "rejected") this.onFailure(r.reason);
  }
}

interface OutboxEntry {
  alerts: Alert[];
  attempts: number;
  /** Epoch ms of the next attempt. */
  next: number;
}

/**
 * Webhook delivery that survives failures and restarts: each send is first written to an outbox file
 * (`<data>/alert-outbox.json`, replaced atomically), then POSTed; a delivery that fails is retried with
 * exponential backoff (1 s doubling to `maxBackoffMs`, default 5 min) until the webhook answers 2xx, and the
 * outbox is read again at start. send() resolves once the alerts are in the outbox (durably handed off), after
 * one delivery attempt.
 */
export class OutboxWebhookAlertSink implements AlertSink {
  private entries: OutboxEntry[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly webhook: WebhookAlertSink,
    readonly outboxPath: string,
    private readonly tmpDir: string,
    private readonly options: {
      fs?: FileSystem;
      maxBackoffMs?: number;
      baseBackoffMs?: number;
      log?: Logger;
      /** Told of every delivery attempt (`retry`: an earlier attempt of that batch failed). */
      onAttempt?: (delivered: boolean, retry: boolean) => void;
    } = {},
  ) {}

  /** Alert batches not yet delivered. */
  get backlog(): number {
    return this.entries.length;
  }

  /** Loads the outbox left by an earlier run and starts delivering it. */
  async start(): Promise<void> {
    try {
      const parsed = JSON.parse(await readFile(this.outboxPath, "utf8")) as { entries?: OutboxEntry[] };
      this.entries = Array.isArray(parsed.entries) ? parsed.entries.map((e) => ({ ...e, next: 0 })) : [];
    } catch {
      this.entries = [];
    }
    if (this.entries.length > 0) void this.deliver();
  }

  /**
   * Stops retrying and waits for a delivery in flight (bounded by the webhook timeout) and its outbox write, so
   * nothing writes the outbox after the sink has released its data directory.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.chain;
  }

  send(alerts: readonly Alert[]): Promise<void> {
    if (alerts.length === 0) return Promise.resolve();
    // Kept in memory and tried even when the outbox cannot be written (a full disk): the webhook is where an
    // operator hears about that disk.
    const saved = this.serial(async () => {
      this.entries.push({ alerts: [...alerts], attempts: 0, next: 0 });
      await this.save();
    });
    return saved.then(
      () => this.deliver(),
      async (cause) => {
        await this.deliver();
        throw new StoreError("store-failed", `writing the webhook outbox ${this.outboxPath}`, { cause });
      },
    );
  }

  /** Tries every entry that is due; schedules the next try for the rest. */
  deliver(): Promise<void> {
    return this.serial(async () => {
      if (this.stopped) return;
      const now = Date.now();
      let changed = false;
      for (const e of [...this.entries]) {
        if (e.next > now) continue;
        const retry = e.attempts > 0;
        try {
          await this.webhook.send(e.alerts);
          this.entries.splice(this.entries.indexOf(e), 1);
          this.options.onAttempt?.(true, retry);
        } catch (error) {
          e.attempts++;
          const base = this.options.baseBackoffMs ?? 1_000;
          e.next = now + Math.min(base * 2 ** (e.attempts - 1), this.options.maxBackoffMs ?? 300_000);
          this.options.onAttempt?.(false, retry);
          this.options.log?.warn(
            {
              attempts: e.attempts,
              retryAt: new Date(e.next).toISOString(),
              error: (error as Error).message,
            },
            "webhook delivery failed; will retry",
          );
        }
        changed = true;
      }
      if (changed) await this.save().catch(() => undefined);
      this.schedule();
    });
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped || this.entries.length === 0) return;
    const next = Math.min(...this.entries.map((e) => e.next));
    this.timer = setTimeout(() => void this.deliver(), Math.max(0, next - Date.now()));
    this.timer.unref();
  }

  private save(): Promise<void> {
    return replaceFile(
      this.tmpDir,
      this.outboxPath,
      `${JSON.stringify({ entries: this.entries })}\n`,
      0o600,
      this.options.fs ?? nodeFileSystem,
    );
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(op);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

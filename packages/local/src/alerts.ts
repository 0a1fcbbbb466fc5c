/**
 * Alert sinks of the embedded runtime: a structured log line, a JSON-lines file and an optional webhook.
 * FanOutAlertSink delivers to all of them; one failing does not stop the others.
 */
import { open } from "node:fs/promises";
import { type Alert, type AlertSink, StoreError } from "@auditsink/core";

/** One JSON log line per alert (`level: "error"`, `msg: "auditsink alert"`), for journald, Loki, CloudWatch… */
export class LogAlertSink implements AlertSink {
  constructor(private readonly write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)) {}

  async send(alerts: readonly Alert[]): Promise<void> {
    for (const a of alerts) this.write(JSON.stringify({ level: "error", msg: "auditsink alert", ...a }));
  }
}

/** Appends alerts to a JSON-lines file and fsyncs it. */
export class JsonLinesAlertSink implements AlertSink {
  constructor(readonly path: string) {}

  async send(alerts: readonly Alert[]): Promise<void> {
    if (alerts.length === 0) return;
    try {
      const fh = await open(this.path, "a", 0o644);
      try {
        await fh.write(alerts.map((a) => `${JSON.stringify(a)}\n`).join(""));
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } catch (cause) {
      throw new StoreError("store-failed", `appending to ${this.path}`, { cause });
    }
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

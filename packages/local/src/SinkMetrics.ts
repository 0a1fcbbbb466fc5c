/**
 * The embedded sink's Prometheus metrics (prom-client), named by core's METRICS list so the AWS functions' EMF
 * metrics carry the same names. One registry per sink (not prom-client's global one), so two sinks in one
 * process never share counts. Gauges that describe state (open findings, age of the last full verification,
 * alert backlogs) are computed when scraped, from the same objects /healthz reads: they cannot go stale.
 */
import { type RequestRecord, submissionOutcome } from "@auditsink/api";
import {
  type Alert,
  type CosignerObserver,
  METRICS,
  type MetricSpec,
  type SinkObserver,
  type WitnessCosigner,
} from "@auditsink/core";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** What the scrape-time gauges read. */
export interface MetricSources {
  openFindings(): number;
  /** ISO time the last full verification that completed started, if any. */
  lastFullRun(): string | undefined;
  backlog(): { webhook: number; file: number };
}

let shared: Registry | undefined;

/**
 * prom-client's default metrics (CPU, memory, file descriptors, event-loop lag, heap, GC) describe the process,
 * not a sink: collected once per process however many sinks it starts (each collection starts an event-loop
 * monitor and a GC observer that nothing stops).
 */
function processRegistry(): Registry {
  if (!shared) {
    shared = new Registry();
    collectDefaultMetrics({ register: shared });
  }
  return shared;
}

export class SinkMetrics {
  readonly registry = new Registry();
  private readonly accepted = this.counter(METRICS.eventsAccepted);
  private readonly rejected = this.counter(METRICS.eventsRejected);
  private readonly commitDuration = this.histogram(METRICS.commitDuration);
  private readonly batchSize = this.histogram(METRICS.commitBatchSize);
  private readonly checkpoints = this.counter(METRICS.checkpointSignatures);
  private readonly producerSignatures = this.counter(METRICS.producerSignatures);
  private readonly verifierRuns = this.counter(METRICS.verifierRuns);
  private readonly verifierFailures = this.counter(METRICS.verifierRunFailures);
  private readonly verifierRecords = this.counter(METRICS.verifierRecords);
  private readonly alertsRaised = this.counter(METRICS.alertsRaised);
  private readonly deliveries = this.counter(METRICS.alertDeliveries);
  private readonly retries = this.counter(METRICS.alertRetries);
  private readonly requests = this.counter(METRICS.httpRequests);
  private readonly requestDuration = this.histogram(METRICS.httpRequestDuration);
  private readonly witnessSubmissions = this.counter(METRICS.witnessSubmissions);

  constructor(private readonly options: { defaultMetrics?: boolean } = {}) {
    // Started with the first sink, so the event-loop and GC figures cover its life from the start.
    if (options.defaultMetrics !== false) processRegistry();
  }

  /** For the core Sink (SinkOptions.observer). */
  readonly observer: SinkObserver = {
    committed: (_stream, records, seconds) => {
      this.batchSize.observe(records);
      this.commitDuration.observe(seconds);
    },
    checkpointSigned: () => this.checkpoints.inc(),
    producerSignatureChecked: (valid) => {
      if (valid) this.producerSignatures.inc();
    },
  };

  /** For the witness cosigner: one count per submission, by witness and outcome. */
  readonly witnessObserver: CosignerObserver = {
    submitted: (witness, outcome) => this.witnessSubmissions.inc({ witness, outcome }),
  };

  /** Registers the witness gauges, computed at scrape time from the cosigner's state (what /healthz reads). */
  watchWitnesses(status: () => ReturnType<WitnessCosigner["status"]>): void {
    this.gauge(METRICS.witnessUp, function () {
      for (const w of status().witnesses) if (w.up !== undefined) this.set({ witness: w.name }, w.up ? 1 : 0);
    });
    this.gauge(METRICS.witnessLastCosigned, function () {
      for (const w of status().witnesses)
        this.set({ witness: w.name }, w.lastCosignedAt ? Date.parse(w.lastCosignedAt) / 1000 : 0);
    });
    this.gauge(METRICS.witnessQuorumMissed, function () {
      this.set(status().quorumMissed.length);
    });
  }

  /** Registers the gauges computed at scrape time. */
  watch(sources: MetricSources, now: () => number = Date.now): void {
    this.gauge(METRICS.findingsOpen, function () {
      this.set(sources.openFindings());
    });
    this.gauge(METRICS.verifierLastFullRunAge, function () {
      const last = sources.lastFullRun();
      this.set(
        last === undefined ? Number.POSITIVE_INFINITY : Math.max(0, (now() - Date.parse(last)) / 1000),
      );
    });
    this.gauge(METRICS.alertBacklog, function () {
      const b = sources.backlog();
      this.set({ sink: "webhook" }, b.webhook);
      this.set({ sink: "file" }, b.file);
    });
  }

  /** One answered HTTP request: accepted or refused events for a submission, and the request counters. */
  request(r: RequestRecord): void {
    this.requests.inc({ method: r.method, route: r.route, status: String(r.status) });
    this.requestDuration.observe({ method: r.method, route: r.route }, r.durationMs / 1000);
    const outcome = submissionOutcome(r);
    if (outcome && "accepted" in outcome) this.accepted.inc(outcome.accepted);
    else if (outcome) this.rejected.inc({ code: outcome.code }, outcome.rejected);
  }

  verifierRun(run: { full: boolean; failed: boolean; sweep?: unknown }): void {
    const mode = run.sweep ? "sweep" : run.full ? "full" : "incremental";
    this.verifierRuns.inc({ mode });
    if (run.failed) this.verifierFailures.inc({ mode });
  }

  /** Records a verification run (`mode`) has just verified. */
  verifiedRecords(mode: "incremental" | "full" | "sweep", records: number): void {
    this.verifierRecords.inc({ mode }, records);
  }

  alerts(batch: readonly Alert[]): void {
    for (const a of batch) this.alertsRaised.inc({ code: a.code });
  }

  /** One webhook delivery attempt of an alert batch (`retry`: an earlier attempt of that batch failed). */
  delivery(delivered: boolean, retry: boolean): void {
    this.deliveries.inc({ result: delivered ? "delivered" : "failed" });
    if (retry) this.retries.inc();
  }

  /** The exposition: this sink's metrics and, unless turned off, the process metrics. */
  async text(): Promise<{ contentType: string; body: string }> {
    const registry =
      this.options.defaultMetrics === false
        ? this.registry
        : Registry.merge([this.registry, processRegistry()]);
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  private counter(s: MetricSpec): Counter<string> {
    return new Counter({ name: s.name, help: s.help, labelNames: s.labels, registers: [this.registry] });
  }

  private histogram(s: MetricSpec): Histogram<string> {
    return new Histogram({
      name: s.name,
      help: s.help,
      labelNames: s.labels,
      ...(s.buckets ? { buckets: [...s.buckets] } : {}),
      registers: [this.registry],
    });
  }

  private gauge(s: MetricSpec, collect: (this: Gauge<string>) => void): Gauge<string> {
    return new Gauge({
      name: s.name,
      help: s.help,
      labelNames: s.labels,
      collect,
      registers: [this.registry],
    });
  }
}

/**
 * The metrics both runtimes report, named once: the embedded sink serves them as Prometheus metrics on
 * `/metrics` (packages/local, prom-client), the AWS functions emit the same names as CloudWatch EMF metrics
 * (packages/aws/src/observability.ts), and the stacks' alarms and dashboards refer to them by these names.
 * docs/OPERATIONS.md §Metrics describes each one. Data only: no dependency, no I/O.
 *
 * Prometheus naming (https://prometheus.io/docs/practices/naming/): counters end in `_total`, durations are in
 * seconds. `labels` are Prometheus labels; on AWS only the `service` dimension is kept (a dimension per label
 * value would be one CloudWatch metric each), so per-label counts there come from the logs.
 */

export type MetricType = "counter" | "gauge" | "histogram";

export interface MetricSpec {
  name: string;
  type: MetricType;
  help: string;
  labels: readonly string[];
  /** CloudWatch unit of the EMF metric of the same name. */
  unit: "Count" | "Seconds";
  /** Histogram bucket upper bounds (Prometheus only; CloudWatch keeps its own percentiles). */
  buckets?: readonly number[];
}

const spec = <const S extends MetricSpec>(s: S): S => s;

export const METRICS = {
  eventsAccepted: spec({
    name: "auditsink_events_accepted_total",
    type: "counter",
    help: "Events acknowledged with a receipt (new records and replays of accepted events)",
    labels: [],
    unit: "Count",
  }),
  eventsRejected: spec({
    name: "auditsink_events_rejected_total",
    type: "counter",
    help: "Events in refused submissions, by problem code (a body that is not a list of events counts as one)",
    labels: ["code"],
    unit: "Count",
  }),
  commitDuration: spec({
    name: "auditsink_commit_duration_seconds",
    type: "histogram",
    help: "Time to commit one segment: write it, record dedup entries, sign and store its checkpoint, move the head",
    labels: [],
    unit: "Seconds",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  }),
  commitBatchSize: spec({
    name: "auditsink_commit_batch_events",
    type: "histogram",
    help: "New records per committed segment (concurrent submissions to a stream share one segment)",
    labels: [],
    unit: "Count",
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  }),
  checkpointSignatures: spec({
    name: "auditsink_checkpoint_signatures_total",
    type: "counter",
    help: "Checkpoints the sink signed (one per committed segment; KMS sign requests on AWS)",
    labels: [],
    unit: "Count",
  }),
  producerSignatures: spec({
    name: "auditsink_producer_signatures_verified_total",
    type: "counter",
    help: "Events whose producer signature verified valid at ingest, per event (a batch-signed event: its membership and its batch signature, verified once per batch); an invalid one is a bad-signature rejection",
    labels: [],
    unit: "Count",
  }),
  verifierRuns: spec({
    name: "auditsink_verifier_runs_total",
    type: "counter",
    help: "Verification runs, by mode: incremental, full (the whole archive at once), or sweep (one slice of a resumable sweep of the whole archive)",
    labels: ["mode"],
    unit: "Count",
  }),
  verifierRunFailures: spec({
    name: "auditsink_verifier_run_failures_total",
    type: "counter",
    help: "Verification runs that could not complete (alert code verifier-error), by mode",
    labels: ["mode"],
    unit: "Count",
  }),
  verifierRecords: spec({
    name: "auditsink_verifier_records_total",
    type: "counter",
    help: "Records verified, by mode (incremental, full or sweep); counted as each segment is verified, so a sweep's progress shows while it runs",
    labels: ["mode"],
    unit: "Count",
  }),
  verifierLastFullRunAge: spec({
    name: "auditsink_verifier_last_full_run_age_seconds",
    type: "gauge",
    help: "Seconds since the last full verification that completed (a whole run or a sweep) started (+Inf: none has yet)",
    labels: [],
    unit: "Seconds",
  }),
  findingsOpen: spec({
    name: "auditsink_findings_open",
    type: "gauge",
    help: "Verification findings that stand unacknowledged",
    labels: [],
    unit: "Count",
  }),
  alertsRaised: spec({
    name: "auditsink_alerts_total",
    type: "counter",
    help: "Alerts raised (verifier findings, runtime integrity failures, silent producers), by code",
    labels: ["code"],
    unit: "Count",
  }),
  alertDeliveries: spec({
    name: "auditsink_alert_deliveries_total",
    type: "counter",
    help: "Webhook delivery attempts of alert batches, by result (delivered or failed)",
    labels: ["result"],
    unit: "Count",
  }),
  alertRetries: spec({
    name: "auditsink_alert_delivery_retries_total",
    type: "counter",
    help: "Webhook delivery attempts that retried a batch an earlier attempt failed to deliver",
    labels: [],
    unit: "Count",
  }),
  alertBacklog: spec({
    name: "auditsink_alert_backlog",
    type: "gauge",
    help: "Alert batches waiting for delivery, by sink (webhook outbox, alerts file)",
    labels: ["sink"],
    unit: "Count",
  }),
  httpRequests: spec({
    name: "auditsink_http_requests_total",
    type: "counter",
    help: "HTTP requests answered, by method, route pattern and status",
    labels: ["method", "route", "status"],
    unit: "Count",
  }),
  httpRequestDuration: spec({
    name: "auditsink_http_request_duration_seconds",
    type: "histogram",
    help: "HTTP request duration until the response is written, by method and route pattern",
    labels: ["method", "route"],
    unit: "Seconds",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  }),
  witnessSubmissions: spec({
    name: "auditsink_witness_submissions_total",
    type: "counter",
    help: "Checkpoints submitted to a witness (c2sp.org/tlog-witness add-checkpoint), by witness name and outcome: cosigned, conflict (the witness named another size; submitted again), unreachable, or a witness-* refusal code",
    labels: ["witness", "outcome"],
    unit: "Count",
  }),
  witnessUp: spec({
    name: "auditsink_witness_up",
    type: "gauge",
    help: "1 when the witness's last submission was cosigned, 0 when it failed (unreachable or refused)",
    labels: ["witness"],
    unit: "Count",
  }),
  witnessLastCosigned: spec({
    name: "auditsink_witness_last_cosigned_timestamp_seconds",
    type: "gauge",
    help: "When the witness last returned a valid cosignature (Unix seconds; 0: never since start)",
    labels: ["witness"],
    unit: "Seconds",
  }),
  witnessQuorumMissed: spec({
    name: "auditsink_witness_quorum_missed_streams",
    type: "gauge",
    help: "Streams whose last cosigning round got fewer valid cosignatures than the configured quorum",
    labels: [],
    unit: "Count",
  }),
} as const satisfies Record<string, MetricSpec>;

/**
 * What the core Sink reports as it works (metrics). Calls are synchronous and must not throw: a runtime maps
 * them to counters and histograms of METRICS.
 */
export interface SinkObserver {
  /** A segment of `records` new records was committed to `stream`, taking `seconds` (METRICS.commitDuration). */
  committed?(stream: string, records: number, seconds: number): void;
  /** The sink signed a checkpoint of `stream` (METRICS.checkpointSignatures). */
  checkpointSigned?(stream: string): void;
  /** A producer's event signature was checked (METRICS.producerSignatures counts the valid ones). */
  producerSignatureChecked?(valid: boolean): void;
}

/**
 * Powertools Logger, Metrics (EMF) and Tracer, one instance each per container. Service name and metrics
 * namespace come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE. Logs carry codes, streams,
 * counts and timings only: never event payloads, signatures or keys.
 *
 * Metric names are core's METRICS, the same names the embedded sink serves on /metrics (docs/OPERATIONS.md
 * §Metrics); here each is an EMF metric with the `service` dimension only.
 */

import { METRICS, type MetricSpec, type SinkObserver } from "@auditsink/core";
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { Tracer } from "@aws-lambda-powertools/tracer";

export const logger = new Logger();
export const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? "auditsink",
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "auditsink",
});
export const tracer = new Tracer();

export { METRICS, MetricUnit };

/** Adds one value of a shared metric to this invocation's EMF blob (published when the handler returns). */
export function emit(spec: MetricSpec, value: number): void {
  metrics.addMetric(spec.name, MetricUnit[spec.unit], value);
}

/** The core Sink's commits and signatures as EMF metrics (SinkOptions.observer). */
export const emfSinkObserver: SinkObserver = {
  committed: (_stream, records, seconds) => {
    emit(METRICS.commitBatchSize, records);
    emit(METRICS.commitDuration, seconds);
  },
  checkpointSigned: () => emit(METRICS.checkpointSignatures, 1),
  producerSignatureChecked: (valid) => {
    if (valid) emit(METRICS.producerSignatures, 1);
  },
};

/** Traces every call a client makes (no-op outside Lambda, where Tracer disables itself). */
export function traceClients<T extends object>(clients: T): T {
  // The document client shares its DynamoDB client's middleware stack: capturing both would trace twice.
  for (const [name, c] of Object.entries(clients)) if (name !== "doc") tracer.captureAWSv3Client(c as never);
  return clients;
}

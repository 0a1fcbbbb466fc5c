/**
 * Powertools Logger, Metrics (EMF) and Tracer, one instance each per container. Service name and metrics
 * namespace come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE. Logs carry codes, streams,
 * counts and timings only: never event payloads, signatures or keys.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { Tracer } from "@aws-lambda-powertools/tracer";

export const logger = new Logger();
export const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? "auditsink",
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "auditsink",
});
export const tracer = new Tracer();

/** The metric names the stacks' alarms and dashboards use. */
export const METRIC = {
  eventsCommitted: "EventsCommitted",
  commitLatency: "CommitLatency",
  integrityFailures: "IntegrityFailures",
  verifierRuns: "VerifierRuns",
  ingestErrors: "IngestErrors",
} as const;

export { MetricUnit };

/** Traces every call a client makes (no-op outside Lambda, where Tracer disables itself). */
export function traceClients<T extends object>(clients: T): T {
  // The document client shares its DynamoDB client's middleware stack: capturing both would trace twice.
  for (const [name, c] of Object.entries(clients)) if (name !== "doc") tracer.captureAWSv3Client(c as never);
  return clients;
}

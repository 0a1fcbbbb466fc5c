/**
 * Scheduled verifier (EventBridge schedule → Lambda): incremental per-stream verification from watermarks,
 * bounded by the remaining Lambda time, plus archive version, retention, lock and key checks. Findings go
 * out through SNS, EventBridge and the IntegrityFailures metric. `{ "full": true }` in the event's detail
 * (or at its top level, for a manual invoke) verifies everything from the start.
 */

import { AwsRuntime, AwsVerifier, logger, METRIC, MetricUnit, metrics, traceClients } from "@auditsink/aws";
import type { Context, ScheduledEvent } from "aws-lambda";

const runtime = AwsRuntime.fromEnv();
traceClients(runtime.clients);
const verifier = new AwsVerifier(runtime);

export const handler = async (
  event: Partial<ScheduledEvent<{ full?: boolean }>> & { full?: boolean },
  context: Context,
): Promise<{ complete: boolean; streams: number; failures: number }> => {
  logger.addContext(context);
  try {
    const result = await verifier.run({
      remainingMs: () => context.getRemainingTimeInMillis(),
      full: event.full === true || event.detail?.full === true,
    });
    metrics.addMetric(METRIC.verifierRuns, MetricUnit.Count, 1);
    for (const a of result.alerts)
      logger.error("integrity failure", { code: a.code, stream: a.stream, at: a.at });
    logger.info("verifier run", { streams: result.streamsVerified.length, complete: result.complete });
    return {
      complete: result.complete,
      streams: result.streamsVerified.length,
      failures: result.alerts.length,
    };
  } finally {
    metrics.publishStoredMetrics();
  }
};

/**
 * Scheduled verifier (EventBridge schedule → Lambda, reserved concurrency 1): archive change notifications,
 * incremental per-stream verification from watermarks, a slice of the resumable archive sweep, and the key and
 * lock checks, bounded by the remaining Lambda time. New findings go out through SNS and EventBridge; the
 * IntegrityFailures metric, and auditsink_findings_open (the name embedded uses), carry the open findings.
 * `{ "full": true }` in the event's detail (or at its top level, for a manual invoke) verifies everything from
 * the start.
 */

import { AwsRuntime, AwsVerifier, emit, logger, METRICS, metrics, traceClients } from "@auditsink/aws";
import type { Context, ScheduledEvent } from "aws-lambda";

const runtime = AwsRuntime.fromEnv({ exportPublicKey: false });
traceClients(runtime.clients);
const verifier = new AwsVerifier(runtime);

export const handler = async (
  event: Partial<ScheduledEvent<{ full?: boolean }>> & { full?: boolean },
  context: Context,
): Promise<{ complete: boolean; streams: number; newFindings: number; openFindings: number }> => {
  logger.addContext(context);
  try {
    const result = await verifier
      .run({
        remainingMs: () => context.getRemainingTimeInMillis(),
        full: event.full === true || event.detail?.full === true,
      })
      .catch((e: unknown) => {
        // Counted as a run and a failure, as embedded counts them; the function's Errors alarm fires too.
        emit(METRICS.verifierRuns, 1);
        emit(METRICS.verifierRunFailures, 1);
        throw e;
      });
    emit(METRICS.verifierRuns, 1);
    emit(METRICS.findingsOpen, result.findings.open.length);
    for (const a of result.alerts)
      logger.error("integrity failure", { code: a.code, stream: a.stream, at: a.at });
    logger.info("verifier run", {
      streams: result.streamsVerified.length,
      complete: result.complete,
      openFindings: result.findings.open.length,
      trust: result.trust,
      changes: result.changes,
      sweep: result.sweep,
    });
    return {
      complete: result.complete,
      streams: result.streamsVerified.length,
      newFindings: result.alerts.length,
      openFindings: result.findings.open.length,
    };
  } finally {
    metrics.publishStoredMetrics();
  }
};

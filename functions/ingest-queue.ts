/**
 * EventBridge → SQS → Lambda: commits each batch with one Sink commit per stream and reports partial batch
 * failures (Powertools Batch) so SQS retries only failed messages and sends poison messages to the DLQ.
 */

import {
  AwsRuntime,
  commitQueueBatch,
  logger,
  METRIC,
  MetricUnit,
  metrics,
  traceClients,
} from "@auditsink/aws";
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";

const runtime = AwsRuntime.fromEnv();
traceClients(runtime.clients);
const processor = new BatchProcessor(EventType.SQS);

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  try {
    const { sink } = await runtime.start();
    const outcomes = await commitQueueBatch(sink, event.Records);
    let committed = 0;
    const response = await processPartialResponse(
      event,
      async (record: SQSRecord) => {
        const outcome = outcomes.get(record.messageId)!;
        if (!outcome.ok) {
          const error = outcome.error as { code?: string; message?: string };
          logger.warn("message not committed", {
            messageId: record.messageId,
            code: error.code,
            reason: error.message,
          });
          metrics.addMetric(METRIC.ingestErrors, MetricUnit.Count, 1);
          throw outcome.error;
        }
        committed++;
        return outcome.receipt.index;
      },
      processor,
      { context, throwOnFullBatchFailure: false },
    );
    logger.info("batch", { messages: event.Records.length, committed });
    return response;
  } finally {
    metrics.publishStoredMetrics();
  }
};

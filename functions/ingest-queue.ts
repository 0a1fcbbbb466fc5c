/**
 * EventBridge → SQS → Lambda: validates and authenticates each message and hands the accepted events to the
 * sequencer queue (one sequencer per stream commits them). Partial batch failures (Powertools Batch) let SQS
 * retry only refused messages and move poison messages to the DLQ.
 */

import {
  AwsRuntime,
  forwardQueueBatch,
  logger,
  METRIC,
  MetricUnit,
  metrics,
  traceClients,
} from "@auditsink/aws";
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";

const runtime = AwsRuntime.fromEnv({ handOff: true });
traceClients(runtime.clients);
const processor = new BatchProcessor(EventType.SQS);

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  try {
    const { sink } = await runtime.start();
    const outcomes = await forwardQueueBatch(sink, runtime.handOff(), event.Records);
    const response = await processPartialResponse(
      event,
      async (record: SQSRecord) => {
        const outcome = outcomes.get(record.messageId)!;
        if (!outcome.ok) {
          const error = outcome.error as { code?: string; message?: string };
          logger.warn("message not accepted", {
            messageId: record.messageId,
            code: error.code,
            reason: error.message,
          });
          metrics.addMetric(METRIC.ingestErrors, MetricUnit.Count, 1);
          throw outcome.error;
        }
      },
      processor,
      { context, throwOnFullBatchFailure: false },
    );
    logger.info("batch", { messages: event.Records.length, failed: response.batchItemFailures.length });
    return response;
  } finally {
    metrics.publishStoredMetrics();
  }
};

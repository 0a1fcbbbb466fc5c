/**
 * EventBridge → SQS → Lambda: validates and authenticates each message and hands the accepted events to the
 * sequencer queue (one sequencer per stream commits them). Partial batch failures (Powertools Batch) let SQS
 * retry only refused messages and move poison messages to the DLQ.
 */

import { AwsRuntime, emit, forwardQueueBatch, logger, METRICS, metrics, traceClients } from "@auditsink/aws";
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
        // Accepted here: authenticated and handed durably to the sequencer queue (one event per message).
        emit(outcome.ok ? METRICS.eventsAccepted : METRICS.eventsRejected, 1);
        if (!outcome.ok) {
          const error = outcome.error as { code?: string; message?: string };
          logger.warn("message not accepted", {
            messageId: record.messageId,
            code: error.code,
            reason: error.message,
          });
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

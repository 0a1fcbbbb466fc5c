/**
 * SQS FIFO (MessageGroupId = stream) → Lambda: the one sequencer per stream. Commits everything handed off for
 * a stream in the batch as one segment and writes the receipts the ingest requests wait for
 * (packages/aws/src/sequencer.ts). Partial batch failures make SQS redeliver only the streams that failed.
 */
import { AwsRuntime, createSequencerHandler, traceClients } from "@auditsink/aws";

const runtime = AwsRuntime.fromEnv();
traceClients(runtime.clients);

export const handler = createSequencerHandler(runtime);

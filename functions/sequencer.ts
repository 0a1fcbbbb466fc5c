/**
 * The one sequencer per stream. Woken asynchronously by ingest (`{ "stream": "<name>" }`, InvocationType Event)
 * when nobody holds the stream's lease: takes the lease and commits everything pending for the stream, one
 * segment per loop, writing the receipts the ingest requests wait for (packages/aws/src/sequencer.ts). The
 * EventBridge schedule (every minute) runs the sweep that wakes streams whose sequencer died holding the lease.
 */
import { AwsRuntime, createSequencerHandler, traceClients } from "@auditsink/aws";

const runtime = AwsRuntime.fromEnv();
traceClients(runtime.clients);

export const handler = createSequencerHandler(runtime);

/**
 * API Gateway HTTP API (payload v2) → the same Hono app as ingest-http, for the auditors' read routes
 * (streams, checkpoints, records, proofs, events, keys). Its role only reads the archive and the ledger.
 */
import { AwsRuntime, createHttpHandler, traceClients } from "@auditsink/aws";

const runtime = AwsRuntime.fromEnv({ exportPublicKey: false });
traceClients(runtime.clients);

export const handler = createHttpHandler(runtime);

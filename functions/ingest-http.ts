/**
 * API Gateway HTTP API (payload v2) → the one Hono app: POST /v1/streams/{stream}/events and producer
 * administration. Clients are created once per container, at module scope.
 */
import { AwsRuntime, createHttpHandler, traceClients } from "@auditsink/aws";

const runtime = AwsRuntime.fromEnv({ handOff: true });
traceClients(runtime.clients);

export const handler = createHttpHandler(runtime);

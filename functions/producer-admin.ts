/**
 * Producer administration under its own role (stacks/ProducerAdmin.ts):
 *   - API Gateway HTTP API (payload v2, IAM-authorized) → the one Hono app, for POST /v1/producers and
 *     POST /v1/producers/{id}/revoke; each change is recorded in the `_system` stream;
 *   - a direct invocation `{ "acknowledge": { "finding": "<id>", "reason": "<why>" } }` (aws lambda invoke, so
 *     IAM and CloudTrail say who) records a finding's acknowledgement in `_system` and returns its receipt.
 * The first start exports the checkpoint key's public document to `keys/` (ingest may not write there).
 */
import {
  AcknowledgeError,
  AwsRuntime,
  acknowledgeFinding,
  createHttpHandler,
  logger,
  traceClients,
} from "@auditsink/aws";
import type { Receipt } from "@auditsink/core";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";

const runtime = AwsRuntime.fromEnv({ exportPublicKey: true });
traceClients(runtime.clients);
const http = createHttpHandler(runtime);

type Acknowledge = { acknowledge: { finding?: unknown; reason?: unknown } };
type Outcome = { acknowledged: Receipt } | { error: { code: string; message: string } };

export const handler = async (event: APIGatewayProxyEventV2 | Acknowledge, context: Context) => {
  if (!("acknowledge" in event)) return http(event, context);
  logger.addContext(context);
  const { finding, reason } = event.acknowledge ?? {};
  try {
    const receipt = await acknowledgeFinding(runtime, finding as string, reason as string);
    logger.info("finding acknowledged", { finding, index: receipt.index });
    return { acknowledged: receipt } satisfies Outcome;
  } catch (e) {
    if (e instanceof AcknowledgeError)
      return { error: { code: e.code, message: e.message } } satisfies Outcome;
    throw e;
  }
};

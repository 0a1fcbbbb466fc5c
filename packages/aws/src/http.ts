/**
 * The one HTTP app (packages/api `createApp`) on Lambda behind API Gateway HTTP API (payload v2), through
 * `hono/aws-lambda`. ingest-http and query serve this same app; they differ only in the routes API Gateway
 * sends them and in their IAM roles.
 *
 * Producer administration: API Gateway authorizes those routes with IAM (SigV4, stacks/Ingest.ts), so the
 * app's admin check accepts a request exactly when API Gateway reports an IAM-authorized caller for it.
 */
import { createApp, submissionOutcome } from "@auditsink/api";
import { AuditedProducerAdmin } from "@auditsink/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult, Context } from "aws-lambda";
import { handle } from "hono/aws-lambda";
import { emit, logger, METRICS, metrics } from "./observability.ts";
import type { AwsRuntime } from "./runtime.ts";

type LambdaHttpHandler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResult>;

/** Builds the app on first use (the Sink needs KMS) and returns the Lambda handler serving it. */
export function createHttpHandler(runtime: AwsRuntime): LambdaHttpHandler {
  let built: Promise<LambdaHttpHandler> | undefined;
  const build = async (): Promise<LambdaHttpHandler> => {
    const { sink, signer } = await runtime.start();
    const app = createApp({
      sink,
      producers: new AuditedProducerAdmin(runtime.producers, sink),
      events: runtime.events,
      keys: {
        deployment: runtime.settings.origin,
        keys: [
          {
            verifierKey: signer.publicKeyDocument().verifierKey,
            publicKeyPem: signer.key.publicKey.export({ type: "spki", format: "pem" }).toString(),
          },
        ],
      },
      authorizeAdmin: (_token, c) => {
        const { event } = (c.env ?? {}) as { event?: APIGatewayProxyEventV2 };
        const authorizer = (event?.requestContext as { authorizer?: { iam?: unknown } } | undefined)
          ?.authorizer;
        return authorizer?.iam !== undefined && authorizer.iam !== null;
      },
      health: () => ({ runtime: "aws" }),
      // With witnesses, the newest cosigned checkpoint in the archive (what the embedded sink serves too).
      ...(runtime.settings.witnesses ? { cosigned: (stream: string) => runtime.cosigned(stream) } : {}),
      // Unauthenticated: the deployment name (`<app>.<stage>.<region>.<account>`) would show the account id.
      healthShowsDeployment: false,
      alerts: runtime.alerts,
      onRequest: (record) => {
        const outcome = submissionOutcome(record);
        if (outcome && "accepted" in outcome) emit(METRICS.eventsAccepted, outcome.accepted);
        else if (outcome) emit(METRICS.eventsRejected, outcome.rejected);
      },
      logError: (error, request) =>
        logger.error("request failed", {
          ...request,
          error: (error as Error)?.name,
          reason: (error as Error)?.message,
        }),
    });
    return handle(app) as unknown as LambdaHttpHandler;
  };
  return async (event, context) => {
    logger.addContext(context);
    try {
      built ??= build().catch((e) => {
        built = undefined;
        throw e;
      });
      return await (await built)(event, context);
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}

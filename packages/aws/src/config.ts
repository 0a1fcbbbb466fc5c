/**
 * The runtime's settings, read once from the Lambda environment (the contract with stacks/lambda.ts), and the
 * SDK client options every adapter uses. Endpoints come from the SDK's own variables (`AWS_ENDPOINT_URL`,
 * `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`, …), which is how tests point clients at the emulators.
 */
import { AwsConfigError } from "./errors.ts";

/** Object Lock retention floor: EU AI Act Art. 19 asks for at least six months. */
export const MIN_RETENTION_DAYS = 180;

export interface AwsSettings {
  archiveBucket: string;
  ledgerTable: string;
  signingKeyId: string;
  /** Deployment name: the checkpoint key name and origin prefix. */
  origin: string;
  retentionDays: number;
  alertsTopicArn?: string;
  eventBusName?: string;
  /** CloudWatch namespace of the metrics (POWERTOOLS_METRICS_NAMESPACE). */
  metricsNamespace: string;
  serviceName: string;
}

type Env = Readonly<Record<string, string | undefined>>;

function required(env: Env, name: string): string {
  const value = env[name];
  if (!value) throw new AwsConfigError("missing-setting", `environment variable ${name} is not set`);
  return value;
}

/** Reads and checks the settings; throws AwsConfigError naming the first missing or bad one. */
export function settingsFromEnv(env: Env = process.env): AwsSettings {
  const retentionDays = Number(env.RETENTION_DAYS ?? MIN_RETENTION_DAYS);
  if (!Number.isInteger(retentionDays) || retentionDays < MIN_RETENTION_DAYS) {
    throw new AwsConfigError(
      "bad-setting",
      `RETENTION_DAYS must be an integer of at least ${MIN_RETENTION_DAYS}, not ${env.RETENTION_DAYS}`,
    );
  }
  return {
    archiveBucket: required(env, "ARCHIVE_BUCKET"),
    ledgerTable: required(env, "LEDGER_TABLE"),
    signingKeyId: required(env, "SIGNING_KEY_ID"),
    origin: required(env, "ORIGIN"),
    retentionDays,
    ...(env.ALERTS_TOPIC_ARN ? { alertsTopicArn: env.ALERTS_TOPIC_ARN } : {}),
    ...(env.EVENT_BUS_NAME ? { eventBusName: env.EVENT_BUS_NAME } : {}),
    metricsNamespace: env.POWERTOOLS_METRICS_NAMESPACE ?? "auditsink",
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? "auditsink",
  };
}

/**
 * Options shared by every client. S3 needs path-style addressing when an endpoint override points at an
 * emulator on an IP address (virtual-host names like `bucket.127.0.0.1` do not resolve).
 */
export function s3ClientOptions(env: Env = process.env): { forcePathStyle?: boolean } {
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL ? { forcePathStyle: true } : {};
}

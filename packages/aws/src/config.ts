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
  /**
   * SHA-256 fingerprints (hex, of the DER SPKI) of checkpoint keys the verifier trusts besides the live KMS key:
   * a key document in the archive is used only when its key's fingerprint is pinned here.
   */
  trustedKeyFingerprints: string[];
  /** The SQS queue S3 change notifications arrive on (archive bucket → EventBridge → queue). */
  archiveChangesQueueUrl?: string;
  /** Pages (1,000 versions each) the resumable archive sweep checks per verifier run. */
  sweepPagesPerRun: number;
  /** Days between the starts of two archive sweeps. */
  sweepIntervalDays: number;
}

/** Environment names of the verifier's settings (stacks/Verify.ts sets them). */
export const VERIFIER_ENV = {
  trustedKeyFingerprints: "TRUSTED_KEY_FINGERPRINTS",
  archiveChangesQueueUrl: "ARCHIVE_CHANGES_QUEUE_URL",
  sweepPagesPerRun: "SWEEP_PAGES_PER_RUN",
  sweepIntervalDays: "SWEEP_INTERVAL_DAYS",
} as const;

const FINGERPRINT = /^[0-9a-f]{64}$/;

function positiveInteger(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1)
    throw new AwsConfigError("bad-setting", `${name} must be a positive integer, not ${raw}`);
  return value;
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
    trustedKeyFingerprints: fingerprints(env),
    ...(env[VERIFIER_ENV.archiveChangesQueueUrl]
      ? { archiveChangesQueueUrl: env[VERIFIER_ENV.archiveChangesQueueUrl] }
      : {}),
    sweepPagesPerRun: positiveInteger(env, VERIFIER_ENV.sweepPagesPerRun, 5),
    sweepIntervalDays: positiveInteger(env, VERIFIER_ENV.sweepIntervalDays, 7),
  };
}

function fingerprints(env: Env): string[] {
  const raw = env[VERIFIER_ENV.trustedKeyFingerprints] ?? "";
  const list = raw
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  for (const f of list)
    if (!FINGERPRINT.test(f))
      throw new AwsConfigError(
        "bad-setting",
        `${VERIFIER_ENV.trustedKeyFingerprints} must list SHA-256 fingerprints (64 hex digits), not ${f}`,
      );
  return list;
}

/**
 * Options shared by every client. S3 needs path-style addressing when an endpoint override points at an
 * emulator on an IP address (virtual-host names like `bucket.127.0.0.1` do not resolve).
 */
export function s3ClientOptions(env: Env = process.env): { forcePathStyle?: boolean } {
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL ? { forcePathStyle: true } : {};
}

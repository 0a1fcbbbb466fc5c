/**
 * The runtime's settings, read once from the Lambda environment (the contract with stacks/lambda.ts), and the
 * SDK client options every adapter uses. Endpoints come from the SDK's own variables (`AWS_ENDPOINT_URL`,
 * `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`, …), which is how tests point clients at the emulators.
 */
import { FormatError, parseWitnessList, type WitnessOptions, witnessEndpoints } from "@auditsink/core";
import { VERIFIER_ENV, WITNESS_ENV } from "./env-names.ts";
import { AwsConfigError } from "./errors.ts";

/** Object Lock retention floor: EU AI Act Art. 19 asks for at least six months. */
export const MIN_RETENTION_DAYS = 180;

/**
 * Default dedup window: 14 days, the longest the sink itself can hold an event before committing it (the
 * ingest dead-letter queues keep messages 14 days, so a redrive of the oldest one is still recognised).
 */
export const DEFAULT_DEDUP_WINDOW_SECONDS = 14 * 24 * 3600;
/** How long an HTTP ingest request waits for the sequencer's receipt (API Gateway's limit is 30 s). */
export const DEFAULT_RECEIPT_WAIT_SECONDS = 25;

/** The environment variables of the runtime (the contract with stacks/lambda.ts and stacks/Sequencer.ts). */
export const ENV = {
  sequencerFunctionName: "SEQUENCER_FUNCTION_NAME",
  sequencerDeadLetterUrl: "SEQUENCER_DLQ_URL",
  dedupWindowSeconds: "DEDUP_WINDOW_SECONDS",
  receiptWaitSeconds: "RECEIPT_WAIT_SECONDS",
} as const;

export interface AwsSettings {
  archiveBucket: string;
  ledgerTable: string;
  /** The event index's postings (DynamoEventIndex): written by the committing functions, read by query. */
  eventIndexTable: string;
  signingKeyId: string;
  /** Deployment name: the checkpoint key name and origin prefix. */
  origin: string;
  retentionDays: number;
  alertsTopicArn?: string;
  eventBusName?: string;
  /** CloudWatch namespace of the metrics (POWERTOOLS_METRICS_NAMESPACE). */
  metricsNamespace: string;
  serviceName: string;
  /** The sequencer function ingest wakes (and the sequencer itself, to hand over before its timeout). */
  sequencerFunctionName?: string;
  /** Where the sequencer puts messages it can never commit (sequencer only). */
  sequencerDeadLetterUrl?: string;
  /** Replays of one producer + source + id within this many seconds return the original receipt. */
  dedupWindowSeconds?: number;
  /** Seconds an HTTP request waits for its receipt before answering 503 (a retry is idempotent). */
  receiptWaitSeconds?: number;
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
  /**
   * Witnesses the sequencer submits each stream's checkpoints to, and the verifier's witness policy
   * (docs/TRANSPARENCY.md §3); absent when none are configured.
   */
  witnesses?: WitnessOptions;
}

export { VERIFIER_ENV, WITNESS_ENV };

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
  const seconds = (name: string, fallback: number, max: number): number => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isInteger(value) || value < 1 || value > max)
      throw new AwsConfigError("bad-setting", `${name} must be a whole number of seconds from 1 to ${max}`);
    return value;
  };
  return {
    archiveBucket: required(env, "ARCHIVE_BUCKET"),
    ledgerTable: required(env, "LEDGER_TABLE"),
    eventIndexTable: required(env, "EVENT_INDEX_TABLE"),
    signingKeyId: required(env, "SIGNING_KEY_ID"),
    origin: required(env, "ORIGIN"),
    retentionDays,
    ...(env.ALERTS_TOPIC_ARN ? { alertsTopicArn: env.ALERTS_TOPIC_ARN } : {}),
    ...(env.EVENT_BUS_NAME ? { eventBusName: env.EVENT_BUS_NAME } : {}),
    metricsNamespace: env.POWERTOOLS_METRICS_NAMESPACE ?? "auditsink",
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? "auditsink",
    ...(env[ENV.sequencerFunctionName] ? { sequencerFunctionName: env[ENV.sequencerFunctionName] } : {}),
    ...(env[ENV.sequencerDeadLetterUrl] ? { sequencerDeadLetterUrl: env[ENV.sequencerDeadLetterUrl] } : {}),
    dedupWindowSeconds: seconds(ENV.dedupWindowSeconds, DEFAULT_DEDUP_WINDOW_SECONDS, 366 * 24 * 3600),
    receiptWaitSeconds: seconds(ENV.receiptWaitSeconds, DEFAULT_RECEIPT_WAIT_SECONDS, 28),
    trustedKeyFingerprints: fingerprints(env),
    ...(env[VERIFIER_ENV.archiveChangesQueueUrl]
      ? { archiveChangesQueueUrl: env[VERIFIER_ENV.archiveChangesQueueUrl] }
      : {}),
    sweepPagesPerRun: positiveInteger(env, VERIFIER_ENV.sweepPagesPerRun, 5),
    sweepIntervalDays: positiveInteger(env, VERIFIER_ENV.sweepIntervalDays, 7),
    ...witnessSettings(env),
  };
}

/** The witness settings (WITNESS_ENV); none when WITNESSES is empty. Throws AwsConfigError naming the setting. */
function witnessSettings(env: Env): { witnesses?: WitnessOptions } {
  const list = env[WITNESS_ENV.witnesses]?.trim();
  if (!list) return {};
  const optional = (name: string, min: number): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === "") return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min)
      throw new AwsConfigError(
        "bad-setting",
        `${name} must be a whole number of at least ${min}, not ${raw}`,
      );
    return value;
  };
  const quorum = optional(WITNESS_ENV.quorum, 1);
  const intervalSeconds = optional(WITNESS_ENV.intervalSeconds, 0);
  const maxLagSeconds = optional(WITNESS_ENV.maxLagSeconds, 1);
  const timeoutSeconds = optional(WITNESS_ENV.timeoutSeconds, 1);
  const streams = env[WITNESS_ENV.streams]
    ?.split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  try {
    const witnesses: WitnessOptions = {
      witnesses: parseWitnessList(list),
      ...(quorum !== undefined ? { quorum } : {}),
      ...(intervalSeconds !== undefined ? { intervalSeconds } : {}),
      ...(maxLagSeconds !== undefined ? { maxLagSeconds } : {}),
      ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
      ...(streams && streams.length > 0 ? { streams } : {}),
    };
    witnessEndpoints(witnesses);
    return { witnesses };
  } catch (e) {
    if (e instanceof FormatError)
      throw new AwsConfigError("bad-setting", `${WITNESS_ENV.witnesses}: ${e.message}`, { cause: e });
    throw e;
  }
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

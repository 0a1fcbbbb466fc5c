/**
 * Stage settings: everything an operator may change per stage, validated once, before any resource exists.
 *
 * `npx sst deploy --stage <name>` reads them from the environment; SST v2 loads `.env`, `.env.local`,
 * `.env.<stage>` and `.env.<stage>.local` from the project root first, so a stage's settings live in
 * `.env.<stage>`. docs/DEPLOY.md lists every variable.
 */

import { WITNESS_ENV } from "../packages/aws/src/env-names.ts";

/** Object Lock retention may never be shorter than six months (EU AI Act Art. 19; DESIGN.md invariant 4). */
export const RETENTION_FLOOR_DAYS = 180;
/** S3 refuses default retention periods longer than 100 years. */
export const RETENTION_CEILING_DAYS = 36_500;

export interface StageSettings {
  /** Default Object Lock retention (COMPLIANCE mode) of every archived object, in days. */
  retentionDays: number;
  /** Where alarm and alert notifications are mailed; no subscription when absent. */
  alertEmail?: string;
  /** AWS accounts (besides the deploying one) allowed to put events on the ingest bus. */
  producerAccounts: string[];
  /** AWS accounts (besides the deploying one) whose principals may assume the auditor role. */
  auditorAccounts: string[];
  /** Minutes between scheduled verifier runs. */
  verifierIntervalMinutes: number;
  /** Retention of the functions' and the HTTP API's CloudWatch log groups, in days. */
  logRetentionDays: number;
  /**
   * Steady-state request rate (per second) of the HTTP API, across all routes. Default 1,000: one stream's
   * design capacity at batch 1 (docs/AWS.md §Load and cost); at ~0.3 s per request that is ~300 concurrent
   * ingest executions, inside Lambda's default account concurrency of 1,000.
   */
  apiRateLimit: number;
  /** Burst capacity of the HTTP API. */
  apiBurstLimit: number;
  /**
   * Days a replay of one producer + source + id returns the original receipt instead of a new record (the dedup
   * window; docs/AWS.md). Default 14: the longest the sink's own queues keep an event before it is committed.
   */
  dedupWindowDays: number;
  /**
   * SHA-256 fingerprints (hex) of checkpoint keys the verifier trusts besides the live KMS key: earlier keys of
   * this deployment, so their checkpoints keep verifying. A key document in the archive is trusted only if pinned.
   */
  trustedKeyFingerprints: string[];
  /**
   * The checkpoint key's algorithm: `ecdsa-p256` (KMS ECC_NIST_P256, the default) or `ed25519` (KMS
   * ECC_NIST_EDWARDS25519), which witnesses and Go's x/mod note need (docs/TRANSPARENCY.md §2). Fixed at the
   * stage's first deploy: CloudFormation fails an update that changes an existing KMS key's KeySpec.
   */
  checkpointKey: "ecdsa-p256" | "ed25519";
  /**
   * Witnesses the sequencer submits checkpoints to, each `<http(s) URL> <verifier key>` (docs/TRANSPARENCY.md
   * §3); they need `checkpointKey: "ed25519"`.
   */
  witnesses: string[];
  /** Cosignatures each checkpoint should get (default: every witness); the verifier's witness policy. */
  witnessQuorum?: number;
  /** Least seconds between two submissions of one stream (the rate limit per stream). */
  witnessIntervalSeconds: number;
  /** Seconds a checkpoint may wait for a quorum before the verifier reports `witness-policy-unmet`. */
  witnessMaxLagSeconds?: number;
  /** Streams submitted, as producer stream patterns (`agents.*`); default every stream. */
  witnessStreams: string[];
}

/** The KMS key spec of each checkpoint key algorithm (stacks/Signing.ts). */
export const CHECKPOINT_KEY_SPECS = {
  "ecdsa-p256": "ECC_NIST_P256",
  ed25519: "ECC_NIST_EDWARDS25519",
} as const;

export const DEFAULT_SETTINGS: StageSettings = {
  retentionDays: RETENTION_FLOOR_DAYS,
  producerAccounts: [],
  auditorAccounts: [],
  verifierIntervalMinutes: 5,
  logRetentionDays: 365,
  apiRateLimit: 1000,
  apiBurstLimit: 2000,
  dedupWindowDays: 14,
  trustedKeyFingerprints: [],
  checkpointKey: "ecdsa-p256",
  witnesses: [],
  witnessIntervalSeconds: 10,
  witnessStreams: [],
};

/** The environment variable behind each setting (docs/DEPLOY.md documents them under these names). */
export const SETTING_VARIABLES = {
  retentionDays: "AUDITSINK_RETENTION_DAYS",
  alertEmail: "AUDITSINK_ALERT_EMAIL",
  producerAccounts: "AUDITSINK_PRODUCER_ACCOUNTS",
  auditorAccounts: "AUDITSINK_AUDITOR_ACCOUNTS",
  verifierIntervalMinutes: "AUDITSINK_VERIFIER_INTERVAL_MINUTES",
  logRetentionDays: "AUDITSINK_LOG_RETENTION_DAYS",
  apiRateLimit: "AUDITSINK_API_RATE_LIMIT",
  apiBurstLimit: "AUDITSINK_API_BURST_LIMIT",
  dedupWindowDays: "AUDITSINK_DEDUP_WINDOW_DAYS",
  trustedKeyFingerprints: "AUDITSINK_TRUSTED_KEY_FINGERPRINTS",
  checkpointKey: "AUDITSINK_CHECKPOINT_KEY",
  witnesses: "AUDITSINK_WITNESSES",
  witnessQuorum: "AUDITSINK_WITNESS_QUORUM",
  witnessIntervalSeconds: "AUDITSINK_WITNESS_INTERVAL",
  witnessMaxLagSeconds: "AUDITSINK_WITNESS_MAX_LAG",
  witnessStreams: "AUDITSINK_WITNESS_STREAMS",
} as const satisfies Record<keyof StageSettings, string>;

/** CloudWatch Logs accepts only these retention periods. */
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

/** A setting that cannot be deployed. The message names the setting and what would be accepted. */
export class StageSettingsError extends Error {
  override readonly name = "StageSettingsError";
}

/**
 * Validates settings, filling defaults. Throws StageSettingsError naming the first wrong setting.
 *
 * @example
 * ```ts
 * resolveSettings({ retentionDays: 365, alertEmail: "secops@example.com" });
 * ```
 */
export function resolveSettings(input: Partial<StageSettings> = {}): StageSettings {
  const settings: StageSettings = { ...DEFAULT_SETTINGS, ...stripUndefined(input) };
  const { retentionDays } = settings;
  if (!Number.isInteger(retentionDays)) {
    throw new StageSettingsError(`retentionDays must be a whole number of days, got ${retentionDays}`);
  }
  if (retentionDays < RETENTION_FLOOR_DAYS) {
    throw new StageSettingsError(
      `retentionDays is ${retentionDays}, below the ${RETENTION_FLOOR_DAYS}-day floor: archived audit records ` +
        `must stay locked for at least six months (EU AI Act Art. 19). ` +
        `Set ${SETTING_VARIABLES.retentionDays} to ${RETENTION_FLOOR_DAYS} or more.`,
    );
  }
  if (retentionDays > RETENTION_CEILING_DAYS) {
    throw new StageSettingsError(
      `retentionDays is ${retentionDays}, above the ${RETENTION_CEILING_DAYS}-day (100-year) maximum S3 Object Lock accepts`,
    );
  }
  if (settings.alertEmail !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(settings.alertEmail)) {
    throw new StageSettingsError(`alertEmail "${settings.alertEmail}" is not an email address`);
  }
  for (const key of ["producerAccounts", "auditorAccounts"] as const) {
    for (const account of settings[key]) {
      if (!/^\d{12}$/.test(account)) {
        throw new StageSettingsError(`${key} holds "${account}", which is not a 12-digit AWS account id`);
      }
    }
    settings[key] = [...new Set(settings[key])].sort();
  }
  const interval = settings.verifierIntervalMinutes;
  if (!Number.isInteger(interval) || interval < 1 || interval > 60) {
    throw new StageSettingsError(
      `verifierIntervalMinutes must be a whole number from 1 to 60, got ${interval}`,
    );
  }
  if (!LOG_RETENTION_DAYS.includes(settings.logRetentionDays)) {
    throw new StageSettingsError(
      `logRetentionDays is ${settings.logRetentionDays}; CloudWatch Logs accepts ${LOG_RETENTION_DAYS.join(", ")}`,
    );
  }
  if (
    !Number.isInteger(settings.dedupWindowDays) ||
    settings.dedupWindowDays < 1 ||
    settings.dedupWindowDays > 366
  ) {
    throw new StageSettingsError(
      `dedupWindowDays must be a whole number of days from 1 to 366, got ${settings.dedupWindowDays}`,
    );
  }
  for (const key of ["apiRateLimit", "apiBurstLimit"] as const) {
    if (!Number.isInteger(settings[key]) || settings[key] < 1) {
      throw new StageSettingsError(`${key} must be a positive whole number, got ${settings[key]}`);
    }
  }
  settings.trustedKeyFingerprints = settings.trustedKeyFingerprints.map((f) => f.toLowerCase());
  for (const fingerprint of settings.trustedKeyFingerprints) {
    if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
      throw new StageSettingsError(
        `trustedKeyFingerprints holds "${fingerprint}", which is not a SHA-256 fingerprint (64 hex digits)`,
      );
    }
  }
  settings.trustedKeyFingerprints = [...new Set(settings.trustedKeyFingerprints)].sort();
  checkWitnessSettings(settings);
  return settings;
}

/** `<name>+<8 hex key ID>+<base64 key>`: the shape of a c2sp.org/signed-note verifier key (core parses it fully). */
const VERIFIER_KEY = /^[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/]+=*$/;

function checkWitnessSettings(settings: StageSettings): void {
  if (!(settings.checkpointKey in CHECKPOINT_KEY_SPECS)) {
    throw new StageSettingsError(
      `checkpointKey must be "ecdsa-p256" or "ed25519", got "${settings.checkpointKey}"`,
    );
  }
  for (const spec of settings.witnesses) {
    const parts = spec.trim().split(/\s+/);
    const url = parts.find((p) => /^https?:\/\/[^\s]+$/.test(p));
    const key = parts.find((p) => p !== url);
    if (parts.length !== 2 || !url || !key || !VERIFIER_KEY.test(key)) {
      throw new StageSettingsError(
        `witnesses holds "${spec}", which is not "<http(s) URL> <verifier key>" (the witness's submission URL and its vkey)`,
      );
    }
  }
  if (settings.witnesses.length > 0 && settings.checkpointKey !== "ed25519") {
    throw new StageSettingsError(
      "witnesses need an Ed25519 checkpoint key (witnesses only accept Ed25519 log signatures): set " +
        `${SETTING_VARIABLES.checkpointKey}=ed25519 (docs/TRANSPARENCY.md §2), or configure no witnesses`,
    );
  }
  const quorum = settings.witnessQuorum;
  if (
    quorum !== undefined &&
    (!Number.isInteger(quorum) || quorum < 1 || quorum > settings.witnesses.length)
  ) {
    throw new StageSettingsError(
      `witnessQuorum must be a whole number from 1 to the number of witnesses (${settings.witnesses.length}), got ${quorum}`,
    );
  }
  if (!Number.isInteger(settings.witnessIntervalSeconds) || settings.witnessIntervalSeconds < 0) {
    throw new StageSettingsError(
      `witnessIntervalSeconds must be a whole number of seconds, got ${settings.witnessIntervalSeconds}`,
    );
  }
  const lag = settings.witnessMaxLagSeconds;
  if (lag !== undefined && (!Number.isInteger(lag) || lag < 1)) {
    throw new StageSettingsError(
      `witnessMaxLagSeconds must be a positive whole number of seconds, got ${lag}`,
    );
  }
}

/**
 * Reads settings from `AUDITSINK_*` environment variables (see SETTING_VARIABLES), then validates them.
 *
 * @example
 * ```ts
 * settingsFromEnv({ AUDITSINK_RETENTION_DAYS: "400", AUDITSINK_PRODUCER_ACCOUNTS: "111122223333" });
 * ```
 */
export function settingsFromEnv(env: Record<string, string | undefined>): StageSettings {
  const text = (key: keyof StageSettings): string | undefined => {
    const value = env[SETTING_VARIABLES[key]]?.trim();
    return value === "" ? undefined : value;
  };
  const integer = (key: keyof StageSettings): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value)) {
      throw new StageSettingsError(`${SETTING_VARIABLES[key]} must be a whole number, got "${value}"`);
    }
    return Number(value);
  };
  const list = (key: keyof StageSettings): string[] | undefined =>
    text(key)
      ?.split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  try {
    return resolveSettings({
      retentionDays: integer("retentionDays"),
      alertEmail: text("alertEmail"),
      producerAccounts: list("producerAccounts"),
      auditorAccounts: list("auditorAccounts"),
      verifierIntervalMinutes: integer("verifierIntervalMinutes"),
      logRetentionDays: integer("logRetentionDays"),
      apiRateLimit: integer("apiRateLimit"),
      apiBurstLimit: integer("apiBurstLimit"),
      dedupWindowDays: integer("dedupWindowDays"),
      trustedKeyFingerprints: list("trustedKeyFingerprints"),
      checkpointKey: text("checkpointKey") as StageSettings["checkpointKey"] | undefined,
      // One witness per line, or separated by commas (a spec itself holds a space, never a comma).
      witnesses: text("witnesses")
        ?.split(/[\n,]/)
        .map((item) => item.trim())
        .filter((item) => item !== "" && !item.startsWith("#")),
      witnessQuorum: integer("witnessQuorum"),
      witnessIntervalSeconds: integer("witnessIntervalSeconds"),
      witnessMaxLagSeconds: integer("witnessMaxLagSeconds"),
      witnessStreams: list("witnessStreams"),
    });
  } catch (error) {
    if (error instanceof StageSettingsError) {
      throw new StageSettingsError(`Invalid stage settings: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

function stripUndefined<T extends object>(input: T): Partial<T> {
  return Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/**
 * The runtime's witness environment (packages/aws/src/env-names.ts WITNESS_ENV) for the functions that submit,
 * serve or check cosigned checkpoints (sequencer, query, verifier); empty without witnesses.
 */
export function witnessEnvironment(settings: StageSettings): Record<string, string> {
  if (settings.witnesses.length === 0) return {};
  return {
    [WITNESS_ENV.witnesses]: settings.witnesses.join("\n"),
    [WITNESS_ENV.intervalSeconds]: String(settings.witnessIntervalSeconds),
    ...(settings.witnessQuorum !== undefined ? { [WITNESS_ENV.quorum]: String(settings.witnessQuorum) } : {}),
    ...(settings.witnessMaxLagSeconds !== undefined
      ? { [WITNESS_ENV.maxLagSeconds]: String(settings.witnessMaxLagSeconds) }
      : {}),
    ...(settings.witnessStreams.length > 0
      ? { [WITNESS_ENV.streams]: settings.witnessStreams.join(",") }
      : {}),
  };
}

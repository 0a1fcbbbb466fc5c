/**
 * Names that must be known before the resources they name exist.
 *
 * The bucket policy and the signing key's policy refer to the app's IAM roles by ARN, not by reference, so the
 * Archive and Signing stacks need not depend on the stacks that create the roles (which depend on them). Role
 * names are therefore fixed: `<app>-<stage>-<region>-<purpose>`, unique per account across stages and regions.
 */
import type { App } from "sst/constructs";
import { type StageSettings, StageSettingsError } from "./settings.ts";

/** Every IAM role the app creates for itself, by purpose. */
export const ROLE_PURPOSES = [
  "ingest-http",
  "ingest-queue",
  "sequencer",
  "producer-admin",
  "query",
  "verifier",
  "auditor",
] as const;
export type RolePurpose = (typeof ROLE_PURPOSES)[number];

/**
 * Roles that sign with the checkpoint key: the sequencer (every stream's checkpoints, including the `_system`
 * records core's Sink writes when a stream is created) and producer-admin (it commits and signs the `_system`
 * stream's producer registrations, revocations and finding acknowledgements itself). The ingest functions sign
 * nothing: they validate, authenticate and hand events to the sequencer's queue.
 */
export const SIGNER_ROLES = ["sequencer", "producer-admin"] as const satisfies readonly RolePurpose[];

/** The Lambda functions and the handler each runs (the runtime's contract, see functions/). */
export const FUNCTIONS = {
  "ingest-http": "functions/ingest-http.handler",
  "ingest-queue": "functions/ingest-queue.handler",
  sequencer: "functions/sequencer.handler",
  "producer-admin": "functions/producer-admin.handler",
  query: "functions/query.handler",
  verifier: "functions/verifier.handler",
} as const satisfies Partial<Record<RolePurpose, string>>;
export type FunctionPurpose = keyof typeof FUNCTIONS;

/** CloudWatch metric namespace of every EMF metric the functions emit (POWERTOOLS_METRICS_NAMESPACE). */
export const METRICS_NAMESPACE = "auditsink";

const IAM_ROLE_NAME_MAX = 64;

export function roleName(app: App, purpose: RolePurpose): string {
  return `${app.name}-${app.stage}-${app.region}-${purpose}`;
}

/** `arn:<partition>:iam::<account>:role/<roleName>`; `partition` and `account` may be CloudFormation tokens. */
export function roleArn(app: App, purpose: RolePurpose, partition: string, account: string): string {
  return `arn:${partition}:iam::${account}:role/${roleName(app, purpose)}`;
}

/** Matches the ARN of every role of this app, stage and region, including roles added later. */
export function appRoleArnPattern(app: App, partition: string, account: string): string {
  return `arn:${partition}:iam::${account}:role/${app.name}-${app.stage}-${app.region}-*`;
}

/**
 * POWERTOOLS_SERVICE_NAME of a function, which is also the `service` dimension of its metrics. It carries the
 * stage so that two stages in one account and region never feed each other's alarms.
 */
export function serviceName(app: App, purpose: FunctionPurpose): string {
  return `${purpose}-${app.stage}`;
}

/**
 * The C2SP checkpoint origin of this deployment: `<app>.<stage>.<region>.<account>`. The region is part of it
 * because the same stage deployed to two regions is two logs, and two logs must never share an origin.
 */
export function checkpointOrigin(app: App, account: string): string {
  return `${app.name}.${app.stage}.${app.region}.${account}`;
}

/** Refuses stage names that would make an IAM role name longer than IAM allows. */
export function assertNamesFit(app: App): void {
  const longest = ROLE_PURPOSES.map((purpose) => roleName(app, purpose)).sort(
    (a, b) => b.length - a.length,
  )[0]!;
  if (longest.length > IAM_ROLE_NAME_MAX) {
    const spare = IAM_ROLE_NAME_MAX - (longest.length - app.stage.length);
    throw new StageSettingsError(
      `Stage name "${app.stage}" is too long: role "${longest}" exceeds IAM's ${IAM_ROLE_NAME_MAX} characters; ` +
        `in ${app.region} use a stage name of at most ${spare} characters`,
    );
  }
}

const settingsByApp = new WeakMap<App, StageSettings>();

/** Attaches validated settings to the app so that every stack reads the same ones. */
export function provideSettings(app: App, settings: StageSettings): void {
  settingsByApp.set(app, settings);
}

export function useSettings(app: App): StageSettings {
  const settings = settingsByApp.get(app);
  if (!settings)
    throw new Error("Stage settings were not provided; build the app with auditsink(app, settings)");
  return settings;
}

import type { StageSettings } from "../../stacks/settings.ts";
import { ACCOUNT, REGION } from "./synth.ts";

/** The stage every infra test synthesizes, with settings a production stage would use. */
export const STAGE = "ci";
export const SETTINGS: Partial<StageSettings> = {
  retentionDays: 400,
  alertEmail: "secops@example.com",
  producerAccounts: ["444455556666", "111122223333"],
  auditorAccounts: ["777788889999"],
};

/** The IAM role names the app must create (written out, not computed by the code under test). */
export const ROLE = {
  ingestHttp: `auditsink-${STAGE}-${REGION}-ingest-http`,
  ingestQueue: `auditsink-${STAGE}-${REGION}-ingest-queue`,
  sequencer: `auditsink-${STAGE}-${REGION}-sequencer`,
  producerAdmin: `auditsink-${STAGE}-${REGION}-producer-admin`,
  query: `auditsink-${STAGE}-${REGION}-query`,
  verifier: `auditsink-${STAGE}-${REGION}-verifier`,
  auditor: `auditsink-${STAGE}-${REGION}-auditor`,
} as const;

/** A role ARN as flatText() renders the template's Fn::Join (the partition is a Ref). */
export const roleArnText = (name: string) => `arn:AWS::Partition:iam::${ACCOUNT}:role/${name}`;
export const APP_ROLES_PATTERN = `arn:AWS::Partition:iam::${ACCOUNT}:role/auditsink-${STAGE}-${REGION}-*`;

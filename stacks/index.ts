import { Aspects } from "aws-cdk-lib";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { AwsSolutionsChecks, NagSuppressions } from "cdk-nag";
import type { App, Stack } from "sst/constructs";
import { Archive } from "./Archive.ts";
import { Audit } from "./Audit.ts";
import { Ingest } from "./Ingest.ts";
import { Ledger } from "./Ledger.ts";
import { LinterFindings } from "./linters.ts";
import { assertNamesFit, provideSettings } from "./naming.ts";
import { ProducerAdmin } from "./ProducerAdmin.ts";
import { Signing } from "./Signing.ts";
import { resolveSettings, type StageSettings } from "./settings.ts";
import { Verify } from "./Verify.ts";

/** CDK feature flags the stacks rely on (set on the app, before any stack exists). */
export const FEATURE_FLAGS = {
  // S3 log delivery writes through a bucket policy statement, not an ACL: the buckets disable ACLs.
  "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": true,
};

/** The stacks in deployment order; each only uses stacks before it. */
export const STACKS = [Archive, Ledger, Signing, Ingest, ProducerAdmin, Audit, Verify] as const;

/**
 * Adds the whole sink to an SST app: the stacks, tags, the cdk-nag AwsSolutions checks, and the answers to what
 * cfn-lint and checkov report.
 *
 * @example
 * ```ts
 * // sst.config.ts
 * stacks(app) {
 *   auditsink(app, settingsFromEnv(process.env));
 * }
 * ```
 */
export function auditsink(app: App, settings: Partial<StageSettings>): void {
  provideSettings(app, resolveSettings(settings));
  assertNamesFit(app);
  for (const [flag, value] of Object.entries(FEATURE_FLAGS)) app.node.setContext(flag, value);
  for (const stack of STACKS) {
    app.stack(stack);
  }
  for (const stack of app.node.children) {
    if (isSstStack(stack)) acceptSstInternals(stack);
  }
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  // What cfn-lint and checkov report that the design answers otherwise, with the answer (stacks/linters.ts).
  Aspects.of(app).add(new LinterFindings());
}

function isSstStack(node: unknown): node is Stack {
  return typeof node === "object" && node !== null && "customResourceHandler" in node;
}

/**
 * SST v2 gives every stack a custom-resource Lambda (for some of its constructs, and to upload source maps, which
 * the sink's functions keep in their bundles instead). It is SST's, not the sink's: its code is a prebuilt
 * JavaScript bundle, so it runs on arm64 like the sink's functions.
 */
function acceptSstInternals(stack: Stack): void {
  const handler = stack.customResourceHandler;
  (handler.node.defaultChild as lambda.CfnFunction).architectures = [lambda.Architecture.ARM_64.name];
  NagSuppressions.addResourceSuppressions(
    handler,
    [
      {
        id: "AwsSolutions-IAM4",
        reason:
          "SST's own custom-resource handler uses AWSLambdaBasicExecutionRole for its logs; it has no access to " +
          "the archive, the ledger or the signing key.",
        appliesTo: ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
      },
      {
        id: "AwsSolutions-L1",
        reason: "SST pins the runtime of its own custom-resource handler (nodejs22.x).",
      },
    ],
    true,
  );
}

import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as s3 from "aws-cdk-lib/aws-s3";
import { NagSuppressions } from "cdk-nag";
import type { StackContext } from "sst/constructs";
import { skipCheckov } from "./linters.ts";
import { appRoleArnPattern, useSettings } from "./naming.ts";
import { archiveProtections } from "./policies.ts";

/**
 * The write-once store: segments, checkpoints and exported public keys (DESIGN.md §1, invariant 4).
 *
 * Object Lock in COMPLIANCE mode means no principal, the root user included, can delete a locked version or
 * shorten its retention until it expires. Encryption is SSE-S3 on purpose: with a customer-managed KMS key,
 * scheduling that key's deletion would make every locked object unreadable, a way around the lock.
 */
export function Archive({ app, stack }: StackContext) {
  const settings = useSettings(app);

  const accessLogs = new s3.Bucket(stack, "AccessLogs", {
    encryption: s3.BucketEncryption.S3_MANAGED,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    enforceSSL: true,
    minimumTLSVersion: 1.2,
    versioned: true,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    lifecycleRules: [
      {
        id: "expire-access-logs-after-retention",
        expiration: Duration.days(settings.retentionDays),
        noncurrentVersionExpiration: Duration.days(30),
      },
    ],
    removalPolicy: RemovalPolicy.RETAIN,
  });
  const selfLogging =
    "This is the server access log bucket of the archive; logging its own access would log forever.";
  NagSuppressions.addResourceSuppressions(accessLogs, [{ id: "AwsSolutions-S1", reason: selfLogging }]);
  skipCheckov(accessLogs, "CKV_AWS_18", selfLogging);

  const archive = new s3.Bucket(stack, "Archive", {
    objectLockEnabled: true,
    objectLockDefaultRetention: s3.ObjectLockRetention.compliance(Duration.days(settings.retentionDays)),
    versioned: true,
    encryption: s3.BucketEncryption.S3_MANAGED,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    enforceSSL: true,
    minimumTLSVersion: 1.2,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    serverAccessLogsBucket: accessLogs,
    serverAccessLogsPrefix: "archive/",
    // No lifecycle rules: nothing may expire or delete a current or noncurrent version.
    removalPolicy: RemovalPolicy.RETAIN,
  });

  // Every object created and every deletion goes to EventBridge, where the verifier's change queue and the
  // deletion alarm pick them up (stacks/Verify.ts). Set on the CloudFormation resource itself: the L2 option
  // `eventBridgeEnabled` would add a custom-resource Lambda to do what CloudFormation does natively.
  (archive.node.defaultChild as s3.CfnBucket).notificationConfiguration = {
    eventBridgeConfiguration: { eventBridgeEnabled: true },
  };

  const appRoles = appRoleArnPattern(app, stack.partition, stack.account);
  for (const statement of archiveProtections(
    { kind: "resource", principalArnPattern: appRoles },
    archive.bucketArn,
    settings.retentionDays,
  )) {
    archive.addToResourcePolicy(statement);
  }

  // A retained bucket keeps its policy: after `sst remove`, the archive stays TLS-only and its access logs keep
  // arriving.
  archive.policy?.applyRemovalPolicy(RemovalPolicy.RETAIN);
  accessLogs.policy?.applyRemovalPolicy(RemovalPolicy.RETAIN);

  stack.addOutputs({
    ArchiveBucketName: archive.bucketName,
    AccessLogBucketName: accessLogs.bucketName,
  });
  return { archive };
}

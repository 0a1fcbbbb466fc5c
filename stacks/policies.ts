/**
 * The archive, ledger and key protections, written once and used twice: as explicit denies in every app role's
 * identity policy, and (for the archive and the key) in the resource policy, scoped to the app's roles. An
 * explicit deny wins over any allow, so a policy attached to a role later cannot lift them (DESIGN.md
 * invariant 6).
 */
import * as iam from "aws-cdk-lib/aws-iam";
import type * as s3 from "aws-cdk-lib/aws-s3";
import { METRICS_NAMESPACE } from "./naming.ts";

/** S3 actions that would delete, hide, unlock or reconfigure the archive. No app role may perform them. */
export const ARCHIVE_PROTECTED_ACTIONS = [
  "s3:DeleteObject",
  "s3:DeleteObjectVersion",
  "s3:BypassGovernanceRetention",
  "s3:PutObjectLegalHold",
  "s3:PutBucketObjectLockConfiguration",
  "s3:PutBucketPolicy",
  "s3:DeleteBucketPolicy",
  "s3:PutBucketVersioning",
  "s3:PutLifecycleConfiguration",
  "s3:PutEncryptionConfiguration",
  "s3:PutBucketPublicAccessBlock",
  "s3:PutBucketOwnershipControls",
  "s3:PutBucketAcl",
  "s3:PutObjectAcl",
  "s3:PutObjectVersionAcl",
  "s3:PutReplicationConfiguration",
  "s3:PutBucketLogging",
  "s3:DeleteBucket",
];

/** The only S3 writes the sink makes: create an object with its Object Lock retention. */
export const ARCHIVE_WRITE_ACTIONS = ["s3:PutObject", "s3:PutObjectRetention"];

/** KMS actions that would disable, delete, re-permission or rename the signing key. */
export const KEY_PROTECTED_ACTIONS = [
  "kms:ScheduleKeyDeletion",
  "kms:DisableKey",
  "kms:PutKeyPolicy",
  "kms:CreateGrant",
  "kms:UpdateKeyDescription",
  "kms:TagResource",
  "kms:UntagResource",
  "kms:CreateAlias",
  "kms:UpdateAlias",
  "kms:DeleteAlias",
];

/** DynamoDB actions that would drop the ledger, its backups or its items. The ports never delete items. */
export const LEDGER_PROTECTED_ACTIONS = [
  "dynamodb:DeleteTable",
  "dynamodb:UpdateTable",
  "dynamodb:UpdateContinuousBackups",
  "dynamodb:UpdateTimeToLive",
  "dynamodb:DeleteBackup",
  "dynamodb:PutResourcePolicy",
  "dynamodb:DeleteResourcePolicy",
  "dynamodb:DeleteItem",
];

/** DynamoDB writes, denied outright to the roles that only read the ledger. */
export const LEDGER_WRITE_ACTIONS = [
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:BatchWriteItem",
  "dynamodb:ConditionCheckItem",
];

export const LEDGER_READ_ACTIONS = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:Scan",
  "dynamodb:DescribeTable",
];

/**
 * Days above the configured retention a writer may set: S3 counts remaining days from the request, and a writer
 * sets "now + retentionDays" a moment before, so a small margin keeps the sink's own writes inside the ceiling
 * while refusing the decades-long retention a compromised writer could use to pin storage costs on the account.
 */
export const RETENTION_CEILING_MARGIN_DAYS = 2;

/** The stream producer administration records registry changes and acknowledgements in (core SYSTEM_STREAM). */
export const SYSTEM_STREAM_NAME = "_system";

/**
 * Ledger partitions (the `pk` prefix, packages/aws/src/ledger-table.ts) each role may write, enforced with
 * `dynamodb:LeadingKeys`. The sequencer writes chain heads (every stream's, `_system`'s included: core's Sink
 * records each new stream's creation there), dedup entries and stream leases, and (BatchWriteItem) the receipts
 * waiting ingest requests read and the deletes of pending items it committed; producer administration writes
 * producers, their keys, acknowledgement confirmations and the `_system` stream it records changes in; the
 * verifier writes its own state. The ingest functions write only pending items.
 */
export const LEDGER_PARTITIONS = {
  sequencer: ["stream#*", "event#*", "lease#*"],
  /** BatchWriteItem: receipts (puts, short-lived under TTL) and committed pending items (deletes). */
  sequencerBatch: ["receipt#*", "pending#*"],
  pending: ["pending#*"],
  producerAdmin: ["producer#*", "key#*", "ack#*", `stream#${SYSTEM_STREAM_NAME}`, "event#*"],
  /** Items producer-admin may delete: a key and its producer, when their registration is undone. */
  registryUndo: ["producer#*", "key#*"],
  verifier: ["watermark#*", "finding#*", "verifier"],
} as const;

/**
 * What the sequencer may never write, whatever else it is allowed: the producer registry, the confirmations of
 * finding acknowledgements, and the verifier's state. (It does append to `_system`: each new stream's creation.
 * An acknowledgement in `_system` counts only with its `ack#` item, which only producer-admin can write.)
 */
export const SEQUENCER_FORBIDDEN_PARTITIONS = [
  "producer#*",
  "key#*",
  "ack#*",
  "watermark#*",
  "finding#*",
  "verifier",
];

/**
 * Allows item writes only on items whose partition key matches `partitions`. Not BatchWriteItem by default: its
 * delete requests are not authorized as dynamodb:DeleteItem, so the DeleteItem deny would not stop them (the
 * sequencer's receipts and pending deletes are the one exception: `receipt#*` and `pending#*` only).
 */
export function ledgerWrites(
  sid: string,
  tableArn: string,
  partitions: readonly string[],
  actions: readonly string[] = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid,
    actions: [...actions],
    resources: [tableArn],
    conditions: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": [...partitions] } },
  });
}

/** Denies item writes on any item whose partition key matches `partitions` (an explicit deny wins). */
export function denyLedgerPartitions(
  sid: string,
  tableArn: string,
  partitions: readonly string[],
): iam.PolicyStatement {
  return deny({ kind: "identity" }, sid, {
    actions: LEDGER_WRITE_ACTIONS,
    resources: [tableArn, `${tableArn}/*`],
    conditions: { "ForAnyValue:StringLike": { "dynamodb:LeadingKeys": [...partitions] } },
  });
}

/** Who a protection applies to: an identity policy (no principal) or a resource policy (the app's roles). */
export type Scope = { kind: "identity" } | { kind: "resource"; principalArnPattern: string };

function deny(
  scope: Scope,
  sid: string,
  props: Omit<iam.PolicyStatementProps, "effect" | "sid">,
): iam.PolicyStatement {
  if (scope.kind === "identity") return new iam.PolicyStatement({ sid, effect: iam.Effect.DENY, ...props });
  return new iam.PolicyStatement({
    sid,
    effect: iam.Effect.DENY,
    principals: [new iam.AnyPrincipal()],
    ...props,
    conditions: {
      ...props.conditions,
      ArnLike: { "aws:PrincipalArn": scope.principalArnPattern },
    },
  });
}

/**
 * Denies every way of removing, overwriting or unlocking archived objects or reconfiguring the bucket.
 *
 * Retention: S3 requires s3:PutObjectRetention to set retention on PutObject, so writers must keep it. IAM sees
 * the same action whether retention is set at creation or later on an existing version; what it can refuse is a
 * retention that ends sooner than `retentionDays` from now or is not COMPLIANCE mode. Shortening the retention of
 * an existing COMPLIANCE-mode version is refused by S3 itself, for every principal including the root user.
 * A retention longer than the configured one plus RETENTION_CEILING_MARGIN_DAYS is refused too: locked storage
 * nobody can delete for decades is a cost attack.
 */
export function archiveProtections(
  scope: Scope,
  bucketArn: string,
  retentionDays: number,
): iam.PolicyStatement[] {
  const resources = [bucketArn, `${bucketArn}/*`];
  // One day of slack: a writer that sets "now + retentionDays" reaches S3 a moment later, when fewer than
  // retentionDays whole days remain.
  const minimumRemainingDays = retentionDays - 1;
  return [
    deny(scope, "DenyArchiveDeleteUnlockReconfigure", { actions: ARCHIVE_PROTECTED_ACTIONS, resources }),
    deny(scope, "DenyRetentionBelowFloor", {
      actions: ["s3:PutObjectRetention"],
      resources: [`${bucketArn}/*`],
      conditions: {
        NumericLessThan: { "s3:object-lock-remaining-retention-days": String(minimumRemainingDays) },
      },
    }),
    deny(scope, "DenyRetentionAboveCeiling", {
      actions: ["s3:PutObjectRetention"],
      resources: [`${bucketArn}/*`],
      conditions: {
        NumericGreaterThan: {
          "s3:object-lock-remaining-retention-days": String(retentionDays + RETENTION_CEILING_MARGIN_DAYS),
        },
      },
    }),
    deny(scope, "DenyRetentionOtherThanCompliance", {
      actions: ["s3:PutObjectRetention"],
      resources: [`${bucketArn}/*`],
      conditions: { StringNotEquals: { "s3:object-lock-mode": "COMPLIANCE" } },
    }),
    // Create-only writes (invariant 4): a PutObject without If-None-Match could add a new version over a key.
    deny(scope, "DenyPutWithoutIfNoneMatch", {
      actions: ["s3:PutObject"],
      resources: [`${bucketArn}/*`],
      conditions: { Null: { "s3:if-none-match": "true" } },
    }),
  ];
}

/** Denies every S3 write, for roles that only read the archive. */
export function archiveReadOnly(scope: Scope, bucketArn: string): iam.PolicyStatement {
  return deny(scope, "DenyArchiveWrites", {
    actions: ARCHIVE_WRITE_ACTIONS,
    resources: [bucketArn, `${bucketArn}/*`],
  });
}

export function keyProtections(keyArn: string): iam.PolicyStatement {
  return deny({ kind: "identity" }, "DenySigningKeyLifecycle", {
    actions: KEY_PROTECTED_ACTIONS,
    resources: [keyArn],
  });
}

/**
 * Denies dropping or reconfiguring the ledger and deleting its items. `deletable`: partitions whose items the
 * role may delete all the same (producer-admin undoes a registration whose `_system` event could not be
 * recorded: core's ProducerStore.unregister); every other item stays undeletable (dynamodb:LeadingKeys).
 */
export function ledgerProtections(
  tableArn: string,
  deletable: readonly string[] = [],
): iam.PolicyStatement[] {
  const resources = [tableArn, `${tableArn}/*`];
  if (deletable.length === 0)
    return [
      deny({ kind: "identity" }, "DenyLedgerDeleteReconfigure", {
        actions: LEDGER_PROTECTED_ACTIONS,
        resources,
      }),
    ];
  return [
    deny({ kind: "identity" }, "DenyLedgerDeleteReconfigure", {
      actions: LEDGER_PROTECTED_ACTIONS.filter((a) => a !== "dynamodb:DeleteItem"),
      resources,
    }),
    deny({ kind: "identity" }, "DenyLedgerItemDeletes", {
      actions: ["dynamodb:DeleteItem"],
      resources,
      conditions: { "ForAnyValue:StringNotLike": { "dynamodb:LeadingKeys": [...deletable] } },
    }),
  ];
}

/**
 * Runtime alerts (core's `head-mismatch` and `store-mismatch`, integrity errors the HTTP app meets on a read):
 * AwsAlertSink puts them on the account's default event bus (`source` "auditsink") and counts them in the
 * `IntegrityFailures` metric under the function's own `service` dimension, which the RuntimeIntegrityFailures
 * alarm watches (stacks/Verify.ts).
 */
export function runtimeAlertStatements(stack: { partition: string; region: string; account: string }) {
  return [
    new iam.PolicyStatement({
      sid: "PutIntegrityMetric",
      actions: ["cloudwatch:PutMetricData"],
      resources: ["*"],
      conditions: { StringEquals: { "cloudwatch:namespace": METRICS_NAMESPACE } },
    }),
    new iam.PolicyStatement({
      sid: "PublishAlertEvents",
      actions: ["events:PutEvents"],
      resources: [`arn:${stack.partition}:events:${stack.region}:${stack.account}:event-bus/default`],
    }),
  ];
}

export function ledgerReadOnly(tableArn: string): iam.PolicyStatement {
  return deny({ kind: "identity" }, "DenyLedgerWrites", {
    actions: LEDGER_WRITE_ACTIONS,
    resources: [tableArn, `${tableArn}/*`],
  });
}

/** Denies every ledger write except to the `partitions` named (ingest: its pending items only). */
export function ledgerWritesOnly(tableArn: string, partitions: readonly string[]): iam.PolicyStatement {
  return deny({ kind: "identity" }, "DenyLedgerWritesOutsidePending", {
    actions: LEDGER_WRITE_ACTIONS,
    resources: [tableArn, `${tableArn}/*`],
    conditions: { "ForAnyValue:StringNotLike": { "dynamodb:LeadingKeys": [...partitions] } },
  });
}

/**
 * The event index (packages/aws/src/DynamoEventIndex.ts): postings are created by the functions that commit
 * segments (the sequencer; producer administration for `_system`), one conditional PutItem each, and read by
 * the query function with Query and GetItem. The table holds nothing but postings and has no secondary index, so
 * the table's ARN is the whole scope: no `dynamodb:LeadingKeys` narrowing would exclude anything.
 */
export const EVENT_INDEX_WRITE_ACTIONS = ["dynamodb:PutItem"];
export const EVENT_INDEX_READ_ACTIONS = ["dynamodb:Query", "dynamodb:GetItem"];

/** Creating postings (PutItem only: never BatchWriteItem, whose delete requests are not DeleteItem to IAM). */
export function eventIndexWrites(tableArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: "CreatePostings",
    actions: EVENT_INDEX_WRITE_ACTIONS,
    resources: [tableArn],
  });
}

/** Reading postings: Query and GetItem on the index table only. */
export function eventIndexReads(tableArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: "ReadPostings",
    actions: EVENT_INDEX_READ_ACTIONS,
    resources: [tableArn],
  });
}

/**
 * What no role may do to the index whatever else it is allowed: delete or reconfigure the table, delete items,
 * and (for the roles that do not commit: `writes` false) write any item.
 */
export function eventIndexProtections(tableArn: string, writes: boolean): iam.PolicyStatement[] {
  const resources = [tableArn, `${tableArn}/*`];
  return [
    deny({ kind: "identity" }, "DenyPostingsDeleteReconfigure", {
      actions: LEDGER_PROTECTED_ACTIONS,
      resources,
    }),
    deny({ kind: "identity" }, writes ? "DenyPostingsBatchWrites" : "DenyPostingsWrites", {
      actions: writes ? ["dynamodb:BatchWriteItem"] : LEDGER_WRITE_ACTIONS,
      resources,
    }),
  ];
}

export function noSigning(keyArn: string): iam.PolicyStatement {
  return deny({ kind: "identity" }, "DenySigning", { actions: ["kms:Sign"], resources: [keyArn] });
}

/** The ledger reads a function needs to find items by key and index (no Scan, no DescribeTable). */
export const LEDGER_LOOKUP_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"];

/**
 * What a function that reads the archive's objects and the ledger needs, and no more: `ReadArchive` (objects),
 * `ListArchive` (keys; `listVersions` adds the version listing a sequencer's repair reads) and `ReadLedger` on the
 * table and its indexes (by default LEDGER_LOOKUP_ACTIONS). The query function, the sequencer and producer-admin
 * share it; the auditor role and the verifier read more (archiveReadStatements).
 */
export function archiveAndLedgerReads(
  archive: s3.IBucket,
  tableArn: string,
  options: { listVersions?: boolean; ledgerActions?: readonly string[] } = {},
): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: "ReadArchive",
      actions: ["s3:GetObject"],
      resources: [archive.arnForObjects("*")],
    }),
    new iam.PolicyStatement({
      sid: "ListArchive",
      actions: options.listVersions ? ["s3:ListBucket", "s3:ListBucketVersions"] : ["s3:ListBucket"],
      resources: [archive.bucketArn],
    }),
    new iam.PolicyStatement({
      sid: "ReadLedger",
      actions: [...(options.ledgerActions ?? LEDGER_LOOKUP_ACTIONS)],
      resources: [tableArn, `${tableArn}/index/*`],
    }),
  ];
}

/**
 * Reading the archive completely, as a verifier must: every object and version, its retention and legal hold,
 * the listing of all versions and the bucket's lock configuration. The auditor role and the verifier share it.
 */
export function archiveReadStatements(archive: s3.IBucket): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: "ReadArchiveObjects",
      actions: ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"],
      resources: [archive.arnForObjects("*")],
    }),
    new iam.PolicyStatement({
      sid: "ListArchive",
      actions: ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration"],
      resources: [archive.bucketArn],
    }),
  ];
}

import { Duration } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import { NagSuppressions } from "cdk-nag";
import { type StackContext, use } from "sst/constructs";
import { Archive } from "./Archive.ts";
import { EXECUTE_API_FINDING, executeApiArn } from "./http.ts";
import { Ingest } from "./Ingest.ts";
import { Ledger } from "./Ledger.ts";
import { sinkFunction } from "./lambda.ts";
import { roleName, useSettings } from "./naming.ts";
import {
  ARCHIVE_PROTECTED_ACTIONS,
  archiveAndLedgerReads,
  archiveReadOnly,
  archiveReadStatements,
  eventIndexProtections,
  eventIndexReads,
  keyProtections,
  LEDGER_READ_ACTIONS,
  ledgerProtections,
  ledgerReadOnly,
  noSigning,
  runtimeAlertStatements,
} from "./policies.ts";
import { Signing } from "./Signing.ts";
import { witnessEnvironment } from "./settings.ts";

/**
 * Read routes for auditors, served by functions/query; every one requires IAM (SigV4). Besides the records,
 * checkpoints and proofs, the app serves the deployment's signing keys and the registered producers and their
 * public keys, which an auditor needs to check signatures.
 */
export const QUERY_ROUTES = [
  "GET /v1/streams",
  "GET /v1/streams/{stream}/checkpoint",
  "GET /v1/streams/{stream}/records",
  "GET /v1/streams/{stream}/proofs/inclusion",
  "GET /v1/streams/{stream}/proofs/consistency",
  "GET /v1/events",
  "GET /v1/receipts",
  "GET /v1/keys",
  "GET /v1/producers",
  // Every stream as a c2sp.org/tlog-tiles log (packages/api/src/tlog.ts); `{…+}` is API Gateway's greedy path
  // variable: a tile path spans several segments.
  "GET /tlog/{stream}/checkpoint",
  "GET /tlog/{stream}/tile/{tile+}",
  "GET /tlog/{stream}/records/{range+}",
] as const;

/** Everything the auditor role may do, and (by an explicit deny of everything else) nothing more. */
export const AUDITOR_ACTIONS = {
  archive: [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:GetBucketObjectLockConfiguration",
    "s3:ListBucket",
    "s3:ListBucketVersions",
  ],
  ledger: [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
  ],
  key: ["kms:GetPublicKey", "kms:Verify"],
} as const;

/**
 * What auditors use: a read-only role that can verify the archive without the sink's cooperation (DESIGN.md
 * invariant 5), and the query routes of the HTTP API behind IAM authorization.
 */
export function Audit({ app, stack }: StackContext) {
  const settings = useSettings(app);
  const { archive } = use(Archive);
  const { table, eventIndex } = use(Ledger);
  const { signingKeyArn } = use(Signing);
  const { api } = use(Ingest);

  // ---- Auditor role ----
  const trusted = [
    new iam.AccountRootPrincipal(),
    ...settings.auditorAccounts.map((id) => new iam.AccountPrincipal(id)),
  ];
  const auditor = new iam.Role(stack, "AuditorRole", {
    roleName: roleName(app, "auditor"),
    description: `auditsink ${app.stage}: read-only access for auditors verifying the archive`,
    assumedBy: new iam.CompositePrincipal(...trusted),
    maxSessionDuration: Duration.hours(12),
  });
  const allowed = [...AUDITOR_ACTIONS.archive, ...AUDITOR_ACTIONS.ledger, ...AUDITOR_ACTIONS.key];
  const auditorPolicy = new iam.Policy(stack, "AuditorReadOnly", {
    roles: [auditor],
    statements: [
      ...archiveReadStatements(archive),
      new iam.PolicyStatement({
        sid: "ReadLedger",
        actions: [...AUDITOR_ACTIONS.ledger],
        resources: [table.tableArn, `${table.tableArn}/index/*`],
      }),
      new iam.PolicyStatement({
        sid: "VerifyWithPublicKey",
        actions: [...AUDITOR_ACTIONS.key],
        resources: [signingKeyArn],
      }),
      // Whatever else is attached to this role later, it stays read-only.
      new iam.PolicyStatement({
        sid: "DenyEverythingElse",
        effect: iam.Effect.DENY,
        notActions: allowed,
        resources: ["*"],
      }),
    ],
  });
  NagSuppressions.addResourceSuppressions(auditorPolicy, [
    {
      id: "AwsSolutions-IAM5",
      reason:
        "Auditors must read every archived object and version and every ledger index: the wildcards are the " +
        "archive's objects (<bucket>/*) and the table's indexes (<table>/index/*), nothing outside them.",
      appliesTo: [
        { regex: "/^Resource::<Archive[0-9A-F]{8}\\.Arn>\\/\\*$/" },
        { regex: "/^Resource::<Ledger[0-9A-F]{8}\\.Arn>\\/index\\/\\*$/" },
      ],
    },
  ]);

  // ---- Query function and routes ----
  const query = sinkFunction(stack, "query", {
    resources: {
      archiveBucketName: archive.bucketName,
      ledgerTableName: table.tableName,
      eventIndexTableName: eventIndex.tableName,
      signingKeyArn,
    },
    description: "auditsink read API for auditors: checkpoints, records and proofs",
    timeout: 29,
    memorySize: 512,
    // With witnesses, checkpoint answers and /tlog/{stream}/checkpoint carry the newest cosigned checkpoint.
    environment: witnessEnvironment(settings),
    statements: [
      ...archiveAndLedgerReads(archive, table.tableArn, { ledgerActions: LEDGER_READ_ACTIONS }),
      // GET /v1/events: postings, then the segments they name (DynamoEventIndex.ts).
      eventIndexReads(eventIndex.tableArn),
      ...eventIndexProtections(eventIndex.tableArn, false),
      new iam.PolicyStatement({
        sid: "ReadPublicKey",
        actions: ["kms:GetPublicKey", "kms:DescribeKey"],
        resources: [signingKeyArn],
      }),
      archiveReadOnly({ kind: "identity" }, archive.bucketArn),
      new iam.PolicyStatement({
        sid: "DenyArchiveDeleteUnlockReconfigure",
        effect: iam.Effect.DENY,
        actions: ARCHIVE_PROTECTED_ACTIONS,
        resources: [archive.bucketArn, archive.arnForObjects("*")],
      }),
      ledgerReadOnly(table.tableArn),
      ...ledgerProtections(table.tableArn),
      noSigning(signingKeyArn),
      keyProtections(signingKeyArn),
      // The HTTP app alerts on stored data that fails an integrity check on a read (AppDeps.alerts).
      ...runtimeAlertStatements(stack),
    ],
  });
  api.addRoutes(
    stack,
    Object.fromEntries(
      QUERY_ROUTES.map((route) => [route, { function: query.fn, authorizer: "iam" as const }]),
    ),
  );

  // Attach to whoever should call the query routes (an auditor's own role, a dashboard's role).
  const queryReaders = new iam.ManagedPolicy(stack, "QueryApiReaders", {
    managedPolicyName: `${app.name}-${app.stage}-${app.region}-query-api-readers`,
    description: `auditsink ${app.stage}: call the read-only query routes of the HTTP API`,
    statements: [
      new iam.PolicyStatement({
        actions: ["execute-api:Invoke"],
        resources: QUERY_ROUTES.map((route) => executeApiArn(api.httpApiId, route)),
      }),
    ],
  });
  NagSuppressions.addResourceSuppressions(queryReaders, [
    {
      id: "AwsSolutions-IAM5",
      reason:
        "The only wildcards stand for path parameters ({stream}, and a tile path) of the read routes of this API, GET only.",
      appliesTo: [{ regex: EXECUTE_API_FINDING }],
    },
  ]);

  stack.addOutputs({
    AuditorRoleArn: auditor.roleArn,
    QueryApiReadersPolicyArn: queryReaders.managedPolicyArn,
  });
  return { auditor, query: query.fn };
}

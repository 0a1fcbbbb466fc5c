import * as iam from "aws-cdk-lib/aws-iam";
import { type StackContext, use } from "sst/constructs";
import { Archive } from "./Archive.ts";
import { Ingest, PRODUCER_ADMIN_ROUTES } from "./Ingest.ts";
import { Ledger } from "./Ledger.ts";
import { sinkFunction } from "./lambda.ts";
import { useSettings } from "./naming.ts";
import {
  archiveAndLedgerReads,
  archiveProtections,
  eventIndexProtections,
  eventIndexWrites,
  keyProtections,
  LEDGER_PARTITIONS,
  ledgerProtections,
  ledgerWrites,
  runtimeAlertStatements,
  SYSTEM_STREAM_NAME,
} from "./policies.ts";
import { Signing } from "./Signing.ts";

/**
 * Producer administration, apart from the internet-facing ingest: registering and revoking producer keys
 * (the IAM-authorized routes PRODUCER_ADMIN_ROUTES), acknowledging verifier findings (direct invocation), and
 * exporting the checkpoint key's public document to `keys/` when it first starts. Only this role may write the
 * producer registry, `keys/*` and the `_system` stream that records every change; ingest is denied all three.
 */
export function ProducerAdmin({ app, stack }: StackContext) {
  const settings = useSettings(app);
  const { archive } = use(Archive);
  const { table, eventIndex } = use(Ledger);
  const { signingKeyArn } = use(Signing);
  const { api } = use(Ingest);

  const producerAdmin = sinkFunction(stack, "producer-admin", {
    resources: {
      archiveBucketName: archive.bucketName,
      ledgerTableName: table.tableName,
      eventIndexTableName: eventIndex.tableName,
      signingKeyArn,
    },
    description:
      "auditsink producer administration: registers and revokes producer keys, acknowledges findings, exports the public key",
    timeout: 29,
    memorySize: 512,
    statements: [
      new iam.PolicyStatement({
        sid: "CreateKeysAndSystemStream",
        actions: ["s3:PutObject", "s3:PutObjectRetention"],
        resources: [
          archive.arnForObjects("keys/*"),
          archive.arnForObjects(`streams/${SYSTEM_STREAM_NAME}/*`),
        ],
      }),
      ...archiveAndLedgerReads(archive, table.tableArn),
      // The postings of the `_system` segments it commits (DynamoEventIndex.ts).
      eventIndexWrites(eventIndex.tableArn),
      ...eventIndexProtections(eventIndex.tableArn, true),
      ledgerWrites("WriteRegistryAndSystemStream", table.tableArn, LEDGER_PARTITIONS.producerAdmin),
      // The undo of a registration whose `_system` event could not be recorded (core AuditedProducerAdmin).
      ledgerWrites("UndoRegistration", table.tableArn, LEDGER_PARTITIONS.registryUndo, [
        "dynamodb:DeleteItem",
      ]),
      new iam.PolicyStatement({
        sid: "SignSystemStream",
        actions: ["kms:Sign", "kms:GetPublicKey"],
        resources: [signingKeyArn],
      }),
      ...archiveProtections({ kind: "identity" }, archive.bucketArn, settings.retentionDays),
      keyProtections(signingKeyArn),
      ...ledgerProtections(table.tableArn, LEDGER_PARTITIONS.registryUndo),
      ...runtimeAlertStatements(stack),
    ],
  });
  api.addRoutes(
    stack,
    Object.fromEntries(
      PRODUCER_ADMIN_ROUTES.map((route) => [
        route,
        { function: producerAdmin.fn, authorizer: "iam" as const },
      ]),
    ),
  );

  stack.addOutputs({ ProducerAdminFunctionName: producerAdmin.fn.functionName });
  return { producerAdmin: producerAdmin.fn };
}

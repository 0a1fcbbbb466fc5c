import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import type { StackContext } from "sst/constructs";

/**
 * The head store, dedup index and producer registry: one DynamoDB table with the key schema packages/aws
 * documents (`pk`/`sk`, one GSI `gsi1` on `gsi1pk`/`gsi1sk`). It is a fast, repairable cache of the archive
 * (DESIGN.md §4), but losing it would stall ingest, so it is protected like a system of record.
 */
export function Ledger({ stack }: StackContext) {
  // `pk`/`sk` strings, on demand, protected like a system of record: PITR, deletion protection, retained.
  const protectedTable = {
    partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
    sortKey: { name: "sk", type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: true,
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    removalPolicy: RemovalPolicy.RETAIN,
  } satisfies dynamodb.TableProps;
  const table = new dynamodb.Table(stack, "Ledger", {
    ...protectedTable,
    // Dedup entries expire after their window and the sequencer's answers after an hour (packages/aws
    // DynamoDedupStore, handoff.ts); heads, producers and watermarks carry no expiresAt and never expire.
    timeToLiveAttribute: "expiresAt",
  });
  table.addGlobalSecondaryIndex({
    indexName: "gsi1",
    partitionKey: { name: "gsi1pk", type: dynamodb.AttributeType.STRING },
    sortKey: { name: "gsi1sk", type: dynamodb.AttributeType.STRING },
    projectionType: dynamodb.ProjectionType.ALL,
  });

  // The event index (packages/aws/src/DynamoEventIndex.ts): postings of every committed segment, written by the
  // functions that commit, read by the query function, so `GET /v1/events` never scans the archive. Rebuilt from
  // the archive only by catch-up, so it is protected like the ledger; postings never expire (they name segments
  // kept at least the archive's retention).
  const eventIndex = new dynamodb.Table(stack, "EventIndex", protectedTable);

  stack.addOutputs({ LedgerTableName: table.tableName, EventIndexTableName: eventIndex.tableName });
  return { table, eventIndex };
}

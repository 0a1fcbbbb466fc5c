/**
 * The ledger table's single-table layout (packages/aws/README.md §Item layout). One table holds chain heads,
 * dedup entries, receipts, producers and their keys, and the verifier's watermarks, findings and cursors. Keys are
 * `pk` (S) / `sk` (S); the GSI `gsi1` (`gsi1pk` / `gsi1sk`, projection ALL) lists heads and producers. TTL on
 * `expiresAt` (epoch seconds) removes dedup entries after their window and receipts after the sequencer's
 * hand-back; pending hand-offs carry it only as a safety net (they leave when committed); nothing else expires.
 */
import { createHash } from "node:crypto";
import { CreateTableCommand, type DynamoDBClient, UpdateTimeToLiveCommand } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, QueryCommand } from "@aws-sdk/lib-dynamodb";

export const GSI1 = "gsi1";
/** The table's TTL attribute (epoch seconds). */
export const TTL_ATTRIBUTE = "expiresAt";

export const keys = {
  head: (stream: string) => ({ pk: `stream#${stream}`, sk: "head" }),
  /**
   * A stream's verifier watermark. Its own partition (not the head's `stream#`), so that IAM can let the verifier
   * and only the verifier write it (`dynamodb:LeadingKeys`, stacks/Verify.ts).
   */
  watermark: (stream: string) => ({ pk: `watermark#${stream}`, sk: "watermark" }),
  /** Where watermarks were kept before they had their own partition (read once, never written). */
  legacyWatermark: (stream: string) => ({ pk: `stream#${stream}`, sk: "verifier" }),
  /**
   * The confirmation of a finding's acknowledgement, written by producer administration beside the `_system`
   * event (a role ingest cannot assume writes it, so a `_system` event alone acknowledges nothing).
   */
  acknowledgement: (id: string) => ({ pk: `ack#${id}`, sk: "ack" }),
  /** One verifier finding, by its id (findingId: code, stream and what it is about). */
  finding: (id: string) => ({ pk: `finding#${id}`, sk: "finding" }),
  /** The dedup key (core `dedupKey`: producer NUL `source` NUL `id`) can be ~1.4 KB; its SHA-256 keeps the item key short and fixed. */
  dedup: (dedupKey: string) => ({
    pk: `event#${createHash("sha256").update(dedupKey).digest("hex")}`,
    sk: "event",
  }),
  /**
   * One accepted hand-off part waiting for its stream's sequencer (PendingQueue.ts: a few write shards per
   * stream); `sk` orders by arrival. Their own partitions, so IAM can let ingest write these items and no others
   * (`dynamodb:LeadingKeys`). Stream names have no `#`, so the shard suffix is unambiguous.
   */
  pending: (stream: string, shard: number, sk: string) => ({ pk: `pending#${stream}#${shard}`, sk }),
  /** The stream's sequencer lease (StreamLease.ts): written only by the sequencer, read by ingest. */
  lease: (stream: string) => ({ pk: `lease#${stream}`, sk: "lease" }),
  /** The sequencer's answer to one part of one hand-off (handoff.ts), read by the waiting ingest request. */
  receipt: (requestId: string, part: number) => ({ pk: `receipt#${requestId}`, sk: `part#${part}` }),
  producer: (id: string) => ({ pk: `producer#${id}`, sk: "producer" }),
  producerKey: (keyId: string) => ({ pk: `key#${keyId}`, sk: "key" }),
  verifierCursor: () => ({ pk: "verifier", sk: "cursor" }),
  /** When the verifier last saw a record from each producer (for heartbeat alerts). */
  verifierHeartbeats: () => ({ pk: "verifier", sk: "heartbeats" }),
  /** Where the resumable archive sweep stopped. */
  verifierSweep: () => ({ pk: "verifier", sk: "sweep" }),
} as const;

/**
 * GSI partitions: every head, every producer and every sequencer lease, each listed in name order; every finding,
 * oldest first.
 */
export const indexes = {
  streams: "streams",
  leases: "leases",
  producers: "producers",
  findings: "findings",
} as const;

/** The key both tables share, as stacks/Ledger.ts defines it: `pk` (S) / `sk` (S), on demand. */
const PK_SK = {
  BillingMode: "PAY_PER_REQUEST",
  AttributeDefinitions: [
    { AttributeName: "pk", AttributeType: "S" },
    { AttributeName: "sk", AttributeType: "S" },
  ],
  KeySchema: [
    { AttributeName: "pk", KeyType: "HASH" },
    { AttributeName: "sk", KeyType: "RANGE" },
  ],
} as const;

/** Creates the table as stacks/Ledger.ts does (for tests and local development against DynamoDB Local). */
export async function createLedgerTable(client: DynamoDBClient, table: string): Promise<void> {
  await client.send(
    new CreateTableCommand({
      ...PK_SK,
      TableName: table,
      AttributeDefinitions: [
        ...PK_SK.AttributeDefinitions,
        { AttributeName: "gsi1pk", AttributeType: "S" },
        { AttributeName: "gsi1sk", AttributeType: "S" },
      ],
      KeySchema: [...PK_SK.KeySchema],
      GlobalSecondaryIndexes: [
        {
          IndexName: GSI1,
          KeySchema: [
            { AttributeName: "gsi1pk", KeyType: "HASH" },
            { AttributeName: "gsi1sk", KeyType: "RANGE" },
          ],
          Projection: { ProjectionType: "ALL" },
        },
      ],
    }),
  );
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: table,
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    }),
  );
}

/** Every item of one `gsi1` partition (a listing: streams, producers), page after page. */
export async function* queryIndex(
  doc: DynamoDBDocumentClient,
  table: string,
  partition: string,
  projection?: string,
): AsyncGenerator<Record<string, unknown>> {
  let start: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(
      new QueryCommand({
        TableName: table,
        IndexName: GSI1,
        KeyConditionExpression: "gsi1pk = :p",
        ExpressionAttributeValues: { ":p": partition },
        ...(projection ? { ProjectionExpression: projection } : {}),
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    yield* page.Items ?? [];
    start = page.LastEvaluatedKey;
  } while (start);
}

/**
 * Creates the event index table as stacks/Ledger.ts does: `pk` (S) / `sk` (S), no index, no TTL
 * (DynamoEventIndex.ts).
 */
export async function createEventIndexTable(client: DynamoDBClient, table: string): Promise<void> {
  await client.send(
    new CreateTableCommand({
      ...PK_SK,
      TableName: table,
      AttributeDefinitions: [...PK_SK.AttributeDefinitions],
      KeySchema: [...PK_SK.KeySchema],
    }),
  );
}

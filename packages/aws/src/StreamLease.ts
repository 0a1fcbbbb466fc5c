/**
 * The per-stream sequencer lease (docs/AWS.md §Accept, then sequence): at most one sequencer works on a stream
 * at a time, as long as clocks agree to within a lease; the DynamoDB head compare-and-set (DynamoHeadStore) still
 * guards the chain if two ever overlap (a sequencer paused past its lease, clocks that disagree).
 *
 * One item per stream, `lease#<stream>` (ledger-table.ts): `owner` (a random id per sequencer run) and `until`
 * (epoch ms). Every operation is a conditional write or a strongly consistent read, which is what closes the
 * lost wake-up race: ingest writes its pending item, then reads the lease; the sequencer releases the lease,
 * then reads the pending items. Whichever comes second sees the other's write.
 *
 * The item also sits in `gsi1` (partition `leases`), so the scheduled sweep can list every stream that ever had
 * a sequencer. Each lease write is also an index write; a running sequencer renews once per half lease, so a
 * stream costs about two index writes per wake-up (acquire, release), like its head's entry in `streams`.
 */
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { indexes, keys, queryIndex } from "./ledger-table.ts";

/** How long a lease lasts unless renewed (ms): a crashed sequencer's stream waits at most this long. */
export const LEASE_MS = 15_000;

export interface LeaseState {
  owner: string;
  /** Epoch ms; a lease whose `until` has passed is free. */
  until: number;
}

const isConditionFailure = (e: unknown) =>
  e instanceof ConditionalCheckFailedException || (e as Error)?.name === "ConditionalCheckFailedException";

export class StreamLease {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    readonly leaseMs = LEASE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes the stream's lease for `owner` if nobody holds it (no item, released, or expired). Resolves with the
   * lease's end (epoch ms), or undefined when another owner holds it. Durable on resolve.
   */
  async acquire(stream: string, owner: string): Promise<number | undefined> {
    const now = this.now();
    const until = now + this.leaseMs;
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.lease(stream),
          UpdateExpression: "SET #owner = :owner, #until = :until, gsi1pk = :index, gsi1sk = :stream",
          ConditionExpression: "attribute_not_exists(pk) OR #until <= :now OR #owner = :owner",
          ExpressionAttributeNames: { "#owner": "owner", "#until": "until" },
          ExpressionAttributeValues: {
            ":owner": owner,
            ":until": until,
            ":now": now,
            ":index": indexes.leases,
            ":stream": stream,
          },
        }),
      );
      return until;
    } catch (e) {
      if (isConditionFailure(e)) return undefined;
      throw storeFailure(`UpdateItem lease ${stream}`, e);
    }
  }

  /** Extends `owner`'s lease; resolves with its new end, or undefined if the lease is no longer its own. */
  async renew(stream: string, owner: string): Promise<number | undefined> {
    const until = this.now() + this.leaseMs;
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.lease(stream),
          UpdateExpression: "SET #until = :until",
          ConditionExpression: "#owner = :owner",
          ExpressionAttributeNames: { "#owner": "owner", "#until": "until" },
          ExpressionAttributeValues: { ":owner": owner, ":until": until },
        }),
      );
      return until;
    } catch (e) {
      if (isConditionFailure(e)) return undefined;
      throw storeFailure(`UpdateItem lease ${stream}`, e);
    }
  }

  /** Ends `owner`'s lease at once (conditional on owning it; a lease taken over meanwhile is left alone). */
  async release(stream: string, owner: string): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.lease(stream),
          UpdateExpression: "SET #until = :zero",
          ConditionExpression: "#owner = :owner",
          ExpressionAttributeNames: { "#owner": "owner", "#until": "until" },
          ExpressionAttributeValues: { ":owner": owner, ":zero": 0 },
        }),
      );
    } catch (e) {
      if (isConditionFailure(e)) return;
      throw storeFailure(`UpdateItem lease ${stream}`, e);
    }
  }

  /** Whether some sequencer holds the stream's lease now (strongly consistent read). */
  async held(stream: string): Promise<boolean> {
    try {
      const out = await this.doc.send(
        new GetCommand({
          TableName: this.table,
          Key: keys.lease(stream),
          ConsistentRead: true,
          ProjectionExpression: "#until",
          ExpressionAttributeNames: { "#until": "until" },
        }),
      );
      return typeof out.Item?.until === "number" && out.Item.until > this.now();
    } catch (e) {
      throw storeFailure(`GetItem lease ${stream}`, e);
    }
  }

  /** Every stream that has a lease item, with its state (the index is eventually consistent). */
  async *list(): AsyncGenerator<{ stream: string } & LeaseState> {
    try {
      for await (const item of queryIndex(this.doc, this.table, indexes.leases))
        yield { stream: item.gsi1sk as string, owner: item.owner as string, until: item.until as number };
    } catch (e) {
      throw storeFailure("Query leases", e);
    }
  }
}

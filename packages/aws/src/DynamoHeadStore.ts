/**
 * Chain heads in DynamoDB: one item per stream, moved forward only by a conditional write.
 * The head is a cache of what the write-once archive holds (the commit point is the S3 create-only put), so
 * a lost or stale head is repaired by the next writer; but it must never move backward or skip a writer's
 * compare-and-set, hence the condition on the stored size.
 */

import type { Head, HeadStore } from "@auditsink/core";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { indexes, keys, queryIndex } from "./ledger-table.ts";

interface HeadItem {
  size: number;
  headHash: string;
  frontier: string[];
  checkpoint?: string;
}

export class DynamoHeadStore implements HeadStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
  ) {}

  async get(stream: string): Promise<Head | undefined> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: keys.head(stream), ConsistentRead: true }),
      );
      const item = out.Item as HeadItem | undefined;
      if (!item) return undefined;
      return {
        size: item.size,
        headHash: item.headHash,
        frontier: item.frontier ?? [],
        ...(item.checkpoint ? { checkpoint: item.checkpoint } : {}),
      };
    } catch (e) {
      throw storeFailure(`GetItem head ${stream}`, e);
    }
  }

  async advance(stream: string, expectedSize: number, next: Head): Promise<boolean> {
    if (next.size <= expectedSize) return false;
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            ...keys.head(stream),
            gsi1pk: indexes.streams,
            gsi1sk: stream,
            stream,
            size: next.size,
            headHash: next.headHash,
            frontier: next.frontier,
            ...(next.checkpoint ? { checkpoint: next.checkpoint } : {}),
          },
          // No head yet is size 0; otherwise the stored size must be exactly the one the writer read.
          ...(expectedSize === 0
            ? { ConditionExpression: "attribute_not_exists(pk)" }
            : {
                ConditionExpression: "#size = :expected",
                ExpressionAttributeNames: { "#size": "size" },
                ExpressionAttributeValues: { ":expected": expectedSize },
              }),
        }),
      );
      return true;
    } catch (e) {
      if (
        e instanceof ConditionalCheckFailedException ||
        (e as Error).name === "ConditionalCheckFailedException"
      )
        return false;
      throw storeFailure(`PutItem head ${stream}`, e);
    }
  }

  async streams(): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const item of queryIndex(this.doc, this.table, indexes.streams, "gsi1sk"))
        out.push(item.gsi1sk as string);
    } catch (e) {
      throw storeFailure("Query streams", e);
    }
    return out;
  }
}

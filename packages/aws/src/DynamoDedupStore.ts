/**
 * Dedup entries (`source` + `id` → stream, index, hashes) in DynamoDB, one item per accepted event.
 * Writes are conditional (`attribute_not_exists`) so the first entry for a key wins, as the port requires;
 * reads are strongly consistent so a writer that just committed sees its own entries.
 */

import type { DedupEntry, DedupStore } from "@auditsink/core";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { BatchGetCommand, type DynamoDBDocumentClient, PutCommand } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { keys } from "./ledger-table.ts";

/** BatchGetItem's limit per call. */
const GET_CHUNK = 100;
/** Conditional puts in flight at once per call. */
const PUT_PARALLEL = 25;

export class DynamoDedupStore implements DedupStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
  ) {}

  async getMany(eventKeys: readonly string[]): Promise<Map<string, DedupEntry>> {
    const found = new Map<string, DedupEntry>();
    const unique = [...new Set(eventKeys)];
    for (let i = 0; i < unique.length; i += GET_CHUNK) {
      let pending: Record<string, unknown>[] = unique.slice(i, i + GET_CHUNK).map((k) => keys.dedup(k));
      // UnprocessedKeys come back under throttling: ask again for them (the SDK already backs off per call).
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 8) throw storeFailure("BatchGetItem dedup", new Error("keys left unprocessed"));
        try {
          const out = await this.doc.send(
            new BatchGetCommand({
              RequestItems: { [this.table]: { Keys: pending, ConsistentRead: true } },
            }),
          );
          for (const item of out.Responses?.[this.table] ?? []) {
            const e = item as DedupEntry & { key: string };
            found.set(e.key, {
              key: e.key,
              stream: e.stream,
              index: e.index,
              recordHash: e.recordHash,
              eventHash: e.eventHash,
            });
          }
          pending = (out.UnprocessedKeys?.[this.table]?.Keys as Record<string, unknown>[] | undefined) ?? [];
          if (pending.length > 0) await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
        } catch (e) {
          throw storeFailure("BatchGetItem dedup", e);
        }
      }
    }
    return found;
  }

  async putMany(entries: readonly DedupEntry[]): Promise<void> {
    for (let i = 0; i < entries.length; i += PUT_PARALLEL) {
      await Promise.all(entries.slice(i, i + PUT_PARALLEL).map((e) => this.putOne(e)));
    }
  }

  private async putOne(entry: DedupEntry): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...keys.dedup(entry.key), ...entry },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
    } catch (e) {
      if (
        e instanceof ConditionalCheckFailedException ||
        (e as Error).name === "ConditionalCheckFailedException"
      )
        return; // first writer wins
      throw storeFailure("PutItem dedup", e);
    }
  }
}

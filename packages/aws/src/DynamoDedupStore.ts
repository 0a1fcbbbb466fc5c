/**
 * Dedup entries (core `dedupKey(producer, event)`, treated as opaque → stream, index, hashes) in DynamoDB, one item per accepted
 * event, kept for a bounded window (docs/AWS.md §Dedup window).
 *
 * - Each item carries `expiresAt` (epoch seconds, the table's TTL attribute): written + window. DynamoDB deletes
 *   expired items lazily (usually within days), so reads treat an item past `expiresAt` as absent: the window is
 *   exact, whatever the TTL sweeper's delay. Storage is bounded by events per window, not by the archive.
 * - Writes are one conditional PutItem per entry, no read first: `attribute_not_exists(pk) OR expiresAt < now`.
 *   The first live entry for a key wins, as the port requires; an expired one is replaced.
 * - Reads are strongly consistent BatchGetItem (100 keys a call) so a sequencer sees the entries it just wrote.
 *   The sequencer reads once per commit, batched, because only a read can return where the original record is
 *   (a replay's receipt needs its index), and it must know before it builds the segment.
 */

import { type Clock, type DedupEntry, type DedupStore, systemClock } from "@auditsink/core";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { BatchGetCommand, type DynamoDBDocumentClient, PutCommand } from "@aws-sdk/lib-dynamodb";
import { DEFAULT_DEDUP_WINDOW_SECONDS } from "./config.ts";
import { storeFailure } from "./errors.ts";
import { keys } from "./ledger-table.ts";

/** BatchGetItem's limit per call. */
const GET_CHUNK = 100;
/** Conditional puts in flight at once per call. */
const PUT_PARALLEL = 25;

export interface DedupWindow {
  /** Seconds an entry is honoured after it is written (config.ts DEFAULT_DEDUP_WINDOW_SECONDS). */
  windowSeconds: number;
  clock?: Clock;
}

export class DynamoDedupStore implements DedupStore {
  private readonly windowSeconds: number;
  private readonly clock: Clock;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    window: DedupWindow = { windowSeconds: DEFAULT_DEDUP_WINDOW_SECONDS },
  ) {
    this.windowSeconds = window.windowSeconds;
    this.clock = window.clock ?? systemClock;
  }

  private nowSeconds(): number {
    return Math.floor(this.clock.now().getTime() / 1000);
  }

  async getMany(dedupKeys: readonly string[]): Promise<Map<string, DedupEntry>> {
    const found = new Map<string, DedupEntry>();
    const now = this.nowSeconds();
    const unique = [...new Set(dedupKeys)];
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
            const e = item as DedupEntry & { key: string; expiresAt?: number };
            // Past its window the entry no longer counts, even before DynamoDB's TTL sweeper deletes it.
            if (typeof e.expiresAt === "number" && e.expiresAt <= now) continue;
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
    const now = this.nowSeconds();
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            ...keys.dedup(entry.key),
            key: entry.key,
            stream: entry.stream,
            index: entry.index,
            recordHash: entry.recordHash,
            eventHash: entry.eventHash,
            expiresAt: now + this.windowSeconds,
          },
          ConditionExpression: "attribute_not_exists(pk) OR expiresAt <= :now",
          ExpressionAttributeValues: { ":now": now },
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

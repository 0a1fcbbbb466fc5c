/**
 * Events accepted by ingest and not yet committed: one item per hand-off part (handoff.ts `HandOffMessage`,
 * gzipped JSON) in the ledger table, `pk` = `pending#<stream>#<shard>`, `sk` = arrival time (epoch ms, 15 digits)
 * then the request id and part, so strongly consistent Queries read a stream's waiting events oldest first.
 *
 * Write sharding: each event costs its pending partition a put and, once committed, a delete (≥ 2 WCU), and a
 * DynamoDB partition takes at most 1,000 WCU/s; with arrival-ordered sort keys every write lands at the end of
 * the key range, so adaptive capacity cannot split the heat. Ingest spreads a stream's parts over PENDING_SHARDS
 * partition keys at random and the sequencer reads them all: 4 shards carry ~2,000 batch-1 events/s per stream.
 *
 * A pending item is acknowledged-in-flight: ingest answers (HTTP waits for the receipt; the EventBridge path
 * deletes its SQS message) only after the item is durable, and the sequencer deletes it only after the events
 * are committed and their answers written. `expiresAt` (TTL) is a safety net against an item nobody can ever
 * commit, set to the dedup window (the longest the sink holds an event), never the way items leave.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import {
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  PutCommand,
  QueryCommand,
} from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { keys } from "./ledger-table.ts";

/** Partition keys one stream's pending items are spread over (see above). */
export const PENDING_SHARDS = 4;

/** One pending item as read back: its key, and its body (not parsed here: a poison body is the caller's). */
export interface PendingItem {
  shard: number;
  sk: string;
  /** The gzipped hand-off message, unzipped; undefined when it would not unzip. */
  body: string | undefined;
  /** Arrival time, epoch ms. */
  arrived: number;
}

export interface TakeLimits {
  /** Stop reading once this many items are in hand (each item holds 1–100 events). */
  maxItems: number;
  /** Stop reading once the items hold this many events. */
  maxEvents: number;
  /** Stop reading once the items' stored bytes reach this. */
  maxBytes: number;
}

/** What one commit takes at most: a few thousand batch-1 events, well under a Lambda's memory and 6 MB payloads. */
export const DEFAULT_TAKE: TakeLimits = { maxItems: 2_000, maxEvents: 5_000, maxBytes: 5 * 1024 * 1024 };

/** BatchWriteItem's limit per call. */
const WRITE_CHUNK = 25;

export class PendingQueue {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    /** Seconds after which TTL may delete an item nobody committed (the dedup window). */
    private readonly ttlSeconds: number,
    private readonly now: () => number = Date.now,
    readonly shards = PENDING_SHARDS,
  ) {}

  /** Stores one part of `events` events durably (one PutItem). */
  async put(stream: string, id: string, body: string, events: number): Promise<void> {
    const now = this.now();
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            ...keys.pending(stream, Math.floor(Math.random() * this.shards), sortKey(now, id)),
            body: gzipSync(body),
            events,
            expiresAt: Math.floor(now / 1000) + this.ttlSeconds,
          },
        }),
      );
    } catch (e) {
      throw storeFailure(`PutItem pending ${stream}`, e);
    }
  }

  /**
   * The stream's oldest pending items, up to `limits` (strongly consistent Queries of every shard, in parallel,
   * page by page; merged in arrival order).
   */
  async take(stream: string, limits: TakeLimits = DEFAULT_TAKE): Promise<PendingItem[]> {
    const share = (n: number) => Math.max(1, Math.ceil(n / this.shards));
    const perShard = {
      maxItems: share(limits.maxItems),
      maxEvents: share(limits.maxEvents),
      maxBytes: share(limits.maxBytes),
    };
    const shards = await Promise.all(
      [...Array(this.shards).keys()].map((s) => this.takeShard(stream, s, perShard)),
    );
    return shards.flat().sort((a, b) => (a.sk < b.sk ? -1 : a.sk > b.sk ? 1 : 0));
  }

  private async takeShard(stream: string, shard: number, limits: TakeLimits): Promise<PendingItem[]> {
    const out: PendingItem[] = [];
    let bytes = 0;
    let events = 0;
    let start: Record<string, unknown> | undefined;
    do {
      let page: { Items?: Record<string, unknown>[]; LastEvaluatedKey?: Record<string, unknown> };
      try {
        page = await this.doc.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: "pk = :pk",
            ExpressionAttributeValues: { ":pk": keys.pending(stream, shard, "").pk },
            ConsistentRead: true,
            Limit: limits.maxItems - out.length,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        );
      } catch (e) {
        throw storeFailure(`Query pending ${stream}`, e);
      }
      for (const item of page.Items ?? []) {
        const stored = item.body as Uint8Array | undefined;
        bytes += stored?.byteLength ?? 0;
        events += typeof item.events === "number" ? item.events : 1;
        out.push({
          shard,
          sk: item.sk as string,
          body: unzip(stored),
          arrived: arrivedAt(item.sk as string),
        });
      }
      start = page.LastEvaluatedKey;
    } while (start && out.length < limits.maxItems && events < limits.maxEvents && bytes < limits.maxBytes);
    return out;
  }

  /** Arrival time (epoch ms) of the stream's oldest pending item, or undefined when none waits. */
  async oldest(stream: string, consistent = true): Promise<number | undefined> {
    const firsts = await Promise.all(
      [...Array(this.shards).keys()].map(async (shard) => {
        try {
          const page = await this.doc.send(
            new QueryCommand({
              TableName: this.table,
              KeyConditionExpression: "pk = :pk",
              ExpressionAttributeValues: { ":pk": keys.pending(stream, shard, "").pk },
              ConsistentRead: consistent,
              Limit: 1,
              ProjectionExpression: "sk",
            }),
          );
          const sk = page.Items?.[0]?.sk as string | undefined;
          return sk === undefined ? undefined : arrivedAt(sk);
        } catch (e) {
          throw storeFailure(`Query pending ${stream}`, e);
        }
      }),
    );
    const found = firsts.filter((t): t is number => t !== undefined);
    return found.length === 0 ? undefined : Math.min(...found);
  }

  /** Deletes committed items (BatchWriteItem, 25 a call, in parallel); resolves once all are gone. */
  async remove(stream: string, items: readonly Pick<PendingItem, "shard" | "sk">[]): Promise<void> {
    const chunks: Pick<PendingItem, "shard" | "sk">[][] = [];
    for (let i = 0; i < items.length; i += WRITE_CHUNK) chunks.push(items.slice(i, i + WRITE_CHUNK));
    await Promise.all(
      chunks.map((chunk) =>
        batchWrite(
          this.doc,
          this.table,
          chunk.map((i) => ({ DeleteRequest: { Key: keys.pending(stream, i.shard, i.sk) } })),
          `BatchWriteItem pending ${stream}`,
        ),
      ),
    );
  }
}

/** Writes one BatchWriteItem's requests, retrying unprocessed ones with backoff. */
export async function batchWrite(
  doc: DynamoDBDocumentClient,
  table: string,
  requests: Record<string, unknown>[],
  what: string,
): Promise<void> {
  let pending = requests;
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt > 8) throw storeFailure(what, new Error("items left unprocessed"));
    let out: { UnprocessedItems?: Record<string, unknown[]> };
    try {
      out = await doc.send(new BatchWriteCommand({ RequestItems: { [table]: pending } }));
    } catch (e) {
      throw storeFailure(what, e);
    }
    pending = (out.UnprocessedItems?.[table] as typeof pending | undefined) ?? [];
    if (pending.length > 0) await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
  }
}

function sortKey(now: number, id: string): string {
  return `${String(now).padStart(15, "0")}#${id}`;
}

function arrivedAt(sk: string): number {
  return Number(sk.slice(0, 15));
}

function unzip(stored: Uint8Array | undefined): string | undefined {
  if (!stored) return undefined;
  try {
    return gunzipSync(stored).toString("utf8");
  } catch {
    return undefined;
  }
}

/**
 * The hand-off between ingest and the sequencer (docs/AWS.md §Accept, then sequence).
 *
 * Ingest functions (HTTP and EventBridge) validate and authenticate events, then send them to an SQS FIFO queue
 * with `MessageGroupId` = stream. SQS delivers a message group to one consumer at a time, in order, so each
 * stream has exactly one sequencer working on it at any moment; the sequencer commits everything it receives
 * for a stream as one segment (sequencer.ts). The DynamoDB head compare-and-set still guards against a second
 * sequencer (a redelivery after a visibility timeout, a Lambda that outlived its invocation).
 *
 * A request becomes one or more messages ("parts", at most PART_EVENTS events and PART_BYTES bytes each), sent
 * in order. `MessageDeduplicationId` = `<requestId>:<part>`, so a retried send within SQS's 5-minute window is
 * not delivered twice. The sequencer writes its answer for each part (receipts, or the problem that refused
 * them) to the ledger table under `receipt#<requestId>`, with a short TTL; the HTTP request that sent the parts
 * waits for those answers (DynamoReceiptStore.wait), so the caller gets its receipts in the same response, as
 * from the embedded runtime.
 */
import { randomUUID } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  type Clock,
  IngestError,
  type IngestErrorCode,
  type Receipt,
  type SignedEvent,
  StoreError,
  systemClock,
} from "@auditsink/core";
import {
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { BatchGetCommand, BatchWriteCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { keys } from "./ledger-table.ts";

/** Events per message: bounds the answer item (receipts with proofs, gzipped) well below DynamoDB's 400 KB. */
export const PART_EVENTS = 100;
/** Bytes per message body, under SQS's 256 KiB message limit (attributes included). */
export const PART_BYTES = 200 * 1024;
/** SendMessageBatch takes at most 10 entries and 256 KiB in all. */
const SEND_BATCH = 10;

/** One message on the sequencer queue. */
export interface HandOffMessage {
  v: 1;
  requestId: string;
  /** Part number (0-based) of this request and how many parts it has. */
  part: number;
  parts: number;
  /** Index, within the request, of this part's first event (so problems name the request's field). */
  first: number;
  stream: string;
  events: SignedEvent[];
  /** Whether someone waits for the answer (HTTP); EventBridge producers get none. */
  receipt: boolean;
}

/** The sequencer's answer to one part. */
export type HandOffAnswer =
  | { receipts: Receipt[] }
  | { error: { code: IngestErrorCode; message: string; field?: string } };

export interface HandOffRequest {
  stream: string;
  events: readonly SignedEvent[];
  receipt: boolean;
}

/** Sends accepted events to the sequencer queue. */
export class SqsHandOff {
  constructor(
    private readonly sqs: SQSClient,
    readonly queueUrl: string,
  ) {}

  /**
   * Sends each request as its parts, all in order within their stream's message group. Resolves once SQS holds
   * every message durably, with each request's id and part count. Throws StoreError if SQS refuses any entry
   * (then some may have been sent; sending the same requests again is deduplicated by SQS for 5 minutes).
   */
  async send(requests: readonly HandOffRequest[]): Promise<{ requestId: string; parts: number }[]> {
    const out: { requestId: string; parts: number }[] = [];
    const bodies: { id: string; group: string; body: string }[] = [];
    for (const request of requests) {
      const requestId = randomUUID();
      const messages = splitParts(requestId, request);
      for (const m of messages) {
        const body = JSON.stringify(m);
        if (Buffer.byteLength(body) > 256 * 1024 - 1024) {
          throw new IngestError(
            "too-large",
            `events[${m.first}]: one event may be at most ${PART_BYTES} bytes on AWS`,
            `events[${m.first}]`,
          );
        }
        bodies.push({ id: `${requestId}:${m.part}`, group: request.stream, body });
      }
      out.push({ requestId, parts: messages.length });
    }
    let batch: typeof bodies = [];
    let size = 0;
    for (const b of bodies) {
      const bytes = Buffer.byteLength(b.body);
      if (batch.length === SEND_BATCH || (batch.length > 0 && size + bytes > 250 * 1024)) {
        await this.sendBatch(batch);
        batch = [];
        size = 0;
      }
      batch.push(b);
      size += bytes;
    }
    if (batch.length > 0) await this.sendBatch(batch);
    return out;
  }

  private async sendBatch(batch: { id: string; group: string; body: string }[]): Promise<void> {
    let result: SendMessageBatchCommandOutput;
    try {
      result = await this.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((b, i) => ({
            Id: String(i),
            MessageBody: b.body,
            MessageGroupId: b.group,
            MessageDeduplicationId: b.id,
          })),
        }),
      );
    } catch (e) {
      throw storeFailure("SendMessageBatch sequencer queue", e);
    }
    if (result.Failed?.length) {
      throw new StoreError(
        "store-failed",
        `SendMessageBatch sequencer queue failed for ${result.Failed.length} entries (${result.Failed[0]?.Code})`,
      );
    }
  }
}

/** Splits a request into parts of at most PART_EVENTS events and about PART_BYTES bytes. */
export function splitParts(requestId: string, request: HandOffRequest): HandOffMessage[] {
  const groups: { first: number; events: SignedEvent[] }[] = [];
  let current: { first: number; events: SignedEvent[] } | undefined;
  let bytes = 0;
  for (const [i, event] of request.events.entries()) {
    const size = Buffer.byteLength(JSON.stringify(event));
    if (!current || current.events.length === PART_EVENTS || bytes + size > PART_BYTES) {
      current = { first: i, events: [] };
      groups.push(current);
      bytes = 0;
    }
    current.events.push(event);
    bytes += size;
  }
  return groups.map((g, part) => ({
    v: 1,
    requestId,
    part,
    parts: groups.length,
    first: g.first,
    stream: request.stream,
    events: g.events,
    receipt: request.receipt,
  }));
}

export interface ReceiptStoreOptions {
  /** Seconds an answer is kept for the waiting request (default one hour). */
  ttlSeconds?: number;
  clock?: Clock;
  /** Milliseconds before the first look, and between looks (defaults 60 and 40). */
  firstPollMs?: number;
  pollMs?: number;
}

/** BatchWriteItem's limit per call. */
const WRITE_CHUNK = 25;

/** The sequencer's answers in the ledger table, gzipped JSON, with a TTL. */
export class DynamoReceiptStore {
  private readonly ttlSeconds: number;
  private readonly clock: Clock;
  private readonly firstPollMs: number;
  private readonly pollMs: number;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    options: ReceiptStoreOptions = {},
  ) {
    this.ttlSeconds = options.ttlSeconds ?? 3600;
    this.clock = options.clock ?? systemClock;
    this.firstPollMs = options.firstPollMs ?? 60;
    this.pollMs = options.pollMs ?? 40;
  }

  /** Stores answers (durable on resolve); a later answer for the same part replaces an earlier one. */
  async put(answers: readonly { requestId: string; part: number; answer: HandOffAnswer }[]): Promise<void> {
    const expiresAt = Math.floor(this.clock.now().getTime() / 1000) + this.ttlSeconds;
    for (let i = 0; i < answers.length; i += WRITE_CHUNK) {
      let pending = answers.slice(i, i + WRITE_CHUNK).map((a) => ({
        PutRequest: {
          Item: {
            ...keys.receipt(a.requestId, a.part),
            answer: gzipSync(JSON.stringify(a.answer)),
            expiresAt,
          },
        },
      }));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 8) throw storeFailure("BatchWriteItem receipts", new Error("items left unprocessed"));
        let out: { UnprocessedItems?: Record<string, unknown[]> };
        try {
          out = await this.doc.send(new BatchWriteCommand({ RequestItems: { [this.table]: pending } }));
        } catch (e) {
          throw storeFailure("BatchWriteItem receipts", e);
        }
        pending = (out.UnprocessedItems?.[this.table] as typeof pending | undefined) ?? [];
        if (pending.length > 0) await sleep(20 * 2 ** attempt);
      }
    }
  }

  /**
   * Waits for the answers to every part of `requestId`, in part order. Looks with strongly consistent reads
   * (one BatchGetItem for the parts still missing) until `deadline` (epoch ms); then throws
   * IngestError("unavailable"): the events are queued and will be committed, and a retry of the same request
   * returns their receipts (dedup) without creating records twice.
   */
  async wait(requestId: string, parts: number, deadline: number): Promise<HandOffAnswer[]> {
    const answers = new Map<number, HandOffAnswer>();
    await sleep(this.firstPollMs);
    for (;;) {
      const missing = [...Array(parts).keys()].filter((p) => !answers.has(p));
      let items: Record<string, unknown>[];
      try {
        const out = await this.doc.send(
          new BatchGetCommand({
            RequestItems: {
              [this.table]: { Keys: missing.map((p) => keys.receipt(requestId, p)), ConsistentRead: true },
            },
          }),
        );
        items = out.Responses?.[this.table] ?? [];
      } catch (e) {
        throw storeFailure("BatchGetItem receipts", e);
      }
      for (const item of items) {
        const part = Number(String(item.sk).slice("part#".length));
        answers.set(
          part,
          JSON.parse(gunzipSync(item.answer as Uint8Array).toString("utf8")) as HandOffAnswer,
        );
      }
      if (answers.size === parts) return [...Array(parts).keys()].map((p) => answers.get(p)!);
      if (Date.now() + this.pollMs > deadline) {
        throw new IngestError(
          "unavailable",
          "the events are queued but not committed yet; sending the same request again is safe",
        );
      }
      await sleep(this.pollMs);
    }
  }
}

/** Turns the sequencer's answers to a request's parts back into its receipts, or the problem it raised. */
export function receiptsFrom(answers: readonly HandOffAnswer[]): Receipt[] {
  const receipts: Receipt[] = [];
  for (const a of answers) {
    if ("error" in a) throw new IngestError(a.error.code, a.error.message, a.error.field);
    receipts.push(...a.receipts);
  }
  return receipts;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

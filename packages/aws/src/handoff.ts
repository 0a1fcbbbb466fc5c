/**
 * The hand-off between ingest and the sequencer (docs/AWS.md §Accept, then sequence).
 *
 * Ingest functions (HTTP and EventBridge) validate and authenticate events, then write each request part as a
 * pending item of its stream (PendingQueue.ts) and wake the stream's sequencer unless one holds its lease
 * (StreamLease.ts, SequencerWake.ts). The sequencer holding the lease commits everything pending for the stream
 * as one segment per loop (sequencer.ts). The DynamoDB head compare-and-set still guards against a second
 * sequencer (a lease outlived, clocks that disagree).
 *
 * A request becomes one or more parts (at most PART_EVENTS events and PART_BYTES bytes each). The sequencer
 * writes its answer for each part (receipts, or the problem that refused them) to the ledger table under
 * `receipt#<requestId>`, with a short TTL; the HTTP request that wrote the parts waits for those answers
 * (DynamoReceiptStore.wait), so the caller gets its receipts in the same response, as from the embedded runtime.
 */
import { randomUUID } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  type Clock,
  IngestError,
  type IngestErrorCode,
  type Receipt,
  type SignedEvent,
  systemClock,
} from "@auditsink/core";
import { BatchGetCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { keys } from "./ledger-table.ts";
import { batchWrite, type PendingQueue } from "./PendingQueue.ts";
import type { SequencerWake } from "./SequencerWake.ts";
import type { StreamLease } from "./StreamLease.ts";

/** Events per part: bounds the answer item (receipts with proofs, gzipped) well below DynamoDB's 400 KB. */
export const PART_EVENTS = 100;
/** Bytes per part body (gzipped in a pending item, well below DynamoDB's 400 KB item limit). */
export const PART_BYTES = 200 * 1024;
/** The largest part body accepted: one event larger than PART_BYTES is a part of its own, up to this. */
const MAX_PART_BYTES = 255 * 1024;

/** One pending hand-off part. */
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

/** Writes accepted events as pending items and wakes their streams' sequencers. */
export class PendingHandOff {
  constructor(
    private readonly pending: PendingQueue,
    private readonly lease: StreamLease,
    private readonly sequencer: SequencerWake,
  ) {}

  /**
   * Writes each request's parts as pending items (durable on resolve), then, per stream, reads the lease
   * (strongly consistent) and wakes the sequencer if nobody holds it. Resolves with each request's id and part
   * count. Throws StoreError if a write or the wake-up fails: then some parts may be pending, and sending the
   * requests again is safe (dedup makes the second copy a replay of the first).
   */
  async send(requests: readonly HandOffRequest[]): Promise<{ requestId: string; parts: number }[]> {
    const out: { requestId: string; parts: number }[] = [];
    const writes: { stream: string; id: string; body: string; events: number }[] = [];
    for (const request of requests) {
      const requestId = randomUUID();
      const messages = splitParts(requestId, request);
      for (const m of messages) {
        const body = JSON.stringify(m);
        if (Buffer.byteLength(body) > MAX_PART_BYTES) {
          throw new IngestError(
            "too-large",
            `events[${m.first}]: one event may be at most ${PART_BYTES} bytes on AWS`,
            `events[${m.first}]`,
          );
        }
        const id = `${requestId}#${String(m.part).padStart(4, "0")}`;
        writes.push({ stream: request.stream, id, body, events: m.events.length });
      }
      out.push({ requestId, parts: messages.length });
    }
    await Promise.all(writes.map((w) => this.pending.put(w.stream, w.id, w.body, w.events)));
    // Only now read the lease: the sequencer releases, then reads pending, so one of us sees the other.
    await Promise.all([...new Set(requests.map((r) => r.stream))].map((s) => this.wakeIfIdle(s)));
    return out;
  }

  /** Wakes the stream's sequencer unless one holds its lease. */
  async wakeIfIdle(stream: string): Promise<void> {
    if (!(await this.lease.held(stream))) await this.sequencer.wake(stream);
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
  /**
   * Milliseconds before the first look, and between looks, at the least (defaults 60 and 40). Each store learns
   * how long answers take (`PollSchedule`) and looks later and less often when they take longer.
   */
  firstPollMs?: number;
  pollMs?: number;
  /** Milliseconds without an answer after which a waiter nudges the sequencer, and between nudges (3,000). */
  nudgeMs?: number;
}

/** BatchWriteItem's limit per call. */
const WRITE_CHUNK = 25;

/**
 * When a waiter looks for its answer. Every look is a strongly consistent read (a DynamoDB call, billed); a
 * fixed short interval makes a waiter look many times per commit while the sequencer works, and at high rates
 * those reads are most of ingest's DynamoDB calls. The schedule keeps a running mean of how long answers took in
 * this container (an ingest Lambda container serves one request at a time, so it learns its stream's pace) and
 * first looks at 80 % of it, then every eighth of it; both never below the configured minimums and never above
 * MAX_FIRST_MS / MAX_INTERVAL_MS, so a slow period cannot hold later answers back by more than that. An answer
 * found at the first look only shows it was ready by then, so the mean is then pulled down (next time, look
 * sooner) rather than up: the schedule cannot talk itself into ever-later looks.
 */
export class PollSchedule {
  static readonly MAX_FIRST_MS = 1_000;
  static readonly MAX_INTERVAL_MS = 200;
  private meanMs: number | undefined;

  constructor(
    readonly minFirstMs: number,
    readonly minIntervalMs: number,
  ) {}

  get firstMs(): number {
    if (this.meanMs === undefined) return this.minFirstMs;
    return Math.round(Math.min(PollSchedule.MAX_FIRST_MS, Math.max(this.minFirstMs, this.meanMs * 0.8)));
  }

  get intervalMs(): number {
    if (this.meanMs === undefined) return this.minIntervalMs;
    return Math.round(Math.min(PollSchedule.MAX_INTERVAL_MS, Math.max(this.minIntervalMs, this.meanMs / 8)));
  }

  /** Records an answer that took `ms`, found at look number `looks` (1 = the first). */
  answered(ms: number, looks: number): void {
    if (this.meanMs === undefined) this.meanMs = ms;
    else if (looks === 1) this.meanMs *= 0.8;
    else this.meanMs = 0.8 * this.meanMs + 0.2 * ms;
  }
}

/** The sequencer's answers in the ledger table, gzipped JSON, with a TTL. */
export class DynamoReceiptStore {
  private readonly ttlSeconds: number;
  private readonly clock: Clock;
  /** When this container's waiters look (learned across requests). */
  readonly schedule: PollSchedule;
  private readonly nudgeMs: number;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    options: ReceiptStoreOptions = {},
  ) {
    this.ttlSeconds = options.ttlSeconds ?? 3600;
    this.clock = options.clock ?? systemClock;
    this.schedule = new PollSchedule(options.firstPollMs ?? 60, options.pollMs ?? 40);
    this.nudgeMs = options.nudgeMs ?? 3000;
  }

  /** Stores answers (durable on resolve; chunks of 25 in parallel); a later answer for a part replaces one. */
  async put(answers: readonly { requestId: string; part: number; answer: HandOffAnswer }[]): Promise<void> {
    const expiresAt = Math.floor(this.clock.now().getTime() / 1000) + this.ttlSeconds;
    const chunks: Record<string, unknown>[][] = [];
    for (let i = 0; i < answers.length; i += WRITE_CHUNK) {
      chunks.push(
        answers.slice(i, i + WRITE_CHUNK).map((a) => ({
          PutRequest: {
            Item: {
              ...keys.receipt(a.requestId, a.part),
              answer: gzipSync(JSON.stringify(a.answer)),
              expiresAt,
            },
          },
        })),
      );
    }
    await Promise.all(chunks.map((c) => batchWrite(this.doc, this.table, c, "BatchWriteItem receipts")));
  }

  /**
   * Waits for the answers to every part of `requestId`, in part order. Looks with strongly consistent reads
   * (one BatchGetItem for the parts still missing; when, see PollSchedule) until `deadline` (epoch ms); then throws
   * IngestError("unavailable"): the events are pending and will be committed, and a retry of the same request
   * returns their receipts (dedup) without creating records twice. While the answer is late, `nudge` is called
   * every `nudgeMs` (it wakes the sequencer if its lease lapsed: one that crashed holding it); its failures are
   * left to the next nudge.
   */
  async wait(
    requestId: string,
    parts: number,
    deadline: number,
    nudge: () => Promise<void> = async () => {},
  ): Promise<HandOffAnswer[]> {
    const answers = new Map<number, HandOffAnswer>();
    const started = Date.now();
    const interval = this.schedule.intervalMs;
    let nextNudge = started + this.nudgeMs;
    let looks = 0;
    await sleep(Math.min(this.schedule.firstMs, Math.max(0, deadline - started)));
    for (;;) {
      looks++;
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
      if (answers.size === parts) {
        this.schedule.answered(Date.now() - started, looks);
        return [...Array(parts).keys()].map((p) => answers.get(p)!);
      }
      if (Date.now() + interval > deadline) {
        throw new IngestError(
          "unavailable",
          "the events are accepted but not committed yet; sending the same request again is safe",
        );
      }
      if (Date.now() >= nextNudge) {
        nextNudge = Date.now() + this.nudgeMs;
        await nudge().catch(() => undefined);
      }
      await sleep(interval);
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

/**
 * Puts signed events on the sink's EventBridge bus (the AWS deployment's asynchronous ingest path: bus → rule →
 * SQS → Lambda). Each entry's Detail is `{"stream": …, "event": <signed CloudEvent>}`. Entries are packed into
 * PutEvents calls within the service limits (10 entries, 256 KB per request, entry size computed as the
 * PutEvents documentation does), and entries that fail are put again with backoff and jitter. Re-putting is
 * safe: the sink deduplicates on the event's `source` + `id`.
 */

import type { SignedEvent } from "@auditsink/core";
import {
  EventBridgeClient,
  PutEventsCommand,
  type PutEventsCommandOutput,
  type PutEventsRequestEntry,
} from "@aws-sdk/client-eventbridge";
import { ClientError } from "./errors.ts";
import { backoffDelay, DEFAULT_RETRY, type RetryOptions, sleep } from "./retry.ts";

/** PutEvents limits (docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html). */
export const PUT_EVENTS_MAX_ENTRIES = 10;
export const PUT_EVENTS_MAX_BYTES = 256 * 1024;

export const DEFAULT_EVENT_SOURCE = "auditsink.producer";
export const DEFAULT_DETAIL_TYPE = "auditsink.event";

/** The size EventBridge counts for an entry: Time (14 bytes when set), Source, DetailType, Detail, Resources. */
export function entrySize(entry: PutEventsRequestEntry): number {
  let size = entry.Time ? 14 : 0;
  for (const part of [entry.Source, entry.DetailType, entry.Detail, ...(entry.Resources ?? [])]) {
    if (part) size += Buffer.byteLength(part, "utf8");
  }
  return size;
}

/** Splits entries into PutEvents requests within both limits. Throws for an entry that alone exceeds them. */
export function packEntries(entries: readonly PutEventsRequestEntry[]): PutEventsRequestEntry[][] {
  const batches: PutEventsRequestEntry[][] = [];
  let current: PutEventsRequestEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entrySize(entry);
    if (size > PUT_EVENTS_MAX_BYTES) {
      throw new ClientError(
        "rejected",
        `an entry of ${size} bytes exceeds the PutEvents limit of ${PUT_EVENTS_MAX_BYTES}; send it over HTTP`,
      );
    }
    if (current.length === PUT_EVENTS_MAX_ENTRIES || bytes + size > PUT_EVENTS_MAX_BYTES) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export interface EventBridgePublisherOptions {
  /** The sink's bus name or ARN. */
  eventBusName: string;
  /** Created once and reused; defaults to a client for the environment's region and credentials. */
  client?: { send(command: PutEventsCommand): Promise<PutEventsCommandOutput> };
  /** Entry Source the sink's rule matches (default `auditsink.producer`). */
  source?: string;
  /** Entry DetailType the sink's rule matches (default `auditsink.event`). */
  detailType?: string;
  retry?: RetryOptions;
}

/**
 * @example
 *   const bus = new EventBridgePublisher({ eventBusName: "auditsink-prod-ingest" });
 *   await bus.put("agent-actions", [client.sign({ type: "ai.agent.tool_call", data })]);
 */
export class EventBridgePublisher {
  private readonly client: { send(command: PutEventsCommand): Promise<PutEventsCommandOutput> };
  private readonly retry: Required<RetryOptions>;

  constructor(private readonly options: EventBridgePublisherOptions) {
    this.client = options.client ?? new EventBridgeClient({});
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
  }

  toEntry(stream: string, event: SignedEvent): PutEventsRequestEntry {
    return {
      EventBusName: this.options.eventBusName,
      Source: this.options.source ?? DEFAULT_EVENT_SOURCE,
      DetailType: this.options.detailType ?? DEFAULT_DETAIL_TYPE,
      Detail: JSON.stringify({ stream, event }),
    };
  }

  /**
   * Puts the events; resolves with EventBridge's entry ids once every entry was accepted by the bus (the sink
   * commits them asynchronously: fetch receipts by `source` + `id` later). Rejects with ClientError
   * ("unavailable") naming the entries still failing after the last attempt.
   */
  async put(stream: string, events: readonly SignedEvent[]): Promise<string[]> {
    const ids: string[] = [];
    for (const batch of packEntries(events.map((e) => this.toEntry(stream, e)))) {
      ids.push(...(await this.putBatch(batch)));
    }
    return ids;
  }

  private async putBatch(entries: PutEventsRequestEntry[]): Promise<string[]> {
    const ids = new Array<string>(entries.length);
    let pending = entries.map((entry, i) => ({ entry, i }));
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.retry.maxAttempts && pending.length > 0; attempt++) {
      if (attempt > 1) await sleep(backoffDelay(attempt - 1, this.retry));
      let result: PutEventsCommandOutput;
      try {
        result = await this.client.send(new PutEventsCommand({ Entries: pending.map((p) => p.entry) }));
      } catch (e) {
        lastError = e;
        continue;
      }
      // PutEvents answers entry by entry, in request order; an entry with ErrorCode was not put.
      const failed: typeof pending = [];
      pending.forEach((p, j) => {
        const answer = result.Entries?.[j];
        if (answer?.EventId && !answer.ErrorCode) ids[p.i] = answer.EventId;
        else {
          failed.push(p);
          lastError = new Error(`${answer?.ErrorCode ?? "no answer"}: ${answer?.ErrorMessage ?? ""}`);
        }
      });
      pending = failed;
    }
    if (pending.length > 0) {
      throw new ClientError(
        "unavailable",
        `${pending.length} of ${entries.length} entries were not put after ${this.retry.maxAttempts} attempts`,
        {},
        { cause: lastError },
      );
    }
    return ids;
  }
}

/**
 * EventBridge → SQS → Lambda ingestion. Each SQS message body is an EventBridge event whose `detail` is
 * `{ "stream": "<name>", "event": <signed CloudEvent> }` (docs/AWS.md §EventBridge ingestion).
 *
 * On AWS the ingest-queue function only validates and authenticates (`forwardQueueBatch`) and hands accepted
 * events to the sequencer as pending items (handoff.ts), like HTTP ingest: one sequencer per stream commits them.
 * `commitQueueBatch` commits in-process instead (a runtime without a sequencer).
 *
 * A batch is committed with one `Sink.commit` per stream, so one segment, one head write and one signature
 * serve every message of that stream. Each message gets its own outcome, which the handler reports through
 * Powertools Batch as a partial batch failure: SQS retries only the failed messages, and a message that keeps
 * failing (a poison message: malformed, unknown producer, bad signature) moves to the DLQ after the queue's
 * maxReceiveCount. Nothing is dropped silently.
 */

import {
  type Admitted,
  assertStreamName,
  IngestError,
  parseSignedEvent,
  type Receipt,
  type Sink,
} from "@auditsink/core";
import { EventBridgeSchema } from "@aws-lambda-powertools/parser/schemas";
import { z } from "zod";
import type { PendingHandOff } from "./handoff.ts";

export const queueDetailSchema = z.object({ stream: z.string(), event: z.unknown() });
const queueMessageSchema = EventBridgeSchema.extend({ detail: queueDetailSchema });

export type QueueOutcome = { ok: true; receipt: Receipt } | { ok: false; error: unknown };

interface Placed {
  messageId: string;
  item: Admitted;
}

/** Parses, authenticates and commits a batch; resolves with one outcome per message id, never rejects. */
export async function commitQueueBatch(
  sink: Sink,
  records: readonly { messageId: string; body: string }[],
): Promise<Map<string, QueueOutcome>> {
  const outcomes = new Map<string, QueueOutcome>();
  const byStream = new Map<string, Placed[]>();
  for (const record of records) {
    try {
      const { stream, item } = await admitMessage(sink, record.body);
      const list = byStream.get(stream) ?? [];
      list.push({ messageId: record.messageId, item });
      byStream.set(stream, list);
    } catch (error) {
      outcomes.set(record.messageId, { ok: false, error });
    }
  }
  await Promise.all(
    [...byStream].map(async ([stream, placed]) => {
      try {
        const receipts = await sink.commit(
          stream,
          placed.map((p) => p.item),
        );
        for (const [i, p] of placed.entries()) outcomes.set(p.messageId, { ok: true, receipt: receipts[i]! });
      } catch (error) {
        if (!(error instanceof IngestError && error.code === "id-conflict")) {
          for (const p of placed) outcomes.set(p.messageId, { ok: false, error });
          return;
        }
        // One message reuses an accepted id with other content: commit the others one by one (they still
        // group into one segment in the Sink) so only the conflicting message fails.
        await Promise.all(
          placed.map(async (p) => {
            try {
              const [receipt] = await sink.commit(stream, [p.item]);
              outcomes.set(p.messageId, { ok: true, receipt: receipt! });
            } catch (e) {
              outcomes.set(p.messageId, { ok: false, error: e });
            }
          }),
        );
      }
    }),
  );
  return outcomes;
}

export type ForwardOutcome = { ok: true } | { ok: false; error: unknown };

/**
 * Parses and authenticates each message, then hands the accepted ones to the sequencer in one go (pending items,
 * then a wake-up per stream); a message is acknowledged only once its pending item is durable.
 * Resolves with one outcome per message id, never rejects: a refused message fails on its own (SQS retries it
 * and moves it to the dead-letter queue after maxReceiveCount); if the hand-off fails, every accepted one does.
 */
export async function forwardQueueBatch(
  sink: Sink,
  handOff: PendingHandOff,
  records: readonly { messageId: string; body: string }[],
): Promise<Map<string, ForwardOutcome>> {
  const outcomes = new Map<string, ForwardOutcome>();
  const accepted: { messageId: string; stream: string; item: Admitted }[] = [];
  await Promise.all(
    records.map(async (record) => {
      try {
        const { stream, item } = await admitMessage(sink, record.body);
        accepted.push({ messageId: record.messageId, stream, item });
      } catch (error) {
        outcomes.set(record.messageId, { ok: false, error });
      }
    }),
  );
  // Keep the queue's order within each stream (authentication above finished in any order).
  const order = new Map(records.map((r, i) => [r.messageId, i]));
  accepted.sort((a, b) => order.get(a.messageId)! - order.get(b.messageId)!);
  try {
    await handOff.send(accepted.map((a) => ({ stream: a.stream, events: [a.item.event], receipt: false })));
    for (const a of accepted) outcomes.set(a.messageId, { ok: true });
  } catch (error) {
    for (const a of accepted) outcomes.set(a.messageId, { ok: false, error });
  }
  return outcomes;
}

async function admitMessage(sink: Sink, body: string): Promise<{ stream: string; item: Admitted }> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (cause) {
    throw new IngestError("invalid-request", "message body is not JSON", undefined, { cause });
  }
  const parsed = queueMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join(".");
    throw new IngestError("invalid-request", `${field}: ${issue.message}`, field);
  }
  const { stream, event } = parsed.data.detail;
  assertStreamName(stream);
  const signed = parseSignedEvent(event, "detail.event");
  return { stream, item: await sink.authenticate(stream, signed, "detail.event") };
}

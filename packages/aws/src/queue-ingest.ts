/**
 * EventBridge → SQS → Lambda ingestion. Each SQS message body is an EventBridge event whose `detail` is
 * `{ "stream": "<name>", "event": <signed CloudEvent> }` (docs/AWS.md §EventBridge ingestion).
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

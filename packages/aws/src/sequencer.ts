/**
 * The sequencer: commits what ingest handed off (handoff.ts) with core's commit path, `Sink.commit`, one call per
 * stream per batch, so one segment create, one KMS signature and one head compare-and-set serve every message of
 * that stream in the batch, however many producers sent them.
 *
 * For each SQS batch (FIFO: messages of one stream arrive in order, and no other consumer holds that stream):
 *   1. parse each message; one that is not a hand-off message (a bug, or a tampered queue) goes to the
 *      sequencer's dead-letter queue at once, so it never blocks its stream;
 *   2. authenticate every event again (a key revoked since ingest is refused here, not committed);
 *   3. commit each stream's events with one `Sink.commit`. If one message reuses an accepted id with other
 *      content (id-conflict), the stream's messages are committed one by one (still grouped into one segment by
 *      the Sink's writer) so only that message is refused;
 *   4. write the answers (receipts, or the problem) for the messages someone waits for; a refused message that
 *      nobody waits for (EventBridge path) goes to the dead-letter queue with its reason;
 *   5. report as failed every message of a stream whose commit failed for another reason (a store outage): SQS
 *      redelivers them in order, and the retry is idempotent (dedup returns the records already made).
 */
import { createHash } from "node:crypto";
import {
  type Admitted,
  admit,
  assertStreamName,
  IngestError,
  parseSignedEvent,
  type SignedEvent,
  type Signer,
  type Sink,
  SYSTEM_PRODUCER,
  SYSTEM_STREAM,
  systemProducerKey,
  verifyEventSignatureAsync,
} from "@auditsink/core";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { Context, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { z } from "zod";
import { storeFailure } from "./errors.ts";
import type { DynamoReceiptStore, HandOffAnswer, HandOffMessage } from "./handoff.ts";
import { emit, logger, METRICS, metrics } from "./observability.ts";
import type { AwsRuntime } from "./runtime.ts";

const messageSchema = z.object({
  v: z.literal(1),
  requestId: z.string().min(1).max(64),
  part: z.number().int().min(0),
  parts: z.number().int().min(1),
  first: z.number().int().min(0),
  stream: z.string(),
  events: z.array(z.unknown()).min(1),
  receipt: z.boolean(),
});

/** Where messages the sequencer can never commit go, with the reason (an SQS queue). */
export class DeadLetters {
  constructor(
    private readonly sqs: SQSClient,
    readonly queueUrl: string,
  ) {}

  async send(body: string, reason: { code: string; message: string }): Promise<void> {
    try {
      await this.sqs.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: body,
          // A FIFO dead-letter queue (the sequencer queue's redrive target) needs a group and a dedup id.
          ...(this.queueUrl.endsWith(".fifo")
            ? {
                MessageGroupId: "dead-letters",
                MessageDeduplicationId: createHash("sha256").update(body).digest("hex"),
              }
            : {}),
          MessageAttributes: {
            code: { DataType: "String", StringValue: reason.code },
            reason: { DataType: "String", StringValue: reason.message.slice(0, 1000) },
          },
        }),
      );
    } catch (e) {
      throw storeFailure("SendMessage sequencer dead letters", e);
    }
  }
}

export interface SequencerDeps {
  sink: Sink;
  /** The sink's checkpoint signer: it also signs the system stream's events (producer registrations). */
  signer: Signer;
  receipts: DynamoReceiptStore;
  deadLetters: DeadLetters;
}

interface Parsed {
  messageId: string;
  message: HandOffMessage;
  items?: Admitted[];
  answer?: HandOffAnswer;
}

export interface SequencedBatch {
  /** Messages to be delivered again (their stream's commit failed for a reason other than the input). */
  failed: string[];
  committed: number;
  refused: number;
  deadLettered: number;
}

/** Commits one SQS batch; never rejects for a message's content, only for a store failure of the answers. */
export async function sequenceBatch(
  deps: SequencerDeps,
  records: readonly { messageId: string; body: string }[],
): Promise<SequencedBatch> {
  const result: SequencedBatch = { failed: [], committed: 0, refused: 0, deadLettered: 0 };
  const byStream = new Map<string, Parsed[]>();
  for (const record of records) {
    const message = parseMessage(record.body);
    if (message instanceof IngestError) {
      await deps.deadLetters.send(record.body, message);
      result.deadLettered++;
      continue;
    }
    const list = byStream.get(message.stream) ?? [];
    list.push({ messageId: record.messageId, message });
    byStream.set(message.stream, list);
  }

  await Promise.all(
    [...byStream].map(async ([stream, parsed]) => {
      try {
        await authenticateAll(deps, stream, parsed);
        await commitStream(deps.sink, stream, parsed);
      } catch (error) {
        // Not the input's fault (IngestErrors became answers): retry the stream's messages, in order.
        logger.warn("stream not committed", { stream, reason: (error as Error).message });
        result.failed.push(...parsed.map((p) => p.messageId));
        byStream.delete(stream);
      }
    }),
  );

  const answers: { requestId: string; part: number; answer: HandOffAnswer }[] = [];
  for (const parsed of byStream.values()) {
    for (const p of parsed) {
      const answer = p.answer!;
      if ("error" in answer) result.refused++;
      else result.committed += answer.receipts.length;
      if (p.message.receipt) answers.push({ requestId: p.message.requestId, part: p.message.part, answer });
      else if ("error" in answer) {
        await deps.deadLetters.send(JSON.stringify(p.message), answer.error);
        result.deadLettered++;
      }
    }
  }
  await deps.receipts.put(answers);
  return result;
}

function parseMessage(body: string): HandOffMessage | IngestError {
  try {
    const parsed = messageSchema.safeParse(JSON.parse(body));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return new IngestError("invalid-request", `${issue.path.join(".")}: ${issue.message}`);
    }
    return parsed.data as HandOffMessage;
  } catch {
    return new IngestError("invalid-request", "message body is not JSON");
  }
}

const answerOf = (e: IngestError): HandOffAnswer => ({
  error: { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) },
});

/** Authenticates every event again; a message with a refused event gets that problem as its answer. */
async function authenticateAll(deps: SequencerDeps, stream: string, parsed: Parsed[]): Promise<void> {
  const system = systemProducerKey(deps.signer);
  const authenticate = async (event: SignedEvent, field: string): Promise<Admitted> => {
    if (event.sigkeyid !== system.keyId) {
      // The system stream holds only the sink's own events (ingest never hands off another's there).
      if (stream === SYSTEM_STREAM) throw new IngestError("stream-not-allowed", "stream: reserved", "stream");
      assertStreamName(stream);
      return deps.sink.authenticate(stream, event, field);
    }
    // The sink's own events (core AuditedProducerAdmin), signed by its key: only in the system stream.
    const admitted = admit(event, SYSTEM_PRODUCER, field);
    if (
      stream !== SYSTEM_STREAM ||
      !(await verifyEventSignatureAsync(event, admitted.canonical, system.publicKey))
    ) {
      throw new IngestError(
        "bad-signature",
        `${field}.signature: not a system event of this sink`,
        `${field}.signature`,
      );
    }
    return admitted;
  };
  await Promise.all(
    parsed.map(async (p) => {
      try {
        p.items = await Promise.all(
          p.message.events.map((e, i) => {
            const field = `events[${p.message.first + i}]`;
            return authenticate(parseSignedEvent(e, field), field);
          }),
        );
      } catch (e) {
        if (!(e instanceof IngestError)) throw e;
        p.answer = answerOf(e);
      }
    }),
  );
}

/** One Sink.commit for the stream's accepted messages; one per message if an id conflicts. */
async function commitStream(sink: Sink, stream: string, parsed: Parsed[]): Promise<void> {
  const ready = parsed.filter((p) => p.items);
  if (ready.length === 0) return;
  try {
    const receipts = await sink.commit(
      stream,
      ready.flatMap((p) => p.items!),
    );
    let at = 0;
    for (const p of ready) {
      p.answer = { receipts: receipts.slice(at, at + p.items!.length) };
      at += p.items!.length;
    }
  } catch (error) {
    if (!(error instanceof IngestError && error.code === "id-conflict")) throw error;
    await Promise.all(
      ready.map(async (p) => {
        try {
          p.answer = { receipts: await sink.commit(stream, p.items!) };
        } catch (e) {
          if (!(e instanceof IngestError)) throw e;
          p.answer = answerOf(e);
        }
      }),
    );
  }
}

/** The Lambda handler over an SQS FIFO event source (partial batch responses on). */
export function createSequencerHandler(
  runtime: AwsRuntime,
): (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> {
  return async (event, context) => {
    logger.addContext(context);
    try {
      const deps = await runtime.startSequencer();
      const result = await sequenceBatch(deps, event.Records);
      emit(METRICS.eventsRejected, result.refused + result.deadLettered);
      logger.info("sequenced", { messages: event.Records.length, ...result, failed: result.failed.length });
      return { batchItemFailures: result.failed.map((itemIdentifier) => ({ itemIdentifier })) };
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}

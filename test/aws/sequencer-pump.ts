/**
 * Lambda's SQS event source mapping, emulated for tests and the load benchmark: pollers receive up to 10 messages
 * (the FIFO maximum) from the sequencer queue, invoke the sequencer handler with them as an SQSEvent, delete the
 * messages it did not report as failed, and make the failed ones visible again (Lambda leaves them to their
 * visibility timeout; tests want the redelivery now). SQS itself (moto) keeps a message group's messages away
 * from other pollers while some are in flight, as it does for Lambda.
 */
import { randomUUID } from "node:crypto";
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";

export type SequencerHandler = (event: SQSEvent, context: unknown) => Promise<SQSBatchResponse>;

export interface PumpOptions {
  sqs: SQSClient;
  queueUrl: string;
  /** One handler per poller: each poller stands for one Lambda container. */
  handlers: SequencerHandler[];
  /** Long-poll seconds of each ReceiveMessage (Lambda uses 20; short keeps stop() quick). */
  waitSeconds?: number;
  /**
   * With waitSeconds 0: milliseconds between empty polls. SQS's long poll returns as soon as a message arrives;
   * moto's does not, so the load benchmark polls short with this gap instead (default 10).
   */
  idleMs?: number;
  context?: unknown;
}

export interface Pump {
  /** Handler invocations so far, and messages they were given. */
  readonly invocations: number;
  readonly messages: number;
  /** Resolves once every poller has finished its current batch. */
  stop(): Promise<void>;
}

export function toSqsRecord(m: Message, queueArn = "arn:aws:sqs:us-east-1:123456789012:seq.fifo"): SQSRecord {
  return {
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body!,
    attributes: {
      ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? "1",
      SentTimestamp: m.Attributes?.SentTimestamp ?? String(Date.now()),
      SenderId: "AIDAEXAMPLE",
      ApproximateFirstReceiveTimestamp: String(Date.now()),
      ...(m.Attributes?.MessageGroupId ? { MessageGroupId: m.Attributes.MessageGroupId } : {}),
      ...(m.Attributes?.MessageDeduplicationId
        ? { MessageDeduplicationId: m.Attributes.MessageDeduplicationId }
        : {}),
    },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? "",
    eventSource: "aws:sqs",
    eventSourceARN: queueArn,
    awsRegion: "us-east-1",
  };
}

/** Receives one batch and runs the handler on it, as one event source invocation. Returns messages handled. */
export async function pumpOnce(
  sqs: SQSClient,
  queueUrl: string,
  handler: SequencerHandler,
  options: { waitSeconds?: number; context?: unknown } = {},
): Promise<number> {
  const received = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: options.waitSeconds ?? 0,
      MessageSystemAttributeNames: ["All"],
    }),
  );
  const messages = received.Messages ?? [];
  if (messages.length === 0) return 0;
  let failed: Set<string>;
  try {
    const response = await handler({ Records: messages.map((m) => toSqsRecord(m)) }, options.context ?? {});
    failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
  } catch {
    failed = new Set(messages.map((m) => m.MessageId!));
  }
  const done = messages.filter((m) => !failed.has(m.MessageId!));
  const again = messages.filter((m) => failed.has(m.MessageId!));
  if (done.length > 0) {
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
  if (again.length > 0) {
    await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queueUrl,
        Entries: again.map((m, i) => ({
          Id: String(i),
          ReceiptHandle: m.ReceiptHandle!,
          VisibilityTimeout: 0,
        })),
      }),
    );
  }
  return messages.length;
}

/** Starts one poller per handler; they run until stop(). */
export function startPump(options: PumpOptions): Pump {
  let running = true;
  const state = { invocations: 0, messages: 0 };
  const pollers = options.handlers.map(async (handler) => {
    while (running) {
      try {
        const n = await pumpOnce(options.sqs, options.queueUrl, handler, {
          waitSeconds: options.waitSeconds ?? 1,
          context: options.context ?? { awsRequestId: randomUUID() },
        });
        if (n > 0) {
          state.invocations++;
          state.messages += n;
        } else if ((options.waitSeconds ?? 1) === 0) {
          await new Promise((r) => setTimeout(r, options.idleMs ?? 10));
        }
      } catch (e) {
        if (running) await new Promise((r) => setTimeout(r, 50));
        void e;
      }
    }
  });
  return {
    get invocations() {
      return state.invocations;
    },
    get messages() {
      return state.messages;
    },
    async stop() {
      running = false;
      await Promise.all(pollers);
    },
  };
}

/** Runs pollers until `work` settles (an HTTP request waiting for its receipts), then stops them. */
export async function whilePumping<T>(
  options: Omit<PumpOptions, "waitSeconds">,
  work: Promise<T> | (() => Promise<T>),
): Promise<T> {
  const pump = startPump({ ...options, waitSeconds: 0 });
  try {
    return await (typeof work === "function" ? work() : work);
  } finally {
    await pump.stop();
  }
}

/** Handles batches until the queue has nothing visible left; returns how many messages were handled. */
export async function drainQueue(
  sqs: SQSClient,
  queueUrl: string,
  handler: SequencerHandler,
): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await pumpOnce(sqs, queueUrl, handler);
    if (n === 0) return total;
    total += n;
  }
}

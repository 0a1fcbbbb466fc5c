import { Duration, type Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambdaEvents from "aws-cdk-lib/aws-lambda-event-sources";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { queueVisibilityFor, type SinkResources, sinkFunction } from "./lambda.ts";

/** The sequencer's Lambda timeout: a batch of 10 messages commits in well under a second. */
export const SEQUENCER_TIMEOUT_SECONDS = 60;
/** Lambda's SQS FIFO event sources deliver at most 10 messages per batch. */
export const SEQUENCER_BATCH_SIZE = 10;
/** Environment variables of the runtime (packages/aws/src/config.ts ENV). */
export const SEQUENCER_ENV = { queueUrl: "SEQUENCER_QUEUE_URL", deadLetterUrl: "SEQUENCER_DLQ_URL" } as const;

/**
 * The hand-off between ingest and the one sequencer per stream (docs/AWS.md §Accept, then sequence):
 *   - an SQS FIFO queue, `MessageGroupId` = stream, in high-throughput mode (dedup and throughput limits per
 *     message group). SQS hands a group's messages to one consumer at a time, in order: one sequencer per
 *     stream, with no lease to manage; different streams are worked on in parallel;
 *   - a FIFO dead-letter queue: messages a sequencer failed on 10 times (a long store outage), and poison
 *     messages the sequencer moves there itself at once (so they never block their stream);
 *   - the sequencer function, fed by the queue with partial batch responses.
 * The ingest functions get the queue's URL and may only send to it.
 */
export class SequencerHandOff {
  readonly queue: sqs.Queue;
  readonly deadLetters: sqs.Queue;

  constructor(scope: Construct) {
    this.deadLetters = new sqs.Queue(scope, "SequencerDeadLetters", {
      fifo: true,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.queue = new sqs.Queue(scope, "SequencerQueue", {
      fifo: true,
      deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
      fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: queueVisibilityFor(SEQUENCER_TIMEOUT_SECONDS),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.deadLetters, maxReceiveCount: 10 },
    });
  }

  /** The ingest side: where to send, and the one right to send there. */
  producerEnvironment(): Record<string, string> {
    return { [SEQUENCER_ENV.queueUrl]: this.queue.queueUrl };
  }

  producerStatements(): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({
        sid: "HandOffToSequencer",
        actions: ["sqs:SendMessage"],
        resources: [this.queue.queueArn],
      }),
    ];
  }

  /** The sequencer function: commits and signs (writer statements), consumes the queue, dead-letters poison. */
  addSequencer(
    stack: Stack,
    resources: SinkResources,
    writerStatements: iam.PolicyStatement[],
    environment: Record<string, string> = {},
  ) {
    const sequencer = sinkFunction(stack, "sequencer", {
      resources,
      description: "auditsink sequencer: commits each stream's handed-off events as one segment per batch",
      timeout: SEQUENCER_TIMEOUT_SECONDS,
      memorySize: 1024,
      statements: [
        ...writerStatements,
        new iam.PolicyStatement({
          sid: "DeadLetterPoison",
          actions: ["sqs:SendMessage"],
          resources: [this.deadLetters.queueArn],
        }),
      ],
      environment: { [SEQUENCER_ENV.deadLetterUrl]: this.deadLetters.queueUrl, ...environment },
    });
    sequencer.fn.addEventSource(
      new lambdaEvents.SqsEventSource(this.queue, {
        batchSize: SEQUENCER_BATCH_SIZE,
        reportBatchItemFailures: true,
      }),
    );
    return sequencer;
  }
}

import { Duration, type Stack } from "aws-cdk-lib";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as sqs from "aws-cdk-lib/aws-sqs";
import { NagSuppressions } from "cdk-nag";
import type { App } from "sst/constructs";
import { type SinkResources, sinkFunction } from "./lambda.ts";
import { LEDGER_PARTITIONS, ledgerWrites } from "./policies.ts";

/**
 * The sequencer's Lambda timeout. A run loops while its stream has pending items and hands over to a fresh
 * invocation STOP_MARGIN (10 s) before this; longer runs mean fewer hand-overs under sustained load.
 */
export const SEQUENCER_TIMEOUT_SECONDS = 300;
/** How often the sweep looks for streams whose sequencer died holding the lease (EventBridge schedule). */
export const SWEEP_INTERVAL_MINUTES = 1;
/** Environment variables of the runtime (packages/aws/src/config.ts ENV). */
export const SEQUENCER_ENV = {
  functionName: "SEQUENCER_FUNCTION_NAME",
  deadLetterUrl: "SEQUENCER_DLQ_URL",
} as const;

/** The sequencer function's fixed name, so roles (its own included) can name it without a dependency cycle. */
export function sequencerFunctionName(app: App): string {
  return `${app.name}-${app.stage}-sequencer`;
}

/**
 * The hand-off between ingest and the one sequencer per stream (docs/AWS.md §Accept, then sequence):
 *   - ingest writes pending items (`pending#<stream>` in the ledger) and wakes the sequencer with an asynchronous
 *     invocation unless the stream's lease (`lease#<stream>`) is held;
 *   - the sequencer function takes the lease and commits everything pending; it may wake itself (a hand-over
 *     before its timeout) and is run every minute by a schedule that sweeps for streams whose lease lapsed with
 *     items waiting;
 *   - a dead-letter queue for pending items the sequencer can never commit (poison items, refused EventBridge
 *     events), with the reason.
 */
export class SequencerHandOff {
  readonly deadLetters: sqs.Queue;
  readonly functionName: string;
  private readonly functionArn: string;

  constructor(
    private readonly stack: Stack,
    private readonly tableArn: string,
  ) {
    const app = stack.node.root as App;
    this.functionName = sequencerFunctionName(app);
    this.functionArn = `arn:${stack.partition}:lambda:${stack.region}:${stack.account}:function:${this.functionName}`;
    this.deadLetters = new sqs.Queue(stack, "SequencerDeadLetters", {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    NagSuppressions.addResourceSuppressions(this.deadLetters, [
      {
        id: "AwsSolutions-SQS3",
        reason:
          "This is the sequencer's dead-letter queue: the sequencer puts pending items it can never commit here " +
          "itself (with the reason), so no queue names it in a redrive policy; nothing reads it but operators.",
      },
    ]);
  }

  /** The ingest side: which function to wake. */
  producerEnvironment(): Record<string, string> {
    return { [SEQUENCER_ENV.functionName]: this.functionName };
  }

  /** The ingest side's only writes: pending items (PutItem, `pending#*` only), and waking the sequencer. */
  producerStatements(): iam.PolicyStatement[] {
    return [
      ledgerWrites("WritePending", this.tableArn, LEDGER_PARTITIONS.pending, ["dynamodb:PutItem"]),
      new iam.PolicyStatement({
        sid: "WakeSequencer",
        actions: ["lambda:InvokeFunction"],
        resources: [this.functionArn],
      }),
    ];
  }

  /** The sequencer function: commits and signs (writer statements), dead-letters poison, wakes itself. */
  addSequencer(resources: SinkResources, writerStatements: iam.PolicyStatement[], environment = {}) {
    const sequencer = sinkFunction(this.stack, "sequencer", {
      resources,
      functionName: this.functionName,
      description:
        "auditsink sequencer: holds a stream's lease and commits everything pending as one segment",
      timeout: SEQUENCER_TIMEOUT_SECONDS,
      memorySize: 1024,
      statements: [
        ...writerStatements,
        new iam.PolicyStatement({
          sid: "DeadLetterPoison",
          actions: ["sqs:SendMessage"],
          resources: [this.deadLetters.queueArn],
        }),
        new iam.PolicyStatement({
          sid: "HandOverToSelf",
          actions: ["lambda:InvokeFunction"],
          resources: [this.functionArn],
        }),
      ],
      environment: {
        [SEQUENCER_ENV.deadLetterUrl]: this.deadLetters.queueUrl,
        [SEQUENCER_ENV.functionName]: this.functionName,
        ...environment,
      },
    });
    // A wake-up whose run failed (a store outage) is retried twice by Lambda; waiters and the sweep cover longer.
    sequencer.fn.configureAsyncInvoke({ retryAttempts: 2, maxEventAge: Duration.hours(1) });
    new events.Rule(this.stack, "SequencerSweepSchedule", {
      description: "Wakes the sequencer of any stream whose lease lapsed while events wait",
      schedule: events.Schedule.rate(Duration.minutes(SWEEP_INTERVAL_MINUTES)),
      targets: [
        new targets.LambdaFunction(sequencer.fn, { retryAttempts: 2, maxEventAge: Duration.minutes(5) }),
      ],
    });
    return sequencer;
  }
}

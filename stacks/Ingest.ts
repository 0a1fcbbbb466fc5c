import { Aws, Duration, RemovalPolicy } from "aws-cdk-lib";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambdaEvents from "aws-cdk-lib/aws-lambda-event-sources";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sqs from "aws-cdk-lib/aws-sqs";
import { NagSuppressions } from "cdk-nag";
import { Api, type StackContext, use } from "sst/constructs";
import { Archive } from "./Archive.ts";
import { EXECUTE_API_FINDING, executeApiArn } from "./http.ts";
import { Ledger } from "./Ledger.ts";
import { queueVisibilityFor, type SinkResources, sinkFunction } from "./lambda.ts";
import { useSettings } from "./naming.ts";
import {
  archiveAndLedgerReads,
  archiveProtections,
  archiveReadOnly,
  denyLedgerPartitions,
  eventIndexProtections,
  eventIndexWrites,
  keyProtections,
  LEDGER_LOOKUP_ACTIONS,
  LEDGER_PARTITIONS,
  ledgerProtections,
  ledgerWrites,
  ledgerWritesOnly,
  noSigning,
  runtimeAlertStatements,
  SEQUENCER_FORBIDDEN_PARTITIONS,
} from "./policies.ts";
import { SequencerHandOff } from "./Sequencer.ts";
import { Signing } from "./Signing.ts";
import { witnessEnvironment } from "./settings.ts";

/**
 * Routes served by functions/ingest-http. Producer administration (PRODUCER_ADMIN_ROUTES, SigV4) is served by
 * functions/producer-admin under its own role (stacks/ProducerAdmin.ts).
 */
export const INGEST_ROUTES = ["POST /v1/streams/{stream}/events", "GET /healthz"] as const;

/** Registering or revoking a producer key changes who may write: only IAM-authenticated operators may. */
export const PRODUCER_ADMIN_ROUTES = ["POST /v1/producers", "POST /v1/producers/{id}/revoke"] as const;

/** EventBridge detail-type of audit events on the ingest bus. */
export const AUDIT_EVENT_DETAIL_TYPE = "auditsink.event";

const INGEST_HTTP_TIMEOUT_SECONDS = 29;
const INGEST_QUEUE_TIMEOUT_SECONDS = 60;

/** API Gateway access log fields, with the caller's IAM identity for SigV4-signed requests. */
const ACCESS_LOG_FORMAT = JSON.stringify({
  requestId: "$context.requestId",
  requestTime: "$context.requestTime",
  httpMethod: "$context.httpMethod",
  routeKey: "$context.routeKey",
  path: "$context.path",
  status: "$context.status",
  responseLatency: "$context.responseLatency",
  integrationStatus: "$context.integration.status",
  integrationError: "$context.integration.error",
  ip: "$context.identity.sourceIp",
  userAgent: "$context.identity.userAgent",
  callerAccount: "$context.identity.accountId",
  callerArn: "$context.identity.userArn",
});

/**
 * Both ways in: the HTTP API (API Gateway HTTP API → ingest-http) and EventBridge (bus → rule → SQS queue with
 * a dead-letter queue → ingest-queue). Both ingest functions validate and authenticate, then write the events as
 * pending items of their stream and wake the stream's sequencer (stacks/Sequencer.ts), which holds the stream's
 * lease, commits and signs. ingest-http waits for the sequencer's receipts and answers with them.
 */
export function Ingest({ app, stack }: StackContext) {
  const settings = useSettings(app);
  const { archive } = use(Archive);
  const { table, eventIndex } = use(Ledger);
  const { signingKeyArn } = use(Signing);
  const resources: SinkResources = {
    archiveBucketName: archive.bucketName,
    ledgerTableName: table.tableName,
    eventIndexTableName: eventIndex.tableName,
    signingKeyArn,
  };

  const protections = (): iam.PolicyStatement[] => [
    ...archiveProtections({ kind: "identity" }, archive.bucketArn, settings.retentionDays),
    keyProtections(signingKeyArn),
    ...ledgerProtections(table.tableArn),
  ];
  const readLedger = () =>
    new iam.PolicyStatement({
      sid: "ReadLedger",
      actions: LEDGER_LOOKUP_ACTIONS,
      resources: [table.tableArn, `${table.tableArn}/index/*`],
    });

  // The sequencer commits and signs: segments and checkpoints under streams/ (the `_system` stream's too: core's
  // Sink records each new stream's creation there), heads, dedup entries and the receipts ingest waits for.
  const sequencerStatements = (): iam.PolicyStatement[] => [
    new iam.PolicyStatement({
      sid: "CreateArchiveObjects",
      actions: ["s3:PutObject", "s3:PutObjectRetention"],
      resources: [archive.arnForObjects("streams/*")],
    }),
    // Never the public key documents (producer-admin's, stacks/ProducerAdmin.ts).
    new iam.PolicyStatement({
      sid: "DenyKeyDocuments",
      effect: iam.Effect.DENY,
      actions: ["s3:PutObject", "s3:PutObjectRetention"],
      resources: [archive.arnForObjects("keys/*")],
    }),
    ...archiveAndLedgerReads(archive, table.tableArn, { listVersions: true }),
    // The postings of each segment it commits or catches up on, before the head moves (DynamoEventIndex.ts).
    eventIndexWrites(eventIndex.tableArn),
    ...eventIndexProtections(eventIndex.tableArn, true),
    ledgerWrites("WriteHeadsDedupAndLeases", table.tableArn, LEDGER_PARTITIONS.sequencer),
    // Receipts go out and committed pending items leave 25 at a time (BatchWriteItem): those partitions only.
    ledgerWrites("WriteReceiptsDeletePending", table.tableArn, LEDGER_PARTITIONS.sequencerBatch, [
      "dynamodb:BatchWriteItem",
    ]),
    denyLedgerPartitions("DenyRegistryAndVerifierState", table.tableArn, SEQUENCER_FORBIDDEN_PARTITIONS),
    new iam.PolicyStatement({
      sid: "SignCheckpoints",
      actions: ["kms:Sign", "kms:GetPublicKey"],
      resources: [signingKeyArn],
    }),
    ...runtimeAlertStatements(stack),
    ...protections(),
  ];

  // Internet-facing ingest only validates, authenticates (producer keys from the ledger) and hands off: it reads
  // the ledger (keys, leases, receipts) and the public key, writes only pending items (handOff.producerStatements)
  // and nothing to the archive, and signs nothing.
  const ingestStatements = (): iam.PolicyStatement[] => [
    readLedger(),
    new iam.PolicyStatement({
      sid: "ReadPublicKey",
      actions: ["kms:GetPublicKey"],
      resources: [signingKeyArn],
    }),
    archiveReadOnly({ kind: "identity" }, archive.bucketArn),
    ledgerWritesOnly(table.tableArn, LEDGER_PARTITIONS.pending),
    ...eventIndexProtections(eventIndex.tableArn, false),
    noSigning(signingKeyArn),
    ...protections(),
  ];

  // ---- Hand-off and sequencer ----
  const dedupEnvironment = { DEDUP_WINDOW_SECONDS: String(settings.dedupWindowDays * 86_400) };
  const handOff = new SequencerHandOff(stack, table.tableArn);
  // With witnesses, the sequencer submits each stream's checkpoints after its runs and stores the cosigned notes
  // under streams/<stream>/cosigned/ (within CreateArchiveObjects' streams/*: nothing more is granted).
  const sequencer = handOff.addSequencer(resources, sequencerStatements(), {
    ...dedupEnvironment,
    ...witnessEnvironment(settings),
  });

  // ---- HTTP ----
  const ingestHttp = sinkFunction(stack, "ingest-http", {
    resources,
    description:
      "auditsink HTTP ingest: authenticates signed events, hands them to the sequencer, returns receipts",
    timeout: INGEST_HTTP_TIMEOUT_SECONDS,
    // It mostly waits for the sequencer's answer: the smallest size keeps the waiting cheap.
    memorySize: 256,
    // The HTTP app alerts on integrity errors it meets (AppDeps.alerts).
    statements: [...ingestStatements(), ...runtimeAlertStatements(stack), ...handOff.producerStatements()],
    environment: { ...handOff.producerEnvironment(), ...dedupEnvironment },
  });

  const accessLogs = new logs.LogGroup(stack, "ApiAccessLogs", {
    retention: settings.logRetentionDays as logs.RetentionDays,
    removalPolicy: RemovalPolicy.RETAIN,
  });
  const api = new Api(stack, "Api", {
    cors: false,
    accessLog: { destinationArn: accessLogs.logGroupArn, format: ACCESS_LOG_FORMAT },
    defaults: { throttle: { rate: settings.apiRateLimit, burst: settings.apiBurstLimit } },
    routes: Object.fromEntries(
      INGEST_ROUTES.map((route) => [
        route,
        {
          function: ingestHttp.fn,
          authorizer: (PRODUCER_ADMIN_ROUTES as readonly string[]).includes(route) ? "iam" : "none",
        },
      ]),
    ),
  });
  NagSuppressions.addResourceSuppressions(
    api,
    [
      {
        id: "AwsSolutions-APIG4",
        reason:
          "POST /v1/streams/{stream}/events is authenticated per event: the producer's signature is checked " +
          "against its registered key before anything is committed, so producers need no AWS identity. " +
          "GET /healthz exposes nothing. Every other route requires IAM (SigV4).",
      },
      {
        id: "AwsSolutions-COG4",
        reason:
          "No Cognito users: producers authenticate by event signatures, operators and auditors by IAM.",
      },
    ],
    true,
  );

  // ---- EventBridge ----
  const bus = new events.EventBus(stack, "Bus", { eventBusName: `${app.name}-${app.stage}-ingest` });
  for (const account of settings.producerAccounts) {
    new events.CfnEventBusPolicy(stack, `BusPolicy${account}`, {
      eventBusName: bus.eventBusName,
      statementId: `AllowPutEventsFrom${account}`,
      statement: {
        Effect: "Allow",
        Principal: { AWS: `arn:${Aws.PARTITION}:iam::${account}:root` },
        Action: "events:PutEvents",
        Resource: bus.eventBusArn,
      },
    });
  }

  const deadLetters = new sqs.Queue(stack, "IngestDeadLetters", {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  const queue = new sqs.Queue(stack, "IngestQueue", {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    visibilityTimeout: queueVisibilityFor(INGEST_QUEUE_TIMEOUT_SECONDS),
    retentionPeriod: Duration.days(4),
    deadLetterQueue: { queue: deadLetters, maxReceiveCount: 5 },
  });

  // Audit events (detail-type `auditsink.event`, as packages/client's EventBridgePublisher sends them) from the
  // deploying account or an allowed producer account. The source is the producer's to choose.
  const rule = new events.Rule(stack, "IngestRule", {
    eventBus: bus,
    description: "Forwards audit events from allowed accounts to the ingest queue",
    eventPattern: {
      detailType: [AUDIT_EVENT_DETAIL_TYPE],
      account: [Aws.ACCOUNT_ID, ...settings.producerAccounts],
    },
  });
  rule.addTarget(
    new targets.SqsQueue(queue, {
      deadLetterQueue: deadLetters,
      retryAttempts: 185,
      maxEventAge: Duration.hours(24),
    }),
  );

  const ingestQueue = sinkFunction(stack, "ingest-queue", {
    resources,
    description:
      "auditsink EventBridge ingest: authenticates events from the ingest queue, hands them to the sequencer",
    timeout: INGEST_QUEUE_TIMEOUT_SECONDS,
    memorySize: 512,
    statements: [...ingestStatements(), ...handOff.producerStatements()],
    environment: { ...handOff.producerEnvironment(), ...dedupEnvironment },
  });
  ingestQueue.fn.addEventSource(
    new lambdaEvents.SqsEventSource(queue, {
      // Batches amortise authentication and the hand-off (SendMessageBatch, 10 messages a call).
      batchSize: 100,
      maxBatchingWindow: Duration.seconds(2),
      reportBatchItemFailures: true,
      maxConcurrency: 10,
    }),
  );

  // Attach to the operators who register and revoke producers.
  const producerAdmins = new iam.ManagedPolicy(stack, "ProducerAdmins", {
    managedPolicyName: `${app.name}-${app.stage}-${app.region}-producer-admins`,
    description: `auditsink ${app.stage}: register and revoke producer keys through the HTTP API`,
    statements: [
      new iam.PolicyStatement({
        actions: ["execute-api:Invoke"],
        resources: PRODUCER_ADMIN_ROUTES.map((route) => executeApiArn(api.httpApiId, route)),
      }),
    ],
  });
  NagSuppressions.addResourceSuppressions(producerAdmins, [
    {
      id: "AwsSolutions-IAM5",
      reason:
        "The only wildcard stands for a path parameter ({id}) of one producer administration route of this API.",
      appliesTo: [{ regex: EXECUTE_API_FINDING }],
    },
  ]);

  stack.addOutputs({
    ApiUrl: api.url,
    ProducerAdminsPolicyArn: producerAdmins.managedPolicyArn,
    ApiId: api.httpApiId,
    EventBusName: bus.eventBusName,
    EventBusArn: bus.eventBusArn,
    IngestQueueUrl: queue.queueUrl,
    IngestDeadLetterQueueUrl: deadLetters.queueUrl,
    SequencerFunctionName: handOff.functionName,
    SequencerDeadLetterQueueUrl: handOff.deadLetters.queueUrl,
  });
  return {
    api,
    bus,
    queue,
    deadLetters,
    ingestHttp: ingestHttp.fn,
    ingestQueue: ingestQueue.fn,
    sequencer: sequencer.fn,
    sequencerDeadLetters: handOff.deadLetters,
  };
}

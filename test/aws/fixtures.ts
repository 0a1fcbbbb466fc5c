/**
 * Test wiring for the AWS runtime on the emulators: a fresh bucket (Object Lock), ledger table, KMS key, SNS
 * topic, event bus and capture queues per call, and helpers to produce signed events and read alerts back.
 */
import { randomUUID } from "node:crypto";
import {
  AwsRuntime,
  type AwsRuntimeOptions,
  type AwsSettings,
  createClients,
  createEventIndexTable,
  createLedgerTable,
} from "@auditsink/aws";
import { generateKeyPair, type SignedEvent, signEvent } from "@auditsink/core";
import { GetMetricStatisticsCommand } from "@aws-sdk/client-cloudwatch";
import { CreateEventBusCommand, PutRuleCommand, PutTargetsCommand } from "@aws-sdk/client-eventbridge";
import { CreateKeyCommand } from "@aws-sdk/client-kms";
import { CreateBucketCommand, PutBucketNotificationConfigurationCommand } from "@aws-sdk/client-s3";
import { CreateTopicCommand, SubscribeCommand } from "@aws-sdk/client-sns";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import type { Emulators } from "../emulators/harness.ts";

export const ORIGIN = "auditsink.test/aws";
/** The sequencer function's name in the tests' settings (woken through test/aws/sequencer-wake.ts). */
export const SEQUENCER_FUNCTION = "auditsink-test-sequencer";

export interface Provisioned {
  settings: AwsSettings;
  /** A runtime as one Lambda container would have it (its own clients). */
  runtime(options?: AwsRuntimeOptions): AwsRuntime;
  env: Record<string, string>;
  sqs: SQSClient;
  snsQueueUrl: string;
  eventsQueueUrl: string;
  /** Where the sequencer puts pending parts it can never commit. */
  sequencerDeadLetterUrl: string;
  /** Where S3 change notifications of the archive arrive (the verifier reads it). */
  changesQueueUrl: string;
}

/** Points the SDK at the emulators for everything created after this call. */
export function useEmulators(emulators: Emulators): void {
  Object.assign(process.env, emulators.env, {
    POWERTOOLS_METRICS_NAMESPACE: "auditsink",
    POWERTOOLS_SERVICE_NAME: "auditsink-test",
  });
}

export interface ProvisionOptions {
  /**
   * The checkpoint key's KMS key spec (default ECC_NIST_P256). ECC_NIST_EDWARDS25519 works on the emulators
   * through the tests' extension of moto (test/emulators/moto_server_ed25519.py).
   */
  keySpec?: "ECC_NIST_P256" | "ECC_NIST_EDWARDS25519";
}

export async function provision(options: ProvisionOptions = {}): Promise<Provisioned> {
  const id = randomUUID().slice(0, 8);
  const clients = createClients();
  const bucket = `archive-${id}`;
  const table = `ledger-${id}`;
  await clients.s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  await createLedgerTable(clients.dynamo, table);
  const eventIndexTable = `postings-${id}`;
  await createEventIndexTable(clients.dynamo, eventIndexTable);
  const key = await clients.kms.send(
    new CreateKeyCommand({ KeySpec: options.keySpec ?? "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY" }),
  );
  const sqs = new SQSClient({});
  const queue = async (name: string) => {
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl!;
    const arn = (
      await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }))
    ).Attributes!.QueueArn!;
    return { url, arn };
  };
  const sequencerDeadLetters = await queue(`seq-dlq-${id}`);
  const snsQueue = await queue(`alerts-sns-${id}`);
  const eventsQueue = await queue(`alerts-events-${id}`);
  const topicArn = (await clients.sns.send(new CreateTopicCommand({ Name: `alerts-${id}` }))).TopicArn!;
  await clients.sns.send(
    new SubscribeCommand({
      TopicArn: topicArn,
      Protocol: "sqs",
      Endpoint: snsQueue.arn,
      Attributes: { RawMessageDelivery: "true" },
    }),
  );
  const bus = `bus-${id}`;
  await clients.events.send(new CreateEventBusCommand({ Name: bus }));
  await clients.events.send(
    new PutRuleCommand({
      Name: `alerts-${id}`,
      EventBusName: bus,
      EventPattern: JSON.stringify({ source: ["auditsink"] }),
    }),
  );
  await clients.events.send(
    new PutTargetsCommand({
      Rule: `alerts-${id}`,
      EventBusName: bus,
      Targets: [{ Id: "q", Arn: eventsQueue.arn }],
    }),
  );
  // The archive's change notifications, as stacks/Verify.ts wires them: bucket → EventBridge → queue.
  const changesQueue = await queue(`archive-changes-${id}`);
  await clients.s3.send(
    new PutBucketNotificationConfigurationCommand({
      Bucket: bucket,
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    }),
  );
  await clients.events.send(
    new PutRuleCommand({
      Name: `archive-changes-${id}`,
      EventPattern: JSON.stringify({ source: ["aws.s3"], detail: { bucket: { name: [bucket] } } }),
    }),
  );
  await clients.events.send(
    new PutTargetsCommand({
      Rule: `archive-changes-${id}`,
      Targets: [{ Id: "q", Arn: changesQueue.arn }],
    }),
  );
  const env = {
    ARCHIVE_CHANGES_QUEUE_URL: changesQueue.url,
    ARCHIVE_BUCKET: bucket,
    LEDGER_TABLE: table,
    EVENT_INDEX_TABLE: eventIndexTable,
    SIGNING_KEY_ID: key.KeyMetadata!.Arn!,
    ALERTS_TOPIC_ARN: topicArn,
    EVENT_BUS_NAME: bus,
    ORIGIN,
    RETENTION_DAYS: "180",
    SEQUENCER_FUNCTION_NAME: SEQUENCER_FUNCTION,
    SEQUENCER_DLQ_URL: sequencerDeadLetters.url,
  };
  const settings: AwsSettings = {
    archiveBucket: bucket,
    ledgerTable: table,
    eventIndexTable,
    signingKeyId: key.KeyMetadata!.Arn!,
    alertsTopicArn: topicArn,
    eventBusName: bus,
    origin: ORIGIN,
    retentionDays: 180,
    metricsNamespace: `auditsink-${id}`,
    serviceName: "auditsink-test",
    sequencerFunctionName: SEQUENCER_FUNCTION,
    sequencerDeadLetterUrl: sequencerDeadLetters.url,
    trustedKeyFingerprints: [],
    archiveChangesQueueUrl: changesQueue.url,
    sweepPagesPerRun: 5,
    sweepIntervalDays: 7,
  };
  return {
    settings,
    env,
    runtime: (options) => new AwsRuntime(settings, createClients(), options),
    sqs,
    snsQueueUrl: snsQueue.url,
    eventsQueueUrl: eventsQueue.url,
    sequencerDeadLetterUrl: sequencerDeadLetters.url,
    changesQueueUrl: changesQueue.url,
  };
}

/** Every message waiting in a capture queue, parsed as JSON. */
export async function drain(sqs: SQSClient, url: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (;;) {
    const r = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    if (!r.Messages?.length) return out;
    for (const m of r.Messages) out.push(JSON.parse(m.Body!));
  }
}

/** Alert codes delivered through SNS, EventBridge and the IntegrityFailures metric sum. */
export async function deliveredAlerts(
  p: Provisioned,
): Promise<{ sns: string[]; events: string[]; metric: number }> {
  const sns = (await drain(p.sqs, p.snsQueueUrl)).map((m) => (m as { code: string }).code);
  const events = (await drain(p.sqs, p.eventsQueueUrl)).map(
    (m) => (m as { "detail-type": string })["detail-type"],
  );
  const clients = createClients();
  const stats = await clients.cloudwatch.send(
    new GetMetricStatisticsCommand({
      Namespace: p.settings.metricsNamespace,
      MetricName: "IntegrityFailures",
      Dimensions: [{ Name: "service", Value: p.settings.serviceName }],
      StartTime: new Date(Date.now() - 3600_000),
      EndTime: new Date(Date.now() + 3600_000),
      Period: 60,
      Statistics: ["Sum"],
    }),
  );
  const metric = (stats.Datapoints ?? []).reduce((n, d) => n + (d.Sum ?? 0), 0);
  return { sns: sns.sort(), events: events.sort(), metric };
}

/** A producer key registered with the runtime's producer admin, and a signer of events with it. */
export async function registerProducer(runtime: AwsRuntime, name: string, streams = ["*"]) {
  const { privateKey, publicKey } = generateKeyPair("ed25519");
  await runtime.producers.register({ id: name, publicKey, streams });
  return {
    privateKey,
    event(id: string): SignedEvent {
      return signEvent(
        {
          specversion: "1.0",
          id,
          source: `agent://${name}`,
          type: "ai.agent.tool_call",
          time: "2026-11-24T12:00:00.000Z",
          data: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search" },
        },
        privateKey,
      );
    },
  };
}

/** An SQS record carrying an EventBridge event with `{ stream, event }` detail, as Lambda delivers it. */
export function sqsRecord(stream: string, event: unknown, messageId = randomUUID()) {
  const body = JSON.stringify({
    version: "0",
    id: randomUUID(),
    "detail-type": "auditsink.event",
    source: "agent.producer",
    account: "123456789012",
    time: "2026-11-24T12:00:00Z",
    region: "us-east-1",
    resources: [],
    detail: { stream, event },
  });
  return {
    messageId,
    receiptHandle: `handle-${messageId}`,
    body,
    attributes: {
      ApproximateReceiveCount: "1",
      SentTimestamp: "1764000000000",
      SenderId: "AIDAEXAMPLE",
      ApproximateFirstReceiveTimestamp: "1764000000000",
    },
    messageAttributes: {},
    md5OfBody: "0",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:123456789012:auditsink-ingest",
    awsRegion: "us-east-1",
  };
}

/** A Lambda context with a fixed remaining time. */
export function lambdaContext(remainingMs = 300_000) {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: "auditsink-test",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:auditsink-test",
    memoryLimitInMB: "512",
    awsRequestId: randomUUID(),
    logGroupName: "/aws/lambda/auditsink-test",
    logStreamName: "stream",
    getRemainingTimeInMillis: () => remainingMs,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** An API Gateway HTTP API payload v2 event, as Lambda receives it. */
export function httpEvent(
  method: string,
  path: string,
  body?: unknown,
  options: { iam?: boolean; query?: string; headers?: Record<string, string>; routeKey?: string } = {},
): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: options.routeKey ?? `${method} ${path}`,
    rawPath: path,
    rawQueryString: options.query ?? "",
    headers: { "content-type": "application/json", host: "api.example.com", ...options.headers },
    requestContext: {
      accountId: "123456789012",
      apiId: "api",
      domainName: "api.example.com",
      domainPrefix: "api",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "203.0.113.1", userAgent: "test" },
      requestId: randomUUID(),
      routeKey: `${method} ${path}`,
      stage: "$default",
      time: "24/Nov/2026:12:00:00 +0000",
      timeEpoch: 1764000000000,
      ...(options.iam
        ? {
            authorizer: {
              iam: {
                accessKey: "AKIA",
                accountId: "123456789012",
                callerId: "c",
                principalOrgId: null,
                userArn: "arn:aws:iam::123456789012:user/admin",
                userId: "u",
              },
            },
          }
        : {}),
    } as APIGatewayProxyEventV2["requestContext"],
    ...(body !== undefined
      ? { body: JSON.stringify(body), isBase64Encoded: false }
      : { isBase64Encoded: false }),
  };
}

/** `POST /v1/streams/{stream}/events` with `body` (one event, or a batch), through API Gateway. */
export function postEventsEvent(stream: string, body: unknown, headers: Record<string, string> = {}) {
  return httpEvent("POST", `/v1/streams/${stream}/events`, body, {
    routeKey: "POST /v1/streams/{stream}/events",
    headers,
  });
}

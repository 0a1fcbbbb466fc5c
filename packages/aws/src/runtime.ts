/**
 * Wiring for the Lambda handlers: SDK clients created once per container (module scope in the handler), the
 * adapters over them, and the core Sink. The signer needs one KMS call (GetPublicKey) and the public key
 * export, so it is built lazily on the first invocation and reused; a failed start is retried next time.
 */

import { type Admitted, type Receipt, Sink } from "@auditsink/core";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { KMSClient } from "@aws-sdk/client-kms";
import { S3Client } from "@aws-sdk/client-s3";
import { SNSClient } from "@aws-sdk/client-sns";
import { SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { AwsAlertSink } from "./AwsAlertSink.ts";
import { type AwsSettings, s3ClientOptions, settingsFromEnv } from "./config.ts";
import { DynamoDedupStore } from "./DynamoDedupStore.ts";
import { DynamoHeadStore } from "./DynamoHeadStore.ts";
import { DynamoProducerAdmin } from "./DynamoProducerAdmin.ts";
import { DynamoWatermarkStore } from "./DynamoWatermarkStore.ts";
import { KmsSigner } from "./KmsSigner.ts";
import { METRIC, MetricUnit, metrics } from "./observability.ts";
import { S3WriteOnceStore } from "./S3WriteOnceStore.ts";

export interface AwsClients {
  s3: S3Client;
  dynamo: DynamoDBClient;
  doc: DynamoDBDocumentClient;
  kms: KMSClient;
  sns: SNSClient;
  events: EventBridgeClient;
  cloudwatch: CloudWatchClient;
  sqs: SQSClient;
}

/** One client per service; endpoints and region come from the SDK's environment variables. */
export function createClients(env: Readonly<Record<string, string | undefined>> = process.env): AwsClients {
  const dynamo = new DynamoDBClient({});
  return {
    s3: new S3Client(s3ClientOptions(env)),
    dynamo,
    doc: DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } }),
    kms: new KMSClient({}),
    sns: new SNSClient({}),
    events: new EventBridgeClient({}),
    cloudwatch: new CloudWatchClient({}),
    sqs: new SQSClient({}),
  };
}

export interface AwsRuntimeOptions {
  /** Seconds a producer key lookup is reused within a container (revocations apply within this time). */
  producerCacheSeconds?: number;
  /** Most records one segment may hold (core default 10,000). */
  maxSegmentRecords?: number;
  /**
   * Export the signing key's public key to the archive on start (default false: only the producer-admin role may
   * write `keys/`; ingest, query and the verifier may not).
   */
  exportPublicKey?: boolean;
}

/** The core Sink, reporting EventsCommitted, CommitLatency and IngestErrors (EMF) as it works. */
export class MeteredSink extends Sink {
  override async commit(stream: string, items: readonly Admitted[]): Promise<Receipt[]> {
    const started = Date.now();
    const receipts = await super.commit(stream, items);
    if (items.length > 0) {
      metrics.addMetric(METRIC.eventsCommitted, MetricUnit.Count, receipts.length);
      metrics.addMetric(METRIC.commitLatency, MetricUnit.Milliseconds, Date.now() - started);
    }
    return receipts;
  }

  override async submit(stream: string, events: readonly unknown[]): Promise<Receipt[]> {
    try {
      return await super.submit(stream, events);
    } catch (e) {
      metrics.addMetric(METRIC.ingestErrors, MetricUnit.Count, 1);
      throw e;
    }
  }
}

export class AwsRuntime {
  readonly objects: S3WriteOnceStore;
  readonly heads: DynamoHeadStore;
  readonly dedup: DynamoDedupStore;
  readonly producers: DynamoProducerAdmin;
  readonly watermarks: DynamoWatermarkStore;
  readonly alerts: AwsAlertSink;
  private started: Promise<{ sink: Sink; signer: KmsSigner }> | undefined;

  constructor(
    readonly settings: AwsSettings,
    readonly clients: AwsClients,
    private readonly options: AwsRuntimeOptions = {},
  ) {
    const table = settings.ledgerTable;
    this.objects = new S3WriteOnceStore(clients.s3, settings.archiveBucket, {
      retentionDays: settings.retentionDays,
    });
    this.heads = new DynamoHeadStore(clients.doc, table);
    this.dedup = new DynamoDedupStore(clients.doc, table);
    this.producers = new DynamoProducerAdmin(clients.doc, table, {
      cacheSeconds: options.producerCacheSeconds ?? 30,
    });
    this.watermarks = new DynamoWatermarkStore(clients.doc, table);
    this.alerts = new AwsAlertSink({
      sns: clients.sns,
      ...(settings.alertsTopicArn ? { topicArn: settings.alertsTopicArn } : {}),
      events: clients.events,
      ...(settings.eventBusName ? { eventBusName: settings.eventBusName } : {}),
      cloudwatch: clients.cloudwatch,
      namespace: settings.metricsNamespace,
      service: settings.serviceName,
      deployment: settings.origin,
    });
  }

  /** Builds the runtime from the Lambda environment. */
  static fromEnv(options: AwsRuntimeOptions = {}): AwsRuntime {
    return new AwsRuntime(settingsFromEnv(), createClients(), options);
  }

  /** The Sink and signer, started once per container: KMS public key fetched and exported to the archive. */
  start(): Promise<{ sink: Sink; signer: KmsSigner }> {
    this.started ??= (async () => {
      const signer = await KmsSigner.create(
        this.clients.kms,
        this.settings.signingKeyId,
        this.settings.origin,
      );
      if (this.options.exportPublicKey === true) await signer.exportPublicKey(this.objects);
      const sink = new MeteredSink({
        deployment: this.settings.origin,
        objects: this.objects,
        heads: this.heads,
        dedup: this.dedup,
        producers: this.producers,
        signer,
        ...(this.options.maxSegmentRecords ? { maxSegmentRecords: this.options.maxSegmentRecords } : {}),
      });
      return { sink, signer };
    })().catch((e) => {
      this.started = undefined;
      throw e;
    });
    return this.started;
  }
}

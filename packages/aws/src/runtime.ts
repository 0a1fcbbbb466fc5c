/**
 * Wiring for the Lambda handlers: SDK clients created once per container (module scope in the handler), the
 * adapters over them, and the core Sink. The signer needs one KMS call (GetPublicKey) and the public key
 * export, so it is built lazily on the first invocation and reused; a failed start is retried next time.
 */

import {
  type Admitted,
  CosignedCheckpoints,
  createCosigner,
  isWitnessableKey,
  type Receipt,
  Sink,
  type SinkOptions,
  type WitnessCosigner,
} from "@auditsink/core";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { KMSClient } from "@aws-sdk/client-kms";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { S3Client } from "@aws-sdk/client-s3";
import { SNSClient } from "@aws-sdk/client-sns";
import { SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { AwsAlertSink } from "./AwsAlertSink.ts";
import {
  type AwsSettings,
  DEFAULT_DEDUP_WINDOW_SECONDS,
  DEFAULT_RECEIPT_WAIT_SECONDS,
  s3ClientOptions,
  settingsFromEnv,
} from "./config.ts";
import { DynamoDedupStore } from "./DynamoDedupStore.ts";
import { DynamoEventIndex } from "./DynamoEventIndex.ts";
import { DynamoHeadStore } from "./DynamoHeadStore.ts";
import { DynamoProducerAdmin } from "./DynamoProducerAdmin.ts";
import { DynamoWatermarkStore } from "./DynamoWatermarkStore.ts";
import { AwsConfigError } from "./errors.ts";
import { DynamoReceiptStore, PendingHandOff, receiptsFrom } from "./handoff.ts";
import { KmsSigner } from "./KmsSigner.ts";
import { emfSinkObserver, logger } from "./observability.ts";
import { PendingQueue } from "./PendingQueue.ts";
import { S3WriteOnceStore } from "./S3WriteOnceStore.ts";
import { LambdaWake, type SequencerWake } from "./SequencerWake.ts";
import { StreamLease } from "./StreamLease.ts";
import { DeadLetters, type SequencerDeps } from "./sequencer.ts";

export interface AwsClients {
  s3: S3Client;
  dynamo: DynamoDBClient;
  doc: DynamoDBDocumentClient;
  kms: KMSClient;
  sns: SNSClient;
  events: EventBridgeClient;
  cloudwatch: CloudWatchClient;
  sqs: SQSClient;
  lambda: LambdaClient;
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
    lambda: new LambdaClient({}),
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
  /**
   * Ingest: hand authenticated events to the sequencer (pending items, then a wake-up) and wait for its receipts,
   * instead of committing here (settings.sequencerFunctionName must be set). The sequencer itself and the read
   * functions leave this off.
   */
  handOff?: boolean;
  /**
   * How the sequencer is woken (default: an asynchronous Lambda invocation of settings.sequencerFunctionName).
   * Tests and the load benchmark run the sequencer in-process through this port.
   */
  wake?: SequencerWake;
  /** Milliseconds a sequencer lease lasts unless renewed (default LEASE_MS). */
  leaseMs?: number;
  /** Receipt polling of a waiting ingest request (tests and benchmarks tune it). */
  receiptPolling?: { firstPollMs?: number; pollMs?: number; nudgeMs?: number };
}

/**
 * The Sink of the ingest functions: `submit` validates and authenticates as everywhere (core), then `commit`
 * hands the events to the sequencer (pending items, wake-up) and waits for the sequencer's answer, so `submit`
 * resolves with the same receipts, or rejects with the same IngestError, as a Sink that commits in-process.
 */
export class HandOffSink extends Sink {
  constructor(
    options: SinkOptions,
    private readonly handOff: PendingHandOff,
    private readonly receipts: DynamoReceiptStore,
    private readonly waitMs: number,
  ) {
    super(options);
  }

  override async commit(stream: string, items: readonly Admitted[]): Promise<Receipt[]> {
    if (items.length === 0) return [];
    const deadline = Date.now() + this.waitMs;
    const [sent] = await this.handOff.send([{ stream, events: items.map((i) => i.event), receipt: true }]);
    // A late answer means the sequencer may have died holding the lease: wake one once the lease lapses.
    const nudge = () => this.handOff.wakeIfIdle(stream);
    return receiptsFrom(await this.receipts.wait(sent!.requestId, sent!.parts, deadline, nudge));
  }
}

export class AwsRuntime {
  readonly objects: S3WriteOnceStore;
  readonly heads: DynamoHeadStore;
  readonly dedup: DynamoDedupStore;
  readonly producers: DynamoProducerAdmin;
  readonly watermarks: DynamoWatermarkStore;
  readonly alerts: AwsAlertSink;
  readonly receipts: DynamoReceiptStore;
  readonly pending: PendingQueue;
  readonly lease: StreamLease;
  /** Postings of every committed segment: written in the commit step, read by `GET /v1/events`. */
  readonly events: DynamoEventIndex;
  private started: Promise<{ sink: Sink; signer: KmsSigner }> | undefined;
  private witnesses:
    | Promise<{ cosigner: WitnessCosigner; wanted(stream: string): boolean } | undefined>
    | undefined;
  private cosignedCheckpoints: CosignedCheckpoints | undefined;

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
    this.dedup = new DynamoDedupStore(clients.doc, table, {
      windowSeconds: settings.dedupWindowSeconds ?? DEFAULT_DEDUP_WINDOW_SECONDS,
    });
    this.receipts = new DynamoReceiptStore(clients.doc, table, options.receiptPolling ?? {});
    this.pending = new PendingQueue(
      clients.doc,
      table,
      settings.dedupWindowSeconds ?? DEFAULT_DEDUP_WINDOW_SECONDS,
    );
    this.lease = new StreamLease(clients.doc, table, options.leaseMs);
    this.producers = new DynamoProducerAdmin(clients.doc, table, {
      cacheSeconds: options.producerCacheSeconds ?? 30,
    });
    this.watermarks = new DynamoWatermarkStore(clients.doc, table);
    this.events = new DynamoEventIndex(clients.doc, settings.eventIndexTable, this.objects, {
      onMismatch: (problem) => logger.warn("event index posting not borne out by the archive", problem),
    });
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
      const options: SinkOptions = {
        deployment: this.settings.origin,
        objects: this.objects,
        heads: this.heads,
        dedup: this.dedup,
        producers: this.producers,
        signer,
        // Core reports what it finds wrong with its own state (head-mismatch, store-mismatch), as embedded does.
        alerts: this.alerts,
        observer: emfSinkObserver,
        // Only the functions that commit (sequencer, producer administration) ever call it.
        indexer: this.events,
        ...(this.options.maxSegmentRecords ? { maxSegmentRecords: this.options.maxSegmentRecords } : {}),
      };
      if (!this.options.handOff) return { sink: new Sink(options), signer };
      const waitSeconds = this.settings.receiptWaitSeconds ?? DEFAULT_RECEIPT_WAIT_SECONDS;
      const sink = new HandOffSink(options, this.handOff(), this.receipts, waitSeconds * 1000);
      return { sink, signer };
    })().catch((e) => {
      this.started = undefined;
      throw e;
    });
    return this.started;
  }

  /**
   * The witness cosigner of this container (docs/TRANSPARENCY.md §3), over the committing Sink; undefined without
   * witnesses. Its memory (each witness's last size, the rate limit) lives as long as the container: a fresh
   * container's first request to a witness says `old 0`, and the witness's 409 tells it the size (the protocol's
   * own recovery). A checkpoint key that is not Ed25519 is logged as an error and witnesses are skipped: they
   * would refuse every submission, and a commit must never fail for a witness (the stack refuses that setting).
   */
  witnessCosigner(): Promise<{ cosigner: WitnessCosigner; wanted(stream: string): boolean } | undefined> {
    const options = this.settings.witnesses;
    if (!options) return Promise.resolve(undefined);
    this.witnesses ??= this.start().then(({ sink, signer }) => {
      if (!isWitnessableKey(signer.key)) {
        logger.error("witnesses are configured but the checkpoint key is not Ed25519; nothing is submitted", {
          signingKeyId: this.settings.signingKeyId,
        });
        return undefined;
      }
      return createCosigner(sink, options, {
        onFailure: (f) => logger.warn("witness did not cosign", { ...f }),
        onError: (stream, e) =>
          logger.error("witness submission round failed", { stream, error: (e as Error).message }),
      });
    });
    return this.witnesses;
  }

  /**
   * The newest cosigned checkpoint of `stream` in the archive, for the read path (`cosigned` in the checkpoint
   * answer, /tlog/{stream}/checkpoint); undefined without witnesses. Each lookup lists only the keys after the
   * newest this container knows (one List request).
   */
  cosigned(stream: string): Promise<{ size: number; note: string } | undefined> {
    if (!this.settings.witnesses) return Promise.resolve(undefined);
    this.cosignedCheckpoints ??= new CosignedCheckpoints(this.objects);
    return this.cosignedCheckpoints.get(stream, true);
  }

  /** The ingest side of the hand-off: pending writes, the lease read, the wake-up. */
  handOff(): PendingHandOff {
    return new PendingHandOff(this.pending, this.lease, this.wake());
  }

  /** The configured way to wake the sequencer (an async Lambda invoke unless a port was given). */
  wake(): SequencerWake {
    if (this.options.wake) return this.options.wake;
    const name = this.settings.sequencerFunctionName;
    if (!name) {
      throw new AwsConfigError("missing-setting", "environment variable SEQUENCER_FUNCTION_NAME is not set");
    }
    return new LambdaWake(this.clients.lambda, name);
  }

  /** What the sequencer needs: the committing Sink, the pending items, the lease, answers and dead letters. */
  async startSequencer(): Promise<SequencerDeps> {
    if (!this.settings.sequencerDeadLetterUrl) {
      throw new AwsConfigError("missing-setting", "environment variable SEQUENCER_DLQ_URL is not set");
    }
    const { sink, signer } = await this.start();
    return {
      sink,
      signer,
      receipts: this.receipts,
      deadLetters: new DeadLetters(this.clients.sqs, this.settings.sequencerDeadLetterUrl),
      pending: this.pending,
      lease: this.lease,
      wake: this.wake(),
    };
  }
}

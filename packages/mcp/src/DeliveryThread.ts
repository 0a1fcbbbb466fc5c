/**
 * The gateway's delivery thread: AuditRecorder hands it the new events of a window to sign as one batch, then the
 * window to send, and gets back their verified receipts. The thread holds the producer key and owns the
 * AuditClient that sends them — HTTP to the sink, receipt checks (pinned sink key, inclusion proof), consistency
 * with the newest checkpoint seen (witness.json) — so that signing, that work and its garbage stay off the thread
 * that answers the agent's tool calls. One thread, one task at a time: the order of delivery is the recorder's.
 * A thread that dies fails its task (the recorder retries the window) and is replaced.
 */
import { Worker } from "node:worker_threads";
import {
  type AuditClientOptions,
  ClientError,
  type ClientErrorCode,
  ReceiptError,
  toNoteKey,
  WitnessError,
  type WitnessErrorCode,
} from "@auditsink/client";
import { formatVerifierKey, type Receipt, type SignedEvent, type UnsignedEvent } from "@auditsink/core";
import { workerModule } from "@auditsink/local";
import type { BatchSignature } from "./Spool.ts";

/** What the thread needs to build its AuditClient: plain data (keys as PEM and verifier key strings). */
export interface DeliveryData {
  client: Omit<AuditClientOptions, "producerKey" | "sinkKey" | "fetch"> & {
    producerKeyPem: string;
    sinkKeys: string[];
  };
}

export interface DeliveryTask {
  kind: "send";
  stream: string;
  events: SignedEvent[];
}

/** Events to sign as one batch (docs/FORMAT.md §3b), in order. */
export interface SigningTask {
  kind: "sign";
  events: UnsignedEvent[];
}

/** A batch's signature members: event i of the task takes `sigbatch[i]`. */
export type SignedBatch = Omit<BatchSignature, "first">;

/** A delivery failure as it crosses threads; `revive` makes it the SDK's error class again. */
export type SentError =
  | { kind: "client"; code: ClientErrorCode; message: string; status?: number }
  | { kind: "receipt"; code: ReceiptError["code"]; message: string }
  | { kind: "witness"; code: WitnessErrorCode; message: string; evidence: WitnessError["evidence"] }
  | { kind: "other"; message: string };

/** The receipts of the window's first events, in order; `failure` stopped the rest. */
export interface DeliveryOutcome {
  receipts: Receipt[];
  failure?: SentError;
}

export type SigningOutcome = { batch: SignedBatch; failure?: undefined } | { failure: SentError };

export function sentError(e: unknown): SentError {
  if (e instanceof ClientError)
    return {
      kind: "client",
      code: e.code,
      message: e.message,
      ...(e.details.status !== undefined ? { status: e.details.status } : {}),
    };
  if (e instanceof ReceiptError) return { kind: "receipt", code: e.code, message: e.message };
  if (e instanceof WitnessError)
    return { kind: "witness", code: e.code, message: e.message, evidence: e.evidence };
  return { kind: "other", message: e instanceof Error ? e.message : String(e) };
}

export function revive(e: SentError): Error {
  switch (e.kind) {
    case "client":
      return new ClientError(e.code, e.message, e.status !== undefined ? { status: e.status } : {});
    case "receipt":
      return new ReceiptError(e.code, e.message);
    case "witness":
      return new WitnessError(e.code, e.message, e.evidence);
    default:
      return new Error(e.message);
  }
}

export class DeliveryThread {
  private worker: Worker | undefined;
  private inFlight: { resolve: (o: unknown) => void; reject: (e: Error) => void } | undefined;

  private constructor(private readonly data: DeliveryData) {}

  /**
   * Starts the thread and waits until its client is ready: a witness state file it cannot read fails here, as
   * it would on the gateway's own thread.
   */
  static async start(options: Omit<AuditClientOptions, "fetch">): Promise<DeliveryThread> {
    const { producerKey, sinkKey, ...rest } = options;
    const keys = Array.isArray(sinkKey) ? sinkKey : [sinkKey];
    const thread = new DeliveryThread({
      client: {
        ...rest,
        producerKeyPem: producerKey.export({ type: "pkcs8", format: "pem" }).toString(),
        sinkKeys: keys.map((k) => formatVerifierKey(toNoteKey(k))),
      },
    });
    const started = await thread
      .send({ kind: "send", stream: "", events: [] })
      .catch((e: Error) => ({ failure: e }));
    if (started.failure) {
      await thread.close();
      throw started.failure;
    }
    return thread;
  }

  /**
   * Sends one window (one at a time); resolves with the receipts it got and the error that stopped it, if any.
   * Rejects if the thread dies meanwhile: the next window starts a new one, which reads the witness state again.
   */
  async send(task: DeliveryTask): Promise<{ receipts: Receipt[]; failure?: Error }> {
    const outcome = await this.task<DeliveryOutcome>(task);
    return {
      receipts: outcome.receipts,
      ...(outcome.failure ? { failure: revive(outcome.failure) } : {}),
    };
  }

  /** Signs events as one batch with the producer key; rejects if the thread cannot (or dies meanwhile). */
  async sign(events: UnsignedEvent[]): Promise<SignedBatch> {
    const outcome = await this.task<SigningOutcome>({ kind: "sign", events });
    if (outcome.failure) throw revive(outcome.failure);
    return outcome.batch;
  }

  private task<T>(task: DeliveryTask | SigningTask): Promise<T> {
    if (this.inFlight) throw new Error("the delivery thread takes one task at a time");
    const worker = this.running();
    return new Promise<T>((resolve, reject) => {
      this.inFlight = { resolve: resolve as (o: unknown) => void, reject };
      worker.ref(); // a task under way keeps the process alive
      worker.postMessage(task);
    });
  }

  /** Ends the thread; call it when no window is in flight. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  /** The thread, started anew when there is none (at first, or after one ended). */
  private running(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(workerModule(import.meta.url, "deliveryWorker"), { workerData: this.data });
    worker.unref();
    const settle = (outcome: unknown) => {
      const task = this.inFlight;
      this.inFlight = undefined;
      worker.unref();
      if (outcome instanceof Error) task?.reject(outcome);
      else task?.resolve(outcome);
    };
    const failed = (e: Error) => {
      // An `exit` after the `error` that already failed this worker's window: any window now is a new worker's.
      if (this.worker !== worker) return;
      this.worker = undefined;
      settle(e);
    };
    worker.on("message", (outcome: DeliveryOutcome | SigningOutcome) => settle(outcome));
    worker.on("error", (e) => failed(new Error(`the delivery thread failed: ${e.message}`, { cause: e })));
    worker.on("exit", (code) => failed(new Error(`the delivery thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}

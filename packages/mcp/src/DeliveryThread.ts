/**
 * The gateway's delivery thread: AuditRecorder hands it a window of spooled, signed events and gets back their
 * verified receipts. The thread owns the AuditClient that sends them — HTTP to the sink, receipt checks (pinned
 * sink key, inclusion proof), consistency with the newest checkpoint seen (witness.json) — so that work and its
 * garbage stay off the thread that answers the agent's tool calls. One thread, one window at a time: the order of
 * delivery is the recorder's. A thread that dies fails its window (the recorder retries it) and is replaced.
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
import { formatVerifierKey, type Receipt, type SignedEvent } from "@auditsink/core";
import { workerModule } from "@auditsink/local";

/** What the thread needs to build its AuditClient: plain data (keys as PEM and verifier key strings). */
export interface DeliveryData {
  client: Omit<AuditClientOptions, "producerKey" | "sinkKey" | "fetch"> & {
    producerKeyPem: string;
    sinkKeys: string[];
  };
}

export interface DeliveryTask {
  stream: string;
  events: SignedEvent[];
}

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
  private inFlight: { resolve: (o: DeliveryOutcome) => void; reject: (e: Error) => void } | undefined;

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
    const started = await thread.send({ stream: "", events: [] }).catch((e: Error) => ({ failure: e }));
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
    if (this.inFlight) throw new Error("the delivery thread sends one window at a time");
    const worker = this.running();
    const outcome = await new Promise<DeliveryOutcome>((resolve, reject) => {
      this.inFlight = { resolve, reject };
      worker.ref(); // a window under way keeps the process alive
      worker.postMessage(task);
    });
    return {
      receipts: outcome.receipts,
      ...(outcome.failure ? { failure: revive(outcome.failure) } : {}),
    };
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
    const settle = (outcome: DeliveryOutcome | Error) => {
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
    worker.on("message", (outcome: DeliveryOutcome) => settle(outcome));
    worker.on("error", (e) => failed(new Error(`the delivery thread failed: ${e.message}`, { cause: e })));
    worker.on("exit", (code) => failed(new Error(`the delivery thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}

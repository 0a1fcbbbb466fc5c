/**
 * The scheduled verifier's own thread: a worker that carries out its jobs (verificationJob.ts) over the data
 * directory, so that hashing, parsing and checking the records it verifies never hold the event loop that
 * answers ingest and queries. The worker reads the store as any reader does (objects are write-once, heads are
 * replaced atomically) and writes nothing; findings, alerts and the verifier's state stay with ScheduledVerifier
 * on the sink's thread. A worker that dies fails the job it had (the run reports `verifier-error`) and the next
 * job starts a new one.
 */
import { Worker } from "node:worker_threads";
import {
  formatVerifierKey,
  type NoteKey,
  spkiDer,
  VerificationStoppedError,
  type VerifierState,
  type WitnessOptions,
} from "@auditsink/core";
import { dataPaths } from "./openLocalSink.ts";
import type { JobHooks, JobResult, VerificationJob } from "./verificationJob.ts";
import { workerModule } from "./workerModule.ts";

/** What the worker is started with. */
export interface ThreadData {
  objects: string;
  heads: string;
  tmp: string;
  deployment: string;
  /** Verifier key strings of the trusted checkpoint keys. */
  trusted: string[];
  witnesses?: WitnessOptions;
}

/** A job as it crosses to the worker: keys as DER SPKI (base64), the time as ISO 8601. */
type SentJob = Omit<VerificationJob, "producerKeys" | "now"> & {
  producerKeys: [string, string][];
  now: string;
};

export type ToThread = { type: "run"; id: number; job: SentJob } | { type: "stop"; id: number };

type FromThread =
  | { type: "records"; id: number; records: number }
  | { type: "done"; id: number; result: JobResult }
  | { type: "stopped"; id: number; states: Record<string, VerifierState> }
  | { type: "failed"; id: number; message: string };

interface Pending {
  resolve(result: JobResult): void;
  reject(e: Error): void;
  hooks: JobHooks;
}

export interface VerifierThreadOptions {
  dataDir: string;
  deployment: string;
  trusted: readonly NoteKey[];
  witnesses?: WitnessOptions;
}

export class VerifierThread {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;
  private readonly data: ThreadData;

  constructor(options: VerifierThreadOptions) {
    const paths = dataPaths(options.dataDir);
    this.data = {
      objects: paths.objects,
      heads: paths.heads,
      tmp: paths.tmp,
      deployment: options.deployment,
      trusted: options.trusted.map(formatVerifierKey),
      ...(options.witnesses ? { witnesses: options.witnesses } : {}),
    };
  }

  /** Carries out one job on the thread; rejects as runJob does (VerificationStoppedError when stopped). */
  run = (job: VerificationJob, hooks: JobHooks): Promise<JobResult> => {
    if (this.closed) return Promise.reject(new Error("the verifier thread is closed"));
    hooks.signal.throwIfAborted();
    const worker = this.start();
    const id = this.nextId++;
    const sent: SentJob = {
      ...job,
      producerKeys: [...job.producerKeys].map(([kid, key]) => [kid, spkiDer(key).toString("base64")]),
      now: job.now.toISOString(),
    };
    return new Promise<JobResult>((resolve, reject) => {
      // The worker's run ends with its positions; the rejection carries this signal's own reason.
      const stop = () => worker.postMessage({ type: "stop", id } satisfies ToThread);
      hooks.signal.addEventListener("abort", stop, { once: true });
      this.pending.set(id, {
        hooks,
        resolve: (r) => {
          hooks.signal.removeEventListener("abort", stop);
          resolve(r);
        },
        reject: (e) => {
          hooks.signal.removeEventListener("abort", stop);
          reject(e);
        },
      });
      worker.ref(); // a job under way keeps the process alive, as a run on the sink's thread would
      worker.postMessage({ type: "run", id, job: sent } satisfies ToThread);
    });
  };

  /** Ends the worker (after the verifier has stopped: a job still running fails). */
  async close(): Promise<void> {
    this.closed = true;
    await this.worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(workerModule(import.meta.url, "verifierWorker"), {
      workerData: this.data,
      // A run holds a few segments and one page of keys (a sweep's first slice: every key). Held to 64 MB with a
      // young generation of 8 MB, the thread added about 52 MB to the sink's RSS while verifying 386,000 records,
      // against 78–82 MB with a 128 MB cap and V8's default young generation, in about the same time; a worker
      // that outgrows the cap ends, and its run reports verifier-error.
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 },
    });
    worker.unref();
    worker.on("message", (m: FromThread) => this.answer(m));
    const failed = (e: Error) => {
      // An `exit` after the `error` that already failed this worker's jobs: the jobs now pending are a new one's.
      if (this.worker !== undefined && this.worker !== worker) return;
      this.worker = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on("error", (e) => failed(new Error(`the verifier thread failed: ${e.message}`, { cause: e })));
    worker.on("exit", (code) => failed(new Error(`the verifier thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private answer(m: FromThread): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "records") {
      p.hooks.onRecords?.(m.records);
      return;
    }
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (m.type === "done") p.resolve(m.result);
    else if (m.type === "stopped") p.reject(new VerificationStoppedError(m.states, p.hooks.signal.reason));
    else p.reject(new Error(m.message));
  }
}

/**
 * Worker threads that digest segments (core digestSegment) so that `verify` hashes and parses on every core.
 * Installed, this module is compiled JavaScript and a worker runs digestWorker.js directly. Run from source
 * (tsx, tests), Node 20 does not carry module loader hooks into workers, so each worker first registers tsx's
 * loader, then imports digestWorker.ts.
 */
import type { KeyObject } from "node:crypto";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { type SegmentDigest, spkiDer } from "@auditsink/core";

const BOOTSTRAP = `
const { workerData } = require("node:worker_threads");
import(workerData.loader).then(({ register }) => { register(); return import(workerData.entry); });
`;
const fromSource = import.meta.url.endsWith(".ts");

function startWorker(producerKeys: string[][] | undefined): Worker {
  if (!fromSource)
    return new Worker(new URL("./digestWorker.js", import.meta.url), { workerData: { producerKeys } });
  return new Worker(BOOTSTRAP, {
    eval: true,
    workerData: {
      loader: import.meta.resolve("tsx/esm/api"),
      entry: new URL("./digestWorker.ts", import.meta.url).href,
      producerKeys,
    },
  });
}

interface Job {
  resolve: (d: SegmentDigest) => void;
  reject: (e: unknown) => void;
}

export class DigestPool {
  private readonly jobs = new Map<number, Job>();
  private readonly load: number[];
  private next = 0;

  private constructor(private readonly workers: Worker[]) {
    this.load = workers.map(() => 0);
    workers.forEach((w, i) => {
      w.on("message", ({ id, digest }: { id: number; digest: SegmentDigest }) => {
        if (--this.load[i]! === 0) w.unref();
        this.jobs.get(id)?.resolve(digest);
        this.jobs.delete(id);
      });
      w.on("error", (e) => {
        for (const job of this.jobs.values()) job.reject(e);
        this.jobs.clear();
      });
    });
  }

  get threads(): number {
    return this.workers.length;
  }

  /**
   * Starts `threads` workers; resolves undefined when they cannot start here: the caller then digests on its own
   * thread, with the same result.
   */
  static async start(
    threads: number,
    producerKeys?: ReadonlyMap<string, KeyObject>,
  ): Promise<DigestPool | undefined> {
    if (threads < 2) return undefined;
    const keys = producerKeys
      ? [...producerKeys].map(([id, k]) => [id, spkiDer(k).toString("base64")])
      : undefined;
    const workers: Worker[] = [];
    try {
      for (let i = 0; i < threads; i++) {
        const w = startWorker(keys);
        workers.push(w);
        await once(w, "message"); // "ready"; rejects if the worker fails to start
      }
    } catch {
      await Promise.all(workers.map((w) => w.terminate()));
      return undefined;
    }
    for (const w of workers) w.unref(); // only a worker with work in hand keeps the process alive
    return new DigestPool(workers);
  }

  /** Digests one segment on the least busy worker. */
  digest(bytes: Uint8Array): Promise<SegmentDigest> {
    const id = this.next++;
    const w = this.load.indexOf(Math.min(...this.load));
    if (this.load[w]!++ === 0) this.workers[w]!.ref();
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      this.workers[w]!.postMessage({ id, bytes });
    });
  }

  /** Stops the workers (not awaited: a worker that registered a module loader may take long to wind down). */
  close(): void {
    for (const w of this.workers) {
      w.unref();
      void w.terminate();
    }
  }
}

/**
 * Worker threads (a tinypool pool) that run core's digestSegment — split, SHA-256, leaf hash, parse, and the
 * producer signature check — so that `verify` does this per-record work on every core, while the main thread's
 * StreamVerifier keeps every order-dependent check. The workers call the same core function as one thread does,
 * so their findings are the same. The workers run digestWorker beside this module (local's workerModule: compiled, or from source under tsx).
 */
import type { KeyObject } from "node:crypto";
import { type SegmentDigest, spkiDer } from "@auditsink/core";
import { workerModule } from "@auditsink/local";
import Tinypool from "tinypool";
import { CliError } from "./errors.ts";

const workerFailed = (e: Error) =>
  new CliError("worker-failed", `a verification worker failed: ${e.message}`, { cause: e });

export class DigestPool {
  /**
   * Rejects once a worker fails outside a task (it could not load its module): tinypool then keeps tasks queued
   * for workers that never come, so every digest races this instead of waiting for ever.
   */
  private readonly failed: Promise<never>;

  private constructor(
    private readonly pool: Tinypool,
    readonly threads: number,
  ) {
    this.failed = new Promise((_, reject) => {
      pool.on("error", (e: Error) => reject(workerFailed(e)));
    });
    this.failed.catch(() => undefined); // reported by the digest calls that race it
  }

  /**
   * A pool of `threads` workers, or undefined for fewer than 2: one worker would only add copying, so the
   * caller digests on its own thread.
   */
  static start(threads: number, producerKeys?: ReadonlyMap<string, KeyObject>): DigestPool | undefined {
    if (threads < 2) return undefined;
    const keys = producerKeys
      ? [...producerKeys].map(([id, k]) => [id, spkiDer(k).toString("base64")])
      : undefined;
    const pool = new Tinypool({
      filename: workerModule(import.meta.url, "digestWorker").href,
      minThreads: threads,
      maxThreads: threads,
      workerData: { producerKeys: keys },
    });
    return new DigestPool(pool, threads);
  }

  /**
   * Digests one segment on the next free worker. With a signal, aborting it ends the task's worker at once and
   * rejects with the signal's reason (as core's runVerification does when it stops).
   */
  async digest(bytes: Uint8Array, signal?: AbortSignal): Promise<SegmentDigest> {
    try {
      return (await Promise.race([
        this.pool.run(bytes, signal ? { signal } : {}),
        this.failed,
      ])) as SegmentDigest;
    } catch (e) {
      signal?.throwIfAborted();
      throw e instanceof CliError ? e : workerFailed(e as Error);
    }
  }

  /** Ends every worker, also those still digesting (a run that failed or was stopped). */
  close(): Promise<void> {
    return this.pool.destroy();
  }
}

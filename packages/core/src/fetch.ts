/**
 * Reading a stream out of an ObjectStore into a StreamVerifier: the I/O half of verification, through the port.
 */
import type { ObjectStore } from "./ports.ts";
import {
  checkpointKey,
  checkpointPrefix,
  parseStoreKey,
  segmentKey,
  segmentPrefix,
  streamPrefix,
} from "./record.ts";
import { type SegmentDigest, type StreamReport, StreamVerifier, type VerifyOptions } from "./verify.ts";

const PAGE = 1000;

async function* listAll(store: ObjectStore, prefix: string, startAfter?: string): AsyncGenerator<string> {
  let after = startAfter;
  for (;;) {
    const page = await store.list(prefix, {
      ...(after !== undefined ? { startAfter: after } : {}),
      limit: PAGE,
    });
    yield* page;
    if (page.length < PAGE) return;
    after = page[page.length - 1];
  }
}

/**
 * Every name that has objects under `streams/<name>/`, ascending. One listing call per stream, not per object:
 * after finding a stream it lists again from just past its keys (`streams/<name>0` sorts after every
 * `streams/<name>/…` key, since "/" < "0", and before any other stream's keys that follow it).
 */
export async function listStoredStreams(store: ObjectStore): Promise<string[]> {
  const streams: string[] = [];
  let after: string | undefined;
  for (;;) {
    const [key] = await store.list("streams/", {
      ...(after !== undefined ? { startAfter: after } : {}),
      limit: 1,
    });
    if (key === undefined) return streams;
    const rest = key.slice("streams/".length);
    const slash = rest.indexOf("/");
    if (slash <= 0) {
      after = key; // a file directly under streams/ (or "streams//…"): not a stream; a full run reports it
      continue;
    }
    const name = rest.slice(0, slash);
    streams.push(name);
    after = `streams/${name}0`;
  }
}

/** Every key in the store, ascending (a full run's layout check; deliberately proportional to the archive). */
export function listEveryKey(store: ObjectStore): AsyncGenerator<string> {
  return listAll(store, "");
}

export interface FetchProgress {
  /** Called after each segment with the number of records verified so far. */
  onSegment?: (records: number, bytes: number) => void;
  /**
   * Hashes and parses a segment elsewhere — core's digestSegment on a worker thread — so that this work runs
   * on every core while the verifier keeps the order-dependent checks. Default: on this thread.
   */
  digest?: (bytes: Uint8Array) => Promise<SegmentDigest>;
  /** Segments read and digested ahead of the one being verified (default 1, or 8 with `digest`). */
  readAhead?: number;
}

/**
 * Verifies one stream from the store. Full (from empty) lists everything under the stream's prefix and also
 * reports unexpected objects; incremental (options.from) reads only segments and checkpoints at or after it.
 */
export async function verifyStoredStream(
  store: ObjectStore,
  stream: string,
  options: VerifyOptions,
  progress: FetchProgress = {},
): Promise<StreamReport> {
  const v = new StreamVerifier(stream, options);
  const from = options.from?.size ?? 0;
  if (from === 0) {
    for await (const key of listAll(store, streamPrefix(stream))) {
      const parsed = parseStoreKey(key);
      if (!parsed || parsed.stream !== stream) v.addUnexpected(key);
    }
  }
  const after = (key: string) => (from > 0 ? key : undefined);
  for await (const key of listAll(store, checkpointPrefix(stream), after(checkpointKey(stream, from - 1)))) {
    if (parseStoreKey(key)?.kind !== "checkpoints") continue;
    const bytes = await store.get(key);
    if (bytes) v.addCheckpoint(key, Buffer.from(bytes).toString("utf8"));
  }
  let bytesRead = 0;
  const depth = Math.max(1, progress.readAhead ?? (progress.digest ? 8 : 1));
  const pending: {
    key: string;
    work: Promise<{ size: number; segment: Uint8Array | SegmentDigest } | undefined>;
  }[] = [];
  const start = (key: string) => {
    const work = store
      .get(key)
      .then(async (bytes) =>
        bytes
          ? { size: bytes.length, segment: progress.digest ? await progress.digest(bytes) : bytes }
          : undefined,
      );
    work.catch(() => undefined); // awaited in order below; this only keeps an early failure from going unhandled
    pending.push({ key, work });
  };
  const finishOne = async () => {
    const { key, work } = pending.shift()!;
    const done = await work;
    if (!done) return;
    v.addSegment(key, done.segment);
    bytesRead += done.size;
    progress.onSegment?.(v.recordsSeen, bytesRead);
  };
  for await (const key of listAll(store, segmentPrefix(stream), after(segmentKey(stream, from - 1)))) {
    if (parseStoreKey(key)?.kind !== "segments") continue;
    start(key);
    if (pending.length >= depth) await finishOne();
  }
  while (pending.length > 0) await finishOne();
  return v.finish();
}

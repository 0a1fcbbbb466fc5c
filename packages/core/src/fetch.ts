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
import { type StreamReport, StreamVerifier, type VerifyOptions } from "./verify.ts";

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

/** Every stream that has objects in the store, ascending. */
export async function listStoredStreams(store: ObjectStore): Promise<string[]> {
  const streams = new Set<string>();
  for await (const key of listAll(store, "streams/")) {
    const name = key.slice("streams/".length).split("/")[0];
    if (name) streams.add(name);
  }
  return [...streams].sort();
}

export interface FetchProgress {
  /** Called after each segment with the number of records verified so far. */
  onSegment?: (records: number, bytes: number) => void;
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
  for await (const key of listAll(store, segmentPrefix(stream), after(segmentKey(stream, from - 1)))) {
    if (parseStoreKey(key)?.kind !== "segments") continue;
    const bytes = await store.get(key);
    if (!bytes) continue;
    v.addSegment(key, bytes);
    bytesRead += bytes.length;
    progress.onSegment?.(v.recordsSeen, bytesRead);
  }
  return v.finish();
}

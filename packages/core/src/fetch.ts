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
import {
  digestSegment,
  type SegmentDigest,
  type StreamReport,
  StreamVerifier,
  type VerifyOptions,
} from "./verify.ts";

const PAGE = 1000;

export async function* listAll(
  store: ObjectStore,
  prefix: string,
  startAfter?: string,
): AsyncGenerator<string> {
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
  /**
   * Called after each segment with the walk's position (records verified so far, counting any the incremental
   * start skipped), the bytes read so far, and the records of this segment.
   */
  onSegment?: (records: number, bytes: number, segmentRecords: number) => void;
  /**
   * Hashes and parses a segment elsewhere — core's digestSegment on a worker thread — so that this work runs
   * on every core while the verifier keeps the order-dependent checks. Default: on this thread.
   */
  digest?: (bytes: Uint8Array) => Promise<SegmentDigest>;
  /** Segments read and digested ahead of the one being verified (default 1, or 8 with `digest`). */
  readAhead?: number;
  /**
   * Asked before each segment: true stops the walk there and returns a partial report (`paused`) whose state
   * resumes it — a sweep's slice. The listing of a whole stream (a walk from record 0) is not paused, only
   * aborted (`signal`).
   */
  pause?: () => boolean;
  /** Stops a listing or the walk: the walk rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Verifies one stream from the store. Full (from empty) lists everything under the stream's prefix and also
 * reports unexpected objects; incremental (options.from) reads only segments and checkpoints at or after it.
 *
 * Memory stays bounded whatever the stream's length: keys are listed a page at a time, segments are read one at
 * a time (plus `readAhead`), and checkpoints are read as the walk reaches them — each just before the segment
 * whose records end at or past its size — so the verifier holds only the few ahead of its position.
 */
export async function verifyStoredStream(
  store: ObjectStore,
  stream: string,
  options: VerifyOptions,
  progress: FetchProgress = {},
): Promise<StreamReport> {
  const v = new StreamVerifier(stream, options);
  const from = options.from?.size ?? 0;
  const signal = progress.signal;
  if (from === 0) {
    for await (const key of listAll(store, streamPrefix(stream))) {
      signal?.throwIfAborted();
      const parsed = parseStoreKey(key);
      if (!parsed || parsed.stream !== stream) v.addUnexpected(key);
      else if (parsed.kind === "tiles") v.addListedTile(key);
    }
  }
  const after = (key: string) => (from > 0 ? key : undefined);

  // Checkpoints in key (= size) order, read on demand: `feedCheckpoints(n)` feeds every one of size <= n.
  let lastCheckpoint = after(checkpointKey(stream, from - 1));
  let checkpointPage: string[] = [];
  let checkpointsDone = false;
  const nextCheckpointKey = async (): Promise<string | undefined> => {
    while (checkpointPage.length === 0 && !checkpointsDone) {
      checkpointPage = await store.list(checkpointPrefix(stream), {
        ...(lastCheckpoint !== undefined ? { startAfter: lastCheckpoint } : {}),
        limit: PAGE,
      });
      if (checkpointPage.length < PAGE) checkpointsDone = true;
      if (checkpointPage.length > 0) lastCheckpoint = checkpointPage[checkpointPage.length - 1];
    }
    return checkpointPage[0];
  };
  const feedCheckpoints = async (upTo: number): Promise<void> => {
    for (let key = await nextCheckpointKey(); key !== undefined; key = await nextCheckpointKey()) {
      const parsed = parseStoreKey(key);
      if (parsed?.kind === "checkpoints" && parsed.n > upTo) return;
      checkpointPage.shift();
      if (parsed?.kind !== "checkpoints") continue;
      const bytes = await store.get(key);
      if (bytes) v.addCheckpoint(key, Buffer.from(bytes).toString("utf8"));
    }
  };
  // Checkpoints up to the start are fed first: one of size `from` is checked against the resumed state.
  await feedCheckpoints(from);

  let bytesRead = 0;
  const depth = Math.max(1, progress.readAhead ?? (progress.digest ? 8 : 1));
  const pending: { key: string; work: Promise<{ size: number; segment: SegmentDigest } | undefined> }[] = [];
  const digest = progress.digest ?? (async (bytes: Uint8Array) => digestSegment(bytes, options.producerKeys));
  const start = (key: string) => {
    const work = store
      .get(key)
      .then(async (bytes) => (bytes ? { size: bytes.length, segment: await digest(bytes) } : undefined));
    work.catch(() => undefined); // awaited in order below; this only keeps an early failure from going unhandled
    pending.push({ key, work });
  };
  let paused = false;
  const finishOne = async () => {
    const { key, work } = pending.shift()!;
    const done = await work;
    if (!done) return;
    const first = parseStoreKey(key)!.n;
    await feedCheckpoints(first + done.segment.records.length);
    v.addSegment(key, done.segment);
    // The tiles these records completed, checked as the walk makes them (at most a segment's worth held).
    const tiles = v.takeCompletedTiles();
    const stored = await Promise.all(tiles.map((t) => store.get(t)));
    tiles.forEach((t, i) => {
      v.addTile(t, stored[i]);
    });
    bytesRead += done.size;
    progress.onSegment?.(v.recordsSeen, bytesRead, done.segment.records.length);
  };
  const stop = () => {
    paused = progress.pause?.() ?? false;
    if (!paused) signal?.throwIfAborted();
    return paused;
  };
  // A writer stores a segment before its checkpoint (docs/ARCHITECTURE.md): checkpoints found beyond the walk
  // after its listing ended mean segments committed meanwhile, so the segments are listed once more.
  let lastSegment = after(segmentKey(stream, from - 1));
  for (let pass = 0; pass < 2 && !paused; pass++) {
    for await (const key of listAll(store, segmentPrefix(stream), lastSegment)) {
      lastSegment = key;
      if (parseStoreKey(key)?.kind !== "segments") continue;
      if (stop()) break; // segments read ahead are dropped: the resumed walk reads them again
      start(key);
      if (pending.length >= depth) await finishOne();
    }
    // Read-ahead segments are finished in order, each only if the walk is not to stop before it.
    while (pending.length > 0 && !stop()) await finishOne();
    if (paused) break;
    await feedCheckpoints(Number.MAX_SAFE_INTEGER);
    if (!v.checkpointsBeyond) break;
  }
  if (paused) return v.finish({ partial: true });
  return v.finish();
}

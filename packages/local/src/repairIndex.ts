/**
 * Brings the index level with the write-once store (docs/EMBEDDED.md §6.2), reading only what it lacks. Works from
 * the store alone (not the heads, which a crash may have left behind), so it can also run later, from the first
 * dedup look-up, when a full disk kept it from finishing at open (LocalIndex.deferRepair).
 *
 * The index is written in the commit step before the head advances, and its WAL may lose the last transactions
 * to a power loss: it can be behind the store, never ahead. So, per stream:
 *   1. an index whose last indexed record of a stream is not the one the store holds at that position (the stored
 *      line differs, or there is none: the index is ahead of the store, damaged, or another store's), or that
 *      indexes a stream the store does not hold, is moved aside as `index.db.damaged-<time>` and rebuilt;
 *   2. otherwise the segments from the index's size to the store's end are indexed (none, after a clean stop).
 * A new index (first start with index.db, or after step 1) is built by step 2 from record 0 of every stream.
 */
import { dedupEntriesOf, readStoredSegment, segmentKey, sha256, toHex, ZERO_HASH } from "@auditsink/core";
import type { LocalIndex } from "./LocalIndex.ts";
import type { LocalObjectStore } from "./LocalObjectStore.ts";
import type { Logger } from "./logger.ts";

export interface IndexRepair {
  /** Records indexed from the store. */
  indexed: number;
  /** Where a damaged or foreign index was moved, and why. */
  movedAside?: { to: string; reason: string };
}

class Mismatch extends Error {}

export async function repairIndex(
  index: LocalIndex,
  objects: LocalObjectStore,
  streams: readonly string[],
  log: Logger,
): Promise<IndexRepair> {
  const repair: IndexRepair = { indexed: 0 };
  for (let attempt = 0; ; attempt++) {
    try {
      await checkNotAhead(index, objects, streams);
      for (const stream of streams) repair.indexed += await indexTail(index, objects, stream);
      return repair;
    } catch (e) {
      if (!(e instanceof Mismatch) || attempt > 0) throw e;
      const to = await index.reset();
      repair.movedAside = { to, reason: e.message };
      log.warn(
        { file: index.path, movedTo: to, reason: e.message },
        "index.db does not match the store: moved aside, rebuilding it from the store",
      );
    }
  }
}

/** Step 1: the last indexed record of every stream is the stored one (one record line read per stream). */
async function checkNotAhead(index: LocalIndex, objects: LocalObjectStore, streams: readonly string[]) {
  for (const [stream, at] of index.streams()) {
    if (!streams.includes(stream))
      throw new Mismatch(`it indexes stream ${stream}, which the store does not hold`);
    const where = index.location(stream, at.size - 1);
    const line =
      where &&
      objects.getRanges(segmentKey(stream, where.segment), [
        { offset: where.offset, length: where.length + 1 },
      ])?.[0];
    if (!line || line.length !== where!.length + 1 || toHex(sha256(line.subarray(0, -1))) !== at.headHash) {
      throw new Mismatch(
        `its record ${at.size - 1} of ${stream} is not the stored one (or the store has none)`,
      );
    }
  }
}

/** Step 2: indexes the stored segments of `stream` past the index's size; resolves how many records. */
async function indexTail(index: LocalIndex, objects: LocalObjectStore, stream: string): Promise<number> {
  const at = index.stream(stream) ?? { size: 0, headHash: toHex(ZERO_HASH) };
  let size = at.size;
  for (;;) {
    const bytes = await objects.get(segmentKey(stream, size));
    if (!bytes) break;
    const records = readStoredSegment(stream, size, bytes);
    if (records.length === 0) break;
    await index.putMany(dedupEntriesOf(stream, records), { stream, first: size, records });
    size += records.length;
  }
  return size - at.size;
}

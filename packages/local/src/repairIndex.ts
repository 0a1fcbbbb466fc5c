/**
 * Brings the index level with the write-once store at open (docs/EMBEDDED.md §6.2), reading only what it lacks.
 *
 * The index is written in the commit step before the head advances, and its WAL may lose the last transactions
 * to a power loss: it can be behind the store, never ahead. So, per stream, after the sink has repaired the head
 * from the store (the head is then the store's size):
 *   1. an index ahead of the head, holding a stream the store does not, or whose last indexed record is not the
 *      store's (its hash differs, or the next stored segment does not link to it) is not this store's index: it is
 *      moved aside as `index.db.damaged-<time>` and rebuilt from the store;
 *   2. otherwise the segments from the index's size to the store's end are indexed (none, after a clean stop).
 * A new index (first start with index.db, or after step 1) is built by step 2 from record 0 of every stream.
 */
import {
  dedupEntriesOf,
  type HeadStore,
  type ObjectStore,
  readStoredSegment,
  segmentKey,
  toHex,
  ZERO_HASH,
} from "@auditsink/core";
import type { LocalIndex } from "./LocalIndex.ts";
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
  objects: ObjectStore,
  heads: HeadStore,
  streams: readonly string[],
  log: Logger,
): Promise<IndexRepair> {
  const repair: IndexRepair = { indexed: 0 };
  for (let attempt = 0; ; attempt++) {
    try {
      await checkNotAhead(index, heads, streams);
      for (const stream of streams) repair.indexed += await indexTail(index, objects, heads, stream);
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

async function checkNotAhead(index: LocalIndex, heads: HeadStore, streams: readonly string[]): Promise<void> {
  for (const [stream, at] of index.streams()) {
    if (!streams.includes(stream))
      throw new Mismatch(`it indexes stream ${stream}, which the store does not hold`);
    const head = await heads.get(stream);
    const size = head?.size ?? 0;
    if (at.size > size)
      throw new Mismatch(`it indexes ${at.size} records of ${stream}; the store holds ${size}`);
    if (at.size === size && head && at.headHash !== head.headHash) {
      throw new Mismatch(`its record ${size - 1} of ${stream} is not the stored one`);
    }
  }
}

/** Indexes the stored segments of `stream` past the index's size; resolves how many records it indexed. */
async function indexTail(
  index: LocalIndex,
  objects: ObjectStore,
  heads: HeadStore,
  stream: string,
): Promise<number> {
  const at = index.stream(stream) ?? { size: 0, headHash: toHex(ZERO_HASH) };
  let size = at.size;
  let prev = at.headHash;
  for (;;) {
    const bytes = await objects.get(segmentKey(stream, size));
    if (!bytes) break;
    const records = readStoredSegment(stream, size, bytes);
    if (records.length === 0) break;
    if (records[0]!.record.prev !== prev) {
      throw new Mismatch(
        `its record ${size - 1} of ${stream} is not the one the stored segment at ${size} follows`,
      );
    }
    await index.putMany(dedupEntriesOf(stream, records), { stream, first: size, records });
    size += records.length;
    prev = toHex(records[records.length - 1]!.hash);
  }
  const stored = (await heads.get(stream))?.size ?? 0;
  if (size < stored) throw new Mismatch(`it ends ${stream} at ${size}, where no stored segment starts`);
  return size - at.size;
}

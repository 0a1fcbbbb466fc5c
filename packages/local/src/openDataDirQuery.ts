/**
 * A data directory's events, opened read-only for `auditsink query` and anything else that searches a data
 * directory beside (or without) a running sink: it takes no lock and writes nothing.
 */
import { existsSync } from "node:fs";
import { type EventIndex, type EventQuery, ScanningEventIndex } from "@auditsink/core";
import type Database from "libsql";
import { LocalError } from "./errors.ts";
import { IndexedEvents } from "./IndexedEvents.ts";
import { isCurrentIndex, openIndexDatabase } from "./LocalIndex.ts";
import { storedStreams } from "./LocalObjectStore.ts";
import { dataDirObjects } from "./objectLayout.ts";
import { dataPaths } from "./openLocalSink.ts";

/**
 * Opens a data directory's index read-only, for queries from another process while a sink runs on it (SQLite's
 * WAL lets readers and the one writer work at once). Events are read back from `<data>/objects`. The index is as
 * current as the sink's last commit. A directory without an index (a copy of its objects, or one no sink has
 * opened since the index came in), or with an index of another schema version (no sink of this version has opened
 * it yet), is answered by scanning its segments (core ScanningEventIndex): a deliberate read of the whole directory.
 *
 * @example
 *   const events = await openDataDirQuery("/var/lib/auditsink");
 *   const { events: page } = await events.find({ agent: "agent-7", limit: 100 });
 *   await events.close();
 */
export async function openDataDirQuery(dataDir: string): Promise<EventIndex & { close(): Promise<void> }> {
  const paths = dataPaths(dataDir);
  if (!existsSync(paths.objects)) {
    throw new LocalError("data-dir-invalid", `${dataDir} is not a data directory (no objects/)`);
  }
  const objects = await dataDirObjects(paths.objects);
  const path = paths.index;
  const scanning = () => {
    const scan = new ScanningEventIndex(objects, () => storedStreams(paths.objects));
    return { find: (query: EventQuery) => scan.find(query), close: async () => {} };
  };
  if (!existsSync(path)) return scanning();
  let db: Database.Database;
  let current: boolean;
  try {
    db = openIndexDatabase(path, { readOnly: true });
    current = isCurrentIndex(db);
  } catch (e) {
    throw new LocalError("index-unavailable", `opening ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (!current) {
    // An index of another schema version (no sink of this version has opened the directory yet): not read.
    db.close();
    return scanning();
  }
  const events = new IndexedEvents(() => db, objects);
  return {
    find: (query) => events.find(query),
    close: async () => {
      if (db.open) db.close();
    },
  };
}

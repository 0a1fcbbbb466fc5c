/**
 * The event index of a data directory, opened read-only for `auditsink query` and anything else that searches
 * a data directory beside (or without) a running sink: it takes no lock and writes nothing, so it is safe while
 * the sink runs on the same directory.
 */
import { stat } from "node:fs/promises";
import { type EventIndex, ScanningEventIndex } from "@auditsink/core";
import { LocalError } from "./errors.ts";
import { LocalObjectStore } from "./LocalObjectStore.ts";
import { dataPaths, storedStreams } from "./openLocalSink.ts";

/**
 * Answers `GET /v1/events` queries over `dataDir` (core EventQuery). This implementation scans the stored
 * segments (core ScanningEventIndex) once per opening; `close()` releases what it holds.
 *
 * @example
 *   const index = await openDataDirQuery("/var/lib/auditsink");
 *   try {
 *     const page = await index.find({ agent: "agent-a", limit: 100 });
 *   } finally {
 *     await index.close();
 *   }
 */
export async function openDataDirQuery(dataDir: string): Promise<EventIndex & { close(): Promise<void> }> {
  const paths = dataPaths(dataDir);
  const isDir = await stat(paths.objects).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new LocalError("data-dir-invalid", `${dataDir} is not a data directory (no objects/)`);
  // Only read: the temp directory is never written through this store.
  const index = new ScanningEventIndex(new LocalObjectStore(paths.objects, paths.tmp), () =>
    storedStreams(paths.objects),
  );
  return {
    find: (query) => index.find(query),
    close: async () => {},
  };
}

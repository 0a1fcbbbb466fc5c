/**
 * `auditsink query`: find events in a data directory, an evidence bundle or an `s3://` archive with the filters
 * of `GET /v1/events` (core EventQuery), validated by the API's own query schema so both accept the same input.
 *
 * A data directory is searched through its index, opened read-only (@auditsink/local openDataDirQuery: no lock,
 * nothing written, safe beside a running sink). A bundle or an archive has no index of its own: it is read
 * through core's ScanningEventIndex, a deliberate scan of a finite source (every segment is read once per
 * command).
 */
import { type EventIndex, type EventPage, type EventQuery, ScanningEventIndex } from "@auditsink/core";
import { usableManifest } from "./bundle.ts";
import { CliError } from "./errors.ts";
import { openSource } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";

/** The query's fields by the flag that sets them (for messages naming the flag the user typed). */
export const QUERY_FLAGS = {
  agent: "--agent",
  run: "--run",
  type: "--type",
  traceId: "--trace-id",
  source: "--source",
  id: "--id",
  producer: "--producer",
  since: "--since",
  until: "--until",
  receivedSince: "--received-since",
  receivedUntil: "--received-until",
  cursor: "--cursor",
  limit: "--limit",
} as const;

export type QueryFlags = Partial<Record<keyof typeof QUERY_FLAGS, string>>;

/**
 * Checks the flags against `GET /v1/events`' query schema (@auditsink/api EventsQuery): the same bounds, time
 * format and page size (1–1000, default 100). A bad value is a usage error naming its flag.
 */
export async function parseQuery(flags: QueryFlags): Promise<EventQuery> {
  const { EventsQuery } = await import("@auditsink/api");
  const given = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  const parsed = EventsQuery.safeParse(given);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? "");
    const flag = Object.hasOwn(QUERY_FLAGS, field) ? QUERY_FLAGS[field as keyof typeof QUERY_FLAGS] : field;
    throw new CliError("usage", `${flag}: ${issue.message}`);
  }
  return Object.fromEntries(
    Object.entries(parsed.data).filter(([, v]) => v !== undefined),
  ) as unknown as EventQuery;
}

/** An opened source's event index; `close` releases it. */
export interface QuerySource extends EventIndex {
  kind: "data-dir" | "bundle" | "s3";
  close(): Promise<void>;
}

export async function openQuerySource(location: string, s3: S3ReadOptions = {}): Promise<QuerySource> {
  const source = await openSource(location, s3);
  if (source.kind === "data-dir") {
    const { openDataDirQuery } = await import("@auditsink/local");
    const index = await openDataDirQuery(location);
    return { kind: source.kind, find: (q) => index.find(q), close: () => index.close() };
  }
  // A bundle's stored records begin at its first segment (its manifest's start), not at record 0.
  const start = source.bundle ? usableManifest(source.bundle).start.size : 0;
  const index = new ScanningEventIndex(
    source.store,
    () => source.streams(),
    () => start,
  );
  return { kind: source.kind, find: (q) => index.find(q), close: async () => {} };
}

/**
 * One page of events matching `query`, or with `all` every page (following the cursor) handed to `emit` in
 * order. Resolves with the cursor of the next page when one may hold more (only without `all`).
 */
export async function queryEvents(
  index: EventIndex,
  query: EventQuery,
  emit: (page: EventPage["events"]) => void,
  all = false,
): Promise<string | undefined> {
  let cursor = query.cursor;
  for (;;) {
    // A cursor that does not decode fails here, as the API's 400 does, with core's message naming it.
    const page = await index.find({ ...query, ...(cursor ? { cursor } : {}) });
    emit(page.events);
    cursor = page.cursor;
    if (!all || !cursor) return cursor;
  }
}

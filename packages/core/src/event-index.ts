/**
 * Finding events by agent, run, type, trace, identity, producer time and received time: the `GET /v1/events` port, and an implementation that scans the
 * write-once store through the ObjectStore port (embedded; any deployment small enough to scan). Pure of I/O
 * beyond the port. The index is a cache: everything it answers is read back from the stored segments.
 */

import { FormatError } from "./errors.ts";
import { parseTraceparent, type SignedEvent } from "./event.ts";
import { type Hash, sha256, toHex } from "./hash.ts";
import type { ObjectStore } from "./ports.ts";
import { type AuditRecord, segmentKey } from "./record.ts";
import { readStoredSegment } from "./stream-reader.ts";

export interface EventQuery {
  /** `gen_ai.agent.id` in the event data, or the `agentid` extension attribute. */
  agent?: string;
  /** `gen_ai.conversation.id` in the event data, or the `runid` extension attribute. */
  run?: string;
  type?: string;
  /** The trace id (32 lowercase hex) of the event's `traceparent` extension attribute. */
  traceId?: string;
  /** CloudEvents `source`. */
  source?: string;
  /** CloudEvents `id`. */
  id?: string;
  /** The registered producer whose key signed the event (the record's `producer`). */
  producer?: string;
  /** Inclusive lower bound on the event `time` the producer wrote (RFC 3339). */
  since?: string;
  /** Exclusive upper bound on the event `time` (RFC 3339). */
  until?: string;
  /** Inclusive lower bound on the record's `received` time, set by the sink (RFC 3339). */
  receivedSince?: string;
  /** Exclusive upper bound on the record's `received` time (RFC 3339). */
  receivedUntil?: string;
  /** An opaque cursor from a previous page. */
  cursor?: string;
  limit: number;
}

/** What a time-window bound must look like: an RFC 3339 date-time with a time zone (`Z` or `±hh:mm`). */
export const TIME_BOUND = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A time window, inclusive at `since` and exclusive at `until`, either end open; the bounds are RFC 3339 texts
 * compared as instants (milliseconds since the epoch: `Date.parse`), so `2026-01-01T01:00:00+01:00` and
 * `2026-01-01T00:00:00Z` are one bound. The one definition of a window: the event query (producer `time` and
 * sink `received`) and `auditsink export` (received) use it.
 */
export function inTimeWindow(time: string | number, window: { since?: string; until?: string }): boolean {
  const t = typeof time === "number" ? time : Date.parse(time);
  const { from, to } = timeWindowBounds(window);
  if (from !== undefined && !(t >= from)) return false;
  if (to !== undefined && !(t < to)) return false;
  return true;
}

/** A window's bounds as milliseconds since the epoch (`from` inclusive, `to` exclusive): what an index compares. */
export function timeWindowBounds(window: { since?: string; until?: string }): { from?: number; to?: number } {
  return {
    ...(window.since !== undefined ? { from: Date.parse(window.since) } : {}),
    ...(window.until !== undefined ? { to: Date.parse(window.until) } : {}),
  };
}

/**
 * Whether a stored record answers the query (every facet and both windows; the cursor aside): the check an index
 * applies to what it read back from the store, so a result is always what the store holds, whatever the index says.
 */
export function recordMatches(
  query: Omit<EventQuery, "cursor" | "limit">,
  record: { producer: string; received: string; event: SignedEvent },
): boolean {
  const f = eventFacets(record.event);
  const e = record.event;
  return (
    (query.agent === undefined || f.agent === query.agent) &&
    (query.run === undefined || f.run === query.run) &&
    (query.type === undefined || f.type === query.type) &&
    (query.traceId === undefined || f.traceId === query.traceId) &&
    (query.source === undefined || e.source === query.source) &&
    (query.id === undefined || e.id === query.id) &&
    (query.producer === undefined || record.producer === query.producer) &&
    inTimeWindow(f.time, { since: query.since, until: query.until }) &&
    inTimeWindow(record.received, { since: query.receivedSince, until: query.receivedUntil })
  );
}

export interface FoundEvent {
  stream: string;
  index: number;
  recordHash: string;
  received: string;
  producer: string;
  event: SignedEvent;
}

/** A stored record of `stream`, whose line hashes to `recordHash`, as a query result. */
export function foundEvent(stream: string, record: AuditRecord, recordHash: Hash): FoundEvent {
  return {
    stream,
    index: record.index,
    recordHash: toHex(recordHash),
    received: record.received,
    producer: record.producer,
    event: record.event,
  };
}

export interface EventPage {
  events: FoundEvent[];
  /** Present when more events may match: pass it as `cursor` for the next page. */
  cursor?: string;
}

export interface EventIndex {
  find(query: EventQuery): Promise<EventPage>;
}

/** The facets an event is found by (docs/EMBEDDED.md §Finding events). */
export interface EventFacets {
  agent?: string;
  run?: string;
  traceId?: string;
  type: string;
  time: number;
}

/** The facets of `event` (docs/EMBEDDED.md §Finding events): read for every event indexed and every result. */
export function eventFacets(event: SignedEvent): EventFacets {
  const data =
    typeof event.data === "object" && event.data !== null && !Array.isArray(event.data)
      ? (event.data as Record<string, unknown>)
      : undefined;
  const facets: EventFacets = { type: event.type, time: Date.parse(event.time) };
  const agent = facet(data, "gen_ai.agent.id", event, "agentid");
  if (agent !== undefined) facets.agent = agent;
  const run = facet(data, "gen_ai.conversation.id", event, "runid");
  if (run !== undefined) facets.run = run;
  const traceId =
    typeof event.traceparent === "string" ? parseTraceparent(event.traceparent)?.traceId : undefined;
  if (traceId !== undefined) facets.traceId = traceId;
  return facets;
}

/** A facet: the data attribute, else the CloudEvents extension; a string or number, as a string. */
function facet(
  data: Record<string, unknown> | undefined,
  attribute: string,
  event: SignedEvent,
  extension: string,
): string | undefined {
  const v =
    (data !== undefined && Object.hasOwn(data, attribute) ? data[attribute] : undefined) ??
    (Object.hasOwn(event, extension) ? (event as Record<string, unknown>)[extension] : undefined);
  return typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;
}

/**
 * One event's facets. Strings that repeat across events (type, agent, run, trace id, source, producer) are
 * interned, one copy per distinct value; the `id`, unique per event, is kept only as a 48-bit hash (idHash), and
 * a match on it is confirmed against the stored event before it is returned.
 */
interface Entry {
  index: number;
  segment: number;
  agent?: string;
  run?: string;
  traceId?: string;
  type: string;
  time: number;
  received: number;
  source: string;
  idHash: number;
  producer: string;
}

const idHash = (id: string): number => sha256(id).readUIntBE(0, 6);

interface StreamEntries {
  size: number;
  entries: Entry[];
}

/** A cursor names the last event returned: stream and index. */
export function encodeEventCursor(stream: string, index: number): string {
  return Buffer.from(JSON.stringify([stream, index]), "utf8").toString("base64url");
}

export function decodeEventCursor(cursor: string): { stream: string; index: number } {
  try {
    const [stream, index] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
    if (typeof stream === "string" && Number.isSafeInteger(index)) return { stream, index: index as number };
  } catch {
    // fall through to the coded error
  }
  throw new FormatError("bad-record", "cursor: not a cursor this sink returned");
}

/**
 * An EventIndex that reads each stream's segments once, forward, and keeps only the facets in memory.
 * Results come in stream order, then index order. It also knows when each producer was last heard from,
 * which the scheduled verifier uses for heartbeat alerts.
 */
export class ScanningEventIndex implements EventIndex {
  private readonly streams = new Map<string, StreamEntries>();
  private readonly seen = new Map<string, string>();
  private readonly interned = new Map<string, string>();
  private syncing: Promise<void> | undefined;

  /**
   * @param firstIndex where each stream's stored records begin: 0 in a store that holds a whole log; an
   *   evidence bundle's first segment may start later.
   */
  constructor(
    private readonly store: ObjectStore,
    private readonly listStreams: () => Promise<string[]>,
    private readonly firstIndex: (stream: string) => number = () => 0,
  ) {}

  /** Reads every segment the index has not seen yet. */
  sync(): Promise<void> {
    this.syncing ??= this.readForward().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  /** Newest `received` time per producer, as of the last sync. */
  lastSeen(): ReadonlyMap<string, string> {
    return this.seen;
  }

  private async readForward(): Promise<void> {
    for (const stream of await this.listStreams()) {
      let s = this.streams.get(stream);
      if (!s) {
        s = { size: this.firstIndex(stream), entries: [] };
        this.streams.set(stream, s);
      }
      for (;;) {
        const bytes = await this.store.get(segmentKey(stream, s.size));
        if (!bytes) break;
        const first = s.size;
        for (const r of readStoredSegment(stream, first, bytes)) {
          const f = eventFacets(r.record.event);
          s.entries.push({
            index: r.record.index,
            segment: first,
            ...(f.agent !== undefined ? { agent: this.intern(f.agent) } : {}),
            ...(f.run !== undefined ? { run: this.intern(f.run) } : {}),
            ...(f.traceId !== undefined ? { traceId: this.intern(f.traceId) } : {}),
            type: this.intern(f.type),
            time: f.time,
            received: Date.parse(r.record.received),
            source: this.intern(r.record.event.source),
            idHash: idHash(r.record.event.id),
            producer: this.intern(r.record.producer),
          });
          const last = this.seen.get(r.record.producer);
          if (!last || last < r.record.received) this.seen.set(r.record.producer, r.record.received);
          s.size = r.record.index + 1;
        }
      }
    }
  }

  private intern(value: string): string {
    const known = this.interned.get(value);
    if (known !== undefined) return known;
    this.interned.set(value, value);
    return value;
  }

  async find(query: EventQuery): Promise<EventPage> {
    await this.sync();
    const after = query.cursor ? decodeEventCursor(query.cursor) : undefined;
    const time = { since: query.since, until: query.until };
    const received = { since: query.receivedSince, until: query.receivedUntil };
    const wantedId = query.id !== undefined ? idHash(query.id) : undefined;
    const hits: { stream: string; entry: Entry }[] = [];
    let more = false;
    const names = [...this.streams.keys()].sort();
    outer: for (const stream of names) {
      if (after && stream < after.stream) continue;
      for (const entry of this.streams.get(stream)!.entries) {
        if (after && stream === after.stream && entry.index <= after.index) continue;
        if (query.agent !== undefined && entry.agent !== query.agent) continue;
        if (query.run !== undefined && entry.run !== query.run) continue;
        if (query.type !== undefined && entry.type !== query.type) continue;
        if (query.traceId !== undefined && entry.traceId !== query.traceId) continue;
        if (query.source !== undefined && entry.source !== query.source) continue;
        if (wantedId !== undefined && entry.idHash !== wantedId) continue;
        if (query.producer !== undefined && entry.producer !== query.producer) continue;
        if (!inTimeWindow(entry.time, time) || !inTimeWindow(entry.received, received)) continue;
        if (hits.length === query.limit) {
          more = true;
          break outer;
        }
        hits.push({ stream, entry });
      }
    }
    const events: FoundEvent[] = [];
    const segments = new Map<string, Map<number, FoundEvent>>();
    for (const { stream, entry } of hits) {
      const key = segmentKey(stream, entry.segment);
      let byIndex = segments.get(key);
      if (!byIndex) {
        byIndex = new Map();
        const bytes = await this.store.get(key);
        for (const r of bytes ? readStoredSegment(stream, entry.segment, bytes) : []) {
          byIndex.set(r.record.index, foundEvent(stream, r.record, r.hash));
        }
        segments.set(key, byIndex);
      }
      const found = byIndex.get(entry.index);
      // An id matched by its hash only: the stored event decides.
      if (found && (query.id === undefined || found.event.id === query.id)) events.push(found);
    }
    const last = hits[hits.length - 1];
    return more && last ? { events, cursor: encodeEventCursor(last.stream, last.entry.index) } : { events };
  }
}

/**
 * The event index of the AWS runtime (docs/AWS.md §Finding events): postings in their own DynamoDB table, written
 * by the sequencer in the commit step, read by the query function. A query reads postings and then only the
 * segments they name; it never lists or scans the archive.
 *
 * Life of a posting:
 *   1. The sequencer creates a segment (core Sink, step 3). Before the head moves past it, core calls
 *      `indexSegment` (SegmentIndexer) beside the dedup writes. For each facet value the segment's records carry —
 *      agent, run, trace id, type, producer, source (core `eventFacets`), the UTC hour of the producer `time` and
 *      the UTC hour of the `received` time — it puts ONE item: `pk` = `<facet>#<value digest>` (hour facets:
 *      `time#2026-11-29T02`), `sk` = `<stream>#<first index, 20 digits>`, `ix` = the offsets in the segment of the
 *      records with that value, and the range of their producer and received times. A commit of N events with k
 *      distinct facet values costs k item writes, not N × facets.
 *   2. Puts are idempotent (the same segment gives the same items; the first stands). A crash between the segment and its postings
 *      leaves the head behind the segment; the next writer's catch-up reads the segment and calls `indexSegment`
 *      again (core Sink.catchUp), before it moves the head. So every record below a head has its postings.
 *   3. `find` picks one posting list to drive the query (the most selective facet given, else the hour buckets of
 *      the time window), reads it in key order — stream, then index, as the embedded runtime answers — and reads
 *      each named segment once (GetObject). Every filter is checked again on the stored record; a posting that
 *      names a record that is not there, or whose record does not carry the facet value, is skipped and reported
 *      (`onMismatch`). Results are the stored records: stream, index, record hash.
 *   4. The cursor names the driving list position (list, posting key, last index returned) and a digest of the
 *      query; it is parsed and checked on the way in, and the DynamoDB key is rebuilt from checked parts, never
 *      taken from the request.
 *
 * Postings carry no TTL: they name segments kept at least the archive's retention, and a posting whose segment
 * is gone is skipped.
 */

import {
  type EventIndex,
  type EventPage,
  type EventQuery,
  eventFacets,
  FormatError,
  type FoundEvent,
  foundEvent,
  inTimeWindow,
  type ObjectStore,
  readStoredSegment,
  type SealedRecord,
  type SegmentIndexer,
  segmentKey,
  sha256,
  toHex,
} from "@auditsink/core";
import { type DynamoDBDocumentClient, PutCommand, QueryCommand } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";

/** Conditional puts in flight at once per segment. */
const PUT_PARALLEL = 25;
const HOUR_MS = 3_600_000;
/** Segments read per page at most (in parallel, SEGMENT_PARALLEL at a time): bounds a page's work and latency. */
export const MAX_SEGMENTS_PER_PAGE = 128;
const SEGMENT_PARALLEL = 16;
/** DynamoDB Query calls (up to 1 MB each; one per hour bucket of a window) per page at most. */
export const MAX_QUERIES_PER_PAGE = 48;
/** Added to a posting's first index in a cursor: every offset of that posting is done. */
const DONE = 1_000_000;
/** The longest time window a query without a facet may span (hour buckets, 400 days). */
export const MAX_WINDOW_HOURS = 400 * 24;
/** How far past now an open `until` reaches for producer times (clocks of producers run ahead). */
const OPEN_UNTIL_SLACK_MS = 24 * HOUR_MS;

/** The facets a posting is kept for; `time` and `received` are UTC hour buckets. */
export type PostingFacet = "agent" | "run" | "trace" | "type" | "producer" | "source" | "time" | "received";

/** A posting list's partition key: a value facet by digest (any string, fixed length), an hour facet by hour. */
export function postingKey(facet: PostingFacet, value: string): string {
  if (facet === "time" || facet === "received") return `${facet}#${value}`;
  return `${facet}#${sha256(value).subarray(0, 16).toString("base64url")}`;
}

/** `2026-11-29T02`: the UTC hour bucket of an instant. */
export function hourBucket(ms: number): string {
  return new Date(Math.floor(ms / HOUR_MS) * HOUR_MS).toISOString().slice(0, 13);
}

const postingSort = (stream: string, first: number) => `${stream}#${String(first).padStart(20, "0")}`;
/** `<stream>#<first index>`: a stream name (core STREAM_NAME, or the sink's own `_system`) and 20 digits. */
const SORT_KEY = /^(_system|[a-z0-9][a-z0-9._-]{0,127})#(\d{20})$/;

/** Offsets as ranges: `0-3,5,9-10`. */
function encodeOffsets(offsets: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < offsets.length; ) {
    let j = i;
    while (j + 1 < offsets.length && offsets[j + 1] === offsets[j]! + 1) j++;
    parts.push(j === i ? String(offsets[i]) : `${offsets[i]}-${offsets[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** The offsets of a stored posting, or undefined when it is not a list of ascending offsets below 1,000,000. */
function decodeOffsets(text: unknown): number[] | undefined {
  if (typeof text !== "string" || !/^\d{1,6}(-\d{1,6})?(,\d{1,6}(-\d{1,6})?)*$/.test(text)) return undefined;
  const out: number[] = [];
  for (const part of text.split(",")) {
    const [a, b] = part.split("-").map(Number) as [number, number | undefined];
    const end = b ?? a;
    if (end < a || (out.length > 0 && a <= out[out.length - 1]!) || out.length + end - a > 100_000)
      return undefined;
    for (let k = a; k <= end; k++) out.push(k);
  }
  return out;
}

interface Posting {
  pk: string;
  sk: string;
  ix: string;
  /** Producer times (epoch ms) and received times of the records: smallest and largest. */
  t0: number;
  t1: number;
  r0: number;
  r1: number;
  /** Source postings: a 24-bit digest (6 hex) of each record's `id`, in offset order, so `id` lookups read no segment but the one that holds it. */
  ih?: string;
}

/** The 6-hex digest of an event id kept in source postings. */
export const idDigest = (id: string): string => toHex(sha256(id)).slice(0, 6);

/** The postings of one segment: one per facet value its records carry. */
export function postingsOf(stream: string, first: number, records: readonly SealedRecord[]): Posting[] {
  const lists = new Map<
    string,
    { offsets: number[]; ids: string[]; t0: number; t1: number; r0: number; r1: number }
  >();
  for (const [offset, r] of records.entries()) {
    const f = eventFacets(r.record.event);
    const received = Date.parse(r.record.received);
    const keys: string[] = [
      postingKey("type", f.type),
      postingKey("producer", r.record.producer),
      postingKey("source", r.record.event.source),
    ];
    if (f.agent !== undefined) keys.push(postingKey("agent", f.agent));
    if (f.run !== undefined) keys.push(postingKey("run", f.run));
    if (f.traceId !== undefined) keys.push(postingKey("trace", f.traceId));
    if (Number.isFinite(f.time)) keys.push(postingKey("time", hourBucket(f.time)));
    if (Number.isFinite(received)) keys.push(postingKey("received", hourBucket(received)));
    const id = idDigest(r.record.event.id);
    for (const pk of new Set(keys)) {
      const l = lists.get(pk);
      if (!l)
        lists.set(pk, { offsets: [offset], ids: [id], t0: f.time, t1: f.time, r0: received, r1: received });
      else {
        l.offsets.push(offset);
        l.ids.push(id);
        l.t0 = Math.min(l.t0, f.time);
        l.t1 = Math.max(l.t1, f.time);
        l.r0 = Math.min(l.r0, received);
        l.r1 = Math.max(l.r1, received);
      }
    }
  }
  const sk = postingSort(stream, first);
  return [...lists].map(([pk, l]) => ({
    pk,
    sk,
    ix: encodeOffsets(l.offsets),
    t0: l.t0,
    t1: l.t1,
    r0: l.r0,
    r1: l.r1,
    ...(pk.startsWith("source#") ? { ih: l.ids.join("") } : {}),
  }));
}

/** What a query is driven by: one facet's posting list, or the hour buckets of a window. */
interface Driver {
  /** The posting lists, read one after the other. */
  lists: string[];
  /** The facet and value the driving lists stand for (checked against each record). */
  facet: PostingFacet;
}

const FILTERS = [
  "agent",
  "run",
  "type",
  "traceId",
  "source",
  "id",
  "producer",
  "since",
  "until",
  "receivedSince",
  "receivedUntil",
] as const;

/** Reports a posting the stored records do not bear out (a lost segment, a tampered or stale index). */
export type PostingMismatch = (problem: {
  pk: string;
  stream: string;
  index: number;
  reason: string;
}) => void;

export interface DynamoEventIndexOptions {
  /** Told of each posting the stored records contradict; the record is not returned. */
  onMismatch?: PostingMismatch;
  clock?: () => number;
  /** Segments one page may read (default MAX_SEGMENTS_PER_PAGE). */
  maxSegmentsPerPage?: number;
}

export class DynamoEventIndex implements EventIndex, SegmentIndexer {
  private readonly onMismatch: PostingMismatch;
  private readonly now: () => number;
  private readonly maxSegments: number;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    private readonly objects: ObjectStore,
    options: DynamoEventIndexOptions = {},
  ) {
    this.onMismatch = options.onMismatch ?? (() => undefined);
    this.now = options.clock ?? Date.now;
    this.maxSegments = options.maxSegmentsPerPage ?? MAX_SEGMENTS_PER_PAGE;
  }

  /**
   * Puts the segment's postings, idempotent: a conditional PutItem each (`attribute_not_exists(pk)`: the first
   * writer's posting stands, as the same segment always gives the same postings). Not BatchWriteItem, whose
   * delete requests IAM cannot tell from puts: the writers' roles may create postings and never remove one.
   * Durable on resolve.
   */
  async indexSegment(stream: string, first: number, records: readonly SealedRecord[]): Promise<void> {
    const items = postingsOf(stream, first, records);
    for (let i = 0; i < items.length; i += PUT_PARALLEL)
      await Promise.all(items.slice(i, i + PUT_PARALLEL).map((item) => this.put(item)));
  }

  private async put(item: Posting): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: item,
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
    } catch (e) {
      if ((e as Error).name === "ConditionalCheckFailedException") return; // already indexed
      throw storeFailure("PutItem posting", e);
    }
  }

  /**
   * Writes the postings of a stream's stored segments from the segment starting at `from` (0, or a `next` this
   * returned) onward, until the first missing segment or `deadline` (epoch ms): the one-off indexing of segments
   * committed before the deployment had the index. Idempotent; the only path that reads a whole stream.
   */
  async reindex(
    stream: string,
    from: number,
    deadline: number,
  ): Promise<{ segments: number; next?: number }> {
    let segments = 0;
    for (let at = from; ; ) {
      if (Date.now() >= deadline) return { segments, next: at };
      const bytes = await this.objects.get(segmentKey(stream, at));
      if (!bytes) return { segments };
      const records = readStoredSegment(stream, at, bytes);
      if (records.length === 0 || records[0]!.record.index !== at) return { segments };
      await this.indexSegment(stream, at, records);
      segments++;
      at = records[records.length - 1]!.record.index + 1;
    }
  }

  async find(query: EventQuery): Promise<EventPage> {
    const driver = this.driver(query);
    const digest = queryDigest(query);
    let at = query.cursor
      ? decodeCursor(query.cursor, digest, driver.lists.length)
      : { list: 0, sk: undefined as string | undefined, index: -1 };
    const events: FoundEvent[] = [];
    let segmentsRead = 0;
    let queries = 0;
    for (let list = at.list; list < driver.lists.length; list++) {
      const pk = driver.lists[list]!;
      let start: Record<string, unknown> | undefined;
      do {
        if (queries === MAX_QUERIES_PER_PAGE) {
          // This page has done its share of reads. Continue after the last posting DynamoDB evaluated (all of
          // its offsets are done), or where this list was entered.
          const m = start ? SORT_KEY.exec(String(start.sk)) : null;
          if (m) return { events, cursor: encodeCursor(digest, list, m[0], Number(m[2]) + DONE) };
          const here = list === at.list ? at : { sk: undefined, index: -1 };
          return { events, cursor: encodeCursor(digest, list, here.sk, here.index) };
        }
        queries++;
        const page = await this.query(pk, list === at.list ? at.sk : undefined, start);
        start = page.LastEvaluatedKey;
        const batch: { stream: string; first: number; offsets: number[]; sk: string }[] = [];
        for (const item of page.Items ?? []) {
          const posting = this.checkPosting(pk, item, query);
          if (!posting) continue;
          const skip = list === at.list && posting.sk === at.sk ? at.index : -1;
          const offsets = posting.offsets.filter((o) => posting.first + o > skip);
          if (offsets.length > 0) batch.push({ ...posting, offsets });
        }
        const parallel = Math.min(SEGMENT_PARALLEL, this.maxSegments);
        for (let i = 0; i < batch.length; ) {
          // Read in parallel only as many segments as the page may still need: their postings name at least the
          // events still wanted (a record that fails another filter makes the next round read more).
          const group: (typeof batch)[number][] = [];
          for (
            let named = 0;
            i < batch.length && group.length < parallel && named < query.limit - events.length;
            i++
          ) {
            group.push(batch[i]!);
            named += batch[i]!.offsets.length;
          }
          if (segmentsRead + group.length > this.maxSegments) {
            // This page has done its share of reads: continue before the first segment not read.
            const next = group[0]!;
            return { events, cursor: encodeCursor(digest, list, next.sk, next.first - 1) };
          }
          segmentsRead += group.length;
          const read = await Promise.all(group.map((p) => this.readSegment(p.stream, p.first)));
          for (const [g, p] of group.entries()) {
            const byIndex = read[g]!;
            for (const offset of p.offsets) {
              const index = p.first + offset;
              const found = byIndex?.get(index);
              if (!found) {
                this.onMismatch({
                  pk,
                  stream: p.stream,
                  index,
                  reason: "the posting names no stored record",
                });
                continue;
              }
              if (!holdsDriver(found, driver.facet, query)) {
                this.onMismatch({ pk, stream: p.stream, index, reason: "the stored record does not match" });
                continue;
              }
              if (!matches(found, query)) continue;
              events.push(found);
              if (events.length === query.limit) {
                return { events, cursor: encodeCursor(digest, list, p.sk, index) };
              }
            }
          }
        }
      } while (start);
      at = { list: list + 1, sk: undefined, index: -1 };
    }
    return { events };
  }

  private async query(pk: string, from: string | undefined, start: Record<string, unknown> | undefined) {
    try {
      return await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: from === undefined ? "pk = :p" : "pk = :p AND sk >= :s",
          ExpressionAttributeValues: { ":p": pk, ...(from === undefined ? {} : { ":s": from }) },
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
    } catch (e) {
      throw storeFailure("Query postings", e);
    }
  }

  /** A stored posting, checked: its keys, offsets and time ranges; undefined if malformed or out of the window. */
  private checkPosting(pk: string, item: Record<string, unknown>, query: EventQuery) {
    const sk = typeof item.sk === "string" ? SORT_KEY.exec(item.sk) : null;
    const offsets = decodeOffsets(item.ix);
    const first = sk ? Number(sk[2]) : Number.NaN;
    if (item.pk !== pk || !sk || !offsets || offsets.length === 0 || !Number.isSafeInteger(first)) {
      const stream = sk?.[1] ?? String(item.sk).slice(0, 160);
      this.onMismatch({ pk, stream, index: -1, reason: "the posting is malformed" });
      return undefined;
    }
    const overlaps = (lo: unknown, hi: unknown, since?: string, until?: string) =>
      typeof lo !== "number" ||
      typeof hi !== "number" ||
      ((since === undefined || hi >= Date.parse(since)) && (until === undefined || lo < Date.parse(until)));
    if (!overlaps(item.t0, item.t1, query.since, query.until)) return undefined;
    if (!overlaps(item.r0, item.r1, query.receivedSince, query.receivedUntil)) return undefined;
    if (query.id !== undefined && pk.startsWith("source#")) {
      // Source postings carry a digest of each record's id: read only segments that may hold the id.
      const ih = typeof item.ih === "string" && item.ih.length === offsets.length * 6 ? item.ih : undefined;
      if (ih !== undefined) {
        const want = idDigest(query.id);
        const kept = offsets.filter((_, k) => ih.slice(k * 6, k * 6 + 6) === want);
        return { stream: sk[1]!, first, offsets: kept, sk: item.sk as string };
      }
    }
    return { stream: sk[1]!, first, offsets, sk: item.sk as string };
  }

  private async readSegment(stream: string, first: number): Promise<Map<number, FoundEvent> | undefined> {
    const bytes = await this.objects.get(segmentKey(stream, first));
    if (!bytes) return undefined;
    const byIndex = new Map<number, FoundEvent>();
    for (const r of readStoredSegment(stream, first, bytes)) {
      if (r.record.stream !== stream) continue;
      byIndex.set(r.record.index, foundEvent(stream, r.record, r.hash));
    }
    return byIndex;
  }

  /** The posting lists that answer `query`, most selective first; a query with no facet needs a window. */
  private driver(query: EventQuery): Driver {
    const facets: [PostingFacet, string | undefined][] = [
      ["trace", query.traceId],
      ["run", query.run],
      ["agent", query.agent],
      ["source", query.source],
      ["producer", query.producer],
      ["type", query.type],
    ];
    for (const [facet, value] of facets)
      if (value !== undefined) return { facet, lists: [postingKey(facet, value)] };
    if (query.since !== undefined)
      return { facet: "time", lists: hours("time", query.since, query.until, this.now()) };
    if (query.receivedSince !== undefined)
      return {
        facet: "received",
        lists: hours("received", query.receivedSince, query.receivedUntil, this.now()),
      };
    throw new FormatError(
      "bad-record",
      "query: on AWS, events are found through an index: give agent, run, type, traceId, source or producer, or a window starting at since or receivedSince",
    );
  }
}

/** The hour buckets of a window; an open end reaches past now by a day (producer clocks) or an hour (received). */
function hours(facet: "time" | "received", since: string, until: string | undefined, now: number): string[] {
  const from = Date.parse(since);
  const to =
    until !== undefined ? Date.parse(until) : now + (facet === "time" ? OPEN_UNTIL_SLACK_MS : HOUR_MS);
  const first = Math.floor(from / HOUR_MS);
  const last = Math.ceil(to / HOUR_MS);
  const field = facet === "time" ? "since" : "receivedSince";
  if (!Number.isFinite(first) || !Number.isFinite(last))
    throw new FormatError("bad-record", `${field}: not a time`);
  if (last - first > MAX_WINDOW_HOURS) {
    throw new FormatError(
      "bad-record",
      `${field}: a window without agent, run, type, traceId, source or producer may span at most ${MAX_WINDOW_HOURS / 24} days`,
    );
  }
  const out: string[] = [];
  for (let h = first; h < last; h++) out.push(postingKey(facet, hourBucket(h * HOUR_MS)));
  return out;
}

/** Whether the stored record carries the value of the facet whose posting named it. */
function holdsDriver(found: FoundEvent, facet: PostingFacet, query: EventQuery): boolean {
  const f = eventFacets(found.event);
  switch (facet) {
    case "trace":
      return f.traceId === query.traceId;
    case "run":
      return f.run === query.run;
    case "agent":
      return f.agent === query.agent;
    case "source":
      return found.event.source === query.source;
    case "producer":
      return found.producer === query.producer;
    case "type":
      return f.type === query.type;
    case "time":
      return Number.isFinite(f.time);
    case "received":
      return Number.isFinite(Date.parse(found.received));
  }
}

/** Every filter of the query, on the stored record (the embedded index's definitions: core eventFacets, inTimeWindow). */
function matches(found: FoundEvent, q: EventQuery): boolean {
  const f = eventFacets(found.event);
  return (
    (q.agent === undefined || f.agent === q.agent) &&
    (q.run === undefined || f.run === q.run) &&
    (q.type === undefined || f.type === q.type) &&
    (q.traceId === undefined || f.traceId === q.traceId) &&
    (q.source === undefined || found.event.source === q.source) &&
    (q.id === undefined || found.event.id === q.id) &&
    (q.producer === undefined || found.producer === q.producer) &&
    inTimeWindow(f.time, { since: q.since, until: q.until }) &&
    inTimeWindow(found.received, { since: q.receivedSince, until: q.receivedUntil })
  );
}

/** A digest of the query's filters: a cursor continues only the query that returned it. */
function queryDigest(query: EventQuery): string {
  const filters = FILTERS.map((k) => query[k] ?? null);
  return toHex(sha256(JSON.stringify(filters))).slice(0, 16);
}

function encodeCursor(digest: string, list: number, sk: string | undefined, index: number): string {
  return Buffer.from(JSON.stringify([1, digest, list, sk ?? null, index]), "utf8").toString("base64url");
}

/** A cursor this index returned for this query, checked part by part. */
function decodeCursor(
  cursor: string,
  digest: string,
  lists: number,
): { list: number; sk: string | undefined; index: number } {
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    parts = undefined;
  }
  const bad = (why: string) => new FormatError("bad-record", `cursor: ${why}`);
  if (!Array.isArray(parts) || parts.length !== 5 || parts[0] !== 1)
    throw bad("not a cursor this sink returned");
  const [, d, list, sk, index] = parts as [number, unknown, unknown, unknown, unknown];
  if (d !== digest)
    throw bad("it continues another query (the filters must be the same as on the first page)");
  if (!Number.isSafeInteger(list) || (list as number) < 0 || (list as number) >= lists)
    throw bad("not a cursor this sink returned");
  if (sk === null) {
    if (index !== -1) throw bad("not a cursor this sink returned");
    return { list: list as number, sk: undefined, index: -1 };
  }
  const m = typeof sk === "string" ? SORT_KEY.exec(sk) : null;
  if (!m || !Number.isSafeInteger(index) || (index as number) < Number(m[2]) - 1)
    throw bad("not a cursor this sink returned");
  return { list: list as number, sk: sk as string, index: index as number };
}

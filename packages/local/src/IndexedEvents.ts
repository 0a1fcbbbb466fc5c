/**
 * `GET /v1/events` over the embedded index (LocalIndex): the index finds a page, the stored segments answer it.
 *
 * Order and cursors (docs/EMBEDDED.md §Finding events). A query with any facet (agent, run, type, traceId, source,
 * id, producer) or a producer-time window returns events by producer `time`, then commit order; one with only a
 * received-time window, by `received`, then commit order; one with neither, in commit order. Each facet is
 * indexed together with `time`, so any one facet, a window, or a facet and a window read one index range, and a
 * page costs the same at any size of the log (several facets together read the range of one of them). A
 * cursor names the last event's sort key; the next page starts strictly after it (keyset pagination), so pages
 * never repeat an event, and every event that existed when paging began is on some page, however much is
 * ingested meanwhile (new events land wherever their sort key puts them).
 *
 * Every result is read back from its segment in the store (one record line, at the offset the index noted) and
 * checked against the query (recordMatches): the index only says where to look.
 */
import {
  type EventIndex,
  type EventPage,
  type EventQuery,
  FormatError,
  type FoundEvent,
  foundEvent,
  parseRecordLine,
  readStoredSegment,
  recordMatches,
  StoreError,
  segmentKey,
  sha256,
  timeWindowBounds,
} from "@auditsink/core";
import type Database from "libsql";
import type { DirectoryObjects } from "./LocalObjectStore.ts";

/** How a page is ordered: by producer time, by received time, or by commit order (seq). */
type Order = "time" | "received" | "seq";

interface Row {
  seq: number;
  key: number;
  stream: string;
  idx: number;
  segment: number;
  offset: number;
  length: number;
}

/** The facets with their column and index, most selective first: a query reads the index of its first facet. */
const FACETS = [
  ["traceId", "trace_id", "events_trace"],
  ["run", "run", "events_run"],
  ["agent", "agent", "events_agent"],
  ["source", "source", "events_source"],
  ["type", "type", "events_type"],
  ["producer", "producer", "events_producer"],
] as const;

export class IndexedEvents implements EventIndex {
  constructor(
    private readonly db: () => Database.Database,
    private readonly objects: DirectoryObjects,
  ) {}

  async find(query: EventQuery): Promise<EventPage> {
    const where: string[] = [];
    const params: (string | number | bigint)[] = [];
    for (const [name, column] of FACETS) {
      const value = query[name];
      if (value !== undefined) {
        where.push(`${column} = ?`);
        params.push(value);
      }
    }
    if (query.id !== undefined) {
      where.push("id = ?");
      params.push(query.id);
    }
    const time = timeWindowBounds({ since: query.since, until: query.until });
    const received = timeWindowBounds({ since: query.receivedSince, until: query.receivedUntil });
    for (const [column, bounds] of [
      ["time", time],
      ["received", received],
    ] as const) {
      if (bounds.from !== undefined) {
        where.push(`${column} >= ?`);
        params.push(bounds.from);
      }
      if (bounds.to !== undefined) {
        where.push(`${column} < ?`);
        params.push(bounds.to);
      }
    }
    const order: Order =
      FACETS.some(([name]) => query[name] !== undefined) ||
      query.id !== undefined ||
      time.from !== undefined ||
      time.to !== undefined
        ? "time"
        : received.from !== undefined || received.to !== undefined
          ? "received"
          : "seq";
    const keyColumn = order === "seq" ? "seq" : order;
    // The index to read, named (INDEXED BY): without statistics SQLite may choose a less selective one, or scan.
    const index =
      query.id !== undefined
        ? "events_id"
        : (FACETS.find(([name]) => query[name] !== undefined)?.[2] ??
          (order === "time" ? "events_time" : order === "received" ? "events_received" : undefined));
    if (query.cursor !== undefined) {
      const after = decodeCursor(query.cursor, order);
      where.push(order === "seq" ? "seq > ?" : `(${keyColumn}, seq) > (?, ?)`);
      params.push(...(order === "seq" ? [after.seq] : [after.key, after.seq]));
    }
    const sql =
      `SELECT seq, ${keyColumn} AS key, stream, idx, segment, offset, length FROM events` +
      (index ? ` INDEXED BY ${index}` : "") +
      (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
      ` ORDER BY ${order === "seq" ? "seq" : `${keyColumn}, seq`} LIMIT ?`;
    let rows: Row[];
    try {
      rows = this.statement(sql).all(...params, query.limit + 1) as Row[];
    } catch (e) {
      throw new StoreError("store-failed", `querying the index: ${(e as Error).message}`, { cause: e });
    }
    const more = rows.length > query.limit;
    if (more) rows.pop();
    const lines = this.lines(rows);
    const events: FoundEvent[] = [];
    for (const row of rows) {
      const found = fromLine(row, lines.get(row)) ?? (await this.fromSegment(row));
      if (found && recordMatches(query, found)) events.push(found);
    }
    const last = rows[rows.length - 1];
    return more && last ? { events, cursor: encodeCursor(order, last) } : { events };
  }

  /** Prepared statements by SQL, per database (a reset index is a new one, with statements of its own). */
  private statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();

  private statement(sql: string): Database.Statement {
    const db = this.db();
    let byDb = this.statements.get(db);
    // A query's SQL depends only on which filters it names and whether it has a cursor; bounded all the same.
    if (!byDb || byDb.size >= 512) {
      byDb = new Map();
      this.statements.set(db, byDb);
    }
    let statement = byDb.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      byDb.set(sql, statement);
    }
    return statement;
  }

  /**
   * The bytes at each row's offset, one longer than its record line: one read per segment, however many of the
   * page's rows it holds (a row whose segment is missing has none).
   */
  private lines(rows: readonly Row[]): Map<Row, Buffer> {
    const bySegment = new Map<string, Row[]>();
    for (const row of rows) {
      const key = segmentKey(row.stream, row.segment);
      const group = bySegment.get(key);
      if (group) group.push(row);
      else bySegment.set(key, [row]);
    }
    const lines = new Map<Row, Buffer>();
    for (const [key, group] of bySegment) {
      const read = this.objects.getRanges(
        key,
        group.map((r) => ({ offset: r.offset, length: r.length + 1 })),
      );
      for (const [i, row] of group.entries()) {
        const line = read?.[i];
        if (line) lines.set(row, line);
      }
    }
    return lines;
  }

  /**
   * The record a row names from its whole segment, as the store holds it (undefined when the store has no such
   * record): when the line at the row's offset is not that record, the index is out of step with the store, and
   * the segment decides.
   */
  private async fromSegment(row: Row): Promise<FoundEvent | undefined> {
    const segment = await this.objects.get(segmentKey(row.stream, row.segment));
    if (!segment) return undefined;
    const r = readStoredSegment(row.stream, row.segment, segment).find((s) => s.record.index === row.idx);
    return r && r.record.stream === row.stream ? foundEvent(row.stream, r.record, r.hash) : undefined;
  }
}

/**
 * The record a row names, from `line` (the bytes at the row's offset, one longer than the record line), when it
 * is a record line ending where the index says, of the row's stream and index; otherwise undefined.
 */
function fromLine(row: Row, line: Buffer | undefined): FoundEvent | undefined {
  if (!line || line.length !== row.length + 1 || line[row.length] !== 0x0a) return undefined;
  const bytes = line.subarray(0, row.length);
  try {
    const record = parseRecordLine(bytes);
    if (record.stream === row.stream && record.index === row.idx) {
      return foundEvent(row.stream, record, sha256(bytes));
    }
  } catch {
    // not a record line: the whole segment decides, and reports what is wrong with it
  }
  return undefined;
}

/** A cursor: the page's order and the last event's sort key and commit sequence. Opaque to clients. */
function encodeCursor(order: Order, row: Row): string {
  return Buffer.from(JSON.stringify([order, row.key, row.seq]), "utf8").toString("base64url");
}

function decodeCursor(cursor: string, order: Order): { key: number; seq: number } {
  try {
    const [o, key, seq] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
    if (o === order && Number.isSafeInteger(key) && Number.isSafeInteger(seq)) {
      return { key: key as number, seq: seq as number };
    }
  } catch {
    // fall through to the coded error
  }
  throw new FormatError("bad-record", "cursor: not a cursor this sink returned for this query");
}

/**
 * The embedded index, `<data>/index.db`: a SQLite database (through `libsql`) holding, per stored record, its
 * dedup entry and its query facets; per stream, how far the index has read it; per producer, when it was last
 * heard from. It is a cache of the write-once store and never its source of truth: everything in it is derived
 * from the stored segments, so it can be repaired (repairIndex) or rebuilt from them at any time.
 *
 * Written in the commit step (core sink.ts, step 4): `putMany` is the DedupStore port, called with the committed
 * segment before the head advances; one transaction per call holds the segment's rows, the stream's indexed size
 * and its producers' last-seen times. A failed transaction fails the commit and changes nothing; nothing about an
 * event stays in memory, so the sink's memory does not grow with the log.
 *
 * Durability: WAL with synchronous=NORMAL. A transaction survives a crash of the process once committed; a power
 * loss may take the last few back, which repairIndex puts back from the store at the next open (the store is
 * fsynced before putMany is called). Bounded page cache, no mmap (docs/EMBEDDED.md §Finding events).
 *
 * Dedup look-ups go through one index over the event `id` (the full key — producer, source, id — is confirmed on
 * the row); it also serves queries by `id` and `source`+`id`. Keyed by the id itself, not a hash of it, so that
 * time-ordered ids (UUIDv7, the SDK's default; ULIDs; counters) land next to each other and a commit's look-ups and
 * inserts touch a few of its pages however large it grows; random ids put each on a page of its own
 * (docs/EMBEDDED.md §Finding events).
 */
import { existsSync } from "node:fs";
import { rename } from "node:fs/promises";
import {
  type CommittedSegment,
  type DedupEntry,
  type DedupStore,
  eventFacets,
  StoreError,
  toHex,
} from "@auditsink/core";
import Database from "libsql";
import { crashPoint } from "./crashpoint.ts";

/** Bumped when the schema changes: an older index is migrated (MIGRATIONS), one of a version without one rebuilt. */
const SCHEMA_VERSION = "2";

/** Columns of an events row, and rows per multi-row INSERT (one row per call cost 35–39 µs of CPU a row here, 50 per call 25–29). */
const COLUMNS = 16;
const INSERT_ROWS = 50;

/** Page cache per connection, in KiB (SQLite's negative cache_size): the index's memory bound. */
const CACHE_KIB = 16_384;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, size INTEGER NOT NULL, head_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS producers (producer TEXT PRIMARY KEY, last_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY,
  stream TEXT NOT NULL,
  idx INTEGER NOT NULL,
  segment INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  record_hash BLOB NOT NULL,
  event_hash BLOB NOT NULL,
  producer TEXT NOT NULL,
  source TEXT NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  agent TEXT,
  run TEXT,
  trace_id TEXT,
  time INTEGER NOT NULL,
  received INTEGER NOT NULL,
  UNIQUE (stream, idx)
);
CREATE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_agent ON events (agent, time) WHERE agent IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_run ON events (run, time) WHERE run IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id, time) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_type ON events (type, time);
CREATE INDEX IF NOT EXISTS events_source ON events (source, time);
CREATE INDEX IF NOT EXISTS events_producer ON events (producer, time);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_received ON events (received);
`;

/** Opens a connection with the index's settings (the writer's, or a reader's with `readOnly`). */
export function openIndexDatabase(path: string, options: { readOnly?: boolean } = {}): Database.Database {
  const db = new Database(path, { timeout: 5_000 } as Database.Options);
  try {
    if (options.readOnly) {
      db.pragma("query_only = ON");
    } else {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      // The WAL is checkpointed every ~4 MB (SQLite's default); this caps what stays on disk after a checkpoint.
      db.pragma("journal_size_limit = 67108864");
    }
    db.pragma(`cache_size = -${CACHE_KIB}`);
    db.pragma("mmap_size = 0");
    db.pragma("temp_store = FILE");
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** How far the index has read a stream: its indexed size and the hash of its last indexed record. */
export interface IndexedStream {
  size: number;
  headHash: string;
}

export class LocalIndex implements DedupStore {
  private db: Database.Database;
  private statements!: ReturnType<LocalIndex["prepare"]>;
  private write!: (entries: readonly DedupEntry[], segment: CommittedSegment) => void;
  private repair: (() => Promise<unknown>) | undefined;
  private repairing: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    db: Database.Database,
    /** Told of each write's outcome (the sink's storage health). */
    private readonly health: { failed(e: unknown): void; succeeded(): void },
  ) {
    this.db = db;
    this.bind();
  }

  /**
   * Opens (or creates) the index at `path`; an index of an older schema version is migrated in place (`migrating`
   * is told first: it can take a minute at ten million events). A file SQLite cannot open, or of a version with no
   * migration, is moved aside as `<path>.damaged-<time>` and a new, empty index is created; `moved` names where it
   * went.
   */
  static async open(
    path: string,
    health: { failed(e: unknown): void; succeeded(): void } = { failed() {}, succeeded() {} },
    migrating?: (from: string, to: string) => void,
  ): Promise<{ index: LocalIndex; created: boolean; moved?: { to: string; reason: string } }> {
    const existed = existsSync(path);
    try {
      return {
        index: new LocalIndex(path, createSchema(openIndexDatabase(path), migrating), health),
        created: !existed,
      };
    } catch (e) {
      const reason = (e as Error).message;
      if (!isDamage(e)) {
        health.failed(e);
        throw new StoreError("store-failed", `opening the index ${path}: ${reason}`, { cause: e });
      }
      const to = await moveAside(path);
      return {
        index: new LocalIndex(path, createSchema(openIndexDatabase(path)), health),
        created: true,
        moved: { to, reason },
      };
    }
  }

  /** Moves the index aside as `<path>.damaged-<time>` and starts an empty one in its place. Returns where it went. */
  async reset(): Promise<string> {
    this.db.close();
    const to = await moveAside(this.path);
    this.db = createSchema(openIndexDatabase(this.path));
    this.bind();
    return to;
  }

  /** The connection, for queries in this process (IndexedEvents). */
  get database(): Database.Database {
    return this.db;
  }

  private prepare() {
    const db = this.db;
    const insert = (rows: number) =>
      db.prepare(
        `INSERT OR IGNORE INTO events (stream, idx, segment, offset, length, record_hash, event_hash,
           producer, source, id, type, agent, run, trace_id, time, received)
         VALUES ${Array(rows).fill("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
      );
    return {
      insert: insert(1),
      insertMany: insert(INSERT_ROWS),
      stream: db.prepare("SELECT size, head_hash FROM streams WHERE stream = ?"),
      setStream: db.prepare(
        "INSERT INTO streams (stream, size, head_hash) VALUES (?, ?, ?) " +
          "ON CONFLICT (stream) DO UPDATE SET size = excluded.size, head_hash = excluded.head_hash",
      ),
      seen: db.prepare(
        "INSERT INTO producers (producer, last_seen) VALUES (?, ?) " +
          "ON CONFLICT (producer) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
      ),
      lookup: db.prepare(
        // INDEXED BY: without statistics SQLite may pick the source or producer index, which holds every event of
        // that source — a scan per look-up.
        `SELECT stream, idx, record_hash, event_hash FROM events INDEXED BY events_id
         WHERE id = ? AND source = ? AND producer = ? ORDER BY seq LIMIT 1`,
      ),
      streams: db.prepare("SELECT stream, size, head_hash FROM streams ORDER BY stream"),
      location: db.prepare("SELECT segment, offset, length FROM events WHERE stream = ? AND idx = ?"),
      lastSeen: db.prepare("SELECT producer, last_seen FROM producers"),
    };
  }

  private bind(): void {
    const s = this.prepare();
    this.statements = s;
    this.write = (entries: readonly DedupEntry[], segment: CommittedSegment) =>
      inTransaction(this.db, () => {
        const { stream, first, records } = segment;
        const seen = new Map<string, string>();
        let offset = 0;
        // Rows go in INSERT_ROWS at a time (one statement call each), the rest one by one.
        let pending: unknown[] = [];
        for (const [i, r] of records.entries()) {
          const entry = entries[i]!;
          const { record } = r;
          const f = eventFacets(record.event);
          const received = Date.parse(record.received);
          pending.push(
            stream,
            record.index,
            first,
            offset,
            r.bytes.length,
            r.hash,
            Buffer.from(entry.eventHash, "hex"),
            record.producer,
            record.event.source,
            record.event.id,
            f.type,
            f.agent ?? null,
            f.run ?? null,
            f.traceId ?? null,
            // A validated event's time always parses; should one not, it sorts at its receipt.
            Number.isNaN(f.time) ? received : f.time,
            received,
          );
          if (pending.length === INSERT_ROWS * COLUMNS) {
            s.insertMany.run(...pending);
            pending = [];
          }
          offset += r.bytes.length + 1; // encodeSegment: each record's bytes, then "\n"
          const last = seen.get(record.producer);
          if (!last || last < record.received) seen.set(record.producer, record.received);
        }
        for (let at = 0; at < pending.length; at += COLUMNS) s.insert.run(...pending.slice(at, at + COLUMNS));
        // Only a segment that continues what is indexed moves the stream's size; one past a gap (a failed write
        // earlier) is stored but leaves the size behind, so the next open re-reads the gap (repairIndex).
        const at = this.stream(stream);
        if ((at?.size ?? 0) === first && records.length > 0) {
          s.setStream.run(stream, first + records.length, toHex(records[records.length - 1]!.hash));
        }
        for (const [producer, time] of seen) s.seen.run(producer, time);
      });
  }

  /**
   * Makes every dedup look-up first run `repair` (until it succeeds): used when the open could not bring the
   * index level with the store (a full disk), so no event is checked against an index that lacks the tail.
   */
  deferRepair(repair: () => Promise<unknown>): void {
    this.repair = repair;
  }

  private async repaired(): Promise<void> {
    if (!this.repair) return;
    this.repairing ??= this.repair()
      .then(() => {
        this.repair = undefined;
      })
      .finally(() => {
        this.repairing = undefined;
      });
    await this.repairing;
  }

  /** How far the index has read `stream`, or undefined for a stream it has not seen. */
  stream(stream: string): IndexedStream | undefined {
    const row = this.statements.stream.get(stream) as { size: number; head_hash: string } | undefined;
    return row ? { size: row.size, headHash: row.head_hash } : undefined;
  }

  /** Where the index says record `index` of `stream` is stored: its segment, and its line's offset and length. */
  location(stream: string, index: number): { segment: number; offset: number; length: number } | undefined {
    return this.statements.location.get(stream, index) as
      | { segment: number; offset: number; length: number }
      | undefined;
  }

  /** Every stream the index has read, ascending. */
  streams(): Map<string, IndexedStream> {
    const rows = this.statements.streams.all() as { stream: string; size: number; head_hash: string }[];
    return new Map(rows.map((r) => [r.stream, { size: r.size, headHash: r.head_hash }]));
  }

  /** Newest `received` time per producer. */
  lastSeen(): Map<string, string> {
    const rows = this.statements.lastSeen.all() as { producer: string; last_seen: string }[];
    return new Map(rows.map((r) => [r.producer, r.last_seen]));
  }

  async getMany(keys: readonly string[]): Promise<Map<string, DedupEntry>> {
    await this.repaired();
    const out = new Map<string, DedupEntry>();
    try {
      for (const key of new Set(keys)) {
        // dedupKey(producer, event) = producer NUL source NUL id; none of the three holds a control character.
        const parts = key.split("\u0000");
        if (parts.length !== 3) continue;
        const [producer, source, id] = parts as [string, string, string];
        const row = this.statements.lookup.get(id, source, producer) as
          | { stream: string; idx: number; record_hash: Buffer; event_hash: Buffer }
          | undefined;
        if (row) {
          out.set(key, {
            key,
            stream: row.stream,
            index: row.idx,
            recordHash: toHex(row.record_hash),
            eventHash: toHex(row.event_hash),
          });
        }
      }
    } catch (e) {
      throw new StoreError("store-failed", `reading the index ${this.path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    return out;
  }

  async putMany(entries: readonly DedupEntry[], segment: CommittedSegment): Promise<void> {
    if (segment.records.length !== entries.length) {
      throw new StoreError("store-failed", "putMany: the entries are not those of the segment");
    }
    try {
      this.write(entries, segment);
    } catch (e) {
      this.health.failed(e);
      throw new StoreError("store-failed", `writing the index ${this.path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    this.health.succeeded();
    crashPoint("index:written");
  }

  /**
   * Folds the WAL into index.db where it can (so a stopped directory's index is one file; on a full disk the WAL
   * stays, and the next open reads it) and closes the connection.
   */
  async close(): Promise<void> {
    if (!this.db.open) return;
    try {
      this.db.pragma("wal_checkpoint(TRUNCATE)");
    } catch {
      // the WAL is kept as it is: nothing in it is lost
    }
    this.db.close();
  }
}

/**
 * Runs `fn` in one transaction. (libsql's own wrapper issues ROLLBACK after SQLite has already rolled back a failed
 * write, e.g. SQLITE_FULL, and then throws that error instead of the real one.)
 */
function inTransaction(db: Database.Database, fn: () => void): void {
  db.exec("BEGIN");
  try {
    fn();
    db.exec("COMMIT");
  } catch (e) {
    if (db.inTransaction) db.exec("ROLLBACK");
    throw e;
  }
}

/** An index file of another schema version: rebuilt like a damaged one. */
class DamagedIndex extends Error {}

/** Errors that say the file is not a sound index (rather than that the disk is full or failing). */
function isDamage(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? "";
  return (
    e instanceof DamagedIndex ||
    /^SQLITE_(NOTADB|CORRUPT)/.test(code) ||
    /not a database|malformed/.test(String((e as Error).message))
  );
}

/**
 * Changes an open makes in place, by the version they start from, each in one transaction (a failure leaves the
 * older version as it was). 1 → 2: the dedup index is keyed by the id itself instead of a hash of it (at eleven
 * million events, 79 s and 94 MB of memory on this project's 2-core machine; the WAL grows to about half of
 * index.db meanwhile and is folded back at the end).
 */
const MIGRATIONS = new Map<string, { to: string; sql: string }>([
  [
    "1",
    {
      to: "2",
      sql: "DROP INDEX events_id; ALTER TABLE events DROP COLUMN id_hash; CREATE INDEX events_id ON events (id);",
    },
  ],
]);

/** The schema version an index database says it is of, or undefined for one without the meta table. */
function schemaVersion(db: Database.Database): string | undefined {
  try {
    const row = db.prepare("SELECT value FROM meta WHERE name = 'schema'").get() as
      | { value: string }
      | undefined;
    return row?.value;
  } catch (e) {
    if (/no such table: meta/.test((e as Error).message)) return undefined;
    throw e;
  }
}

/** True when `db` is an index of the version this code reads (a reader that writes nothing checks before it reads). */
export function isCurrentIndex(db: Database.Database): boolean {
  return schemaVersion(db) === SCHEMA_VERSION;
}

/**
 * Brings `db` to the current schema: creates it in an empty file, migrates an older version in place (told to
 * `migrating` first), and refuses (DamagedIndex: rebuilt from the store) a version it has no migration from.
 */
function createSchema(
  db: Database.Database,
  migrating: (from: string, to: string) => void = () => {},
): Database.Database {
  try {
    let version = schemaVersion(db);
    while (version !== undefined && version !== SCHEMA_VERSION) {
      const migration = MIGRATIONS.get(version);
      if (!migration) throw new DamagedIndex(`schema version ${version}, not ${SCHEMA_VERSION}`);
      const next = migration.to;
      migrating(version, next);
      inTransaction(db, () => {
        db.exec(migration.sql);
        db.prepare("UPDATE meta SET value = ? WHERE name = 'schema'").run(next);
      });
      db.pragma("wal_checkpoint(TRUNCATE)");
      version = next;
    }
    db.exec(SCHEMA);
    db.prepare("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Renames the index and its WAL files to `<path>.damaged-<time>` (…-wal, …-shm); returns the new name. */
async function moveAside(path: string): Promise<string> {
  const to = `${path}.damaged-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      await rename(`${path}${suffix}`, `${to}${suffix}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new StoreError(
          "store-failed",
          `moving the damaged index ${path} aside: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
    }
  }
  return to;
}

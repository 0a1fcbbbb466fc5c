/**
 * The gateway's durable outbox: every signed event is appended here, and fsynced, before the call it records is
 * answered; a delivery cursor says how many the sink has receipted. A restart reads back whatever is past the
 * cursor and delivers it, in order, with the same signed bytes (so a resend only gets the original receipt).
 *
 * Layout of the spool directory (one gateway process at a time: `lock`, an flock(2) held while open):
 *   segments/<first seq, 20 digits>.jsonl  one `{"seq":n,"stream":s,"event":{…}}` line per event, append-only;
 *                                          a new segment starts past `segmentBytes`, a delivered one is removed
 *   delivered.json                         `{"next": n}`: events with seq < n have verified receipts
 *   receipts.jsonl                         the verified receipts, in delivery order (for `auditsink verify --receipts`)
 *   rejected.jsonl                         events the sink refused for good (4xx), kept with the refusal
 *   witness.json                           the newest checkpoint seen per stream (AuditClient's stateFile)
 *
 * A crash mid-append can leave a torn last line: it was never acknowledged (its fsync had not returned), so it is
 * cut off when the segment is opened again.
 */
import { open, readdir, readFile, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import type { Receipt, SignedEvent } from "@auditsink/core";
import {
  type DataDirectoryLock,
  isErrno,
  lockDataDirectory,
  mkdirDurable,
  replaceFile,
  type WritableFile,
  writeFully,
} from "@auditsink/local";
import { GatewayError } from "./errors.ts";

export interface Spooled {
  seq: number;
  stream: string;
  event: SignedEvent;
}

type Handle = Awaited<ReturnType<typeof open>>;

const SEGMENT_NAME = /^(\d{20})\.jsonl$/;
const segmentName = (seq: number) => `${String(seq).padStart(20, "0")}.jsonl`;

interface Waiting {
  first: number;
  lines: string[];
  done: { resolve: () => void; reject: (e: unknown) => void }[];
}

export class Spool {
  /** Events appended and not yet receipted, oldest first. */
  private readonly backlog: Spooled[] = [];
  private nextSeq: number;
  private segment: { first: number; path: string; fh: Handle; bytes: number } | undefined;
  /** Appends waiting for the write in progress: they are written and fsynced together (group commit). */
  private waiting: Waiting | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly lock: DataDirectoryLock,
    private next: number,
    private segments: number[],
    private readonly segmentBytes: number,
  ) {
    this.nextSeq = next;
  }

  /** Opens (creating) a spool directory and reads back every event not yet delivered. */
  static async open(dir: string, options: { segmentBytes?: number } = {}): Promise<Spool> {
    await mkdirDurable(join(dir, "segments"));
    let lock: DataDirectoryLock;
    try {
      lock = await lockDataDirectory(dir, "auditsink mcp-proxy spool");
    } catch (cause) {
      throw new GatewayError("spool-locked", (cause as Error).message, { cause });
    }
    try {
      let delivered = 0;
      try {
        const cursor = JSON.parse(await readFile(join(dir, "delivered.json"), "utf8")) as { next?: unknown };
        if (!Number.isSafeInteger(cursor.next) || (cursor.next as number) < 0) throw new Error("bad cursor");
        delivered = cursor.next as number;
      } catch (e) {
        if (!isErrno(e, "ENOENT"))
          throw new GatewayError("spool-corrupt", `${dir}/delivered.json is unreadable`, { cause: e });
      }
      const segments = (await readdir(join(dir, "segments")))
        .map((n) => SEGMENT_NAME.exec(n)?.[1])
        .filter((n): n is string => n !== undefined)
        .map(Number)
        .sort((a, b) => a - b);
      const spool = new Spool(dir, lock, delivered, segments, options.segmentBytes ?? 8 * 1024 * 1024);
      await spool.readBack();
      return spool;
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  private async readBack(): Promise<void> {
    for (const first of this.segments) {
      const path = join(this.dir, "segments", segmentName(first));
      const text = await readFile(path, "utf8");
      const end = text.lastIndexOf("\n") + 1;
      if (end < text.length) await truncate(path, Buffer.byteLength(text.slice(0, end)));
      let expected = first;
      for (const line of text.slice(0, end).split("\n")) {
        if (line === "") continue;
        let entry: Spooled;
        try {
          entry = JSON.parse(line) as Spooled;
        } catch (cause) {
          throw new GatewayError("spool-corrupt", `${path}: a line is not JSON`, { cause });
        }
        if (entry.seq !== expected)
          throw new GatewayError("spool-corrupt", `${path}: expected event ${expected}, found ${entry.seq}`);
        expected++;
        if (entry.seq >= this.next) this.backlog.push(entry);
      }
      this.nextSeq = Math.max(this.nextSeq, expected);
    }
    const oldest = this.backlog[0];
    if (oldest && oldest.seq !== this.next)
      throw new GatewayError("spool-corrupt", `event ${this.next} is missing from ${this.dir}`);
  }

  /** Events not yet receipted, oldest first (the live array: do not modify). */
  pending(): readonly Spooled[] {
    return this.backlog;
  }

  /**
   * Appends one event; resolves once it is on disk (written and fdatasynced), with its sequence number.
   * Appends made while a write is in progress share the next write and fsync.
   */
  append(stream: string, event: SignedEvent): Promise<Spooled> {
    if (this.closed) return Promise.reject(new GatewayError("spool-corrupt", "the spool is closed"));
    const entry: Spooled = { seq: this.nextSeq++, stream, event };
    this.waiting ??= { first: entry.seq, lines: [], done: [] };
    const batch = this.waiting;
    batch.lines.push(`${JSON.stringify(entry)}\n`);
    const written = new Promise<void>((resolve, reject) => batch.done.push({ resolve, reject }));
    this.writing ??= this.writeLoop();
    return written.then(() => {
      this.backlog.push(entry);
      return entry;
    });
  }

  private async writeLoop(): Promise<void> {
    while (this.waiting) {
      const batch = this.waiting;
      this.waiting = undefined;
      try {
        const bytes = Buffer.from(batch.lines.join(""), "utf8");
        const segment = await this.segmentFor(batch.first, bytes.length);
        await writeFully(segment.fh as unknown as WritableFile, bytes, null);
        await segment.fh.datasync();
        segment.bytes += bytes.length;
        for (const d of batch.done) d.resolve();
      } catch (cause) {
        const error = new GatewayError("spool-corrupt", `cannot append to the spool in ${this.dir}`, {
          cause,
        });
        for (const d of batch.done) d.reject(error);
        // Sequence numbers of a failed write are never used: the spool stops taking events.
        this.closed = true;
      }
    }
    this.writing = undefined;
  }

  private async segmentFor(firstSeq: number, adding: number) {
    if (this.segment && this.segment.bytes + adding <= this.segmentBytes) return this.segment;
    if (!this.segment) {
      const last = this.segments[this.segments.length - 1];
      if (last !== undefined) {
        const path = join(this.dir, "segments", segmentName(last));
        const fh = await open(path, "a");
        const { size } = await fh.stat();
        this.segment = { first: last, path, fh, bytes: size };
        if (size + adding <= this.segmentBytes) return this.segment;
      }
    }
    await this.segment?.fh.close();
    const path = join(this.dir, "segments", segmentName(firstSeq));
    const fh = await open(path, "a", 0o600);
    await mkdirDurable(join(this.dir, "segments"));
    this.segments.push(firstSeq);
    this.segment = { first: firstSeq, path, fh, bytes: 0 };
    return this.segment;
  }

  /**
   * Records that the oldest `count` pending events have verified receipts: appends the receipts, moves the
   * cursor (atomically), and removes segments that hold only delivered events.
   */
  async markDelivered(count: number, receipts: readonly Receipt[]): Promise<void> {
    const done = this.backlog.slice(0, count);
    if (done.length === 0) return;
    await this.appendLines(
      "receipts.jsonl",
      receipts.map((r) => `${JSON.stringify(r)}\n`),
    );
    this.next = done[done.length - 1]!.seq + 1;
    await replaceFile(this.dir, join(this.dir, "delivered.json"), `${JSON.stringify({ next: this.next })}\n`);
    this.backlog.splice(0, done.length);
    while (this.segments.length > 1 && this.segments[1]! <= this.next) {
      const first = this.segments.shift()!;
      await rm(join(this.dir, "segments", segmentName(first)), { force: true });
    }
  }

  /** Moves the oldest pending event to rejected.jsonl with the sink's refusal, and past the cursor. */
  async reject(reason: string): Promise<Spooled | undefined> {
    const oldest = this.backlog[0];
    if (!oldest) return undefined;
    await this.appendLines("rejected.jsonl", [`${JSON.stringify({ ...oldest, reason })}\n`]);
    await this.markDelivered(1, []);
    return oldest;
  }

  private async appendLines(name: string, lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    const fh = await open(join(this.dir, name), "a", 0o600);
    try {
      await writeFully(fh as unknown as WritableFile, Buffer.from(lines.join(""), "utf8"), null);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  /** Waits for appends in progress, then releases the directory. */
  async close(): Promise<void> {
    await this.writing;
    this.closed = true;
    await this.segment?.fh.close();
    this.segment = undefined;
    await this.lock.release();
  }
}

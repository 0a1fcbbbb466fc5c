/**
 * The gateway's durable outbox: every event is written here before the call it records is answered, and
 * fdatasynced in the background (a group sync that starts at once); a delivery cursor says how many the sink has
 * receipted. Events are spooled as they will be signed (checked as the sink will check them signed) and signed
 * later, a delivery window at a time, as one batch (docs/FORMAT.md §3b); each batch's signature is written here
 * and synced before any of its events is sent. A restart reads back whatever is past the cursor and delivers it,
 * in order, with the same signed bytes (so a resend only gets the original receipt).
 *
 * Layout of the spool directory (one gateway process at a time: `lock`, an flock(2) held while open):
 *   segments/<first seq, 20 digits>.jsonl  one `{"seq":n,"stream":s,"event":{…}}` line per event, append-only;
 *                                          a new segment starts past `segmentBytes`, a delivered one is removed
 *   signatures.jsonl                       one `{"first":n,"sigkeyid":k,"signature":s,"sigbatch":[…]}` line per
 *                                          signed batch: the signature members of events first, first+1, …;
 *                                          emptied, once it holds 64 KiB, when every signed event is delivered
 *   delivered.json                         `{"next": n}`: events with seq < n have verified receipts
 *   receipts.jsonl                         the verified receipts, in delivery order (for `auditsink verify --receipts`)
 *   rejected.jsonl                         events the sink refused for good (4xx), kept with the refusal
 *   witness.json                           the newest checkpoint seen per stream (AuditClient's stateFile)
 *
 * A process crash loses nothing written. A power loss can lose the lines whose sync had not finished (docs/MCP.md
 * §Failure modes): a torn last line is cut off when the segment is opened again.
 */
import { closeSync, fdatasync as fdatasyncCallback, fstatSync, openSync, writeSync } from "node:fs";
import { open, readdir, readFile, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import {
  BASE64,
  jcsOrdered,
  type Receipt,
  SIGBATCH,
  SIGNATURE_MEMBERS_BYTES,
  type SignedEvent,
  type UnsignedEvent,
} from "@auditsink/core";
import {
  type DataDirectoryLock,
  fsyncDir,
  isErrno,
  lockDataDirectory,
  mkdirDurable,
  replaceFile,
  type WritableFile,
  writeFully,
} from "@auditsink/local";
import { z } from "zod";
import { GatewayError } from "./errors.ts";

const fdatasync = promisify(fdatasyncCallback);

export interface Spooled {
  seq: number;
  stream: string;
  /** As spooled, unsigned; signed (its batch's signature members added) once its delivery window was signed. */
  event: UnsignedEvent | SignedEvent;
  /**
   * The length of its line in the spool (not written there), with room for the signature members while it is
   * unsigned: more than the signed event's canonical JSON, so batches are cut by it without canonicalizing again.
   */
  bytes: number;
}

/** The signature members of a signed batch of spooled events: event `first + i` takes `sigbatch[i]`. */
export const batchSignatureSchema = z.strictObject({
  first: z.number().int().min(0),
  sigkeyid: z.string().regex(/^[0-9a-f]{64}$/),
  signature: z.string().min(1).regex(BASE64),
  sigbatch: z.array(z.string().regex(SIGBATCH)).min(1),
});
export type BatchSignature = z.infer<typeof batchSignatureSchema>;

const SIGNATURES = "signatures.jsonl";

/** A spooled event's length for cutting batches: its line, and the signature members while it has none. */
const lineBytes = (line: number, event: UnsignedEvent) =>
  line + (typeof event.signature === "string" ? 0 : SIGNATURE_MEMBERS_BYTES);

/** Between the end of one background sync and the start of the next (Spool.syncLoop). */
const SYNC_GAP_MS = 10;

const SEGMENT_NAME = /^(\d{20})\.jsonl$/;
const segmentName = (seq: number) => `${String(seq).padStart(20, "0")}.jsonl`;

export class Spool {
  /** Events appended and not yet receipted, oldest first. */
  private readonly backlog: Spooled[] = [];
  private nextSeq: number;
  private segment: { first: number; fd: number; bytes: number } | undefined;
  /** Full segments written since the last sync started: synced, then closed, by the next one. */
  private readonly retired: number[] = [];
  /** A segment file was created since the last sync: its directory entry is synced too. */
  private newSegment = false;
  /** Events with seq < synced are fdatasynced. */
  private synced: number;
  /** Events with seq < signedUpTo are signed. */
  private signedUpTo: number;
  /** What signatures.jsonl holds (it is emptied past `signatureFileBytes` once every signed event is delivered). */
  private signatureBytes = 0;
  private syncing: Promise<void> | undefined;
  private failure: GatewayError | undefined;
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly lock: DataDirectoryLock,
    private next: number,
    private segments: number[],
    private readonly segmentBytes: number,
    private readonly signatureFileBytes: number,
  ) {
    this.nextSeq = next;
    this.synced = next;
    this.signedUpTo = next;
  }

  /** Opens (creating) a spool directory and reads back every event not yet delivered. */
  static async open(
    dir: string,
    options: { segmentBytes?: number; signatureFileBytes?: number } = {},
  ): Promise<Spool> {
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
      const spool = new Spool(
        dir,
        lock,
        delivered,
        segments,
        options.segmentBytes ?? 8 * 1024 * 1024,
        options.signatureFileBytes ?? 64 * 1024,
      );
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
          const spooled = JSON.parse(line) as Omit<Spooled, "bytes">;
          entry = { ...spooled, bytes: lineBytes(Buffer.byteLength(line) + 1, spooled.event) };
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
    // Events spooled signed (each on its own, as the gateway once signed before spooling) stay as they are.
    for (const e of this.backlog) {
      if (typeof e.event.signature !== "string") break;
      this.signedUpTo = e.seq + 1;
    }
    await this.readSignatures();
  }

  /**
   * Gives the spooled events the signatures their batches were given. A torn last line is cut off: its batch was
   * never sent (a signature is synced before its events go out), so those events are signed again.
   */
  private async readSignatures(): Promise<void> {
    const path = join(this.dir, SIGNATURES);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if (isErrno(e, "ENOENT")) return;
      throw e;
    }
    const end = text.lastIndexOf("\n") + 1;
    this.signatureBytes = Buffer.byteLength(text.slice(0, end));
    if (end < text.length) await truncate(path, this.signatureBytes);
    for (const line of text.slice(0, end).split("\n")) {
      if (line === "") continue;
      let signature: BatchSignature;
      try {
        signature = batchSignatureSchema.parse(JSON.parse(line));
      } catch (cause) {
        throw new GatewayError("spool-corrupt", `${path}: a line is not a batch signature`, { cause });
      }
      this.applySignature(signature);
    }
  }

  private applySignature({ first, sigkeyid, signature, sigbatch }: BatchSignature): void {
    const head = this.backlog[0]?.seq ?? this.nextSeq;
    for (const [i, membership] of sigbatch.entries()) {
      const entry = this.backlog[first + i - head];
      if (entry?.seq !== first + i) continue; // delivered already
      entry.event = jcsOrdered<UnsignedEvent>(entry.event, {
        sigkeyid,
        sigbatch: membership,
        signature,
      }) as SignedEvent;
      entry.bytes -= SIGNATURE_MEMBERS_BYTES;
    }
    this.signedUpTo = Math.max(this.signedUpTo, first + sigbatch.length);
  }

  /**
   * Keeps a batch signature of the oldest unsigned events, synced before it returns: call it before sending any of
   * them, so that whatever the sink receives is what a restart sends again.
   */
  async addSignature(signature: BatchSignature): Promise<void> {
    if (signature.first !== this.signedUpTo)
      throw new RangeError(`the next event to sign is ${this.signedUpTo}, not ${signature.first}`);
    const line = `${JSON.stringify(signature)}\n`;
    await this.appendLines(SIGNATURES, [line]);
    this.signatureBytes += Buffer.byteLength(line);
    this.applySignature(signature);
  }

  /** Events not yet receipted, oldest first (the live array: do not modify). */
  pending(): readonly Spooled[] {
    return this.backlog;
  }

  /**
   * Appends one event: when this returns, its line is written to the segment file (the kernel holds it, so a
   * crash or restart of this process loses nothing). It is made durable against power loss by a group fdatasync
   * that starts at once in the background; `durable()` waits for it. A failed write or sync closes the spool:
   * it takes no more events, and what it holds is read back at the next open.
   */
  append(stream: string, event: UnsignedEvent): Spooled {
    if (this.failure) throw this.failure;
    if (this.closed) throw new GatewayError("spool-corrupt", "the spool is closed");
    const bytes = Buffer.from(`${JSON.stringify({ seq: this.nextSeq, stream, event })}\n`, "utf8");
    const entry: Spooled = { seq: this.nextSeq, stream, event, bytes: lineBytes(bytes.length, event) };
    try {
      const segment = this.segmentFor(entry.seq, bytes.length);
      for (let done = 0; done < bytes.length; )
        done += writeSync(segment.fd, bytes, done, bytes.length - done, null);
      segment.bytes += bytes.length;
    } catch (cause) {
      throw this.fail(cause);
    }
    this.nextSeq++;
    this.backlog.push(entry);
    this.syncing ??= this.syncLoop();
    return entry;
  }

  /** Resolves once every event appended so far is fdatasynced (rejects if the spool failed). */
  async durable(): Promise<void> {
    const upTo = this.nextSeq;
    while (this.synced < upTo) {
      if (this.failure) throw this.failure;
      this.syncing ??= this.syncLoop();
      await this.syncing;
    }
  }

  private async syncLoop(): Promise<void> {
    // Until every line written so far is synced: appends made during a sync get the next one, which starts
    // SYNC_GAP_MS after it ends, so that a busy gateway syncs (and wakes up for it) about that often, not back to back.
    for (let first = true; this.synced < this.nextSeq && !this.failure; first = false) {
      if (!first) await sleep(SYNC_GAP_MS);
      const upTo = this.nextSeq;
      const retired = this.retired.splice(0);
      const files = [...retired, ...(this.segment ? [this.segment.fd] : [])];
      try {
        await Promise.all(files.map((fd) => fdatasync(fd)));
        if (this.newSegment) {
          this.newSegment = false;
          await fsyncDir(join(this.dir, "segments"));
        }
        this.synced = upTo;
      } catch (cause) {
        this.fail(cause);
      } finally {
        for (const fd of retired) closeSync(fd);
      }
    }
    this.syncing = undefined;
  }

  /** Sequence numbers past a failed write or sync are never used: the spool stops taking events. */
  private fail(cause: unknown): GatewayError {
    this.failure ??= new GatewayError("spool-corrupt", `cannot append to the spool in ${this.dir}`, {
      cause,
    });
    return this.failure;
  }

  private segmentFor(firstSeq: number, adding: number) {
    if (this.segment && this.segment.bytes + adding <= this.segmentBytes) return this.segment;
    if (!this.segment) {
      const last = this.segments[this.segments.length - 1];
      if (last !== undefined) {
        const fd = openSync(join(this.dir, "segments", segmentName(last)), "a");
        this.segment = { first: last, fd, bytes: fstatSync(fd).size };
        if (this.segment.bytes + adding <= this.segmentBytes) return this.segment;
      }
    }
    // The full segment is synced (and closed) by the next sync, with the new one and its directory entry.
    if (this.segment) this.retired.push(this.segment.fd);
    const fd = openSync(join(this.dir, "segments", segmentName(firstSeq)), "a", 0o600);
    this.newSegment = true;
    this.segments.push(firstSeq);
    this.segment = { first: firstSeq, fd, bytes: 0 };
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
    if (this.signatureBytes >= this.signatureFileBytes && this.signedUpTo <= this.next) {
      // Every signed event is delivered: the lines are not needed (a restart before this reaches the disk
      // finds only lines of delivered events, which it skips).
      await truncate(join(this.dir, SIGNATURES), 0);
      this.signatureBytes = 0;
    }
    while (this.segments.length > 1 && this.segments[1]! <= this.next) {
      const first = this.segments.shift()!;
      await rm(join(this.dir, "segments", segmentName(first)), { force: true });
    }
    // Last, so that pending() shrinks only once the delivery is accounted for (the recorder's drain() waits on it).
    this.backlog.splice(0, done.length);
  }

  /** Moves the oldest pending event to rejected.jsonl with the sink's refusal, and past the cursor. */
  async reject(reason: string): Promise<Spooled | undefined> {
    const oldest = this.backlog[0];
    if (!oldest) return undefined;
    const { bytes: _, ...line } = oldest;
    await this.appendLines("rejected.jsonl", [`${JSON.stringify({ ...line, reason })}\n`]);
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

  /** Waits for the sync in progress, then releases the directory. */
  async close(): Promise<void> {
    this.closed = true;
    await this.durable().catch(() => undefined);
    if (this.segment) closeSync(this.segment.fd);
    this.segment = undefined;
    await this.lock.release();
  }
}

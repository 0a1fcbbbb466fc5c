/**
 * Records and segments (docs/FORMAT.md §Records, §Segments).
 *
 * A record is the event plus what the sink adds. Its bytes are the RFC 8785 form of the record object; its
 * hash is SHA-256 of those bytes; its Merkle leaf is the RFC 9162 leaf hash of the 32-byte record hash.
 * A segment is a contiguous run of records stored as one write-once object: each record's bytes followed by
 * "\n", in index order, at `streams/<stream>/segments/<first index, 20 digits>`.
 */
import { FormatError } from "./errors.ts";
import type { SignedEvent } from "./event.ts";
import { canonicalBytes, type Hash, sha256, toHex } from "./hash.ts";
import { parseStoredJson } from "./json.ts";
import { leafHash } from "./merkle.ts";
import { parseTilePath, type Tile, tilePath } from "./tiles.ts";

export const RECORD_VERSION = 1;

export interface AuditRecord {
  v: typeof RECORD_VERSION;
  stream: string;
  index: number;
  /** Hex record hash of record index−1; 64 zeros for index 0. */
  prev: string;
  /** When the sink accepted the event: RFC 3339 UTC with milliseconds. */
  received: string;
  /** The registered producer whose key signed the event. */
  producer: string;
  event: SignedEvent;
}

/** A record with its bytes and hashes, as written and as read back. */
export interface SealedRecord {
  record: AuditRecord;
  bytes: Buffer;
  hash: Hash;
  leaf: Hash;
}

/**
 * Seals a record. `eventBytes`, when given, must be canonicalBytes(record.event): the record's RFC 8785 form is
 * then assembled around it instead of canonicalizing the event again — "event" sorts first among the record's
 * members and every other member is a string or integer, whose JCS form is JSON.stringify's.
 */
export function sealRecord(record: AuditRecord, eventBytes?: Buffer): SealedRecord {
  const bytes = eventBytes
    ? Buffer.concat([
        RECORD_HEAD,
        eventBytes,
        Buffer.from(
          `,"index":${record.index},"prev":${JSON.stringify(record.prev)},"producer":${JSON.stringify(record.producer)},` +
            `"received":${JSON.stringify(record.received)},"stream":${JSON.stringify(record.stream)},"v":${record.v}}`,
          "utf8",
        ),
      ])
    : canonicalBytes(record);
  const hash = sha256(bytes);
  return { record, bytes, hash, leaf: leafHash(hash) };
}

const RECORD_HEAD = Buffer.from('{"event":');

const pad20 = (n: number) => String(n).padStart(20, "0");

export const streamPrefix = (stream: string) => `streams/${stream}/`;
export const segmentPrefix = (stream: string) => `streams/${stream}/segments/`;
export const checkpointPrefix = (stream: string) => `streams/${stream}/checkpoints/`;
export const segmentKey = (stream: string, firstIndex: number) =>
  `${segmentPrefix(stream)}${pad20(firstIndex)}`;
export const checkpointKey = (stream: string, size: number) => `${checkpointPrefix(stream)}${pad20(size)}`;
/** docs/FORMAT.md §7: a checkpoint with the witness cosignatures the sink received for it (write-once). */
export const cosignedPrefix = (stream: string) => `streams/${stream}/cosigned/`;
export const cosignedKey = (stream: string, size: number) => `${cosignedPrefix(stream)}${pad20(size)}`;

export const tilePrefix = (stream: string) => `streams/${stream}/tile/`;
/** A full tlog-tiles tile or entry bundle (docs/FORMAT.md §7, §14): `streams/<stream>/tile/<L or entries>/<N>`. */
export const tileKey = (stream: string, tile: Tile) => `${tilePrefix(stream)}${tilePath(tile)}`;

const NUMBERED_KEY = /^streams\/([a-z0-9_][a-z0-9._-]{0,127})\/(segments|checkpoints|cosigned)\/(\d{20})$/;
const TILE_KEY = /^streams\/([a-z0-9_][a-z0-9._-]{0,127})\/tile\/(.+)$/;

export type StoreKey =
  | { stream: string; kind: "segments" | "checkpoints" | "cosigned"; n: number }
  /** A full tile or entry bundle; `n` is its index. Partial tiles are never stored, so their keys do not parse. */
  | { stream: string; kind: "tiles"; n: number; tile: Tile };

/** Parses a store key of the layout; undefined for anything else (which the verifier reports). */
export function parseStoreKey(key: string): StoreKey | undefined {
  const m = NUMBERED_KEY.exec(key);
  if (!m) {
    const t = TILE_KEY.exec(key);
    if (!t) return undefined;
    const tile = parseTilePath(t[2]!);
    if (tile?.width !== 256) return undefined;
    return { stream: t[1]!, kind: "tiles", n: tile.index, tile };
  }
  const n = Number(m[3]);
  if (!Number.isSafeInteger(n)) return undefined;
  return { stream: m[1]!, kind: m[2] as "segments" | "checkpoints" | "cosigned", n };
}

/**
 * Builds the records for a batch: indexes from `first`, each linking the hash of the one before. `canonical` is
 * the event's canonicalBytes, which admission (core sink.ts `admit`) already computed for the signature check:
 * each record is assembled around them, so an event is canonicalized once on its way in.
 */
export function buildRecords(
  stream: string,
  first: number,
  prevHash: Hash,
  received: string,
  events: readonly { event: SignedEvent; producer: string; canonical: Buffer }[],
): SealedRecord[] {
  let prev = prevHash;
  return events.map(({ event, producer, canonical }, i) => {
    const sealed = sealRecord(
      {
        v: RECORD_VERSION,
        stream,
        index: first + i,
        prev: toHex(prev),
        received,
        producer,
        event,
      },
      canonical,
    );
    prev = sealed.hash;
    return sealed;
  });
}

export function encodeSegment(records: readonly SealedRecord[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) parts.push(r.bytes, NEWLINE);
  return Buffer.concat(parts);
}

const NEWLINE = Buffer.from("\n");

/**
 * Splits segment bytes into record lines (views, no copies). `truncated` when the last line has no newline;
 * that line is still returned, so a verifier can report it and go on.
 */
export function splitSegment(bytes: Uint8Array): { lines: Buffer[]; truncated: boolean } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lines: Buffer[] = [];
  let truncated = false;
  for (let start = 0; start < buf.length; ) {
    let nl = buf.indexOf(0x0a, start);
    if (nl < 0) {
      truncated = true;
      nl = buf.length;
    }
    lines.push(buf.subarray(start, nl));
    start = nl + 1;
  }
  return { lines, truncated };
}

/** Splits a segment into its record lines without parsing them. Throws FormatError for a missing final newline. */
export function segmentLines(bytes: Uint8Array): Buffer[] {
  const { lines, truncated } = splitSegment(bytes);
  if (truncated) throw new FormatError("bad-segment", "segment does not end with a newline");
  return lines;
}

const RECORD_MEMBERS = 7;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Parses one record line (no hash checks); throws FormatError("bad-record") when it is not a record: JSON under
 * the rules the sink accepted its event by (docs/FORMAT.md §3 "JSON input": a duplicate member anywhere, invalid
 * UTF-8 or a lone surrogate would let two verifiers read two records from one line, and its producer signature be
 * checked against only one of them), with exactly the members of §5, no others.
 */
export function parseRecordLine(line: Buffer): AuditRecord {
  const parsed = parseStoredJson(line);
  if (!parsed.ok) throw new FormatError("bad-record", `record ${parsed.detail}`);
  const r = parsed.value;
  if (
    typeof r !== "object" ||
    r === null ||
    Array.isArray(r) ||
    Object.keys(r).length !== RECORD_MEMBERS ||
    (r as AuditRecord).v !== RECORD_VERSION ||
    typeof (r as AuditRecord).stream !== "string" ||
    !Number.isSafeInteger((r as AuditRecord).index) ||
    (r as AuditRecord).index < 0 ||
    typeof (r as AuditRecord).prev !== "string" ||
    !HEX64.test((r as AuditRecord).prev) ||
    typeof (r as AuditRecord).received !== "string" ||
    typeof (r as AuditRecord).producer !== "string" ||
    typeof (r as AuditRecord).event !== "object" ||
    (r as AuditRecord).event === null
  ) {
    throw new FormatError(
      "bad-record",
      "record must have exactly v (1), stream, index (natural number), prev (64 hex), received, producer and event",
    );
  }
  return r as AuditRecord;
}

/** Reads a segment written by a sink (trusted enough to resume from): every record sealed from its stored bytes. */
export function readSegment(bytes: Uint8Array): SealedRecord[] {
  return segmentLines(bytes).map((line) => {
    const hash = sha256(line);
    return { record: parseRecordLine(line), bytes: line, hash, leaf: leafHash(hash) };
  });
}

/**
 * The event envelope: CloudEvents 1.0 structured JSON, signed by its producer over RFC 8785 bytes.
 * docs/FORMAT.md §Events is the normative description; this file implements it.
 */
import type { KeyObject } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import { z } from "zod";
import {
  type BatchSignatureCache,
  batchEntryBytes,
  parseSigbatch,
  SIGBATCH,
  verifyBatchMember,
  verifyBatchMemberAsync,
} from "./batch.ts";
import { IngestError } from "./errors.ts";
import { BASE64, canonicalBytes, fromBase64, jcsOrdered } from "./hash.ts";
import { checkEventValue, formatPath } from "./json.ts";
import { keyFingerprint, signBytes, verifyBytes, verifyBytesAsync } from "./keys.ts";

/** Domain separation: a producer key's signature over an event can never be mistaken for anything else. */
export const EVENT_SIGNATURE_CONTEXT = "auditsink-event-v1\n";

export const MAX_EVENT_BYTES = 256 * 1024;

/** Stream names: lowercase, digits, '.', '_' and '-', 1–128 characters; names starting with '_' are the sink's own. */
export const STREAM_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;
export const SYSTEM_STREAM = "_system";

const NO_CONTROL = /^[^\u0000-\u001f\u007f]*$/;
/**
 * Identifiers (`id`, `source`, `type`) must look like what they are: no control characters (Cc), no format
 * characters (Cf: bidi overrides and isolates, zero-width characters, tag characters), no line or paragraph
 * separators (Zl, Zp). The code points of those four categories (Unicode 17.0), as docs/FORMAT.md §3 lists
 * them: written out rather than as `\p{Cf}`, so that the OpenAPI document's pattern is the same set in every
 * regular-expression engine a JSON Schema tool uses (several have no Unicode property classes), and so that the
 * set does not move with the runtime's Unicode version. A test checks it against `\p{Cc}\p{Cf}\p{Zl}\p{Zp}`.
 */
export const NOT_PLAIN_RANGES: readonly (readonly [number, number])[] = [
  [0x0000, 0x001f],
  [0x007f, 0x009f],
  [0x00ad, 0x00ad],
  [0x0600, 0x0605],
  [0x061c, 0x061c],
  [0x06dd, 0x06dd],
  [0x070f, 0x070f],
  [0x0890, 0x0891],
  [0x08e2, 0x08e2],
  [0x180e, 0x180e],
  [0x200b, 0x200f],
  [0x2028, 0x202e],
  [0x2060, 0x2064],
  [0x2066, 0x206f],
  [0xfeff, 0xfeff],
  [0xfff9, 0xfffb],
  [0x110bd, 0x110bd],
  [0x110cd, 0x110cd],
  [0x13430, 0x1343f],
  [0x1bca0, 0x1bca3],
  [0x1d173, 0x1d17a],
  [0xe0001, 0xe0001],
  [0xe0020, 0xe007f],
];
/** A code point in a character class: `\uXXXX` in the BMP, the character itself beyond it (one code point under `u`). */
const classMember = (c: number) =>
  c <= 0xffff ? `\\u${c.toString(16).padStart(4, "0")}` : String.fromCodePoint(c);
const PLAIN = new RegExp(
  `^[^${NOT_PLAIN_RANGES.map(([a, b]) => (a === b ? classMember(a) : `${classMember(a)}-${classMember(b)}`)).join("")}]*$`,
  "u",
);
const text = (max: number, pattern = NO_CONTROL) =>
  z
    .string()
    .min(1, "must not be empty")
    .max(max, `must be at most ${max} characters`)
    .regex(
      pattern,
      pattern === PLAIN
        ? "must not contain control, format (bidi, zero-width) or line-separator characters"
        : "must not contain control characters",
    );
/** RFC 3339 date-time with a real date and time (no month 13, no February 30, hours 00–23, seconds 00–59). */
const RFC3339_TIME = z.iso.datetime({ offset: true, error: "must be an RFC 3339 date-time that exists" });
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

const CORE_ATTRIBUTES = new Set([
  "specversion",
  "id",
  "source",
  "type",
  "time",
  "subject",
  "datacontenttype",
  "dataschema",
  "data",
  "data_base64",
  "sigkeyid",
  "signature",
  "sigbatch",
]);

const SIGBATCH_RULE =
  "must be <position>.<size>.<inclusion path as lowercase hex>: position < size ≤ 65536, no leading zeros, exactly the RFC 9162 path length";

const attributes = z.object({
  specversion: z.literal("1.0", { error: 'must be "1.0"' }),
  id: text(256, PLAIN),
  source: text(1024, PLAIN),
  type: text(256, PLAIN),
  time: RFC3339_TIME,
  subject: text(1024).optional(),
  datacontenttype: text(256).optional(),
  dataschema: text(1024).optional(),
  // Any JSON value, checked by checkEventValue (iteratively, keeping every member): zod's z.json() recurses
  // and rebuilds objects, which drops `__proto__` members and overflows the stack on deep nesting.
  data: z.unknown().optional(),
  data_base64: z.string().regex(BASE64, "must be base64").optional(),
  sigkeyid: z.string().regex(/^[0-9a-f]{64}$/, "must be the producer key id (64 lowercase hex)"),
  signature: z.string().min(1).regex(BASE64, "must be base64"),
  /**
   * Present only in a batch-signed envelope (docs/FORMAT.md §3b): the event's membership of the signed batch.
   * The pattern gives its shape (and the OpenAPI document's); the ranges and the path length are checked below.
   */
  sigbatch: z.string().regex(SIGBATCH, SIGBATCH_RULE).optional(),
});

/** A signed CloudEvent as it is submitted and stored. */
export const signedEventSchema = attributes
  .catchall(z.union([text(4096), z.number(), z.boolean()]))
  .superRefine((event, ctx) => {
    for (const name of Object.keys(event)) {
      if (!CORE_ATTRIBUTES.has(name) && !EXTENSION_NAME.test(name)) {
        ctx.addIssue({
          code: "custom",
          path: [name],
          message: "extension attribute names are 1–20 lowercase letters or digits",
        });
      }
    }
    checkTraceContext(event, ctx);
    if (event.sigbatch !== undefined && !parseSigbatch(event.sigbatch)) {
      ctx.addIssue({
        code: "custom",
        path: ["sigbatch"],
        message: SIGBATCH_RULE,
      });
    }
    if (event.data !== undefined && event.data_base64 !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["data_base64"],
        message: "data and data_base64 are mutually exclusive",
      });
    }
  });

/**
 * The CloudEvents distributed-tracing extension (`traceparent`, `tracestate`) carries W3C Trace Context
 * (https://www.w3.org/TR/trace-context/). An event that carries it is found by its trace id, so the sink refuses
 * values a tracer would not have produced: see parseTraceparent and TRACESTATE.
 */
function checkTraceContext(event: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const { traceparent, tracestate } = event;
  if (traceparent !== undefined && (typeof traceparent !== "string" || !parseTraceparent(traceparent))) {
    ctx.addIssue({
      code: "custom",
      path: ["traceparent"],
      message:
        "must be a W3C traceparent: 00-<32 lowercase hex trace id, not all zero>-<16 lowercase hex parent id, not all zero>-<2 hex flags>",
    });
  }
  if (tracestate !== undefined) {
    if (traceparent === undefined) {
      ctx.addIssue({ code: "custom", path: ["tracestate"], message: "requires traceparent" });
    } else if (typeof tracestate !== "string" || !isTracestate(tracestate)) {
      ctx.addIssue({
        code: "custom",
        path: ["tracestate"],
        message: "must be a W3C tracestate: 1–32 comma-separated key=value members, at most 512 characters",
      });
    }
  }
}

export interface Traceparent {
  version: string;
  /** 32 lowercase hex digits. */
  traceId: string;
  /** 16 lowercase hex digits: the span that sent the event. */
  parentId: string;
  flags: string;
}

/**
 * W3C Trace Context §3.2 `traceparent`, version 00: `00-<trace-id>-<parent-id>-<trace-flags>`, lowercase hex,
 * trace-id and parent-id not all zeros (§3.2.2.3, §3.2.2.4). Later versions (§3.2.4) may append fields after
 * a `-`; version ff is invalid. Returns undefined for anything else.
 */
export function parseTraceparent(text: string): Traceparent | undefined {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?$/.exec(text);
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string?,
  ];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return { version, traceId, parentId, flags };
}

/**
 * W3C Trace Context §3.3 `tracestate`: 1–32 list members `key=value` separated by `,` with optional spaces or
 * tabs around them (§3.3.1.2), at most 512 characters; keys per §3.3.1.3.1 (simple or `tenant@system`), values
 * per §3.3.1.3.2 (printable ASCII without `,` and `=`, no trailing space). Empty members are not allowed here:
 * a producer sends the header its tracer wrote, and tracers write none.
 */
const TRACESTATE_MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
function isTracestate(text: string): boolean {
  if (text.length > 512) return false;
  const members = text.split(",").map((m) => m.replace(/^[ \t]+|[ \t]+$/g, ""));
  return members.length <= 32 && members.every((m) => TRACESTATE_MEMBER.test(m));
}

/** The event attributes, plus extension attributes (strings, numbers or booleans). */
export type SignedEvent = z.infer<typeof attributes> & { [extension: string]: unknown };
export type UnsignedEvent = Omit<SignedEvent, "sigkeyid" | "signature" | "sigbatch"> & {
  sigkeyid?: string;
  signature?: string;
  sigbatch?: string;
};

/**
 * Validates one event; throws IngestError("invalid-event") naming the first wrong field under `prefix`.
 * Returns the value it was given, not a copy: the bytes the sink checks and stores are the producer's bytes,
 * member for member.
 */
export function parseSignedEvent(value: unknown, prefix = "event"): SignedEvent {
  checkEventValue(value, prefix);
  const result = signedEventSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = formatPath(
      prefix,
      issue.path.map((p) => (typeof p === "number" ? p : String(p))),
    );
    throw new IngestError("invalid-event", `${field}: ${issue.message}`, field);
  }
  return value as SignedEvent;
}

/** The RFC 8785 bytes of a validated event; throws IngestError("too-large") above MAX_EVENT_BYTES. */
export function canonicalEvent(event: SignedEvent, field = "event"): Buffer {
  const bytes = canonicalBytes(event);
  if (bytes.length > MAX_EVENT_BYTES) {
    throw new IngestError(
      "too-large",
      `${field} is ${bytes.length} bytes; the limit is ${MAX_EVENT_BYTES}`,
      field,
    );
  }
  return bytes;
}

/**
 * The most the members a signature adds can take in an event's RFC 8785 form, either envelope: `"sigkeyid"` (64
 * hex), `"signature"` (an ECDSA P-256 DER signature is at most 72 bytes, 96 base64 characters; Ed25519 88) and
 * `"sigbatch"` (at most 1,036 characters), with their names, quotes, colons and commas.
 */
export const SIGNATURE_MEMBERS_BYTES = 78 + 111 + 1050;

/** Placeholders of the shapes the schema takes for the signature members: only the rest of the event is checked. */
const UNSIGNED_PLACEHOLDERS = { sigkeyid: "0".repeat(64), signature: "AA==" };

/**
 * Checks an event before it is signed, as the sink will check it once signed in either envelope: every member by
 * the schema, and its size with room for the signature members (SIGNATURE_MEMBERS_BYTES) and `reserveBytes` more
 * (members its producer adds later, which it vouches for). Returns its RFC 8785 bytes; throws IngestError as
 * parseSignedEvent and canonicalEvent do. A producer that signs later (the MCP gateway signs on its delivery
 * thread) knows now that the event will be accepted.
 */
export function checkUnsignedEvent(event: UnsignedEvent, field = "event", reserveBytes = 0): Buffer {
  const { signature: _s, sigbatch: _b, sigkeyid: _k, ...unsigned } = event;
  parseSignedEvent({ ...unsigned, ...UNSIGNED_PLACEHOLDERS }, field);
  const bytes = canonicalBytes(unsigned);
  const limit = MAX_EVENT_BYTES - SIGNATURE_MEMBERS_BYTES - reserveBytes;
  if (bytes.length > limit) {
    throw new IngestError(
      "too-large",
      `${field} is ${bytes.length} bytes before it is signed${reserveBytes ? ` and completed` : ""}; the limit is ${limit} (${MAX_EVENT_BYTES} with the signature${reserveBytes ? ` and ${reserveBytes} bytes to come` : ""})`,
      field,
    );
  }
  return bytes;
}

/**
 * A new event `id`: a UUIDv7 (RFC 9562), whose first 48 bits are the time in milliseconds, so the ids one producer
 * sends sort in the order it made them. Any unique string is a valid id; time-ordered ones keep the embedded
 * index's dedup look-ups on a few pages of it however large the log grows (docs/EMBEDDED.md §4).
 */
export const newEventId = (): string => uuidv7();

/** The bytes a producer signs: the context string, then the RFC 8785 form of the event without `signature`. */
export function eventSigningBytes(event: UnsignedEvent): Buffer {
  const { signature: _omit, ...rest } = event;
  return Buffer.concat([Buffer.from(EVENT_SIGNATURE_CONTEXT), canonicalBytes(rest)]);
}

/**
 * Signs an event with a producer's private key: sets `sigkeyid` to the key's fingerprint and `signature`.
 * @example
 *   const { privateKey } = generateKeyPair("ed25519");
 *   const event = signEvent({ specversion: "1.0", id: "1", source: "agent://a", type: "tool.call", time }, privateKey);
 */
export function signEvent(event: UnsignedEvent, privateKey: KeyObject): SignedEvent {
  const { signature: _signature, sigbatch: _sigbatch, ...rest } = event;
  const unsigned = jcsOrdered<UnsignedEvent>(rest, { sigkeyid: keyFingerprint(privateKey) });
  const signature = signBytes(privateKey, eventSigningBytes(unsigned)).toString("base64");
  return jcsOrdered<UnsignedEvent>(unsigned, { signature }) as SignedEvent;
}

/**
 * The signing bytes derived from the event's canonical bytes without canonicalizing again: JCS(event) minus its
 * top-level `"signature"` member. That member is never first ("id" sorts before it), its value is base64 (no
 * escapes), and every member after it is a string, number or boolean, where an unescaped `,"signature":"`
 * cannot occur — so its last occurrence is the member itself.
 */
export function signingBytesFromCanonical(event: SignedEvent, canonical: Buffer): Buffer {
  const text = withoutMember(canonical.toString("utf8"), "signature", event.signature);
  if (text === undefined) return eventSigningBytes(event);
  return Buffer.from(EVENT_SIGNATURE_CONTEXT + text, "utf8");
}

/**
 * batchEntryBytes from the event's canonical bytes, as signingBytesFromCanonical does: `sigbatch` too is a
 * top-level string member after `id`, and every member after it is a string, number or boolean.
 */
export function batchEntryFromCanonical(event: SignedEvent, canonical: Buffer): Buffer {
  const text = withoutMember(canonical.toString("utf8"), "signature", event.signature);
  const entry = text === undefined ? undefined : withoutMember(text, "sigbatch", event.sigbatch);
  return entry === undefined ? batchEntryBytes(event) : Buffer.from(entry, "utf8");
}

/** The JCS text without its last `,"<name>":<value>` (undefined when it is not there). */
function withoutMember(text: string, name: string, value: unknown): string | undefined {
  const member = `,${JSON.stringify(name)}:${JSON.stringify(value)}`;
  const at = text.lastIndexOf(member);
  return at < 0 ? undefined : text.slice(0, at) + text.slice(at + member.length);
}

/**
 * Re-checks a stored event's producer signature, either envelope (docs/FORMAT.md §3, §3b): per-event, or
 * batch-signed, where the batch signature is verified once per `cache` entry and the event's membership every
 * time — or once for its whole batch, when `commitment` is what batchCommitments found for it. Takes any valid
 * ECDSA encoding.
 */
export function verifyEventSignature(
  event: SignedEvent,
  publicKey: KeyObject,
  cache?: BatchSignatureCache,
  commitment?: Buffer,
): boolean {
  const sig = signatureBytes(event);
  if (sig === undefined) return false;
  if (event.sigbatch !== undefined) {
    const entry = commitment ? { commitment } : batchEntryBytes(event);
    return verifyBatchMember(event, entry, publicKey, sig, "any", cache);
  }
  return verifyBytes(publicKey, eventSigningBytes(event), sig);
}

/**
 * The ingest check: verifyEventSignature on the threadpool (a batch's signature once, shared by its events;
 * `commitment` as there), from the event's canonical bytes (see
 * signingBytesFromCanonical), accepting ECDSA signatures only in canonical form (low-S DER; docs/FORMAT.md
 * §Signatures). verifyEventSignature, which re-checks stored events, takes any valid encoding.
 */
export async function verifyEventSignatureAsync(
  event: SignedEvent,
  canonical: Buffer,
  publicKey: KeyObject,
  cache?: BatchSignatureCache,
  commitment?: Buffer,
): Promise<boolean> {
  const sig = signatureBytes(event);
  if (sig === undefined) return false;
  if (event.sigbatch !== undefined) {
    const entry = commitment ? { commitment } : batchEntryFromCanonical(event, canonical);
    return verifyBatchMemberAsync(event, entry, publicKey, sig, "canonical", cache);
  }
  return verifyBytesAsync(publicKey, signingBytesFromCanonical(event, canonical), sig, "canonical");
}

function signatureBytes(event: SignedEvent): Buffer | undefined {
  try {
    return fromBase64(event.signature, "signature");
  } catch {
    return undefined;
  }
}

/** An event's identity as its producer names it: `source` and `id` (CloudEvents: unique per producer). */
export function eventKey(event: { source: string; id: string }): string {
  return `${event.source}\u0000${event.id}`;
}

/**
 * The dedup key of an accepted event (docs/FORMAT.md §Dedup): the registered producer, `source` and `id`, joined
 * by NUL (which none of them may contain). A producer's events only ever collide with its own, so no producer
 * can claim another's `source` + `id` first. Dedup stores take it as an opaque string.
 */
export function dedupKey(producer: string, event: { source: string; id: string }): string {
  return `${producer}\u0000${event.source}\u0000${event.id}`;
}

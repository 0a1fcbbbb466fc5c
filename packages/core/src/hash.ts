import { hash } from "node:crypto";
import canonicalize from "canonicalize";
import { FormatError } from "./errors.ts";

/** A 32-byte SHA-256 digest. */
export type Hash = Buffer;

export const HASH_SIZE = 32;

/** SHA-256 of `bytes` (one-shot, the fastest path node:crypto offers). */
export function sha256(bytes: Uint8Array | string): Hash {
  return hash("sha256", bytes, "buffer");
}

/**
 * RFC 8785 (JSON Canonicalization Scheme) bytes of a JSON value, as UTF-8.
 * Throws FormatError for values JSON cannot represent (undefined, NaN, Infinity, lone surrogates, functions,
 * cycles).
 *
 * A value whose members already enumerate in JCS order at every level — what JSON.parse gives for canonical
 * text, such as every record a sink stored — needs no reordering, and then JSON.stringify writes exactly the JCS
 * form: RFC 8785 §3.2.2 defines the serialization of literals, strings and numbers as ECMAScript's
 * JSON.stringify, and §3.2.3 differs from it only in ordering members (JSON.stringify uses the enumeration
 * order, the one inJcsOrder checks). Anything else goes to the `canonicalize` package.
 */
export function canonicalBytes(value: unknown): Buffer {
  let text: string | undefined;
  try {
    text = inJcsOrder(value) ? JSON.stringify(value) : canonicalize(value);
  } catch (cause) {
    throw new FormatError("not-canonicalizable", "value cannot be canonicalized as RFC 8785 JSON", { cause });
  }
  if (text === undefined) throw new FormatError("not-canonicalizable", "value has no JSON representation");
  return Buffer.from(text, "utf8");
}

/**
 * The members of plain objects as one new object, in RFC 8785 order (by UTF-16 code units), each an own data
 * member (a `__proto__` member stays data); a member of a later object replaces one of the same name. A value
 * whose objects are all built this way, with no integer-like member names (which objects enumerate first), is
 * canonicalized on JSON.stringify's path by canonicalBytes, here and wherever it is parsed from that JSON, such as
 * by the sink.
 */
export function jcsOrdered<T extends object>(...objects: T[]): T {
  const records = objects as Record<string, unknown>[];
  const keys = records.length === 1 ? Object.keys(records[0]!) : records.flatMap((r) => Object.keys(r));
  const out: Record<string, unknown> = {};
  for (const key of keys.sort()) {
    let value: unknown;
    for (const r of records) if (Object.hasOwn(r, key)) value = r[key];
    if (key === "__proto__")
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
  }
  return out as T;
}

/** String.prototype.isWellFormed (ES2024, Node ≥ 20): no lone surrogates. */
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/** Deeper values take the `canonicalize` package's iterative path (JSON.stringify recurses). */
const MAX_FAST_DEPTH = 128;

/**
 * True when JSON.stringify(value) is the JCS form of `value`: only null, booleans, finite numbers, well-formed
 * strings, arrays and plain objects without toJSON, every object's keys (in enumeration order, integer-like
 * keys first) strictly ascending by UTF-16 code units (RFC 8785 §3.2.3), at most MAX_FAST_DEPTH levels (which
 * also ends the walk on a cycle). Reads own enumerable members only, as JSON.stringify does, so a
 * `__proto__` member is data like any other. False means "not proven", never "not JSON".
 */
function inJcsOrder(value: unknown): boolean {
  const pending: unknown[] = [value];
  const depths: number[] = [1];
  while (pending.length > 0) {
    const v = pending.pop();
    const depth = depths.pop()!;
    switch (typeof v) {
      case "string":
        if (!isWellFormed(v)) return false;
        continue;
      case "number":
        if (!Number.isFinite(v)) return false;
        continue;
      case "boolean":
        continue;
      case "object":
        break;
      default:
        return false;
    }
    if (v === null) continue;
    if (depth > MAX_FAST_DEPTH || typeof (v as { toJSON?: unknown }).toJSON === "function") return false;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        pending.push(v[i]);
        depths.push(depth + 1);
      }
      continue;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    const keys = Object.keys(v);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if ((i > 0 && !(keys[i - 1]! < key)) || !isWellFormed(key)) return false;
      pending.push((v as Record<string, unknown>)[key]);
      depths.push(depth + 1);
    }
  }
  return true;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

const HEX_HASH = /^[0-9a-f]{64}$/;

/** Parses a lowercase hex SHA-256 digest; throws FormatError naming `what` otherwise. */
export function hashFromHex(text: unknown, what: string): Hash {
  if (typeof text !== "string" || !HEX_HASH.test(text)) {
    throw new FormatError("bad-hash", `${what} must be 64 lowercase hex characters`);
  }
  return Buffer.from(text, "hex");
}

/** Standard padded base64 (RFC 4648 §4). */
export const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict standard base64 (RFC 4648 §4, padded); Buffer.from alone silently skips bad characters. Canonical only
 * (RFC 4648 §3.5: the pad bits are zero), so one byte string has one text: otherwise a signature or root could be
 * re-encoded into other text (another checkpoint note, another event) that still verifies.
 */
export function fromBase64(text: string, what: string): Buffer {
  if (!BASE64.test(text)) throw new FormatError("bad-base64", `${what} is not valid base64`);
  const bytes = Buffer.from(text, "base64");
  if (bytes.toString("base64") !== text)
    throw new FormatError("bad-base64", `${what} is not canonical base64 (non-zero pad bits)`);
  return bytes;
}

export const ZERO_HASH: Hash = Buffer.alloc(HASH_SIZE);

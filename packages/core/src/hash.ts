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

const encoder = new TextEncoder();

/**
 * RFC 8785 (JSON Canonicalization Scheme) bytes of a JSON value, as UTF-8.
 * Throws FormatError for values JSON cannot represent (undefined, NaN, Infinity, functions, cycles).
 */
export function canonicalBytes(value: unknown): Buffer {
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (cause) {
    throw new FormatError("not-canonicalizable", "value cannot be canonicalized as RFC 8785 JSON", { cause });
  }
  if (text === undefined) throw new FormatError("not-canonicalizable", "value has no JSON representation");
  return Buffer.from(encoder.encode(text));
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

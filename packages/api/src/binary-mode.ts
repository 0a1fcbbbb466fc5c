/**
 * CloudEvents HTTP protocol binding 1.0, binary content mode (§3.1): the attributes arrive as `ce-<name>` headers,
 * the data as the body, and `datacontenttype` as the Content-Type header. This module turns such a request back
 * into the structured JSON event (CloudEvents JSON format §3) that the producer signed, so that the signature
 * rules are the same in every mode. docs/FORMAT.md §3a is the normative description; this file implements it.
 */
import { formatPath, IngestError, MAX_EVENT_DEPTH, parseStrictJson } from "@auditsink/core";
import { ApiError } from "./errors.ts";

export const CE_HEADER_PREFIX = "ce-";

/** CloudEvents attribute names (spec §3.1.1, with this sink's 20-character limit, docs/FORMAT.md §3). */
const ATTRIBUTE_NAME = /^[a-z0-9]{1,20}$/;

/** Attributes that never travel as `ce-` headers in binary mode (HTTP binding §3.1.1, §3.1.2). */
const NOT_HEADERS: Record<string, string> = {
  datacontenttype: "datacontenttype travels as the Content-Type header in binary mode",
  data: "data is the body in binary mode",
};

/** Request headers and body of a binary-mode request, as the runtime delivered them. */
export interface BinaryRequest {
  headers: Headers;
  body: Uint8Array;
  /**
   * Header names as received, one per occurrence, where the runtime keeps them (Node's `rawHeaders`); the
   * Fetch API joins repeated headers with ", ", which would hide a duplicate.
   */
  rawHeaderNames?: readonly string[];
}

/** Whether a request is in binary mode: a `ce-specversion` header and a body that is not a CloudEvents format. */
export function isBinaryMode(headers: Headers, mediaType: string): boolean {
  return headers.has(`${CE_HEADER_PREFIX}specversion`) && !mediaType.startsWith("application/cloudevents");
}

/**
 * The structured event a binary-mode request carries. Throws IngestError("invalid-event") naming the header
 * (`ce-id`, `content-type`, `body`) for anything that cannot be mapped; the event itself is validated by core.
 */
export function eventFromBinary(request: BinaryRequest): Record<string, unknown> {
  const seen = new Set<string>();
  for (const raw of request.rawHeaderNames ?? []) {
    const name = raw.toLowerCase();
    if (!name.startsWith(CE_HEADER_PREFIX) && name !== "content-type") continue;
    if (seen.has(name)) throw invalid(name, "appears more than once");
    seen.add(name);
  }
  const entries: [string, string][] = [];
  for (const [name, value] of request.headers) {
    if (!name.startsWith(CE_HEADER_PREFIX)) continue;
    const attribute = name.slice(CE_HEADER_PREFIX.length);
    if (!ATTRIBUTE_NAME.test(attribute)) {
      throw invalid(name, "not a CloudEvents attribute name (1–20 lowercase letters or digits)");
    }
    if (Object.hasOwn(NOT_HEADERS, attribute)) throw invalid(name, NOT_HEADERS[attribute]!);
    entries.push([attribute, decodeHeaderValue(name, value)]);
  }
  const contentType = request.headers.get("content-type");
  const data = request.body.length > 0 ? dataMember(contentType, request.body) : undefined;
  // Object.fromEntries defines own properties: a name can never reach a prototype.
  return Object.fromEntries([
    ...entries,
    ...(contentType !== null ? [["datacontenttype", contentType]] : []),
    ...(data ? [data] : []),
  ]);
}

/**
 * The data member for a body (CloudEvents JSON format §3.1): a JSON media type (`application/json`, any
 * `…/json` or `…/…+json`) gives `data` holding the parsed JSON value; a `text/*` type gives `data` holding the
 * body as a string; anything else gives `data_base64`.
 */
function dataMember(contentType: string | null, body: Uint8Array): [string, unknown] {
  if (contentType === null)
    throw invalid("content-type", "a binary-mode event with a body needs a Content-Type");
  const media = contentType.split(";")[0]!.trim().toLowerCase();
  const [type, subtype = ""] = media.split("/");
  if (subtype === "json" || subtype.endsWith("+json")) {
    // The same strict JSON as a structured body (core/json.ts): UTF-8 without replacement, no duplicate member
    // names, bounded nesting (the event is level 1, its data level 2).
    return [
      "data",
      parseStrictJson(body, {
        maxDepth: MAX_EVENT_DEPTH - 1,
        statedDepth: MAX_EVENT_DEPTH,
        name: (path) => formatPath("body", path),
      }),
    ];
  }
  if (type === "text") {
    try {
      return ["data", new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body)];
    } catch {
      throw invalid("body", "not valid UTF-8");
    }
  }
  return ["data_base64", Buffer.from(body).toString("base64")];
}

/**
 * HTTP binding §3.1.3.2: a value that is an RFC 7230 §3.2.6 quoted-string is unquoted first, then one round of
 * percent-decoding runs; the decoded bytes must be UTF-8 (overlong forms such as `%C0%A0` are refused). Every
 * other character must be printable ASCII.
 */
export function decodeHeaderValue(name: string, value: string): string {
  let text = value;
  if (text.startsWith('"')) {
    const m = /^"((?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*)"$/.exec(text);
    if (!m) throw invalid(name, "an unterminated or malformed quoted string");
    text = m[1]!.replace(/\\(.)/g, "$1");
  }
  if (!/^[\x20-\x7e]*$/.test(text)) {
    throw invalid(name, "must be printable ASCII; percent-encode other characters as UTF-8");
  }
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x25) {
      bytes.push(c);
      continue;
    }
    const hex = text.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw invalid(name, `a '%' at ${i} is not followed by two hex digits`);
    bytes.push(Number.parseInt(hex, 16));
    i += 2;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(new Uint8Array(bytes));
  } catch {
    throw invalid(name, "percent-encoded bytes are not valid UTF-8");
  }
}

/**
 * Renames the event fields in a binary-mode error (`events[0].id`) after what carried them: the `ce-id`
 * header, the `content-type` header (datacontenttype) or the `body` (data, data_base64).
 */
export function renameBinaryField(error: unknown): unknown {
  if (!(error instanceof IngestError || error instanceof ApiError) || error.field === undefined) return error;
  const m = /^events\[0\]\.([a-z0-9_]+)(.*)$/.exec(error.field);
  if (!m) return error;
  const [, attribute, rest] = m as unknown as [string, string, string];
  const field =
    attribute === "datacontenttype"
      ? "content-type"
      : attribute === "data" || attribute === "data_base64"
        ? `body${rest}`
        : `${CE_HEADER_PREFIX}${attribute}${rest}`;
  const message = error.message.split(error.field).join(field);
  return error instanceof IngestError
    ? new IngestError(error.code, message, field, { cause: error })
    : new ApiError(error.code, message, field, { cause: error });
}

function invalid(field: string, message: string): IngestError {
  return new IngestError("invalid-event", `${field}: ${message}`, field);
}

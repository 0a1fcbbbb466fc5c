/**
 * RFC 9457 problem details, derived from error codes in one place. Every error the app returns goes through
 * `problemFor`, which switches on the code of core's CodedError (IngestError, StoreError, IntegrityError,
 * ApiError): where an error came from decides its status. Client input is a 4xx naming the field; stored data
 * that fails a check (core wraps it as IntegrityError where it reads it) and an integrity failure during a
 * commit are a 500 that is logged and alerted. Anything else is a 500 whose body says nothing of the internals.
 */
import {
  CodedError,
  FormatError,
  IngestError,
  type IngestErrorCode,
  IntegrityError,
  type IntegrityErrorCode,
  type StoreErrorCode,
} from "@auditsink/core";
import { HTTPException } from "hono/http-exception";
import { MAX_HEADER_BYTES } from "./schemas.ts";

export type ApiErrorCode =
  | "not-found"
  | "unauthorized"
  | "unsupported-media-type"
  | "method-not-allowed"
  | "invalid-query"
  | "ambiguous"
  | "headers-too-large"
  | "internal";

/** An error raised by the HTTP layer itself (unknown stream, missing admin token, bad query). */
export class ApiError extends CodedError<ApiErrorCode | IngestErrorCode> {
  override readonly name = "ApiError";
  constructor(
    code: ApiErrorCode | IngestErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  field?: string;
}

export const PROBLEM_BASE = "https://auditsink.dev/problems/";
export const PROBLEM_JSON = "application/problem+json";

type Code = IngestErrorCode | StoreErrorCode | IntegrityErrorCode | ApiErrorCode;

const STATUS: Record<Code, [number, string]> = {
  "invalid-request": [400, "Invalid request"],
  "invalid-event": [400, "Invalid event"],
  "invalid-stream": [400, "Invalid stream name"],
  "invalid-query": [400, "Invalid query"],
  "unknown-producer": [401, "Unknown producer"],
  "bad-signature": [401, "Bad producer signature"],
  "revoked-key": [401, "Revoked producer key"],
  unauthorized: [401, "Unauthorized"],
  "stream-not-allowed": [403, "Stream not allowed"],
  "not-found": [404, "Not found"],
  "method-not-allowed": [405, "Method not allowed"],
  "id-conflict": [409, "Event id conflict"],
  conflict: [409, "Conflict"],
  ambiguous: [409, "More than one match"],
  "too-large": [413, "Request too large"],
  "headers-too-large": [431, "Request line and headers too large"],
  "unsupported-media-type": [415, "Unsupported media type"],
  internal: [500, "Internal error"],
  "stored-object-corrupt": [500, "Stored data failed an integrity check"],
  "checkpoint-conflict": [500, "Commit refused by an integrity check"],
  unavailable: [503, "Unavailable"],
  "store-failed": [503, "Storage unavailable"],
  locked: [503, "Storage locked"],
};

export function problem(code: keyof typeof STATUS, detail: string, field?: string): Problem {
  const [status, title] = STATUS[code];
  return { type: `${PROBLEM_BASE}${code}`, title, status, detail, code, ...(field ? { field } : {}) };
}

const isCode = (code: string): code is Code => Object.hasOwn(STATUS, code);

/** What onError does with an error besides answering: log it (unexpected), and raise an alert (integrity). */
export interface ProblemOutcome {
  problem: Problem;
  /** A 5xx the operator should look at: logged. */
  unexpected: boolean;
  /** Stored data or a commit failed an integrity check: an alert goes out through the runtime's alert sink. */
  alert?: { code: IntegrityErrorCode; stream?: string; at?: string | number; message: string };
}

/** The problem for any thrown value. */
export function problemFor(error: unknown): ProblemOutcome {
  if (error instanceof IntegrityError) {
    // The store's content is the operator's concern, not the client's: the body says only what kind of failure.
    return {
      problem: problem(
        error.code,
        "the sink found stored data that fails an integrity check; the operator is alerted",
      ),
      unexpected: true,
      alert: { code: error.code, ...error.where, message: error.message },
    };
  }
  if (error instanceof CodedError && isCode(error.code)) {
    const field = error instanceof IngestError || error instanceof ApiError ? error.field : undefined;
    if (STATUS[error.code][0] >= 500) {
      // Storage details stay in the log; the client learns only whether to retry.
      const detail = error.code === "unavailable" ? error.message : "the store is unavailable; retry later";
      return { problem: problem(error.code, detail), unexpected: true };
    }
    return { problem: problem(error.code, error.message, field), unexpected: false };
  }
  // Core's parsers throw FormatError for request data they are given (a key, a cursor, an event that cannot be
  // canonicalized); whatever is parsed from the store is wrapped as IntegrityError where it is read, above.
  if (error instanceof FormatError)
    return { problem: problem("invalid-request", error.message), unexpected: false };
  if (error instanceof HTTPException) {
    const code =
      error.status === 413 ? "too-large" : error.status === 415 ? "unsupported-media-type" : undefined;
    if (code) return { problem: problem(code, error.message || STATUS[code][1]), unexpected: false };
    if (error.status < 500) {
      return {
        problem: { ...problem("invalid-request", error.message), status: error.status },
        unexpected: false,
      };
    }
  }
  return { problem: problem("internal", "the sink failed to handle the request"), unexpected: true };
}

/**
 * What the Node HTTP server answers a request its parser refused before the app saw it (its `clientError`
 * event), as an RFC 9457 problem like every other refusal: the request line and headers over the server's limit
 * (431, declared on every operation), a malformed request (400); a request that took too long to arrive gets
 * Node's own 408. Undefined when there is nothing to answer (the connection was reset).
 */
export function clientErrorResponse(nodeCode: string | undefined): string | undefined {
  if (nodeCode === "ERR_HTTP_REQUEST_TIMEOUT")
    return "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n";
  const body =
    nodeCode === "HPE_HEADER_OVERFLOW"
      ? problem(
          "headers-too-large",
          `the request line and headers exceed the server's limit (${MAX_HEADER_BYTES / 1024} KiB); nothing was read`,
        )
      : nodeCode?.startsWith("HPE_")
        ? problem("invalid-request", "the request is not well-formed HTTP/1.1")
        : undefined;
  if (!body) return undefined;
  const text = JSON.stringify(body);
  return [
    `HTTP/1.1 ${body.status} ${body.title}`,
    `Content-Type: ${PROBLEM_JSON}`,
    `Content-Length: ${Buffer.byteLength(text)}`,
    "Connection: close",
    "",
    text,
  ].join("\r\n");
}

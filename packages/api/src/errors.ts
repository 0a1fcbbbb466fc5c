/**
 * RFC 9457 problem details, derived from error codes in one place. Every error the app returns goes through
 * `problemFor`: core IngestError / StoreError / FormatError codes map to a status; anything else is a 500 whose
 * body says nothing about the server's internals.
 */
import {
  FormatError,
  IngestError,
  type IngestErrorCode,
  StoreError,
  type StoreErrorCode,
} from "@auditsink/core";
import { HTTPException } from "hono/http-exception";

export type ApiErrorCode =
  | "not-found"
  | "unauthorized"
  | "unsupported-media-type"
  | "method-not-allowed"
  | "invalid-query"
  | "internal";

/** An error raised by the HTTP layer itself (unknown stream, missing admin token, bad query). */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly code: ApiErrorCode | IngestErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
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

const STATUS: Record<IngestErrorCode | StoreErrorCode | ApiErrorCode, [number, string]> = {
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
  "too-large": [413, "Request too large"],
  "unsupported-media-type": [415, "Unsupported media type"],
  internal: [500, "Internal error"],
  unavailable: [503, "Unavailable"],
  "store-failed": [503, "Storage unavailable"],
  locked: [503, "Storage locked"],
};

export function problem(code: keyof typeof STATUS, detail: string, field?: string): Problem {
  const [status, title] = STATUS[code];
  return { type: `${PROBLEM_BASE}${code}`, title, status, detail, code, ...(field ? { field } : {}) };
}

/** The problem for any thrown value; `unexpected` is true when it is a 500 the operator should look at. */
export function problemFor(error: unknown): { problem: Problem; unexpected: boolean } {
  if (error instanceof IngestError || error instanceof ApiError) {
    return { problem: problem(error.code, error.message, error.field), unexpected: false };
  }
  if (error instanceof StoreError) {
    // Storage details stay in the log; the client learns only whether to retry.
    const detail = error.code === "conflict" ? error.message : "the store is unavailable; retry later";
    return { problem: problem(error.code, detail), unexpected: error.code !== "conflict" };
  }
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

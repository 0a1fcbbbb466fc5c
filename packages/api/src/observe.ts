/**
 * What the app tells its runtime about each request it answered, for the request log and the metrics: the
 * route pattern (never the raw path, whose stream names and ids would make every request its own series), the
 * status, the problem code of a refusal, and for an event submission the stream, its event count and the
 * producer key ids that signed it. Runtime-neutral: embedded turns it into a log line and Prometheus metrics,
 * AWS into EMF metrics. Nothing here carries a header value, a token, a signature or a payload.
 */
import type { Context, MiddlewareHandler } from "hono";
import { requestId } from "hono/request-id";
import { routePath } from "hono/route";

export interface RequestRecord {
  /** The request's id: the caller's `X-Request-Id` when it is a plain token, otherwise a new UUID; echoed back. */
  requestId: string;
  method: string;
  /** The matched route pattern (`/v1/streams/:stream/events`), or `unmatched`. */
  route: string;
  status: number;
  durationMs: number;
  /** The `stream` path parameter, when the route has one. */
  stream?: string;
  /** Events in the submission (an event submission whose body was read). */
  events?: number;
  /** Distinct producer key ids (`sigkeyid`) of an accepted submission: set only once every event authenticated. */
  producerKeyIds?: string[];
  /** The RFC 9457 problem `code` of a refusal. */
  problem?: string;
  /** What onError handled (a 5xx's cause is in the runtime's log, never in the response). */
  error?: unknown;
}

/** The event submission route, as Hono registers it. */
export const SUBMIT_ROUTE = "/v1/streams/:stream/events";

const submissions = new WeakMap<Request, unknown[]>();

/** Called by the submission route once it has read its events, so the record can count them. */
export function noteSubmission(c: Context, events: unknown[]): void {
  submissions.set(c.req.raw, events);
}

/**
 * Middleware (registered before every other) that calls `onRequest` once per answered request, after the
 * response is made. A runtime that learns later whether the client received it (Node) matches the record to its
 * connection by the Request object, passed along.
 */
export function observeRequests(
  onRequest: (record: RequestRecord, request: Request) => void,
): MiddlewareHandler[] {
  const observe: MiddlewareHandler = async (c, next) => {
    const started = performance.now();
    await next();
    const route = routePath(c, -1);
    const events = submissions.get(c.req.raw);
    const id = c.get("requestId" as never) as string;
    // Responses made by onError, notFound or a body limit replace the one the request-id middleware marked.
    if (!c.res.headers.has("x-request-id")) c.header("X-Request-Id", id);
    const record: RequestRecord = {
      requestId: id,
      method: c.req.method,
      route: route === "*" || route === "/*" || route === "" ? "unmatched" : route,
      status: c.res.status,
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
    };
    const stream = route.includes(":stream") ? c.req.param("stream") : undefined;
    if (stream !== undefined) record.stream = stream;
    if (events) {
      record.events = events.length;
      if (c.res.status < 300) record.producerKeyIds = keyIdsOf(events);
    }
    if (c.res.status >= 400 && c.res.headers.get("content-type")?.startsWith("application/problem+json")) {
      const body = (await c.res
        .clone()
        .json()
        .catch(() => undefined)) as { code?: unknown } | undefined;
      if (typeof body?.code === "string") record.problem = body.code;
    }
    if (c.error !== undefined) record.error = c.error;
    onRequest(record, c.req.raw);
  };
  return [requestId(), observe];
}

/**
 * What a request did to events, for the `events accepted` and `events rejected` counters of every runtime:
 * an answered submission accepted its events; a refused one rejected them, by problem code (a body that is not
 * a list of events counts as one). 499 (the client hung up before an answer) is neither.
 */
export function submissionOutcome(
  r: RequestRecord,
): { accepted: number } | { rejected: number; code: string } | undefined {
  if (r.method !== "POST" || r.route !== SUBMIT_ROUTE) return undefined;
  if (r.status < 300) return { accepted: r.events ?? 0 };
  if (r.status >= 400 && r.status !== 499) return { rejected: r.events ?? 1, code: r.problem ?? "unknown" };
  return undefined;
}

function keyIdsOf(events: unknown[]): string[] {
  const ids = new Set<string>();
  for (const e of events) {
    const id = (e as { sigkeyid?: unknown } | null)?.sigkeyid;
    if (typeof id === "string") ids.add(id);
  }
  return [...ids];
}

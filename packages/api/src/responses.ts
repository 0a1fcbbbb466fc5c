/**
 * What the OpenAPI document says besides the routes: its fixed part (info, servers) and the responses every
 * route shares — RFC 9457 problems by status, and the answers API Gateway gives before the app on AWS.
 */
import { z } from "@hono/zod-openapi";
import { PROBLEM_JSON } from "./errors.ts";
import { MAX_HEADER_BYTES, ProblemSchema } from "./schemas.ts";

/** The OpenAPI document's fixed part; `servers` names the origin the document was fetched from. */
export function documentConfig(origin?: string) {
  return {
    openapi: "3.1.0",
    info: {
      title: "auditsink API",
      version: "1.0.0",
      description:
        "Tamper-evident audit sink: signed CloudEvents in, per-stream hash chains and RFC 9162 Merkle trees, C2SP signed checkpoints, a signed receipt per event. Errors are RFC 9457 problem details; a query parameter a route does not declare is a 400, a method a path does not declare is a 405 with `Allow`. docs/FORMAT.md is the normative format.",
    },
    servers: [
      origin
        ? { url: origin, description: "This sink (the origin this document was served from)" }
        : { url: "/", description: "The sink serving this document" },
    ],
  };
}

/** How the document marks a status the HTTP server answers before the app runs (`clientErrorResponse`). */
export const HTTP_SERVER = "HTTP server:";

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: "Invalid request: a parameter, the body, or an unknown or repeated query parameter (the problem's `field` names it)",
  401: "Not authenticated (admin token, or the producer's key or signature)",
  403: "Not allowed",
  404: "Not found",
  409: "Conflict",
  413: "Body too large",
  415: "Unsupported media type",
  500: "Internal error, or stored data that fails an integrity check (the operator is alerted)",
  503: "Storage unavailable or locked; retry later",
};

/**
 * The problem responses of a route: the statuses given, plus 400, which every route can answer (an unknown or
 * repeated query parameter). Routes with a body add 413, routes that reach a port 500 and 503. The status API
 * Gateway answers before the app on AWS (429, throttling) is declared too, with API Gateway's own body.
 */
export const problems = (...statuses: number[]) => {
  const all = [...new Set([400, ...statuses])].sort();
  return {
    ...Object.fromEntries(
      all.map((s) => [
        s,
        {
          description: `${PROBLEM_DESCRIPTIONS[s] ?? "Problem"} (RFC 9457 problem details)`,
          content: { [PROBLEM_JSON]: { schema: ProblemSchema } },
        },
      ]),
    ),
    429: {
      description:
        'AWS only: API Gateway throttled the request (its own body, `{"message": "Too Many Requests"}`); retry with backoff',
      content: { "application/json": { schema: GatewayMessage } },
    },
    431: {
      description: `${HTTP_SERVER} the request line and headers together exceed its limit (${MAX_HEADER_BYTES / 1024} KiB on the embedded sink, room for every parameter at its longest) and were not read (RFC 9457 problem details, code \`headers-too-large\`)`,
      content: { [PROBLEM_JSON]: { schema: ProblemSchema } },
    },
  };
};

const GatewayMessage = z.object({ message: z.string() }).openapi("GatewayMessage");

/** AWS only: the read and admin routes are IAM-authorized by API Gateway, which refuses before the app runs. */
export const iamGateway = {
  403: {
    description:
      'AWS only: API Gateway refused the request\'s IAM (SigV4) authorization (its own body, `{"message": "Forbidden"}`)',
    content: { "application/json": { schema: GatewayMessage } },
  },
};

/**
 * The HTTP API v1 as one Hono app. It only knows Request → Response: the embedded runtime serves it with
 * @hono/node-server, AWS with hono/aws-lambda, each passing its own adapters as ports (AppDeps).
 * Errors become RFC 9457 problem+json in one place (app.onError, via errors.ts).
 */
import {
  type AlertSink,
  checkpointKey,
  checkpointKeyFor,
  compactReceipts,
  type EventIndex,
  FormatError,
  formatPath,
  formatVerifierKey,
  MAX_EVENT_DEPTH,
  originFor,
  type ProducerAdmin,
  parseCheckpointText,
  parseNote,
  parseStrictJson,
  parseVerifierKey,
  publicKeyFromSpki,
  receiptTlogProof,
  type Sink,
  toHex,
} from "@auditsink/core";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { type ApiReferenceAssets, serveApiReference } from "./api-reference.ts";
import { eventFromBinary, isBinaryMode, renameBinaryField } from "./binary-mode.ts";
import { ApiError, PROBLEM_JSON, type Problem, problem, problemFor } from "./errors.ts";
import { noteSubmission, observeRequests, type RequestRecord } from "./observe.ts";
import { documentConfig, iamGateway, problems } from "./responses.ts";
import { enforceRouteTable } from "./route-table.ts";
import {
  AcknowledgedResponse,
  AcknowledgeFindingsBody,
  BinaryModeHeaders,
  CheckpointResponse,
  ConsistencyQuery,
  EventsPage,
  EventsQuery,
  FindingsResponse,
  HealthResponse,
  InclusionQuery,
  KeysQuery,
  KeysResponse,
  MAX_BATCH_EVENTS,
  MAX_BODY_BYTES,
  MAX_SMALL_BODY_BYTES,
  ProducerInfoSchema,
  ProducersResponse,
  ProofResponse,
  ReceiptQuery,
  ReceiptSchema,
  ReceiptsResponse,
  RecordsQuery,
  RecordsResponse,
  RegisterProducerBody,
  RevokeBody,
  StreamParams,
  StreamsResponse,
  SubmitQuery,
  signedEventJsonSchema,
} from "./schemas.ts";
import { newestCheckpoint, registerTlogRoutes } from "./tlog.ts";

export interface AppKeys {
  /** The deployment name: checkpoint origins are `<deployment>/<stream>`. */
  deployment: string;
  /** Every key that signs or signed this deployment's checkpoints, newest first. */
  keys: { verifierKey: string; publicKeyPem?: string }[];
}

/** What the app needs from its runtime. Nothing here is local- or AWS-specific. */
export interface AppDeps {
  sink: Sink;
  /** The producer registry; pass one that records changes in the system stream (core AuditedProducerAdmin). */
  producers: ProducerAdmin;
  events: EventIndex;
  keys: AppKeys;
  /**
   * Decides whether a request may register and revoke producers: embedded checks the bearer token; on AWS,
   * API Gateway has already authorized the caller with IAM and the runtime reads that from the request context
   * (hono/aws-lambda puts the API Gateway event in `context.env`).
   */
  authorizeAdmin(token: string | undefined, context: Context): boolean | Promise<boolean>;
  /**
   * Extra fields for /healthz (for example the scheduled verifier's last run). `status: "degraded"` makes the
   * route answer 503.
   */
  health?(): Record<string, unknown> | Promise<Record<string, unknown>>;
  /**
   * Whether the unauthenticated /healthz names the deployment (default true). On AWS it does not: the
   * deployment name carries the account id.
   */
  healthShowsDeployment?: boolean;
  /**
   * Standing verification findings and their acknowledgement (the embedded scheduled verifier). Absent: the
   * `/v1/findings` routes are not served.
   */
  findings?: {
    list(): Promise<{ open: unknown[]; acknowledged: unknown[] }>;
    /** Records the acknowledgement in `_system`, then closes the findings; StoreError "conflict" for an id not open. */
    acknowledge(ids: string[], by: string, note: string): Promise<unknown[]>;
  };
  /** Called with every unexpected (500/503) error; the client sees only a generic problem. */
  logError?(error: unknown, request: { method: string; path: string }): void;
  /**
   * The runtime's alert sink: stored data that fails an integrity check on a read, or a commit refused by one
   * (a fork check), raises an alert here besides the log line (code `stored-object-corrupt` or
   * `checkpoint-conflict`, docs/FORMAT.md §Runtime alert codes).
   */
  alerts?: AlertSink;
  /** Told of every answered request (observe.ts): the runtime's request log and metrics. */
  onRequest?(record: RequestRecord, request: Request): void;
  /** Serves `GET /metrics` in the Prometheus text format when present (docs/OPERATIONS.md §Metrics). */
  metrics?(): Promise<{ contentType: string; body: string }>;
  /**
   * The newest checkpoint of a stream with witness cosignatures (docs/TRANSPARENCY.md §3), when the runtime
   * submits to witnesses; `GET /v1/streams/{stream}/checkpoint` adds it as `cosigned`.
   */
  cosigned?(stream: string): Promise<{ size: number; note: string } | undefined>;
  /** The Swagger UI files for the rendered API reference at `/docs`; absent: `/docs` is not served. */
  apiReference?: ApiReferenceAssets;
}

/** A c2sp.org/tlog-proof has no media type of its own; like a checkpoint, it is served as UTF-8 text. */
export const TLOG_PROOF_TYPE = "text/plain; charset=utf-8";
export const CLOUDEVENTS_JSON = "application/cloudevents+json";
export const CLOUDEVENTS_BATCH_JSON = "application/cloudevents-batch+json";

/** The admin routes that change the registry: the admin check runs before their body is read. */
const ADMIN_WRITE_PATHS = ["/v1/producers", "/v1/producers/:id/revoke"];

const problemResponse = (p: Problem) =>
  new Response(JSON.stringify(p), { status: p.status, headers: { "content-type": PROBLEM_JSON } });

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

/** Constant-time comparison for bearer tokens (no node:crypto: the app runs on any runtime). */
export function bearerTokenAuthorizer(expected: string): (token: string | undefined) => boolean {
  return (token) => {
    if (token === undefined || token.length !== expected.length) return false;
    let diff = 0;
    for (let i = 0; i < expected.length; i++) diff |= token.charCodeAt(i) ^ expected.charCodeAt(i);
    return diff === 0;
  };
}

/**
 * @example
 *   const app = createApp({ sink, producers, events, keys, authorizeAdmin: bearerTokenAuthorizer(token) });
 *   serve({ fetch: app.fetch, port: 8787 });          // Node
 *   export const handler = handle(app);               // AWS Lambda
 */
export function createApp(deps: AppDeps): OpenAPIHono {
  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) {
        const issue = result.error.issues[0];
        const field = issue ? issue.path.map(String).join(".") : undefined;
        return problemResponse(
          problem("invalid-request", `${field ? `${field}: ` : ""}${issue?.message ?? "invalid"}`, field),
        );
      }
    },
  });
  const { sink } = deps;

  app.openAPIRegistry.registerComponent("securitySchemes", "adminToken", {
    type: "http",
    scheme: "bearer",
    description: "The deployment's admin token (embedded: <data>/admin-token).",
  });

  app.onError(async (error, c) => {
    const { problem: p, unexpected, alert } = problemFor(error);
    const request = { method: c.req.method, path: c.req.path };
    if (unexpected) deps.logError?.(error, request);
    if (alert && deps.alerts) {
      // Delivered before answering, so an operator hears of it even if the process ends right after.
      await deps.alerts
        .send([{ ...alert, time: new Date().toISOString() }])
        .catch((e: unknown) => deps.logError?.(e, request));
    }
    return problemResponse(p);
  });
  app.notFound((c) => {
    const answer = unmatched(c.req.method, c.req.path);
    if (answer.status === 405) {
      const response = problemResponse(
        problem("method-not-allowed", `${c.req.path} takes ${answer.allow.join(", ")}, not ${c.req.method}`),
      );
      response.headers.set("allow", answer.allow.join(", "));
      return response;
    }
    return problemResponse(problem("not-found", `no route ${c.req.method} ${c.req.path}`));
  });

  if (deps.onRequest) app.use("*", ...observeRequests(deps.onRequest));
  const eventSchema = signedEventJsonSchema();
  // Admin writes authenticate before anything reads their body (registered first: Hono runs middleware in
  // order, and the body limit below reads a chunked body as it counts it).
  const requireAdmin = createMiddleware(async (c, next) => {
    const header = c.req.header("authorization");
    const token = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
    if (!(await deps.authorizeAdmin(token, c))) {
      throw new ApiError("unauthorized", "a valid admin bearer token is required");
    }
    await next();
  });
  app.on(
    "POST",
    [...ADMIN_WRITE_PATHS, ...(deps.findings ? ["/v1/findings/acknowledge"] : [])],
    requireAdmin,
  );
  if (deps.findings) app.on("GET", "/v1/findings", requireAdmin);
  // Every route has a body limit: event submissions MAX_BODY_BYTES, everything else MAX_SMALL_BODY_BYTES.
  const tooLarge = (max: number) =>
    problemResponse(problem("too-large", `the body exceeds ${max} bytes`, "body"));
  const limits = new Map(
    [MAX_BODY_BYTES, MAX_SMALL_BODY_BYTES].map((max) => [
      max,
      bodyLimit({ maxSize: max, onError: () => tooLarge(max) }),
    ]),
  );
  app.use("*", (c, next) => {
    const events = c.req.method === "POST" && /^\/v1\/streams\/[^/]+\/events$/.test(c.req.path);
    const max = events ? MAX_BODY_BYTES : MAX_SMALL_BODY_BYTES;
    // A body with a Content-Length (and no Transfer-Encoding) is judged by its header, as bodyLimit judges it,
    // without asking for `c.req.raw.body`: on @hono/node-server that builds a web Request and stream around the
    // Node request (~70 µs), where the route's arrayBuffer() reads the Node request directly. Chunked bodies
    // are counted by bodyLimit.
    const length = c.req.header("content-length");
    if (
      length !== undefined &&
      c.req.header("transfer-encoding") === undefined &&
      c.req.method !== "GET" &&
      c.req.method !== "HEAD"
    ) {
      return Number.parseInt(length, 10) > max ? Promise.resolve(tooLarge(max)) : next();
    }
    return limits.get(max)!(c, next);
  });
  // The OpenAPI document is the route table: undeclared query parameters are a 400, undeclared methods a 405.
  const unmatched = enforceRouteTable(app, () => app.getOpenAPI31Document(documentConfig()).paths as never);
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/streams/{stream}/events",
      summary: "Submit one event or a batch; returns a signed receipt per event",
      description: `One CloudEvent (structured mode: ${CLOUDEVENTS_JSON} or application/json; binary mode: \`ce-*\` headers with the data as the body, any Content-Type, docs/FORMAT.md §3a), or up to ${MAX_BATCH_EVENTS} (${CLOUDEVENTS_BATCH_JSON}, a JSON array, or {"events": [...]}) and at most ${MAX_BODY_BYTES} bytes. All or nothing. A retry of an accepted source+id returns the original receipt.`,
      request: {
        params: StreamParams,
        query: SubmitQuery,
        headers: BinaryModeHeaders,
        body: {
          required: true,
          content: {
            [CLOUDEVENTS_JSON]: { schema: eventSchema as never },
            [CLOUDEVENTS_BATCH_JSON]: { schema: { type: "array", items: eventSchema } as never },
            "application/json": {
              schema: {
                oneOf: [
                  eventSchema,
                  { type: "array", items: eventSchema },
                  {
                    type: "object",
                    properties: { events: { type: "array", items: eventSchema } },
                    required: ["events"],
                  },
                ],
              } as never,
            },
            "*/*": {
              schema: {
                description:
                  "Binary mode (with a `ce-specversion` header): the event's data. A JSON media type gives `data` (the parsed value), `text/*` gives `data` (the text), anything else `data_base64`; the Content-Type is the event's `datacontenttype`.",
              } as never,
            },
          },
        },
      },
      responses: {
        200: json(
          ReceiptsResponse,
          "One receipt per event, in order: full, or compact when `receipts=compact` (docs/FORMAT.md §9b)",
        ),
        ...problems(401, 403, 409, 413, 415, 500, 503),
      },
    }),
    async (c) => {
      const { stream } = c.req.valid("param");
      const { consistencyFrom, receipts: form } = c.req.valid("query");
      const { events, binary } = await readEvents(c);
      noteSubmission(c, events);
      const receipts = await sink.submit(stream, events).catch((e: unknown) => {
        throw binary ? renameBinaryField(e) : e;
      });
      const answer = form === "compact" ? compactReceipts(receipts) : { receipts };
      const to = receipts[0] ? openCheckpointSize(receipts[0].checkpoint) : undefined;
      if (consistencyFrom === undefined || to === undefined || consistencyFrom > to) {
        return c.json(answer, 200);
      }
      // Every receipt of one request carries the same checkpoint (one group commit).
      // From size 0 (c2sp.org/tlog-witness `old 0`) and between equal sizes the proof is empty: no read needed.
      const proof =
        consistencyFrom === 0 || consistencyFrom === to
          ? []
          : (
              await (await treeOf(sink, stream, to, "consistencyFrom")).consistencyProof(consistencyFrom, to)
            ).map(toHex);
      return c.json({ ...answer, consistency: { from: consistencyFrom, to, proof } }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/streams",
      summary: "List streams with their size and newest checkpoint",
      responses: { 200: json(StreamsResponse, "Streams"), ...problems(500, 503), ...iamGateway },
    }),
    async (c) => {
      const heads = sink.options.heads;
      const streams = [];
      for (const stream of await heads.streams()) {
        const h = await heads.get(stream);
        if (h) streams.push({ stream, size: h.size, ...(h.checkpoint ? { checkpoint: h.checkpoint } : {}) });
      }
      return c.json({ streams }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/streams/{stream}/checkpoint",
      summary: "The newest signed checkpoint of a stream",
      request: { params: StreamParams },
      responses: {
        200: json(CheckpointResponse, "Signed checkpoint (C2SP signed note)"),
        ...problems(404, 500, 503),
        ...iamGateway,
      },
    }),
    async (c) => {
      const { stream } = c.req.valid("param");
      const checkpoint = await newestCheckpoint(sink, stream);
      const cosigned = await deps.cosigned?.(stream);
      return c.json(
        {
          stream,
          size: checkpoint.size,
          checkpoint: checkpoint.text,
          ...(cosigned ? { cosigned: { size: cosigned.size, checkpoint: cosigned.note } } : {}),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/streams/{stream}/records",
      summary: `Records [from, to) of a stream, at most ${MAX_BATCH_EVENTS}`,
      request: { params: StreamParams, query: RecordsQuery },
      responses: { 200: json(RecordsResponse, "Records"), ...problems(404, 500, 503), ...iamGateway },
    }),
    async (c) => {
      const { stream } = c.req.valid("param");
      const { from, to } = c.req.valid("query");
      if (to < from) throw new ApiError("invalid-request", "to: must not be less than from", "to");
      if (to - from > MAX_BATCH_EVENTS)
        throw new ApiError("invalid-request", `to: at most ${MAX_BATCH_EVENTS} records per request`, "to");
      const tree = await treeOf(sink, stream, to, "to");
      const records = (await tree.records(from, to)).map((r) => ({
        index: r.record.index,
        recordHash: toHex(r.hash),
        record: r.record as unknown as Record<string, unknown>,
      }));
      return c.json({ stream, records }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/streams/{stream}/proofs/inclusion",
      summary: "RFC 9162 inclusion proof of a record in the tree of a given size",
      request: { params: StreamParams, query: InclusionQuery },
      responses: {
        200: json(ProofResponse, "Inclusion proof (hex hashes)"),
        ...problems(404, 500, 503),
        ...iamGateway,
      },
    }),
    async (c) => {
      const { stream } = c.req.valid("param");
      const { index, size } = c.req.valid("query");
      if (index >= size) throw new ApiError("invalid-request", "index: must be less than size", "index");
      const tree = await treeOf(sink, stream, size, "size");
      const proof = (await tree.inclusionProof(index, size)).map(toHex);
      const [record] = await tree.records(index, index + 1);
      // docs/FORMAT.md §10: the checkpoint of that size when the sink signed one.
      const signed = await sink.options.objects.get(checkpointKey(stream, size));
      return c.json(
        {
          stream,
          index,
          size,
          recordHash: toHex(record!.hash),
          leafHash: toHex(record!.leaf),
          root: toHex(await tree.root(size)),
          proof,
          ...(signed ? { checkpoint: new TextDecoder().decode(signed) } : {}),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/streams/{stream}/proofs/consistency",
      summary: "RFC 9162 consistency proof between two tree sizes",
      request: { params: StreamParams, query: ConsistencyQuery },
      responses: {
        200: json(ProofResponse, "Consistency proof (hex hashes)"),
        ...problems(404, 500, 503),
        ...iamGateway,
      },
    }),
    async (c) => {
      const { stream } = c.req.valid("param");
      const { from, to } = c.req.valid("query");
      if (from > to) throw new ApiError("invalid-request", "from: must be 0 … to", "from");
      const tree = await treeOf(sink, stream, to, "to");
      const proof = (await tree.consistencyProof(from, to)).map(toHex);
      return c.json({ stream, from, to, root: toHex(await tree.root(to)), proof }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/events",
      summary:
        "Find events by agent, run, type, trace id, source, id, producer, event time and received time, paginated",
      description:
        "Every given parameter must match. Order: on the embedded sink, a query naming a facet or an event-time window returns events by event `time`, then commit order; one with only a received-time window, by `received`, then commit order; one with neither, in commit order (docs/EMBEDDED.md §Finding events). Other runtimes return them stream by stream in index order. `cursor` (opaque) continues a page: no event is returned twice, and every event that existed when paging began is on some page, however much is ingested meanwhile. Each result is the stored record (`stream`, `index`, `recordHash` link to it; verify with `GET /v1/receipts` or `auditsink verify`).",
      request: { query: EventsQuery },
      responses: { 200: json(EventsPage, "A page of events"), ...problems(500, 503), ...iamGateway },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const page = await deps.events.find(
        Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) as typeof q,
      );
      return c.json(page as never, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/receipts",
      summary:
        "The receipt of an accepted event, by its source and id (for a producer that lost the response)",
      description:
        "A receipt built now, with the same stream, index, record hash, source and id as the one the submission returned; its checkpoint is the stream's newest, and its inclusion proof is against that checkpoint. It verifies like any receipt (docs/FORMAT.md §9).",
      request: { query: ReceiptQuery },
      responses: {
        200: {
          description: "The receipt: JSON, or with `format=tlog-proof` the c2sp.org/tlog-proof text",
          content: {
            "application/json": { schema: ReceiptSchema },
            "text/plain": {
              schema: z
                .string()
                .openapi({ example: "c2sp.org/tlog-proof@v1\nextra eyJp…\nindex 0\n\n<checkpoint>" }),
            },
          },
        },
        ...problems(404, 409, 500, 503),
        ...iamGateway,
      },
    }),
    async (c) => {
      const { source, id, producer, format } = c.req.valid("query");
      const { events } = await deps.events.find({ source, id, ...(producer ? { producer } : {}), limit: 2 });
      const found = events[0];
      if (!found) {
        throw new ApiError(
          "not-found",
          `no accepted event has source ${source} and id ${id}${producer ? ` from producer ${producer}` : ""}`,
        );
      }
      if (events.length > 1) {
        throw new ApiError(
          "ambiguous",
          `producers ${events.map((e) => e.producer).join(" and ")} each sent source ${source} id ${id}: name one with ?producer=`,
          "producer",
        );
      }
      const newest = await newestCheckpoint(sink, found.stream);
      const size = openCheckpointSize(newest.text) ?? newest.size;
      if (found.index >= size) {
        throw new ApiError(
          "unavailable",
          "the event is committed but not yet under a checkpoint; retry shortly",
        );
      }
      const tree = await treeOf(sink, found.stream, size, "stream");
      const receipt = {
        stream: found.stream,
        index: found.index,
        recordHash: found.recordHash,
        source: found.event.source,
        id: found.event.id,
        checkpoint: newest.text,
        inclusionProof: (await tree.inclusionProof(found.index, size)).map(toHex),
      };
      if (format === "tlog-proof")
        return c.body(receiptTlogProof(receipt), 200, { "content-type": TLOG_PROOF_TYPE }) as never;
      return c.json(receipt, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/producers",
      summary: "Register a producer (or add a key to one); recorded in the _system stream",
      security: [{ adminToken: [] }],
      request: {
        body: { required: true, content: { "application/json": { schema: RegisterProducerBody } } },
      },
      responses: {
        201: json(ProducerInfoSchema, "The producer"),
        ...problems(401, 409, 413, 500, 503),
        ...iamGateway,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const info = await deps.producers.register({
        id: body.id,
        publicKey: publicKeyFromSpki(body.publicKey),
        streams: body.streams,
        ...(body.heartbeatSeconds !== undefined ? { heartbeatSeconds: body.heartbeatSeconds } : {}),
      });
      return c.json(info, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/producers",
      summary: "List producers and their public keys",
      responses: { 200: json(ProducersResponse, "Producers"), ...problems(500, 503), ...iamGateway },
    }),
    async (c) => c.json({ producers: await deps.producers.list() }, 200),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/producers/{id}/revoke",
      summary: "Revoke one key, or every key, of a producer; recorded in the _system stream",
      security: [{ adminToken: [] }],
      request: {
        params: RegisterProducerBody.pick({ id: true }).openapi({}),
        // Described, not validated by the route: an empty body (revoke every key) is allowed.
        body: {
          required: false,
          content: {
            "application/json": {
              schema: {
                type: "object",
                properties: { keyId: { type: "string", pattern: "^[0-9a-f]{64}$" } },
              } as never,
            },
          },
        },
      },
      responses: {
        200: json(ProducerInfoSchema, "The producer"),
        ...problems(401, 409, 413, 500, 503),
        ...iamGateway,
      },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const text = await c.req.text();
      let keyId: string | undefined;
      if (text.trim() !== "") {
        const parsed = RevokeBody.safeParse(parseJson(text));
        if (!parsed.success) throw new ApiError("invalid-request", "keyId: must be a 64-hex key id", "keyId");
        keyId = parsed.data.keyId;
      }
      return c.json(await deps.producers.revoke(id, keyId), 200);
    },
  );

  const findings = deps.findings;
  if (findings) {
    app.openapi(
      createRoute({
        method: "get",
        path: "/v1/findings",
        summary: "Standing verification findings (open until acknowledged) and acknowledged ones",
        security: [{ adminToken: [] }],
        responses: { 200: json(FindingsResponse, "Findings"), ...problems(401, 500) },
      }),
      async (c) => {
        return c.json((await findings.list()) as never, 200);
      },
    );
    app.openapi(
      createRoute({
        method: "post",
        path: "/v1/findings/acknowledge",
        summary: "Acknowledge open findings; recorded in the _system stream before they close",
        security: [{ adminToken: [] }],
        request: {
          body: { required: true, content: { "application/json": { schema: AcknowledgeFindingsBody } } },
        },
        responses: {
          200: json(AcknowledgedResponse, "The findings closed"),
          ...problems(401, 409, 413, 500, 503),
        },
      }),
      async (c) => {
        const body = c.req.valid("json");
        const closed = await findings.acknowledge(body.findings, body.by ?? "admin", body.note);
        return c.json({ acknowledged: closed } as never, 200);
      },
    );
  }

  registerTlogRoutes(app, sink, deps.cosigned);

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/keys",
      summary: "The deployment's checkpoint verifier keys (what an auditor pins)",
      request: { query: KeysQuery },
      responses: { 200: json(KeysResponse, "Verifier keys"), ...problems(), ...iamGateway },
    }),
    (c) => {
      const { stream } = c.req.valid("query");
      if (stream === undefined) return c.json(deps.keys, 200);
      const origin = originFor(deps.keys.deployment, stream);
      const keys = deps.keys.keys.map((k) => ({
        verifierKey: k.verifierKey,
        streamVerifierKey: formatVerifierKey(checkpointKeyFor(parseVerifierKey(k.verifierKey), origin)),
        ...(k.publicKeyPem ? { publicKeyPem: k.publicKeyPem } : {}),
      }));
      return c.json({ deployment: deps.keys.deployment, stream, keys }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/healthz",
      summary:
        "Health: 200 `ok`, or 503 `degraded` while storage refuses writes or a verification finding is unacknowledged",
      responses: {
        200: json(HealthResponse, "Healthy"),
        ...problems(500),
        503: json(HealthResponse, "Degraded: the body's fields say why (a load balancer takes the node out)"),
      },
    }),
    async (c) => {
      const extra = (await deps.health?.()) ?? {};
      const degraded = extra.status === "degraded";
      return c.json(
        {
          ...(deps.healthShowsDeployment === false ? {} : { deployment: deps.keys.deployment }),
          ...extra,
          status: degraded ? "degraded" : "ok",
        } as never,
        degraded ? 503 : 200,
      );
    },
  );

  const metrics = deps.metrics;
  if (metrics) {
    app.openapi(
      createRoute({
        method: "get",
        path: "/metrics",
        summary:
          "Prometheus metrics (text format): events, commits, signatures, verifier, findings, alerts, process",
        description:
          "Unauthenticated, like /healthz: counts and timings only, no stream or producer names and no secrets (docs/OPERATIONS.md §Metrics).",
        responses: {
          200: {
            description: "Prometheus text exposition format 0.0.4",
            content: { "text/plain": { schema: { type: "string" } as never } },
          },
          ...problems(),
        },
      }),
      async (c) => {
        const { contentType, body } = await metrics();
        return c.body(body, 200, { "content-type": contentType }) as never;
      },
    );
  }

  app.openapi(
    createRoute({
      method: "get",
      path: "/openapi.json",
      summary: "This OpenAPI 3.1 document",
      responses: {
        200: {
          description: "The OpenAPI document",
          content: { "application/json": { schema: z.object({}).passthrough() } },
        },
        ...problems(),
      },
    }),
    (c) => c.json(app.getOpenAPI31Document(documentConfig(new URL(c.req.url).origin)) as never, 200),
  );
  if (deps.apiReference) serveApiReference(app, deps.apiReference, problems);
  return app;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("invalid-request", "body: not valid JSON", "body");
  }
}

/**
 * The events of a submission, by content mode (CloudEvents HTTP binding §3: binary, structured, batch) and media
 * type (plain JSON: one event, an array, or {"events": [...]}).
 */
async function readEvents(c: Context): Promise<{ events: unknown[]; binary: boolean }> {
  const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (isBinaryMode(c.req.raw.headers, type)) {
    const incoming = (c.env as { incoming?: { rawHeaders?: unknown } } | undefined)?.incoming;
    const raw = Array.isArray(incoming?.rawHeaders) ? (incoming.rawHeaders as string[]) : undefined;
    const event = eventFromBinary({
      headers: c.req.raw.headers,
      body: new Uint8Array(await c.req.arrayBuffer()),
      // Node (@hono/node-server) keeps each header line: names at even positions.
      ...(raw ? { rawHeaderNames: raw.filter((_, i) => i % 2 === 0) } : {}),
    });
    return { events: [event], binary: true };
  }
  if (type !== "application/json" && type !== CLOUDEVENTS_JSON && type !== CLOUDEVENTS_BATCH_JSON) {
    throw new ApiError(
      "unsupported-media-type",
      `content-type must be application/json, ${CLOUDEVENTS_JSON} or ${CLOUDEVENTS_BATCH_JSON}, or the request must be in CloudEvents binary mode (ce-specversion and the other ce-* headers)`,
    );
  }
  // Strict JSON (core/json.ts): invalid UTF-8, duplicate member names and over-deep nesting are refused, naming
  // the field as `events[i]…` whatever the body's shape.
  const body = parseStrictJson(new Uint8Array(await c.req.arrayBuffer()), {
    maxDepth: MAX_EVENT_DEPTH + 2,
    statedDepth: MAX_EVENT_DEPTH,
    name: (path) => {
      const [head, next, ...rest] = path;
      if (typeof head === "number")
        return formatPath(`events[${head}]`, next === undefined ? [] : [next, ...rest]);
      if (head === "events" && typeof next === "number" && type === "application/json")
        return formatPath(`events[${next}]`, rest);
      return formatPath(type === CLOUDEVENTS_BATCH_JSON ? "body" : "events[0]", path);
    },
  });
  let events: unknown[];
  if (type === CLOUDEVENTS_BATCH_JSON) {
    if (!Array.isArray(body))
      throw new ApiError("invalid-request", "body: a batch must be a JSON array", "body");
    events = body;
  } else if (Array.isArray(body)) {
    if (type === CLOUDEVENTS_JSON)
      throw new ApiError(
        "invalid-request",
        `body: ${CLOUDEVENTS_JSON} holds one event, not an array`,
        "body",
      );
    events = body;
  } else if (typeof body === "object" && body !== null && type === "application/json" && "events" in body) {
    const list = (body as { events: unknown }).events;
    if (!Array.isArray(list)) throw new ApiError("invalid-request", "events: must be an array", "events");
    events = list;
  } else {
    events = [body];
  }
  if (events.length > MAX_BATCH_EVENTS) {
    throw new ApiError(
      "too-large",
      `a batch holds at most ${MAX_BATCH_EVENTS} events, not ${events.length}`,
      "events",
    );
  }
  return { events, binary: false };
}

async function streamSize(sink: Sink, stream: string): Promise<number> {
  const head = await sink.options.heads.get(stream);
  if (!head) throw new ApiError("not-found", `no stream ${stream}`, "stream");
  return head.size;
}

/** The stream's tree (bounded reads, core store-tiles.ts); 400 naming `field` when the stream is shorter than `size`. */
async function treeOf(sink: Sink, stream: string, size: number, field: string) {
  const have = await streamSize(sink, stream);
  if (size > have) throw new ApiError("invalid-request", `${field}: the stream has ${have} records`, field);
  return sink.tree(stream);
}

/** The tree size of a signed checkpoint the sink itself just produced (its signature was made here). */
function openCheckpointSize(signed: string): number | undefined {
  try {
    return parseCheckpointText(parseNote(signed).text).size;
  } catch (e) {
    if (e instanceof FormatError) return undefined;
    throw e;
  }
}

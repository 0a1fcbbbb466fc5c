/**
 * The zod schemas of the HTTP API v1: they validate parameters and describe every body in the OpenAPI 3.1
 * document. Event bodies are described here but validated by core (parseSignedEvent), once, so that the error
 * names the exact field (`events[3].time`).
 */
import { STREAM_NAME, SYSTEM_STREAM, signedEventSchema, TIME_BOUND } from "@auditsink/core";
import { z } from "@hono/zod-openapi";

export const MAX_BATCH_EVENTS = 1000;
export const MAX_BODY_BYTES = 5 * 1024 * 1024;
/** The body limit of every route other than event submission (admin writes, and requests without a body). */
export const MAX_SMALL_BODY_BYTES = 64 * 1024;
/**
 * The request line and headers the HTTP server reads (Node's default is 16 KiB). Every query parameter at its
 * declared longest must fit: GET /v1/events takes seven texts of up to 1,024 UTF-16 units, each up to 9 bytes
 * percent-encoded (a three-byte UTF-8 character per unit), ~63 KiB with the rest of the request.
 */
export const MAX_HEADER_BYTES = 128 * 1024;

const STREAM_PARAM = new RegExp(`^(?:${STREAM_NAME.source.slice(1, -1)}|${SYSTEM_STREAM})$`);

export const StreamParams = z.object({
  stream: z
    .string()
    .regex(STREAM_PARAM, "1–128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    .openapi({ param: { name: "stream", in: "path" }, example: "agents.prod" }),
});

/**
 * A non-negative integer query parameter. The document says `integer` with its bounds: z.coerce's input is any
 * value, which the generator would otherwise describe as `integer | null`, and `null` is not a number here.
 */
const natural = (name: string, description: string, required = true) =>
  z.coerce
    .number({ error: "must be a number" })
    .int("must be an integer")
    .min(0, "must not be negative")
    .max(Number.MAX_SAFE_INTEGER, "must be at most 2^53 − 1")
    .openapi({
      param: { name, in: "query", required },
      type: "integer",
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description,
    });

export const RecordsQuery = z.object({
  from: natural("from", "First record index (inclusive)."),
  to: natural("to", `End index (exclusive); at most ${MAX_BATCH_EVENTS} records per request.`),
});

export const InclusionQuery = z.object({
  index: natural("index", "Record index."),
  size: natural("size", "Tree size (a checkpoint's size)."),
});

export const ConsistencyQuery = z.object({
  from: natural(
    "from",
    "Older tree size; 0 (the empty tree) gives an empty proof, as c2sp.org/tlog-witness `old 0`.",
  ),
  to: natural("to", "Newer tree size."),
});

const optionalText = (name: string, description: string) =>
  z
    .string()
    .min(1)
    .max(1024)
    .optional()
    .openapi({ param: { name, in: "query" }, description });

const timestamp = (name: string, description: string) =>
  z
    .string()
    .regex(TIME_BOUND, "must be an RFC 3339 timestamp")
    .optional()
    .openapi({ param: { name, in: "query" }, description });

export const EventsQuery = z.object({
  agent: optionalText("agent", "`gen_ai.agent.id` in the event data (or the `agentid` extension)."),
  run: optionalText("run", "`gen_ai.conversation.id` in the event data (or the `runid` extension)."),
  type: optionalText("type", "CloudEvents `type`."),
  traceId: z
    .string()
    .regex(/^[0-9a-f]{32}$/, "must be a W3C trace id: 32 lowercase hex digits")
    .optional()
    .openapi({
      param: { name: "traceId", in: "query" },
      description:
        "The trace id of the event's `traceparent` extension attribute (W3C Trace Context, 32 lowercase hex).",
    }),
  source: optionalText("source", "CloudEvents `source`."),
  id: optionalText("id", "CloudEvents `id`."),
  producer: optionalText("producer", "The registered producer whose key signed the event."),
  since: timestamp("since", "Event `time` (written by the producer) at or after (RFC 3339)."),
  until: timestamp("until", "Event `time` (written by the producer) before (RFC 3339)."),
  receivedSince: timestamp(
    "receivedSince",
    "Record `received` time (written by the sink when it accepted the event) at or after (RFC 3339).",
  ),
  receivedUntil: timestamp("receivedUntil", "Record `received` time before (RFC 3339)."),
  cursor: optionalText("cursor", "The `cursor` of the previous page."),
  limit: z.coerce
    .number({ error: "must be a number" })
    .int("must be an integer")
    .min(1, "must be at least 1")
    .max(1000, "must be at most 1000")
    .default(100)
    .openapi({ param: { name: "limit", in: "query" }, description: "Page size, 1–1000 (default 100)." }),
});

const requiredText = (name: string, description: string) =>
  z
    .string({ error: "is required" })
    .min(1, "must not be empty")
    .max(1024)
    .openapi({ param: { name, in: "query", required: true }, description });

export const ReceiptQuery = z.object({
  source: requiredText("source", "The event's CloudEvents `source`."),
  id: requiredText("id", "The event's CloudEvents `id`."),
  producer: optionalText(
    "producer",
    "The registered producer that sent it; needed only when more than one producer sent this `source` + `id` (409 otherwise).",
  ),
  format: z
    .enum(["json", "tlog-proof"])
    .optional()
    .openapi({
      param: { name: "format", in: "query", required: false },
      description:
        "`json` (default): the receipt as JSON (docs/FORMAT.md §9). `tlog-proof`: the same receipt as a c2sp.org/tlog-proof (text/plain; FORMAT.md §9a), to store as `<name>.tlog-proof` and check with `auditsink verify-proof` or any tlog-proof verifier.",
    }),
});

const hex = z.string().regex(/^[0-9a-f]{64}$/);

export const ReceiptSchema = z
  .object({
    stream: z.string(),
    index: z.number().int(),
    recordHash: hex,
    source: z.string(),
    id: z.string(),
    checkpoint: z.string().openapi({ description: "C2SP signed note holding a tlog-checkpoint." }),
    inclusionProof: z.array(hex),
  })
  .openapi("Receipt");

export const SubmitQuery = z.object({
  consistencyFrom: natural(
    "consistencyFrom",
    "The newest tree size the producer has seen for this stream (0: none yet, which gives an empty proof). The response then also carries the consistency proof from that size to the receipts' checkpoint, so a producer can act as a witness without calling the read API.",
    false,
  ).optional(),
  receipts: z
    .enum(["full", "compact"])
    .optional()
    .openapi({
      param: { name: "receipts", in: "query", required: false },
      description:
        "`full` (default): one complete receipt per event (docs/FORMAT.md §9). `compact`: the stream, the checkpoint and the end of the inclusion proof that every receipt shares are written once (FORMAT.md §9b); receipt k in full is `receipts[k]` with `stream`, `checkpoint` and `inclusionProof` followed by `sharedProof`.",
    }),
});

const ceHeader = (attribute: string, description: string) =>
  z
    .string()
    .optional()
    .openapi({ param: { name: `ce-${attribute}`, in: "header" }, description });

/**
 * CloudEvents HTTP binary mode (docs/FORMAT.md §3a): each attribute is a `ce-<name>` header, percent-encoded as
 * the HTTP binding §3.1.3.2 says. Required in binary mode: specversion, id, source, type, time, sigkeyid,
 * signature; any other extension attribute travels the same way (`ce-<name>`).
 */
export const BinaryModeHeaders = z.object({
  "ce-specversion": ceHeader("specversion", 'Binary mode: "1.0". Its presence selects binary mode.'),
  "ce-id": ceHeader("id", "Binary mode: the event `id`."),
  "ce-source": ceHeader("source", "Binary mode: the event `source`."),
  "ce-type": ceHeader("type", "Binary mode: the event `type`."),
  "ce-time": ceHeader("time", "Binary mode: the event `time` (RFC 3339), exactly as signed."),
  "ce-subject": ceHeader("subject", "Binary mode: the event `subject`."),
  "ce-dataschema": ceHeader("dataschema", "Binary mode: the event `dataschema`."),
  "ce-sigkeyid": ceHeader("sigkeyid", "Binary mode: the producer key id (64 hex)."),
  "ce-signature": ceHeader("signature", "Binary mode: the producer signature (base64)."),
  "ce-sigbatch": ceHeader(
    "sigbatch",
    "Binary mode, batch-signed envelope only: the event's membership of its signed batch (docs/FORMAT.md §3b).",
  ),
  "ce-traceparent": ceHeader("traceparent", "Binary mode: W3C traceparent (distributed-tracing extension)."),
  "ce-tracestate": ceHeader("tracestate", "Binary mode: W3C tracestate (distributed-tracing extension)."),
});

const consistency = z
  .object({ from: z.number().int(), to: z.number().int(), proof: z.array(hex) })
  .optional()
  .openapi({
    description: "Present when consistencyFrom was given: RFC 9162 PROOF(from, D[to]) as hex hashes.",
  });

const FullReceipts = z.object({ receipts: z.array(ReceiptSchema), consistency }).openapi("Receipts");

const CompactReceipts = z
  .object({
    stream: z.string(),
    checkpoint: ReceiptSchema.shape.checkpoint,
    sharedProof: z.array(hex).openapi({
      description: "The inclusion-proof hashes every receipt of the answer ends with, written once.",
    }),
    receipts: z.array(
      ReceiptSchema.omit({ stream: true, checkpoint: true }).openapi("CompactReceipt", {
        description:
          "A receipt without the shared members; `inclusionProof` is the part before `sharedProof`.",
      }),
    ),
    consistency,
  })
  .openapi("CompactReceipts");

export const ReceiptsResponse = z.union([FullReceipts, CompactReceipts]);

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string(),
    field: z.string().optional(),
  })
  .openapi("Problem");

export const StreamSummary = z
  .object({ stream: z.string(), size: z.number().int(), checkpoint: z.string().optional() })
  .openapi("StreamSummary");

export const CheckpointResponse = z
  .object({
    stream: z.string(),
    size: z.number().int(),
    checkpoint: z.string(),
    cosigned: z.object({ size: z.number().int(), checkpoint: z.string() }).optional().openapi({
      description:
        "The newest checkpoint witnesses cosigned (the sink's signature, then each witness's c2sp.org/tlog-cosignature line), when the sink submits to witnesses. Cosigning lags commits, so its size may be below `size`.",
    }),
  })
  .openapi("Checkpoint");

export const RecordSchema = z
  .object({
    index: z.number().int(),
    recordHash: hex,
    record: z
      .record(z.string(), z.unknown())
      .openapi({ description: "The record (docs/FORMAT.md §Records)." }),
  })
  .openapi("Record");

export const ProofResponse = z
  .object({
    stream: z.string(),
    proof: z.array(hex),
    root: hex.optional(),
    recordHash: hex.optional(),
    leafHash: hex.optional(),
    checkpoint: z.string().optional(),
    index: z.number().int().optional(),
    size: z.number().int().optional(),
    from: z.number().int().optional(),
    to: z.number().int().optional(),
  })
  .openapi("Proof");

export const FoundEventSchema = z
  .object({
    stream: z.string(),
    index: z.number().int(),
    recordHash: hex,
    received: z.string(),
    producer: z.string(),
    event: z.record(z.string(), z.unknown()),
  })
  .openapi("FoundEvent");

export const ProducerInfoSchema = z
  .object({
    id: z.string(),
    streams: z.array(z.string()),
    heartbeatSeconds: z.number().int().optional(),
    keys: z.array(
      z.object({
        keyId: z.string(),
        publicKey: z.string(),
        algorithm: z.enum(["ed25519", "ecdsa-p256"]),
        createdAt: z.string(),
        revokedAt: z.string().optional(),
      }),
    ),
    createdAt: z.string(),
  })
  .openapi("Producer");

export const RegisterProducerBody = z
  .object({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/, "1–128 letters, digits, '.', '_', ':', '@', '-'"),
    publicKey: z
      .string()
      .min(1)
      .openapi({ description: "Ed25519 or ECDSA P-256 public key: base64 DER SPKI, or PEM." }),
    streams: z
      .array(
        z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}\*?$|^\*$/, "a stream name, or a prefix ending in '*'"),
      )
      .min(1, "at least one stream or pattern"),
    heartbeatSeconds: z.number().int().min(1).optional(),
  })
  .openapi("RegisterProducer");

export const RevokeBody = z
  .object({
    keyId: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
  })
  .openapi("Revoke");

export const KeysQuery = z.object({
  stream: z
    .string()
    .regex(STREAM_PARAM, "1–128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    .optional()
    .openapi({
      param: { name: "stream", in: "query", required: false },
      description:
        "Also give each key's verifier key string for this stream's origin `<deployment>/<stream>` (`streamVerifierKey`).",
      example: "agents.prod",
    }),
});

export const KeysResponse = z
  .object({
    deployment: z.string(),
    stream: z.string().optional().openapi({ description: "The stream asked for with `?stream=`." }),
    keys: z.array(
      z.object({
        verifierKey: z.string().openapi({
          description:
            "C2SP verifier key string to pin, named after the deployment: it vouches for every stream's checkpoints.",
        }),
        streamVerifierKey: z.string().optional().openapi({
          description:
            "With `?stream=`: the same key named after the stream's origin `<deployment>/<stream>`, the name its checkpoints are signed under (what a witness or Go's sumdb/note pins for one log).",
        }),
        publicKeyPem: z.string().optional(),
      }),
    ),
  })
  .openapi("Keys");

/** JSON Schema of one signed event, for the document only (core validates). */
export function signedEventJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(signedEventSchema, { unrepresentable: "any", io: "input" }) as Record<
    string,
    unknown
  > & { properties: Record<string, unknown> };
  delete schema.$schema;
  delete schema.$defs;
  schema.properties.data = { description: "Any JSON value: the event payload." };
  return schema;
}

export const StreamsResponse = z.object({ streams: z.array(StreamSummary) }).openapi("Streams");
export const RecordsResponse = z
  .object({ stream: z.string(), records: z.array(RecordSchema) })
  .openapi("Records");
export const EventsPage = z
  .object({ events: z.array(FoundEventSchema), cursor: z.string().optional() })
  .openapi("EventsPage");
export const ProducersResponse = z.object({ producers: z.array(ProducerInfoSchema) }).openapi("Producers");
export const HealthResponse = z
  .object({ status: z.enum(["ok", "degraded"]), deployment: z.string().optional() })
  .catchall(z.unknown())
  .openapi("Health");

const FindingSchema = z
  .object({
    id: z.string(),
    code: z.string(),
    stream: z.string().optional(),
    at: z.union([z.string(), z.number()]).optional(),
    message: z.string(),
    firstSeen: z.string(),
    lastSeen: z.string(),
  })
  .catchall(z.unknown())
  .openapi("Finding");

export const FindingsResponse = z
  .object({ open: z.array(FindingSchema), acknowledged: z.array(FindingSchema) })
  .openapi("Findings");

export const AcknowledgeFindingsBody = z
  .object({
    findings: z
      .array(z.string().regex(/^[0-9a-f]{16}$/, "a finding id: 16 hex digits"))
      .min(1)
      .max(1000),
    note: z.string().min(1).max(2000).describe("Why the findings are acknowledged (recorded in the log)"),
    by: z.string().min(1).max(200).optional().describe("Who acknowledges (recorded in the log)"),
  })
  .strict()
  .openapi("AcknowledgeFindings");

export const AcknowledgedResponse = z
  .object({ acknowledged: z.array(FindingSchema) })
  .openapi("Acknowledged");

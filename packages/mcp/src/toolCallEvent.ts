/**
 * From one decided tools/call to the audit event that records it: pure, no I/O. Attribute names follow the
 * OpenTelemetry GenAI and MCP semantic conventions where they have one (gen_ai.*, mcp.*, jsonrpc.*, error.type);
 * the gateway's own are `auditsink.mcp.*`. docs/MCP.md §Events lists every field.
 */
import type { AuditEventInput } from "@auditsink/client";
import { canonicalBytes, jcsOrdered, sha256, toHex, type UnsignedEvent } from "@auditsink/core";
import { type Decision, redact } from "./policy.ts";

/** The event type of a recorded tools/call decision. */
export const TOOL_CALL_TYPE = "dev.auditsink.mcp.tool_call";

/**
 * How a call's arguments are recorded: `digest` (default) records only their content address, the SHA-256 of
 * their RFC 8785 JSON; `include` records them too (redaction paths replaced), unless their JSON is larger than
 * `maxRecordedArgumentBytes`, when only the digest is kept.
 */
export type ArgumentRecording = "digest" | "include";

/** Who called and in which context: read from the MCP session, the request's `_meta` and HTTP headers. */
export interface CallContext {
  /** The MCP session (Streamable HTTP `Mcp-Session-Id`, or the gateway's id for a stdio session). */
  sessionId: string;
  /** JSON-RPC id of the agent's request. */
  requestId: string | number;
  protocolVersion?: string;
  /** The agent's `clientInfo` from initialize. */
  clientName?: string;
  clientVersion?: string;
  agentId?: string;
  conversationId?: string;
  traceparent?: string;
  tracestate?: string;
  /** `pipe` (stdio) or `tcp` (Streamable HTTP), as OpenTelemetry's network.transport. */
  transport: "pipe" | "tcp";
}

export interface CallOutcome {
  /** The configured name of the upstream server, and the tool's name there. */
  server: string;
  tool: string;
  arguments: unknown;
  /** contentAddress(arguments), when the caller has it already. */
  argumentsSha256?: string;
  decision: Decision;
  rule: string;
  reason?: string;
  redacted?: string[];
  /** From the agent's request to the answer (or the refusal), in milliseconds. */
  latencyMs: number;
  /**
   * `ok`: the tool answered; `tool-error`: it answered with `isError: true`; `error`: the call failed (JSON-RPC
   * error, timeout, upstream gone); `refused`: the gateway did not forward it.
   */
  status: "ok" | "tool-error" | "error" | "refused";
  /** The JSON-RPC result the tool returned, for its digest. */
  result?: unknown;
  /** Recorded with at most ERROR_TYPE_CHARS and ERROR_MESSAGE_CHARS UTF-16 code units, lone surrogates replaced. */
  error?: { type: string; message: string };
}

const ERROR_TYPE_CHARS = 64;
const ERROR_MESSAGE_CHARS = 1024;

/** A call as it is forwarded: its event without the members its answer sets (latency, status, result, error). */
export type CallStart = Omit<CallOutcome, "latencyMs" | "status" | "result" | "error">;

/**
 * A call's outcome with each member that its answer sets at its largest in the event's RFC 8785 form: the
 * longest number and status, a result digest, and error strings of code units that each take six bytes
 * (`\u0001`).
 */
function largestOutcome(start: CallStart): CallOutcome {
  return {
    ...start,
    // 23 characters, as many as any latency rounded to the microsecond takes (any finite double at most).
    latencyMs: Number.MAX_VALUE / 1e8,
    status: "tool-error",
    result: null,
    error: {
      type: "\u0001".repeat(ERROR_TYPE_CHARS),
      message: "\u0001".repeat(ERROR_MESSAGE_CHARS),
    },
  };
}

/** At most `n` UTF-16 code units of `text`, with no lone surrogate (the sink refuses them). */
const bounded = (text: string, n: number) =>
  text
    .slice(0, n)
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");

export interface ToolCallEventOptions {
  arguments?: ArgumentRecording;
  /** Default 16 KiB: larger arguments are recorded by digest only, so one call cannot exceed the sink's event size. */
  maxRecordedArgumentBytes?: number;
  /** CloudEvents `source` (default: the AuditClient's). */
  source?: string;
}

/** `sha256:<hex>` of the RFC 8785 JSON of a value: its content address. */
export function contentAddress(value: unknown): string {
  return contentAddressOf(canonicalBytes(value ?? null));
}

/** The content address of a value from its RFC 8785 JSON. */
export const contentAddressOf = (canonical: Uint8Array): string => `sha256:${toHex(sha256(canonical))}`;

/** The event of a decided call; of a call under way (CallStart), without the members its answer sets. */
export function toolCallEvent(
  ctx: CallContext,
  call: CallOutcome | CallStart,
  options: ToolCallEventOptions = {},
): AuditEventInput {
  const args = call.arguments ?? {};
  const data: Record<string, unknown> = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": call.tool,
    "mcp.method.name": "tools/call",
    "mcp.session.id": ctx.sessionId,
    "jsonrpc.request.id": String(ctx.requestId),
    "network.transport": ctx.transport,
    "auditsink.mcp.server": call.server,
    "auditsink.mcp.decision": call.decision,
    "auditsink.mcp.rule": call.rule,
    "gen_ai.tool.call.arguments.sha256": call.argumentsSha256 ?? contentAddress(args),
  };
  const optional: Record<string, unknown> = {
    "mcp.protocol.version": ctx.protocolVersion,
    "gen_ai.agent.id": ctx.agentId,
    "gen_ai.agent.name": ctx.clientName,
    "auditsink.mcp.client.version": ctx.clientVersion,
    "gen_ai.conversation.id": ctx.conversationId,
    "auditsink.mcp.reason": call.reason,
    "auditsink.mcp.redacted": call.redacted,
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) data[k] = v;
  if ("status" in call) Object.assign(data, outcomeMembers(call));
  if (options.arguments === "include") {
    const recorded = canonicalBytes(redact(args, call.redacted ?? []) ?? null);
    // Read back from their RFC 8785 form, the arguments' members are in that order too, like the rest of the event.
    if (recorded.length <= (options.maxRecordedArgumentBytes ?? 16 * 1024))
      data["gen_ai.tool.call.arguments"] = JSON.parse(recorded.toString("utf8"));
    else data["auditsink.mcp.arguments.omitted"] = "too-large";
  }
  // W3C Trace Context travels as the CloudEvents distributed-tracing extension.
  const extensions: Record<string, string> = {};
  if (ctx.traceparent) extensions.traceparent = ctx.traceparent;
  if (ctx.tracestate) extensions.tracestate = ctx.tracestate;
  return {
    type: TOOL_CALL_TYPE,
    subject: `mcp-session/${ctx.sessionId}`,
    // In RFC 8785 order, as fillEvent puts the envelope: the event canonicalizes on JSON.stringify's path.
    data: jcsOrdered(data),
    ...(options.source ? { source: options.source } : {}),
    ...(Object.keys(extensions).length ? { extensions } : {}),
  };
}

/** The members of a call's event that its answer sets: latency, status, and the result's digest or the error. */
function outcomeMembers(call: CallOutcome): Record<string, unknown> {
  return {
    "auditsink.mcp.latency_ms": Math.round(call.latencyMs * 1000) / 1000,
    "auditsink.mcp.result.status": call.status,
    ...(call.error
      ? {
          "error.type": bounded(call.error.type, ERROR_TYPE_CHARS),
          "auditsink.mcp.error.message": bounded(call.error.message, ERROR_MESSAGE_CHARS),
        }
      : {}),
    ...(call.result === undefined ? {} : { "gen_ai.tool.call.result.sha256": contentAddress(call.result) }),
  };
}

/**
 * The event of a call under way, as toolCallEvent made it (and AuditRecorder.check filled it in), completed with
 * the members its answer sets: the event of the decided call, with the same id and time.
 */
export function withOutcome(event: UnsignedEvent, call: CallOutcome): UnsignedEvent {
  return { ...event, data: jcsOrdered(event.data as Record<string, unknown>, outcomeMembers(call)) };
}

/**
 * The most the members a call's answer sets (latency, status, result digest, error) add to the RFC 8785 form of
 * its event, whatever the answer: the event of a call under way, checked with this much room
 * (AuditRecorder.check), is accepted with any answer. Each of them is a JSON value the sink takes: a finite
 * number, a status, a digest, strings with no lone surrogate.
 */
export const OUTCOME_MEMBERS_BYTES = (() => {
  const ctx: CallContext = { sessionId: "s", requestId: 0, transport: "pipe" };
  const start: CallStart = { server: "s", tool: "t", arguments: {}, decision: "allow", rule: "r" };
  const size = (call: CallStart) => canonicalBytes(toolCallEvent(ctx, call)).length;
  return size(largestOutcome(start)) - size(start);
})();

/**
 * From one decided tools/call to the audit event that records it: pure, no I/O. Attribute names follow the
 * OpenTelemetry GenAI and MCP semantic conventions where they have one (gen_ai.*, mcp.*, jsonrpc.*, error.type);
 * the gateway's own are `auditsink.mcp.*`. docs/MCP.md §Events lists every field.
 */
import type { AuditEventInput } from "@auditsink/client";
import { canonicalBytes, sha256, toHex } from "@auditsink/core";
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
  error?: { type: string; message: string };
}

export interface ToolCallEventOptions {
  arguments?: ArgumentRecording;
  /** Default 16 KiB: larger arguments are recorded by digest only, so one call cannot exceed the sink's event size. */
  maxRecordedArgumentBytes?: number;
  /** CloudEvents `source` (default: the AuditClient's). */
  source?: string;
}

/** `sha256:<hex>` of the RFC 8785 JSON of a value: its content address. */
export function contentAddress(value: unknown): string {
  return `sha256:${toHex(sha256(canonicalBytes(value ?? null)))}`;
}

export function toolCallEvent(
  ctx: CallContext,
  call: CallOutcome,
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
    "auditsink.mcp.latency_ms": Math.round(call.latencyMs * 1000) / 1000,
    "auditsink.mcp.result.status": call.status,
    "gen_ai.tool.call.arguments.sha256": contentAddress(args),
  };
  const optional: Record<string, unknown> = {
    "mcp.protocol.version": ctx.protocolVersion,
    "gen_ai.agent.id": ctx.agentId,
    "gen_ai.agent.name": ctx.clientName,
    "auditsink.mcp.client.version": ctx.clientVersion,
    "gen_ai.conversation.id": ctx.conversationId,
    "auditsink.mcp.reason": call.reason,
    "auditsink.mcp.redacted": call.redacted,
    "error.type": call.error?.type,
    "auditsink.mcp.error.message": call.error?.message.slice(0, 1024),
    "gen_ai.tool.call.result.sha256": call.result === undefined ? undefined : contentAddress(call.result),
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) data[k] = v;
  if (options.arguments === "include") {
    const recorded = redact(args, call.redacted ?? []);
    if (canonicalBytes(recorded ?? null).length <= (options.maxRecordedArgumentBytes ?? 16 * 1024))
      data["gen_ai.tool.call.arguments"] = recorded;
    else data["auditsink.mcp.arguments.omitted"] = "too-large";
  }
  // W3C Trace Context travels as the CloudEvents distributed-tracing extension.
  const extensions: Record<string, string> = {};
  if (ctx.traceparent) extensions.traceparent = ctx.traceparent;
  if (ctx.tracestate) extensions.tracestate = ctx.tracestate;
  return {
    type: TOOL_CALL_TYPE,
    subject: `mcp-session/${ctx.sessionId}`,
    data,
    ...(options.source ? { source: options.source } : {}),
    ...(Object.keys(extensions).length ? { extensions } : {}),
  };
}

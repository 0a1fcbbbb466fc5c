/**
 * The MCP gateway: one downstream session (the agent) per `openSession`, fronting one or more upstream MCP
 * servers through the official SDK. Every request and notification is forwarded as it came — tools, resources,
 * prompts, completions, logging, sampling, elicitation, roots, progress and cancellation — except `tools/call`,
 * which the policy decides and the AuditRecorder records as one signed event per call, allowed or not.
 *
 * With one upstream server the gateway is transparent (names, cursors and results unchanged). With several,
 * tool and prompt names are `<server><separator><name>` and lists are merged (one page); resources are routed
 * by the server that listed them. docs/MCP.md describes both.
 *
 * A `tools/call` is taken off the transports before the SDK's server and client see it (DirectCalls): the gateway
 * forwards it, its progress and its cancellation, and answers it itself, so the call's path holds only the
 * decision and the event. Everything else, and a task-augmented tools/call, goes through the SDK.
 */
import { randomUUID } from "node:crypto";
import { canonicalBytes, parseTraceparent, type UnsignedEvent } from "@auditsink/core";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  type CallToolResult,
  ErrorCode,
  type JSONRPCRequest,
  McpError,
  ResultSchema,
  type ServerCapabilities,
} from "@modelcontextprotocol/sdk/types.js";
import type { AuditRecorder } from "./AuditRecorder.ts";
import { DirectCalls, type Forward, type Params, type RequestOrigin, UpstreamError } from "./DirectCalls.ts";
import { GatewayError } from "./errors.ts";
import type { GatewayMetrics } from "./GatewayMetrics.ts";
import type { Policy, PolicyVerdict } from "./policy.ts";
import {
  type CallContext,
  type CallOutcome,
  type CallStart,
  contentAddressOf,
  OUTCOME_MEMBERS_BYTES,
  type ToolCallEventOptions,
  toolCallEvent,
  withOutcome,
} from "./toolCallEvent.ts";
import { connectUpstream, type UpstreamServer } from "./upstream.ts";

export interface GatewayOptions {
  servers: UpstreamServer[];
  policy: Policy;
  recorder: AuditRecorder;
  metrics: GatewayMetrics;
  events?: ToolCallEventOptions;
  /** Between server and tool or prompt name when there are several servers (default `__`). */
  separator?: string;
  /** The agent identity the operator assigns to this gateway (recorded as gen_ai.agent.id, over what the agent claims). */
  agentId?: string;
  /** Longest an upstream request may take without progress (default 10 minutes). */
  requestTimeoutMs?: number;
  log?: (line: string) => void;
}

type Extra = RequestHandlerExtra<never, never>;

const GATEWAY_INFO = { name: "auditsink-mcp-proxy", version: "0.1.0" };
/** Context values taken from the agent (its `_meta` or HTTP headers) are recorded only when they look like ids. */
const PLAIN_ID = /^[^\u0000-\u001f\u007f]{1,256}$/;

export class McpGateway {
  readonly sessions = new Set<GatewaySession>();
  constructor(readonly options: GatewayOptions) {
    if (options.servers.length === 0) throw new RangeError("the gateway needs at least one MCP server");
  }

  /**
   * Connects to the upstream servers, then serves the agent on `transport` (stdio, or one Streamable HTTP
   * session). Resolves once the session is ready; closing either side closes the whole session.
   */
  async openSession(
    transport: Transport,
    kind: "pipe" | "tcp",
    identity: { agentId?: string } = {},
  ): Promise<GatewaySession> {
    const log = this.options.log ?? (() => undefined);
    const upstreams = new Map<string, Client>();
    try {
      for (const s of this.options.servers)
        upstreams.set(s.name, await connectUpstream(s, GATEWAY_INFO, log));
    } catch (e) {
      await Promise.all([...upstreams.values()].map((c) => c.close().catch(() => undefined)));
      throw e;
    }
    const session = new GatewaySession(this, upstreams, kind, identity.agentId);
    this.sessions.add(session);
    session.server.onclose = () => {
      this.sessions.delete(session);
      void session.close();
    };
    await session.server.connect(transport);
    session.direct.intercept(transport);
    return session;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
  }
}

export class GatewaySession {
  readonly server: Server;
  /** The session id recorded for stdio sessions (Streamable HTTP sessions use their Mcp-Session-Id). */
  readonly id = randomUUID();
  private readonly single: Client | undefined;
  private readonly separator: string;
  readonly direct: DirectCalls;
  /** Multi-server: which server listed a resource URI. */
  private readonly resourceOwner = new Map<string, string>();
  private closed = false;
  private ended!: () => void;
  /** Settles once the session has closed (the agent or an upstream server went away, or close()). */
  readonly done = new Promise<void>((resolve) => {
    this.ended = resolve;
  });

  constructor(
    private readonly gateway: McpGateway,
    readonly upstreams: Map<string, Client>,
    private readonly kind: "pipe" | "tcp",
    /** The agent the listener authenticated for this session (HTTP bearer token), if any. */
    private readonly agentId?: string,
  ) {
    const clients = [...upstreams.values()];
    this.single = clients.length === 1 ? clients[0] : undefined;
    this.separator = gateway.options.separator ?? "__";
    const info = this.single?.getServerVersion() ?? GATEWAY_INFO;
    const instructions = clients
      .map((c) => c.getInstructions())
      .filter(Boolean)
      .join("\n\n");
    this.server = new Server(
      { ...info },
      {
        capabilities: mergeCapabilities(clients.map((c) => c.getServerCapabilities() ?? {})),
        ...(instructions ? { instructions } : {}),
      },
    );
    // The upstream servers keep their own logging level: the agent's logging/setLevel is forwarded to them.
    this.server.removeRequestHandler("logging/setLevel");
    this.server.fallbackRequestHandler = (request, extra) => this.onRequest(request, extra as Extra);
    this.server.fallbackNotificationHandler = async (n) => {
      await Promise.all(clients.map((c) => c.notification(n as never)));
    };
    for (const [name, client] of upstreams) {
      // Requests the upstream server makes of the agent: sampling, elicitation, roots.
      client.fallbackRequestHandler = async (request, extra) =>
        this.server.request({ method: request.method, params: request.params } as never, ResultSchema, {
          signal: extra.signal,
          timeout: this.timeout,
        });
      client.fallbackNotificationHandler = async (n) => {
        await this.server.notification(n as never);
      };
      client.onclose = () => {
        this.direct.upstreamClosed(client);
        if (!this.closed) this.log(`MCP server ${name} closed the connection; closing the session`);
        void this.close();
      };
    }
    this.direct = new DirectCalls(
      [...upstreams.values()],
      () => this.timeout,
      (request, origin, forward) => this.callTool(request, origin, forward),
      (line) => this.log(line),
    );
  }

  private get timeout(): number {
    return this.gateway.options.requestTimeoutMs ?? 10 * 60_000;
  }

  private log(line: string): void {
    this.gateway.options.log?.(line);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.gateway.sessions.delete(this);
    await Promise.all([...this.upstreams.values()].map((c) => c.close().catch(() => undefined)));
    await this.server.close().catch(() => undefined);
    this.ended();
  }

  /** Sends one request upstream as it came, forwarding its progress and its cancellation. */
  private forward(client: Client, method: string, params: Record<string, unknown> | undefined, extra: Extra) {
    const token = (params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
    return client.request({ method, params } as never, ResultSchema, {
      signal: extra.signal,
      timeout: this.timeout,
      resetTimeoutOnProgress: true,
      ...(typeof token === "string" || typeof token === "number"
        ? {
            onprogress: (p) =>
              void extra.sendNotification({
                method: "notifications/progress",
                params: { ...p, progressToken: token },
              } as never),
          }
        : {}),
    });
  }

  private async onRequest(request: JSONRPCRequest, extra: Extra): Promise<Record<string, unknown>> {
    const { method } = request;
    const params = request.params as Record<string, unknown> | undefined;
    if (method === "tools/call")
      return this.callTool(
        params ?? {},
        { requestId: extra.requestId, sessionId: extra.sessionId, headers: extra.requestInfo?.headers },
        (client, p) => this.forward(client, method, p, extra),
      );
    if (this.single) return this.forward(this.single, method, params, extra);
    switch (method) {
      case "tools/list":
        return {
          tools: await this.collect("tools/list", "tools", extra, (s, t) => ({
            ...t,
            name: `${s}${this.separator}${t.name}`,
          })),
        };
      case "prompts/list":
        return {
          prompts: await this.collect("prompts/list", "prompts", extra, (s, p) => ({
            ...p,
            name: `${s}${this.separator}${p.name}`,
          })),
        };
      case "resources/list":
        return {
          resources: await this.collect("resources/list", "resources", extra, (s, r) => {
            if (typeof r.uri === "string") this.resourceOwner.set(r.uri, s);
            return r;
          }),
        };
      case "resources/templates/list":
        return {
          resourceTemplates: await this.collect(
            "resources/templates/list",
            "resourceTemplates",
            extra,
            (_, r) => r,
          ),
        };
      case "prompts/get": {
        const [server, name] = this.route(String(params?.name));
        return this.forward(server, method, { ...params, name }, extra);
      }
      case "completion/complete": {
        const ref = params?.ref as { type?: string; name?: string; uri?: string } | undefined;
        if (ref?.type === "ref/prompt") {
          const [server, name] = this.route(String(ref.name));
          return this.forward(server, method, { ...params, ref: { ...ref, name } }, extra);
        }
        return this.forward(this.byResource(String(ref?.uri)), method, params, extra);
      }
      case "resources/read":
      case "resources/subscribe":
      case "resources/unsubscribe":
        return this.forward(this.byResource(String(params?.uri)), method, params, extra);
      case "logging/setLevel":
        await Promise.all([...this.upstreams.values()].map((c) => this.forward(c, method, params, extra)));
        return {};
      default:
        return this.forward([...this.upstreams.values()][0]!, method, params, extra);
    }
  }

  /** Multi-server: every page of a list from every server that has the capability, renamed. */
  private async collect(
    method: string,
    key: string,
    extra: Extra,
    rename: (server: string, item: Record<string, unknown>) => Record<string, unknown>,
  ): Promise<Record<string, unknown>[]> {
    const capability = method.split("/")[0] as "tools" | "prompts" | "resources";
    const out: Record<string, unknown>[] = [];
    for (const [name, client] of this.upstreams) {
      if (!client.getServerCapabilities()?.[capability]) continue;
      let cursor: string | undefined;
      do {
        const page = await this.forward(client, method, cursor ? { cursor } : undefined, extra);
        for (const item of (page[key] as Record<string, unknown>[] | undefined) ?? [])
          out.push(rename(name, item));
        cursor = typeof page.nextCursor === "string" ? page.nextCursor : undefined;
      } while (cursor);
    }
    return out;
  }

  /** `<server><separator><name>` → the server's client and the name there. */
  private route(name: string): [Client, string] {
    const at = name.indexOf(this.separator);
    const server = at > 0 ? name.slice(0, at) : "";
    const client = this.upstreams.get(server);
    if (!client)
      throw new McpError(
        ErrorCode.InvalidParams,
        `unknown tool or prompt ${name}: no server ${server || "named"}`,
      );
    return [client, name.slice(at + this.separator.length)];
  }

  private byResource(uri: string): Client {
    const owner = this.resourceOwner.get(uri);
    const withResources = [...this.upstreams.entries()].filter(
      ([, c]) => c.getServerCapabilities()?.resources,
    );
    return this.upstreams.get(owner ?? "") ?? (withResources[0] ?? [...this.upstreams.entries()][0]!)[1];
  }

  /** Decides, forwards (with `forward`) or refuses, and records one tools/call. */
  private async callTool(params: Params, origin: RequestOrigin, forward: Forward): Promise<Params> {
    const { policy, recorder, metrics } = this.gateway.options;
    const started = performance.now();
    const exposed = String(params.name ?? "");
    // Multi-server: a name with no known server prefix is refused (and recorded) like any other refusal.
    const at = this.single ? -1 : exposed.indexOf(this.separator);
    const server = this.single ? [...this.upstreams.keys()][0]! : at > 0 ? exposed.slice(0, at) : "";
    const tool = this.single ? exposed : at > 0 ? exposed.slice(at + this.separator.length) : exposed;
    const client = this.upstreams.get(server);
    const args = params.arguments ?? {};
    let argumentBytes = Number.POSITIVE_INFINITY;
    let argumentsSha256: string | undefined;
    try {
      const canonical = canonicalBytes(args);
      argumentBytes = canonical.length;
      argumentsSha256 = contentAddressOf(canonical);
    } catch {
      // Not JSON the sink takes: refused by the argument-size limit.
    }
    const verdict: PolicyVerdict = !client
      ? {
          decision: "deny",
          rule: "unknown-server",
          reason: `no MCP server is named ${server || "in the tool name"}`,
        }
      : recorder.admits()
        ? policy.decide(server, tool, args, argumentBytes)
        : { decision: "deny", rule: "fail-closed", reason: "the audit sink is unavailable" };
    const ctx = this.context(params, origin);
    const base: CallStart = {
      server,
      tool,
      arguments: args,
      ...(argumentsSha256 ? { argumentsSha256 } : {}),
      decision: verdict.decision,
      rule: verdict.rule,
      ...(verdict.reason ? { reason: verdict.reason } : {}),
      ...(verdict.redacted ? { redacted: verdict.redacted } : {}),
    };
    if (!client || verdict.decision === "deny" || verdict.decision === "rate-limit") {
      const outcome: CallOutcome = { ...base, status: "refused", latencyMs: performance.now() - started };
      // A call the sink cannot record anyway (fail-closed refusal) waits only for the spool, not for a receipt.
      await recorder.append(this.check(ctx, outcome), { receipt: verdict.rule !== "fail-closed" });
      if (verdict.rule === "fail-closed") metrics.refusedFailClosed.inc();
      this.count(outcome, started);
      const refusal: CallToolResult = {
        content: [
          {
            type: "text",
            text: `auditsink: call to ${tool} refused (${verdict.decision}, rule ${verdict.rule}): ${verdict.reason}`,
          },
        ],
        isError: true,
        _meta: { "dev.auditsink/decision": verdict.decision, "dev.auditsink/rule": verdict.rule },
      };
      return refusal;
    }
    let result: Record<string, unknown> | undefined;
    let failure: unknown;
    const answer = forward(client, tool === exposed ? params : { ...params, name: tool });
    // While the server works on the call, its event is checked with room for the members the answer sets: once
    // the answer is here, the event only has to be completed and written to the spool.
    let checked: UnsignedEvent | undefined;
    let unrecordable: unknown;
    try {
      checked = this.check(ctx, base, OUTCOME_MEMBERS_BYTES);
    } catch (e) {
      unrecordable = e;
    }
    try {
      result = await answer;
    } catch (e) {
      failure = e;
    }
    const outcome: CallOutcome = {
      ...base,
      latencyMs: performance.now() - started,
      status: failure ? "error" : result?.isError === true ? "tool-error" : "ok",
      ...(result ? { result } : {}),
      ...(failure ? { error: errorOf(failure) } : {}),
    };
    try {
      if (!checked) throw unrecordable;
      await recorder.append(withOutcome(checked, outcome));
    } catch (e) {
      if (e instanceof GatewayError && e.code === "sink-unavailable") metrics.refusedFailClosed.inc();
      this.count(outcome, started);
      throw new McpError(
        ErrorCode.InternalError,
        `auditsink: the result of ${tool} is withheld: ${(e as Error).message}`,
      );
    }
    this.count(outcome, started);
    if (failure) throw failure;
    return result!;
  }

  /**
   * A call's event, filled in and checked (AuditRecorder.check), its arguments by digest only when the sink would
   * refuse them; for a call under way, with `reserveBytes` of room for what its answer adds (withOutcome).
   */
  private check(ctx: CallContext, call: CallStart | CallOutcome, reserveBytes = 0): UnsignedEvent {
    const { recorder, events } = this.gateway.options;
    return recorder.check(
      toolCallEvent(ctx, call, events),
      () => toolCallEvent(ctx, call, { ...events, arguments: "digest" }),
      reserveBytes,
    );
  }

  /** Counts a call once it is answered (the metrics are not on the call's path). */
  private count(outcome: CallOutcome, started: number): void {
    const { metrics } = this.gateway.options;
    const seconds = (performance.now() - started) / 1000;
    setImmediate(() => {
      metrics.toolCalls.inc({ decision: outcome.decision, status: outcome.status });
      metrics.toolCallDuration.observe({ decision: outcome.decision }, seconds);
    });
  }

  /** Who is calling: the MCP session, the agent's clientInfo, and ids from `_meta` or HTTP headers. */
  private context(params: Params, origin: RequestOrigin): CallContext {
    const meta = (params._meta ?? {}) as Record<string, unknown>;
    const headers = origin.headers ?? {};
    const pick = (...values: unknown[]) => {
      for (const v of values) {
        const s = Array.isArray(v) ? v[0] : v;
        if (typeof s === "string" && PLAIN_ID.test(s)) return s;
      }
      return undefined;
    };
    const client = this.server.getClientVersion();
    const traceparent = pick(meta.traceparent, headers.traceparent);
    const ctx: CallContext = {
      sessionId: origin.sessionId ?? this.id,
      requestId: origin.requestId,
      transport: this.kind,
    };
    const optional: Partial<CallContext> = {
      clientName: pick(client?.name),
      clientVersion: pick(client?.version),
      agentId: pick(
        this.agentId,
        this.gateway.options.agentId,
        meta["gen_ai.agent.id"],
        headers["x-agent-id"],
      ),
      conversationId: pick(meta["gen_ai.conversation.id"], headers["x-conversation-id"]),
      traceparent: traceparent && parseTraceparent(traceparent) ? traceparent : undefined,
    };
    for (const [k, v] of Object.entries(optional))
      if (v !== undefined) (ctx as unknown as Record<string, unknown>)[k] = v;
    return ctx;
  }
}

function errorOf(e: unknown): { type: string; message: string } {
  if (e instanceof UpstreamError) return { type: `mcp-${e.error.code}`, message: e.error.message };
  if (e instanceof McpError) return { type: `mcp-${e.code}`, message: e.message };
  if (e instanceof Error) return { type: e.name, message: e.message };
  return { type: "error", message: String(e) };
}

/** The capabilities of several servers as one: each capability present if any server has it. */
function mergeCapabilities(all: ServerCapabilities[]): ServerCapabilities {
  const merged: Record<string, unknown> = {};
  for (const caps of all) {
    for (const [k, v] of Object.entries(caps)) {
      if (v === undefined) continue;
      const prev = merged[k];
      merged[k] =
        typeof v === "object" && v !== null && typeof prev === "object" && prev !== null
          ? { ...prev, ...v }
          : v;
    }
  }
  return merged as ServerCapabilities;
}

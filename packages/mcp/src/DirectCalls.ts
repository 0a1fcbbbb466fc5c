/**
 * The gateway's path for `tools/call`, past the SDK's server and client: the agent's request is taken off the
 * agent's transport, decided and recorded by the session (`call`), sent to the server on its transport with an id
 * of the gateway's own, and the server's answer taken off that transport and written back to the agent — one JSON
 * message in, one out, each way. The SDK's layers (request bookkeeping, abort signals, result validation, the
 * handler's promise chain) are work on every call's path; everything else the agent and the servers say still
 * goes through them.
 *
 * What the SDK did for such a call, this does the same way:
 * - progress: the agent's `progressToken` is replaced by the call's own id upstream (no other request's token can
 *   equal it), and the server's `notifications/progress` go back to the agent with the agent's token, on the
 *   request's stream (`relatedRequestId`); each one restarts the timeout;
 * - cancellation: the agent's `notifications/cancelled` for the call is sent on to the server with the upstream
 *   id, the call is recorded as failed with the agent's reason, and the agent gets no answer (JSON-RPC);
 * - timeout: after `timeoutMs` without an answer or progress, the server is told the call is cancelled and the
 *   agent gets error -32001 (RequestTimeout), as the SDK's request timeout does;
 * - a server that goes away fails its calls with -32000 (ConnectionClosed);
 * - a server's JSON-RPC error reaches the agent as the server sent it.
 * A task-augmented call (`params.task`, or related to a task) is left to the SDK, which knows tasks.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  ErrorCode,
  type IsomorphicHeaders,
  type JSONRPCMessage,
  type JSONRPCRequest,
  McpError,
  type MessageExtraInfo,
  RELATED_TASK_META_KEY,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";

export type Params = Record<string, unknown>;

/** Where an agent's request came from: its JSON-RPC id, and the session and HTTP headers it came with. */
export interface RequestOrigin {
  requestId: RequestId;
  sessionId?: string;
  headers?: IsomorphicHeaders;
}

/** Sends one tools/call to the server, resolving with its result. */
export type Forward = (client: Client, params: Params) => Promise<Params>;

/** Decides, forwards (with `forward`) and records one tools/call: the session's callTool. */
export type CallTool = (params: Params, origin: RequestOrigin, forward: Forward) => Promise<Params>;

/** A server's JSON-RPC error, kept as it came so that the agent gets exactly that. */
export class UpstreamError extends McpError {
  constructor(readonly error: { code: number; message: string; data?: unknown }) {
    super(error.code, error.message, error.data);
  }
}

/** One call sent upstream, waiting for its answer. */
interface Upstream {
  transport: Transport;
  /** The agent's request id and progress token. */
  agentId: RequestId;
  progressToken?: string | number;
  resolve: (result: Params) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

/** One agent's call in the gateway: `upstreamId` once it is forwarded; `cancelled` when the agent withdrew it. */
interface AgentCall {
  upstreamId?: string;
  cancelled: boolean;
}

export class DirectCalls {
  /** The agent's calls in the gateway, by the agent's request id. */
  private readonly calls = new Map<RequestId, AgentCall>();
  /** Calls sent upstream, by the gateway's id (also their progress token there). */
  private readonly upstream = new Map<string, Upstream>();
  /** Each server's transport (a closed client no longer names its own). */
  private readonly transports = new Map<Client, Transport>();
  private agent: Transport | undefined;
  private nextId = 0;

  constructor(
    clients: readonly Client[],
    private readonly timeoutMs: () => number,
    private readonly call: CallTool,
    private readonly log: (line: string) => void,
  ) {
    for (const client of clients) {
      const transport = client.transport!;
      this.transports.set(client, transport);
      const sdk = transport.onmessage!;
      transport.onmessage = (message, extra) => {
        if (!this.fromServer(message)) sdk.call(transport, message, extra);
      };
    }
  }

  /** Takes the agent's plain tools/call requests, and its cancellations of them, off `transport` (connected). */
  intercept(transport: Transport): void {
    this.agent = transport;
    const sdk = transport.onmessage!;
    transport.onmessage = (message, extra) => {
      if (!this.fromAgent(message, extra)) sdk.call(transport, message, extra);
    };
  }

  /** Fails the calls waiting on `client`'s server, which went away. */
  upstreamClosed(client: Client): void {
    const transport = this.transports.get(client);
    for (const [id, u] of this.upstream)
      if (u.transport === transport)
        this.settle(id)?.reject(new McpError(ErrorCode.ConnectionClosed, "Connection closed"));
  }

  /** True when the message was the agent's tools/call or its cancellation, handled here. */
  private fromAgent(message: JSONRPCMessage, extra: MessageExtraInfo | undefined): boolean {
    if (!("method" in message)) return false;
    const params = message.params as Params | undefined;
    if ("id" in message) {
      if (message.method !== "tools/call" || isTaskRelated(params)) return false;
      void this.answer(message, extra);
      return true;
    }
    if (message.method !== "notifications/cancelled") return false;
    const call = this.calls.get(params?.requestId as RequestId);
    if (!call) return false;
    call.cancelled = true;
    const reason = params?.reason;
    if (call.upstreamId) {
      const u = this.settle(call.upstreamId);
      if (u) {
        void u.transport
          .send({
            jsonrpc: "2.0",
            method: "notifications/cancelled",
            params: { requestId: call.upstreamId, ...(reason !== undefined ? { reason } : {}) },
          })
          .catch((e: unknown) => this.log(`cannot pass a cancellation on to the MCP server: ${String(e)}`));
        // As the SDK's server aborts a request: with the agent's reason, else an AbortError.
        u.reject(reason ?? new DOMException("This operation was aborted", "AbortError"));
      }
    }
    return true;
  }

  /** True when the message was the answer to, or progress of, a call sent from here. */
  private fromServer(message: JSONRPCMessage): boolean {
    if ("id" in message && !("method" in message)) {
      if (typeof message.id !== "string") return false;
      const u = this.settle(message.id);
      if (!u) return false;
      if ("result" in message) u.resolve(message.result as Params);
      else u.reject(new UpstreamError(message.error));
      return true;
    }
    if (!("method" in message) || message.method !== "notifications/progress" || "id" in message)
      return false;
    const params = message.params as Params;
    const id = params.progressToken;
    const u = typeof id === "string" ? this.upstream.get(id) : undefined;
    if (u?.progressToken === undefined) return false;
    this.arm(id as string, u);
    void this.agent
      ?.send(
        { ...message, params: { ...params, progressToken: u.progressToken } },
        { relatedRequestId: u.agentId },
      )
      .catch((e: unknown) => this.log(`cannot pass progress on to the agent: ${String(e)}`));
    return true;
  }

  /** Runs one call through the session and writes its answer to the agent, unless the agent cancelled it. */
  private async answer(request: JSONRPCRequest, extra: MessageExtraInfo | undefined): Promise<void> {
    const call: AgentCall = { cancelled: false };
    this.calls.set(request.id, call);
    let answer: JSONRPCMessage;
    try {
      const result = await this.call(
        (request.params ?? {}) as Params,
        {
          requestId: request.id,
          ...(this.agent?.sessionId ? { sessionId: this.agent.sessionId } : {}),
          ...(extra?.requestInfo?.headers ? { headers: extra.requestInfo.headers } : {}),
        },
        (client, params) => this.send(client, params, request.id, call),
      );
      answer = { jsonrpc: "2.0", id: request.id, result } as JSONRPCMessage;
    } catch (e) {
      answer = { jsonrpc: "2.0", id: request.id, error: errorObject(e) };
    } finally {
      this.calls.delete(request.id);
    }
    if (call.cancelled) return;
    await this.agent
      ?.send(answer)
      .catch((e: unknown) => this.log(`cannot answer the agent's tools/call: ${String(e)}`));
  }

  /** Sends the call to `client`'s server under an id of the gateway's own; resolves with the server's result. */
  private send(client: Client, params: Params, agentId: RequestId, call: AgentCall): Promise<Params> {
    const transport = client.transport && this.transports.get(client);
    if (!transport) return Promise.reject(new McpError(ErrorCode.ConnectionClosed, "Not connected"));
    const id = `auditsink-${++this.nextId}`;
    const meta = params._meta as Params | undefined;
    const token = meta?.progressToken;
    const progressToken = typeof token === "string" || typeof token === "number" ? token : undefined;
    return new Promise<Params>((resolve, reject) => {
      const u: Upstream = {
        transport,
        agentId,
        ...(progressToken !== undefined ? { progressToken } : {}),
        resolve,
        reject,
        timer: undefined,
      };
      this.upstream.set(id, u);
      this.arm(id, u);
      call.upstreamId = id;
      transport
        .send({
          jsonrpc: "2.0",
          id,
          method: "tools/call",
          params: progressToken === undefined ? params : { ...params, _meta: { ...meta, progressToken: id } },
        })
        .catch((e: unknown) => this.settle(id)?.reject(e));
    });
  }

  /** (Re)starts the call's timeout: the SDK's request timeout, restarted by progress. */
  private arm(id: string, u: Upstream): void {
    clearTimeout(u.timer);
    const timeout = this.timeoutMs();
    u.timer = setTimeout(() => {
      const error = new McpError(ErrorCode.RequestTimeout, "Request timed out", { timeout });
      if (!this.settle(id)) return;
      void u.transport
        .send({
          jsonrpc: "2.0",
          method: "notifications/cancelled",
          params: { requestId: id, reason: String(error) },
        })
        .catch(() => undefined);
      u.reject(error);
    }, timeout);
  }

  /** Takes a call off the waiting list (once): its timeout stops and it is settled by the caller. */
  private settle(id: string): Upstream | undefined {
    const u = this.upstream.get(id);
    if (!u) return undefined;
    this.upstream.delete(id);
    clearTimeout(u.timer);
    return u;
  }
}

const isTaskRelated = (params: Params | undefined): boolean =>
  params?.task !== undefined || (params?._meta as Params | undefined)?.[RELATED_TASK_META_KEY] !== undefined;

/** The JSON-RPC error the agent gets for a failed call: the server's own, else as the SDK's server makes it. */
function errorObject(e: unknown): { code: number; message: string; data?: unknown } {
  if (e instanceof UpstreamError) return e.error;
  const error = e as { code?: unknown; message?: unknown; data?: unknown } | undefined;
  return {
    code: Number.isSafeInteger(error?.code) ? (error!.code as number) : ErrorCode.InternalError,
    message: typeof error?.message === "string" ? error.message : "Internal error",
    ...(error?.data !== undefined ? { data: error.data } : {}),
  };
}

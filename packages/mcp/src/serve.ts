/**
 * Running the gateway: its configuration file, the agent-facing listeners (stdio, Streamable HTTP) and the
 * operator's endpoints (`/metrics`, `/healthz`). `auditsink mcp-proxy` is a thin command over startGateway().
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type Server as HttpServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { loadProducerKey } from "@auditsink/client";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { AuditRecorder, type FailMode } from "./AuditRecorder.ts";
import { GatewayError } from "./errors.ts";
import { GatewayMetrics } from "./GatewayMetrics.ts";
import { type GatewaySession, McpGateway } from "./McpGateway.ts";
import { describeIssues, Policy, parseYamlFile, policySchema } from "./policy.ts";
import { upstreamSchema } from "./upstream.ts";

export const gatewayConfigSchema = z.strictObject({
  servers: z.array(upstreamSchema).min(1),
  sink: z.strictObject({
    url: z.url(),
    /** The producer's private key file (PEM), registered with the sink. */
    keyFile: z.string().min(1),
    /** The sink's checkpoint verifier key(s), pinned. */
    verifierKey: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    stream: z.string().min(1),
    source: z.string().min(1).default("mcp-proxy://auditsink"),
    deployment: z.string().optional(),
  }),
  /** Where events wait for delivery, receipts and witness state are kept. */
  spool: z.string().min(1),
  failMode: z.enum(["open", "closed"]).default("closed"),
  closedTimeoutMs: z.number().int().positive().optional(),
  /** Fail-open: longest an event waits for others to share its delivery batch (default 20; 0: at once). */
  deliveryLingerMs: z.number().int().min(0).max(10_000).optional(),
  /** The policy, inline or as the path of a YAML/JSON file. */
  policy: z.union([z.string(), policySchema]).optional(),
  events: z
    .strictObject({
      arguments: z.enum(["digest", "include"]).default("digest"),
      maxRecordedArgumentBytes: z.number().int().positive().optional(),
    })
    .default({ arguments: "digest" }),
  agentId: z.string().optional(),
  /**
   * Streamable HTTP agents and their bearer tokens, by SHA-256 (hex) of the token: when set, every HTTP
   * request must carry one, and its agent id is recorded as gen_ai.agent.id for the session.
   */
  agents: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(256),
        tokenSha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex"),
      }),
    )
    .optional(),
  separator: z.string().min(1).max(8).optional(),
  requestTimeoutMs: z.number().int().positive().optional(),
});

export type GatewayConfig = z.input<typeof gatewayConfigSchema>;

export interface HttpAgent {
  id: string;
  /** SHA-256 (hex) of the agent's bearer token. */
  tokenSha256: string;
}

export interface RunningGateway {
  gateway: McpGateway;
  /** When set, the HTTP listener admits only these agents (bearer tokens). */
  agents?: HttpAgent[];
  recorder: AuditRecorder;
  metrics: GatewayMetrics;
  /** Closes the listeners and sessions, then the recorder (what is still spooled waits for the next start). */
  close(): Promise<void>;
}

/** Reads a gateway configuration file (YAML or JSON); relative paths in it are relative to the file. */
export async function loadGatewayConfig(file: string): Promise<GatewayConfig & { baseDir: string }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    throw new GatewayError("bad-config", `cannot read gateway config ${file}`, { cause });
  }
  return { ...(parseYamlFile(text, file) as GatewayConfig), baseDir: dirname(resolve(file)) };
}

/**
 * Opens the recorder (spool, sink client) and builds the gateway; listeners are started with serveStdio and
 * serveHttp.
 * @example
 *   const running = await startGateway(await loadGatewayConfig("mcp-gateway.yaml"));
 *   const http = await serveHttp(running, { port: 8788 });
 */
export async function startGateway(
  input: GatewayConfig & { baseDir?: string },
  hooks: { log?: (line: string) => void } = {},
): Promise<RunningGateway> {
  const { baseDir = process.cwd(), ...raw } = input;
  const parsed = gatewayConfigSchema.safeParse(raw);
  if (!parsed.success) throw new GatewayError("bad-config", describeIssues(parsed.error, "config"));
  const config = parsed.data;
  const at = (p: string) => resolve(baseDir, p);
  const policy =
    typeof config.policy === "string" ? await Policy.load(at(config.policy)) : Policy.parse(config.policy);
  const log = hooks.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const metrics = new GatewayMetrics();
  const recorder = await AuditRecorder.open({
    sink: {
      endpoint: config.sink.url,
      producerKey: await loadProducerKey(at(config.sink.keyFile)),
      sinkKey: config.sink.verifierKey,
      stream: config.sink.stream,
      source: config.sink.source,
      ...(config.sink.deployment ? { deployment: config.sink.deployment } : {}),
    },
    spoolDir: at(config.spool),
    failMode: config.failMode as FailMode,
    metrics,
    ...(config.closedTimeoutMs ? { closedTimeoutMs: config.closedTimeoutMs } : {}),
    ...(config.deliveryLingerMs !== undefined ? { deliveryLingerMs: config.deliveryLingerMs } : {}),
    onError: (e) => log(`auditsink mcp-proxy: delivery: ${(e as Error).message ?? e}`),
  });
  const gateway = new McpGateway({
    servers: config.servers.map((s) => ("command" in s && s.cwd ? { ...s, cwd: at(s.cwd) } : s)),
    policy,
    recorder,
    metrics,
    events: config.events,
    log,
    ...(config.agentId ? { agentId: config.agentId } : {}),
    ...(config.separator ? { separator: config.separator } : {}),
    ...(config.requestTimeoutMs ? { requestTimeoutMs: config.requestTimeoutMs } : {}),
  });
  const closers: (() => Promise<void>)[] = [];
  return {
    gateway,
    recorder,
    metrics,
    ...(config.agents ? { agents: config.agents } : {}),
    close: async () => {
      for (const c of closers.splice(0).reverse()) await c();
      await gateway.close();
      await recorder.close();
    },
  };
}

/**
 * Serves one agent on this process's stdin and stdout (what MCP clients spawn). The session ends when stdin does:
 * an agent that exits or crashes closes its end of the pipe, and the gateway must not outlive it.
 */
export async function serveStdio(running: RunningGateway): Promise<GatewaySession> {
  const session = await running.gateway.openSession(new StdioServerTransport(), "pipe");
  process.stdin.once("end", () => void session.close());
  return session;
}

export interface HttpListener {
  url: string;
  server: HttpServer;
  close(): Promise<void>;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 4 * 1024 * 1024) throw new Error("request body larger than 4 MiB");
    chunks.push(c as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/** The agent whose token this Authorization header carries (constant-time comparison of SHA-256 digests). */
function authenticate(agents: HttpAgent[], header: string | undefined): string | undefined {
  const token = /^Bearer (.+)$/i.exec(header ?? "")?.[1];
  if (!token) return undefined;
  const digest = createHash("sha256").update(token).digest();
  let found: string | undefined;
  for (const a of agents) if (timingSafeEqual(digest, Buffer.from(a.tokenSha256, "hex"))) found ??= a.id;
  return found;
}

/** Seconds an HTTP agent's MCP session may go without a request before the gateway closes it. */
export const DEFAULT_SESSION_IDLE_SECONDS = 1800;

/**
 * Serves agents over MCP Streamable HTTP on `path` (default `/mcp`), one gateway session per MCP session, with
 * `/metrics` (Prometheus) and `/healthz` (200 while calls can be recorded, else 503, with the recorder status).
 * With `agents` configured, each MCP request needs a bearer token, and a session stays with its agent.
 * A session without a request for `sessionIdleSeconds` (default DEFAULT_SESSION_IDLE_SECONDS) is closed with its
 * upstream connections (spawned servers end): an agent that went away without DELETE holds nothing for long.
 */
export async function serveHttp(
  running: RunningGateway,
  options: { port: number; host?: string; path?: string; sessionIdleSeconds?: number },
): Promise<HttpListener> {
  const path = options.path ?? "/mcp";
  const idleMs = (options.sessionIdleSeconds ?? DEFAULT_SESSION_IDLE_SECONDS) * 1000;
  if (!(idleMs > 0)) throw new RangeError("sessionIdleSeconds must be positive");
  const transports = new Map<string, StreamableHTTPServerTransport>();
  /** When each session last had a request (ms), and its POSTs not yet answered (activity until they end). */
  const lastSeen = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const [id, transport] of transports) {
        if ((inFlight.get(id) ?? 0) > 0 || now - (lastSeen.get(id) ?? now) < idleMs) continue;
        transports.delete(id);
        void transport.close().catch(() => undefined);
      }
    },
    Math.min(60_000, Math.max(100, idleMs / 4)),
  );
  sweep.unref();
  /** With `agents`: the agent each session was opened by; later requests must come from the same one. */
  const sessionAgents = new Map<string, string>();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://gateway");
    try {
      if (req.method === "GET" && url.pathname === "/metrics") {
        res.writeHead(200, { "content-type": running.metrics.registry.contentType });
        res.end(await running.metrics.registry.metrics());
        return;
      }
      if (req.method === "GET" && url.pathname === "/healthz") {
        const status = running.recorder.status();
        const ok = running.recorder.admits() && !status.integrityError;
        res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok, ...status }));
        return;
      }
      if (url.pathname !== path) {
        res.writeHead(404).end();
        return;
      }
      const sessionId = req.headers["mcp-session-id"];
      const agent = running.agents ? authenticate(running.agents, req.headers.authorization) : undefined;
      if (running.agents && !agent) {
        res.writeHead(401, { "content-type": "application/json", "www-authenticate": "Bearer" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: { code: -32001, message: "a valid bearer token is required" },
            id: null,
          }),
        );
        return;
      }
      const known = typeof sessionId === "string" ? transports.get(sessionId) : undefined;
      if (known && running.agents && sessionAgents.get(sessionId as string) !== agent) {
        res.writeHead(403, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: { code: -32001, message: "the MCP session belongs to another agent" },
            id: null,
          }),
        );
        return;
      }
      if (known) {
        const id = sessionId as string;
        // A POST (a message from the agent, perhaps a long tool call) keeps its session active until it is
        // answered; the GET stream a client holds open for server messages does not.
        const post = req.method === "POST";
        lastSeen.set(id, Date.now());
        if (post) inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
        try {
          const body = post ? await readJson(req) : undefined;
          await known.handleRequest(req, res, body);
        } finally {
          if (post) inFlight.set(id, (inFlight.get(id) ?? 1) - 1);
          lastSeen.set(id, Date.now());
        }
        return;
      }
      const body = req.method === "POST" ? await readJson(req) : undefined;
      if (sessionId !== undefined || !isInitializeRequest(body)) {
        res.writeHead(sessionId === undefined ? 400 : 404, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: {
              code: -32000,
              message:
                sessionId === undefined ? "no MCP session: send initialize first" : "unknown MCP session",
            },
            id: null,
          }),
        );
        return;
      }
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, transport);
          lastSeen.set(id, Date.now());
          if (agent) sessionAgents.set(id, agent);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) {
          transports.delete(transport.sessionId);
          lastSeen.delete(transport.sessionId);
          inFlight.delete(transport.sessionId);
          sessionAgents.delete(transport.sessionId);
        }
      };
      await running.gateway.openSession(transport, "tcp", agent ? { agentId: agent } : {});
      await transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) {
        const parse = e instanceof SyntaxError;
        res.writeHead(parse ? 400 : 502, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: {
              code: parse ? -32700 : -32603,
              message: parse ? "the body is not JSON" : (e as Error).message,
            },
            id: null,
          }),
        );
      } else res.end();
    }
  });
  await new Promise<void>((ok) => server.listen(options.port, options.host ?? "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? "127.0.0.1"}:${port}${path}`,
    server,
    close: async () => {
      clearInterval(sweep);
      await Promise.all([...transports.values()].map((t) => t.close().catch(() => undefined)));
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

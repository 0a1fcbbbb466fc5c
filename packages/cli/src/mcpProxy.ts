/**
 * `auditsink mcp-proxy`: the MCP gateway of @auditsink/mcp, serving one agent on stdio (what an MCP client
 * spawns) or agents over Streamable HTTP, until the agent goes away (stdio) or SIGINT/SIGTERM. On the way out
 * it gives delivery a few seconds; whatever is still spooled is delivered at the next start.
 */
import { loadGatewayConfig, type RunningGateway, serveHttp, serveStdio, startGateway } from "@auditsink/mcp";

export interface McpProxyOptions {
  config: string;
  /** Serve Streamable HTTP on this port instead of stdio. */
  http?: number;
  host?: string;
  /** Seconds an HTTP agent's session may go without a request before it is closed. */
  sessionIdleSeconds?: number;
  log: (line: string) => void;
}

export async function mcpProxy(options: McpProxyOptions): Promise<void> {
  const running: RunningGateway = await startGateway(await loadGatewayConfig(options.config), {
    log: options.log,
  });
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await running.recorder.drain(5000).catch((e: Error) => options.log(`auditsink mcp-proxy: ${e.message}`));
    await running.close();
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  if (options.http === undefined) {
    const session = await serveStdio(running);
    void session.done.then(() => stop(0));
    return;
  }
  const http = await serveHttp(running, {
    port: options.http,
    ...(options.host ? { host: options.host } : {}),
    ...(options.sessionIdleSeconds !== undefined ? { sessionIdleSeconds: options.sessionIdleSeconds } : {}),
  });
  options.log(`auditsink mcp-proxy: serving MCP on ${http.url} (metrics and health beside it)`);
}

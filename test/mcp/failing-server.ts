/**
 * A small MCP server (stdio) for the gateway tests, with the answers the reference servers never give: `fail`
 * answers every call with a JSON-RPC error (code -32050, with data), `hang` never answers and appends
 * `cancelled <request id> <reason>` to the file named by $CANCELLED_FILE when the call is cancelled.
 *
 *   node --import tsx test/mcp/failing-server.ts
 */
import { appendFileSync } from "node:fs";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";

export const FAIL_CODE = -32050;

const server = new Server({ name: "failing", version: "1.0.0" }, { capabilities: { tools: {} } });
server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: ["fail", "hang"].map((name) => ({ name, inputSchema: { type: "object" as const } })),
}));
server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
  if (request.params.name === "fail")
    throw new McpError(FAIL_CODE, "the tool failed", { attempt: request.params.arguments?.attempt ?? null });
  return new Promise((_, reject) => {
    extra.signal.addEventListener("abort", () => {
      if (process.env.CANCELLED_FILE)
        appendFileSync(
          process.env.CANCELLED_FILE,
          `cancelled ${extra.requestId} ${String(extra.signal.reason)}\n`,
        );
      reject(extra.signal.reason);
    });
  });
});
await server.connect(new StdioServerTransport());

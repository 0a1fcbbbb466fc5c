/** Connections from the gateway to the real MCP servers it fronts: spawned commands (stdio) or Streamable HTTP. */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { z } from "zod";
import { GatewayError } from "./errors.ts";

const serverName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "1–64 letters, digits, _ or -");
export const upstreamSchema = z.union([
  z.strictObject({
    name: serverName,
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).optional(),
    cwd: z.string().optional(),
  }),
  z.strictObject({
    name: serverName,
    url: z.url(),
    headers: z.record(z.string(), z.string()).optional(),
  }),
]);

/** One upstream MCP server: `command` (+ `args`, `env`, `cwd`) to spawn it, or the `url` of its MCP endpoint. */
export type UpstreamServer = z.input<typeof upstreamSchema>;

/**
 * What the gateway tells every upstream server the agent can do: everything a client may offer, because the
 * upstream connection is made before the agent says what it offers. A request the agent cannot serve (sampling
 * from a client without it) is answered with the agent's error.
 */
const CLIENT_CAPABILITIES = { sampling: {}, roots: { listChanged: true }, elicitation: {} };

export async function connectUpstream(
  server: UpstreamServer,
  clientInfo: { name: string; version: string },
  log: (line: string) => void,
): Promise<Client> {
  const parsed = upstreamSchema.parse(server);
  const client = new Client(clientInfo, { capabilities: CLIENT_CAPABILITIES });
  const transport =
    "command" in parsed
      ? new StdioClientTransport({
          command: parsed.command,
          args: parsed.args,
          env: { ...getDefaultEnvironment(), ...parsed.env },
          ...(parsed.cwd ? { cwd: parsed.cwd } : {}),
          stderr: "pipe",
        })
      : new StreamableHTTPClientTransport(new URL(parsed.url), {
          ...(parsed.headers ? { requestInit: { headers: parsed.headers } } : {}),
        });
  if (transport instanceof StdioClientTransport) {
    transport.stderr?.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) log(`[${parsed.name}] ${line}`);
    });
  }
  try {
    await client.connect(transport);
  } catch (cause) {
    await client.close().catch(() => undefined);
    throw new GatewayError(
      "upstream-unavailable",
      `cannot connect to MCP server ${parsed.name}: ${(cause as Error).message}`,
      { cause },
    );
  }
  return client;
}

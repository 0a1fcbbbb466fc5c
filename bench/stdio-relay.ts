/**
 * bench:mcp's `relay`: a process that only passes MCP messages between its own stdio (the agent) and a server it
 * spawns, through the SDK's stdio transports — no policy, no events, no SDK server or client. What it adds to a
 * call is the floor of any proxy in its own process on the machine: one more process and two more pipe hops.
 *
 *   node --import tsx bench/stdio-relay.ts <server command> [args…]
 */
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";

const [command, ...args] = process.argv.slice(2);
if (!command) throw new Error("usage: stdio-relay.ts <server command> [args…]");
const upstream = new StdioClientTransport({ command, args, stderr: "inherit" });
const agent = new StdioServerTransport();
agent.onmessage = (message) => void upstream.send(message);
upstream.onmessage = (message) => void agent.send(message);
upstream.onclose = () => process.exit(0);
process.stdin.once("end", () => void upstream.close());
await upstream.start();
await agent.start();

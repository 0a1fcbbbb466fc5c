/**
 * An MCP proxy records every policy decision it makes about a tool call an agent requested — allowed or
 * denied, by which rule — before it forwards or refuses the call. Recording the decision first (and waiting
 * for its verified receipt) is what makes the proxy's enforcement auditable.
 *
 * This shows the shape of one decision event by hand. `auditsink mcp-proxy` (docs/MCP.md) is the gateway that
 * makes and records such a decision for every tools/call an agent sends through it.
 *
 *   npx tsx examples/mcp-policy-decision.ts
 */
import type { AuditClient } from "@auditsink/client";
import { connect, isMain } from "./connect.ts";

export interface Decision {
  session: string;
  agent: string;
  tool: string;
  allowed: boolean;
  rule: string;
}

export async function recordDecision(client: AuditClient, d: Decision) {
  return client.send({
    type: d.allowed ? "mcp.proxy.policy.allow" : "mcp.proxy.policy.deny",
    subject: `mcp-session/${d.session}`,
    data: {
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.agent.id": d.agent,
      "gen_ai.tool.name": d.tool,
      "mcp.method.name": "tools/call",
      "mcp.session.id": d.session,
      "policy.decision": d.allowed ? "allow" : "deny",
      "policy.rule": d.rule,
    },
  });
}

if (isMain(import.meta.url)) {
  const client = await connect("mcp.proxy", "mcp-proxy://gateway-1");
  const r = await recordDecision(client, {
    session: "s-81c2",
    agent: "release-bot",
    tool: "github.merge_pull_request",
    allowed: false,
    rule: "no-merge-without-human-review",
  });
  await client.close();
  console.log(`decision recorded at ${r.stream} #${r.index}; receipt verified`);
}

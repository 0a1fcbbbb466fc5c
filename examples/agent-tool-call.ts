/**
 * An AI agent records each tool call it makes: what it called, with which arguments digest, and the outcome.
 * Attribute names follow the OpenTelemetry GenAI semantic conventions (gen_ai.*), so the audit trail lines up
 * with the agent's traces.
 *
 *   npx tsx examples/agent-tool-call.ts
 */
import { createHash } from "node:crypto";
import type { AuditClient } from "@auditsink/client";
import type { Receipt } from "@auditsink/core";
import { connect, isMain } from "./connect.ts";

export async function recordToolCall(
  client: AuditClient,
  call: { tool: string; args: unknown; result: string },
) {
  return client.send({
    type: "ai.agent.tool_call",
    subject: "conversation/c-2f9a",
    data: {
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.agent.id": "support-bot",
      "gen_ai.agent.name": "Support bot",
      "gen_ai.conversation.id": "c-2f9a",
      "gen_ai.tool.name": call.tool,
      "gen_ai.tool.type": "function",
      "gen_ai.tool.call.id": `call-${Date.now()}`,
      // Arguments may hold personal data: keep a digest in the audit log, the payload in your own store.
      "gen_ai.tool.call.arguments.sha256": createHash("sha256")
        .update(JSON.stringify(call.args))
        .digest("hex"),
      outcome: call.result,
    },
  });
}

if (isMain(import.meta.url)) {
  const client = await connect("agents.support-bot", "agent://support-bot");
  const receipt: Receipt = await recordToolCall(client, {
    tool: "crm.lookup_customer",
    args: { email: "jane@example.com" },
    result: "ok",
  });
  await client.close();
  console.log(`tool call recorded at ${receipt.stream} #${receipt.index}; receipt verified`);
}

/**
 * A service records each model invocation: provider, model, token usage and finish reason (OpenTelemetry GenAI
 * semantic conventions), and a digest of the prompt and completion rather than the text itself.
 *
 *   npx tsx examples/model-invocation.ts
 */
import { createHash } from "node:crypto";
import type { AuditClient } from "@auditsink/client";
import { connect, isMain } from "./connect.ts";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

export async function recordInvocation(
  client: AuditClient,
  call: { model: string; prompt: string; completion: string; inputTokens: number; outputTokens: number },
) {
  return client.send({
    type: "ai.model.invocation",
    data: {
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "aws.bedrock",
      "gen_ai.request.model": call.model,
      "gen_ai.response.model": call.model,
      "gen_ai.request.temperature": 0.2,
      "gen_ai.usage.input_tokens": call.inputTokens,
      "gen_ai.usage.output_tokens": call.outputTokens,
      "gen_ai.response.finish_reasons": ["stop"],
      "prompt.sha256": sha256(call.prompt),
      "completion.sha256": sha256(call.completion),
    },
  });
}

if (isMain(import.meta.url)) {
  const client = await connect("models.invocations", "service://summarizer");
  const r = await recordInvocation(client, {
    model: "anthropic.claude-sonnet-4",
    prompt: "Summarize ticket #4711",
    completion: "The customer asks for a refund …",
    inputTokens: 412,
    outputTokens: 96,
  });
  await client.close();
  console.log(`invocation recorded at ${r.stream} #${r.index}; receipt verified`);
}

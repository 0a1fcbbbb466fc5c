import { join } from "node:path";
import { generateKeyPair, verifyStoredStream } from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordToolCall } from "../../examples/agent-tool-call.ts";
import { recordDecision } from "../../examples/mcp-policy-decision.ts";
import { recordInvocation } from "../../examples/model-invocation.ts";
import { clientOf, registerProducer, startSink, tempDir } from "../cli/helpers.ts";

let sink: EmbeddedSink;
const producer = generateKeyPair("ecdsa-p256");

beforeAll(async () => {
  sink = await startSink(join(await tempDir("auditsink-examples-"), "data"));
  await registerProducer(sink, "examples", producer.publicKey, ["agents.*", "mcp.*", "models.*"]);
});

afterAll(async () => {
  await sink.close();
});

const client = (stream: string, source: string) => clientOf(sink, producer.privateKey, { stream, source });

describe("examples", () => {
  it("record a tool call, a policy decision and a model invocation with GenAI attribute names", async () => {
    // Act
    const agent = await client("agents.support-bot", "agent://support-bot");
    const call = await recordToolCall(agent, { tool: "crm.lookup_customer", args: { id: 7 }, result: "ok" });
    const proxy = await client("mcp.proxy", "mcp-proxy://gateway-1");
    const decision = await recordDecision(proxy, {
      session: "s-1",
      agent: "release-bot",
      tool: "github.merge_pull_request",
      allowed: false,
      rule: "no-merge-without-human-review",
    });
    const service = await client("models.invocations", "service://summarizer");
    const invocation = await recordInvocation(service, {
      model: "m",
      prompt: "p",
      completion: "c",
      inputTokens: 3,
      outputTokens: 1,
    });
    await Promise.all([agent.close(), proxy.close(), service.close()]);
    // Assess
    for (const r of [call, decision, invocation]) {
      const report = await verifyStoredStream(sink.local.objects, r.stream, {
        trusted: [sink.local.signingKey.signer.key],
        receipts: [r],
      });
      expect(report.failures).toEqual([]);
    }
    const [record] = await sink.local.sink.reader("mcp.proxy").records(0, 1);
    expect(record!.record.event.data).toMatchObject({
      "gen_ai.tool.name": "github.merge_pull_request",
      "policy.decision": "deny",
    });
  });
});

import { verifyReceipt, verifyStoredStream } from "@auditsink/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordAgentLoop } from "../../examples/otel-agent-loop.ts";
import { startTestSink, type TestSink } from "./helpers.ts";

let t: TestSink;

beforeAll(async () => {
  t = await startTestSink();
});

afterAll(async () => {
  await t.remove();
});

describe("examples/otel-agent-loop.ts", () => {
  it("records the loop's agent, model and tool spans under NodeTracerProvider, with verified receipts", async () => {
    // Act
    const { answer, receipts } = await recordAgentLoop(await t.client(), "c-2f9a", "Where is my order?");
    // Assess
    expect(answer).toBe("Jane's order shipped on Monday.");
    const trusted = [t.sink.local.signingKey.signer.key];
    expect(receipts.map((r) => verifyReceipt(r, { trusted }).ok)).toEqual([true, true, true, true]);
    const events = (await t.records("agents.support-bot")).map((r) => r.record.event);
    expect(events.map((e) => e.type)).toEqual([
      "dev.auditsink.genai.chat",
      "dev.auditsink.genai.execute_tool",
      "dev.auditsink.genai.chat",
      "dev.auditsink.genai.invoke_agent",
    ]);
    // NodeTracerProvider's context manager parents the model and tool spans under the agent span.
    const agent = events[3]!.data as Record<string, string>;
    for (const e of events.slice(0, 3)) {
      expect(e.data).toMatchObject({
        "otel.trace_id": agent["otel.trace_id"],
        "otel.parent_span_id": agent["otel.span_id"],
      });
    }
    expect(JSON.stringify(events)).not.toContain("jane@example.com");
    const report = await verifyStoredStream(t.sink.local.objects, "agents.support-bot", {
      trusted,
      receipts,
    });
    expect(report.failures).toEqual([]);
  });
});

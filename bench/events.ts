/** The benchmarks' workload: one producer-signed AI-agent tool call, padded to a chosen size, varied per index. */
import type { KeyObject } from "node:crypto";
import { type SignedEvent, signEvent, type UnsignedEvent } from "@auditsink/core";

export function benchEvent(i: number, privateKey: KeyObject, filler: string): SignedEvent {
  return signEvent(benchUnsignedEvent(i, filler), privateKey);
}

/** The same event before it is signed (to sign many as one batch, core signBatch). */
export function benchUnsignedEvent(i: number, filler: string): UnsignedEvent {
  return {
    specversion: "1.0",
    id: `evt-${i}`,
    source: "agent://bench-agent",
    type: "ai.agent.tool_call",
    time: "2026-11-24T12:00:00.000Z",
    data: {
      "gen_ai.agent.id": "bench-agent",
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "search",
      "gen_ai.tool.call.id": `call-${i}`,
      seq: i,
      note: filler,
    },
  };
}

/**
 * The embedded and JCS benchmarks' 1 KB tool call (`note` pads it): its time, run and call id vary with `i`, so
 * events differ in more than their id.
 */
export function toolCallEvent(id: string, i: number, note: string) {
  return {
    specversion: "1.0" as const,
    id,
    source: "agent://bench-agent",
    type: "ai.agent.tool_call",
    time: new Date(Date.UTC(2026, 10, 24, 12, 0, 0, i % 1000)).toISOString(),
    data: {
      "gen_ai.agent.id": "bench-agent",
      "gen_ai.conversation.id": `run-${i % 97}`,
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "web_search",
      "gen_ai.tool.call.id": `call-${i}`,
      note,
    },
  };
}

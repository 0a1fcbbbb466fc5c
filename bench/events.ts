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

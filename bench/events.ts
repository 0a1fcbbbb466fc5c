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

/** Events per run, agents and the producer-time step of agentActivityEvent. */
export const ACTIVITY = { runLength: 50, agents: 500, stepMs: 2_600, start: Date.UTC(2026, 0, 1) } as const;
const ACTIVITY_TYPES = ["ai.agent.llm_call", "ai.agent.tool_call", "ai.agent.tool_call", "ai.agent.decision"];

/**
 * Event `i` of a year of agent activity (bench:scale): runs of 50 events (a start, LLM calls, tool calls and
 * decisions, an end), each run by one of 500 agents, producer time 2.6 s apart from 2026-01-01 (10,000,000 events
 * span ten months). `note` pads it.
 */
export function agentActivityEvent(id: string, i: number, note: string) {
  const run = Math.floor(i / ACTIVITY.runLength);
  const step = i % ACTIVITY.runLength;
  const type =
    step === 0
      ? "ai.agent.run.start"
      : step === ACTIVITY.runLength - 1
        ? "ai.agent.run.end"
        : ACTIVITY_TYPES[step % ACTIVITY_TYPES.length]!;
  return {
    specversion: "1.0" as const,
    id,
    source: "agent://scale-bench",
    type,
    time: new Date(ACTIVITY.start + i * ACTIVITY.stepMs).toISOString(),
    data: {
      "gen_ai.agent.id": `agent-${run % ACTIVITY.agents}`,
      "gen_ai.conversation.id": `run-${run}`,
      "gen_ai.operation.name": type.slice("ai.agent.".length),
      step,
      note,
    },
  };
}

import { fillEvent } from "@auditsink/client";
import { canonicalBytes, checkUnsignedEvent, IngestError } from "@auditsink/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type CallOutcome,
  type CallStart,
  OUTCOME_MEMBERS_BYTES,
  toolCallEvent,
  withOutcome,
} from "../src/index.ts";

const ctx = { sessionId: "4f0e1c2a-6a55-4f0e-9a7b-1c2d3e4f5a6b", requestId: 7, transport: "pipe" as const };
const start: CallStart = {
  server: "everything",
  tool: "echo",
  arguments: { message: "hi" },
  decision: "allow",
  rule: "echo",
};
const checked = (call: CallOutcome | CallStart, include = false, reserve = 0) =>
  checkUnsignedEvent(
    fillEvent(
      toolCallEvent(ctx, call, include ? { arguments: "include", maxRecordedArgumentBytes: 1 << 20 } : {}),
      "mcp-proxy://test",
    ),
    "event",
    reserve,
  );

/**
 * Any string up to 3,000 code units, and strings of the code units that take the most bytes: control characters
 * (six, escaped), lone surrogates, two- and three-byte characters, surrogate pairs.
 */
const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 3000, size: "max" }),
  fc.string({
    unit: fc.constantFrom("\u0001", "\ud800", "\udc00", "é", "€", "😀"),
    maxLength: 3000,
    size: "max",
  }),
);

describe("OUTCOME_MEMBERS_BYTES", () => {
  it("is at least what any answer adds to the event of a call under way, each answer's event accepted", () => {
    const started = checked(start).length;
    fc.assert(
      fc.property(
        // A latency is a difference of performance.now() readings: within the process's life (here 31 years).
        fc.double({ min: 0, max: 1e12, noNaN: true }),
        fc.constantFrom("ok", "tool-error", "error", "refused" as const),
        fc.option(fc.jsonValue({ maxDepth: 4 }), { nil: undefined }),
        fc.option(fc.record({ type: anyText, message: anyText }), { nil: undefined }),
        (latencyMs, status, result, error) => {
          const call: CallOutcome = {
            ...start,
            latencyMs,
            status,
            ...(result === undefined ? {} : { result }),
            ...(error ? { error } : {}),
          };
          expect(checked(call).length).toBeLessThanOrEqual(started + OUTCOME_MEMBERS_BYTES);
          // Completing the event of the call under way gives the event of the decided call.
          const underWay = fillEvent(toolCallEvent(ctx, start), "mcp-proxy://test");
          const completed = withOutcome(underWay, call);
          expect(completed).toEqual({ ...underWay, data: toolCallEvent(ctx, call).data });
          // Built in RFC 8785 member order: JSON.stringify writes its canonical form (canonicalBytes' fast path).
          expect(JSON.stringify(completed)).toBe(canonicalBytes(completed).toString("utf8"));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses a call under way whose answer might not fit, even where this answer would", () => {
    // Arguments recorded in full that leave less room than the largest answer needs
    const small: CallOutcome = { ...start, latencyMs: 1, status: "ok" };
    const room = 256 * 1024 - 1239 - checked(small, true).length;
    const args = { message: "x".repeat(room - 2000) };
    const call: CallOutcome = { ...small, arguments: args };
    expect(() => checked(call, true)).not.toThrow();
    const tooLarge = (() => {
      try {
        checked({ ...start, arguments: args }, true, OUTCOME_MEMBERS_BYTES);
      } catch (e) {
        return e;
      }
    })();
    expect(tooLarge).toBeInstanceOf(IngestError);
    expect((tooLarge as IngestError).code).toBe("too-large");
  });
});

describe("toolCallEvent", () => {
  it("records included arguments in RFC 8785 member order, so the whole event stringifies to its canonical form", () => {
    const call: CallStart = {
      ...start,
      arguments: JSON.parse('{"z":[{"y":1,"b":2}],"__proto__":{"q":0},"a":"x"}'),
    };
    const event = fillEvent(toolCallEvent(ctx, call, { arguments: "include" }), "mcp-proxy://test");
    const recorded = (event.data as Record<string, unknown>)["gen_ai.tool.call.arguments"];
    expect(JSON.stringify(recorded)).toBe('{"__proto__":{"q":0},"a":"x","z":[{"b":2,"y":1}]}');
    expect(JSON.stringify(event)).toBe(canonicalBytes(event).toString("utf8"));
  });
});

import { describe, expect, it } from "vitest";
import { parseSignedEvent, parseTraceparent, signEvent } from "../src/event.ts";
import { eventFacets } from "../src/event-index.ts";
import { generateKeyPair } from "../src/keys.ts";

// The example values of W3C Trace Context Level 1, §3.2.2 and §3.3.
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const W3C_EXAMPLE = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe("parseTraceparent (W3C Trace Context §3.2)", () => {
  it("reads version 00 and a later version with an appended field", () => {
    expect(parseTraceparent(W3C_EXAMPLE)).toEqual({
      version: "00",
      traceId: TRACE_ID,
      parentId: "00f067aa0ba902b7",
      flags: "01",
    });
    expect(parseTraceparent(`cc-${TRACE_ID}-00f067aa0ba902b7-09-what-the-future-holds`)?.traceId).toBe(
      TRACE_ID,
    );
  });

  it.each([
    ["version ff", `ff-${TRACE_ID}-00f067aa0ba902b7-01`],
    ["version 00 with more fields", `${W3C_EXAMPLE}-extra`],
    ["an all-zero trace id", `00-${"0".repeat(32)}-00f067aa0ba902b7-01`],
    ["an all-zero parent id", `00-${TRACE_ID}-${"0".repeat(16)}-01`],
    ["upper-case hex", W3C_EXAMPLE.toUpperCase()],
    ["a short trace id", `00-${TRACE_ID.slice(1)}-00f067aa0ba902b7-01`],
    ["surrounding space", ` ${W3C_EXAMPLE}`],
  ])("refuses %s", (_, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
  });
});

describe("events with the distributed-tracing extension", () => {
  const { privateKey } = generateKeyPair("ed25519");
  const event = (extra: Record<string, unknown>) =>
    signEvent(
      {
        specversion: "1.0",
        id: "e",
        source: "agent://a",
        type: "t",
        time: "2026-11-28T00:00:00Z",
        ...extra,
      } as never,
      privateKey,
    );

  it("are found by the trace id of their traceparent", () => {
    const traced = parseSignedEvent(
      event({ traceparent: W3C_EXAMPLE, tracestate: "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE" }),
    );
    expect(eventFacets(traced).traceId).toBe(TRACE_ID);
    expect(eventFacets(parseSignedEvent(event({}))).traceId).toBeUndefined();
  });

  it.each([
    ["traceparent", { traceparent: "not-a-traceparent" }],
    ["traceparent", { traceparent: 7 }],
    ["tracestate", { tracestate: "rojo=1" }],
    ["tracestate", { traceparent: W3C_EXAMPLE, tracestate: "Rojo=1" }],
    ["tracestate", { traceparent: W3C_EXAMPLE, tracestate: "rojo=1,,congo=2" }],
    [
      "tracestate",
      { traceparent: W3C_EXAMPLE, tracestate: Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(",") },
    ],
  ])("refuse a bad %s, naming it", (field, extra) => {
    expect(() => parseSignedEvent(event(extra))).toThrow(
      expect.objectContaining({ field: `event.${field}` }),
    );
  });
});

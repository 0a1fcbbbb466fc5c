import { describe, expect, it } from "vitest";
import { eventSigningBytes, parseSignedEvent, signEvent, verifyEventSignature } from "../src/event.ts";
import { generateKeyPair, keyFingerprint } from "../src/keys.ts";

const base = {
  specversion: "1.0" as const,
  id: "evt-1",
  source: "agent://billing-agent",
  type: "ai.agent.tool_call",
  time: "2026-11-24T12:00:00Z",
  data: { "gen_ai.tool.name": "refund", "gen_ai.agent.id": "billing-agent" },
};

describe("producer signatures", () => {
  it.each(["ed25519", "ecdsa-p256"] as const)("signs and verifies with %s", (alg) => {
    const { privateKey, publicKey } = generateKeyPair(alg);
    const event = signEvent(base, privateKey);
    expect(event.sigkeyid).toBe(keyFingerprint(publicKey));
    expect(verifyEventSignature(parseSignedEvent(event), publicKey)).toBe(true);
    expect(
      verifyEventSignature({ ...event, data: { ...base.data, "gen_ai.tool.name": "delete" } }, publicKey),
    ).toBe(false);
    expect(verifyEventSignature(event, generateKeyPair(alg).publicKey)).toBe(false);
  });

  it("signs key order independently (RFC 8785)", () => {
    const { privateKey, publicKey } = generateKeyPair("ed25519");
    const event = signEvent(base, privateKey);
    const reordered = Object.fromEntries(Object.entries(event).reverse()) as typeof event;
    expect(verifyEventSignature(reordered, publicKey)).toBe(true);
    expect(eventSigningBytes(reordered).toString()).toMatch(/^auditsink-event-v1\n\{"data":/);
  });
});

describe("event validation", () => {
  const { privateKey } = generateKeyPair("ed25519");
  const good = signEvent(base, privateKey);
  it.each([
    ["specversion", { specversion: "0.3" }],
    ["id", { id: "" }],
    ["time", { time: "24/11/2026" }],
    ["source", { source: "agent://a\nFAKE LOG LINE" }],
    ["sigkeyid", { sigkeyid: "abc" }],
    ["BadName", { BadName: "x" }],
  ])("names the wrong field %s", (field, patch) => {
    expect(() => parseSignedEvent({ ...good, ...patch }, "events[2]")).toThrow(
      expect.objectContaining({ code: "invalid-event", field: `events[2].${field}` }),
    );
  });

  it("refuses an event over 256 KiB", () => {
    expect(() => parseSignedEvent({ ...good, data: "x".repeat(300_000) })).toThrow(
      expect.objectContaining({ code: "too-large" }),
    );
  });

  it("accepts extension attributes and any JSON data", () => {
    expect(parseSignedEvent({ ...good, traceparent: "00-abc-def-01", data: [1, "two", null] })).toMatchObject(
      { traceparent: "00-abc-def-01" },
    );
  });
});

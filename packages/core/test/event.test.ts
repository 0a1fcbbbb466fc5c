import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  canonicalEvent,
  eventSigningBytes,
  NOT_PLAIN_RANGES,
  parseSignedEvent,
  type SignedEvent,
  signEvent,
  signingBytesFromCanonical,
  verifyEventSignature,
  verifyEventSignatureAsync,
} from "../src/event.ts";
import { canonicalBytes } from "../src/hash.ts";
import { generateKeyPair, keyFingerprint } from "../src/keys.ts";
import { type AuditRecord, RECORD_VERSION, sealRecord } from "../src/record.ts";

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

  it.each([
    ["a bidi override (Cf)", "refund\u202Eexe.fdp"],
    ["a zero-width space (Cf)", "re\u200Bfund"],
    ["a tag character (Cf, beyond the BMP)", "refund\u{E0041}\u{E0042}"],
    ["a line separator (Zl)", "refund\u2028next"],
    ["a C1 control (Cc)", "refund\u0085"],
  ])("refuses an identifier with %s, naming the field", (_, id) => {
    expect(() => parseSignedEvent({ ...good, id }, "events[0]")).toThrow(
      expect.objectContaining({ code: "invalid-event", field: "events[0].id" }),
    );
  });

  it("accepts identifiers in any script, and characters beyond the BMP that are not format characters", () => {
    for (const id of ["événement-1", "工具调用-7", "call-🦉-9", "𝄞-clef"])
      expect(parseSignedEvent({ ...good, id }).id).toBe(id);
  });

  it("lists exactly the code points of Unicode's Cc, Cf, Zl and Zp (FORMAT.md §3), as this runtime knows them", () => {
    // When a Node.js update brings a Unicode version with new format characters, this fails: the list (and
    // FORMAT.md) are then updated on purpose, never silently by the runtime.
    const listed = (c: number) => NOT_PLAIN_RANGES.some(([a, b]) => a <= c && c <= b);
    const category = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
    const differ: string[] = [];
    for (let c = 0; c <= 0x10ffff; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      if (listed(c) !== category.test(String.fromCodePoint(c))) differ.push(c.toString(16));
    }
    expect(differ).toEqual([]);
    for (const [a, b] of NOT_PLAIN_RANGES) {
      const id = `x${String.fromCodePoint(a)}${String.fromCodePoint(b)}`;
      expect(() => parseSignedEvent({ ...good, id })).toThrow(expect.objectContaining({ field: "event.id" }));
    }
  });

  it("refuses an event over 256 KiB", () => {
    expect(() =>
      canonicalEvent(parseSignedEvent({ ...good, data: "x".repeat(300_000) }), "events[0]"),
    ).toThrow(expect.objectContaining({ code: "too-large" }));
  });

  it("accepts extension attributes and any JSON data", () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    expect(parseSignedEvent({ ...good, traceparent, tenant: "acme", data: [1, "two", null] })).toMatchObject({
      traceparent,
      tenant: "acme",
    });
  });
});

describe("canonical bytes computed once", () => {
  const { privateKey, publicKey } = generateKeyPair("ed25519");
  // Events with arbitrary JSON data, extension attributes and strings that need escaping — including data that
  // copies the event's own signature member, which must not confuse the derivation.
  const arbitraryEvent = fc
    .record({
      id: fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s)),
      data: fc.jsonValue(),
      ext: fc.dictionary(
        fc.stringMatching(/^[a-z0-9]{1,20}$/),
        fc.oneof(
          fc.string({ maxLength: 10 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s)),
          fc.integer(),
          fc.boolean(),
        ),
        { maxKeys: 3 },
      ),
      copySignature: fc.boolean(),
    })
    .map(({ id, data, ext, copySignature }) => {
      const reserved = new Set([
        "id",
        "source",
        "type",
        "time",
        "data",
        "subject",
        "specversion",
        "sigkeyid",
        "signature",
        "dataschema",
        "datacontenttype",
      ]);
      const extensions = Object.fromEntries(Object.entries(ext).filter(([k]) => !reserved.has(k)));
      const event = signEvent({ ...base, ...extensions, id, data: data as never }, privateKey);
      return copySignature
        ? signEvent(
            { ...event, data: { x: [`,"signature":"${event.signature}"`], signature: event.signature } },
            privateKey,
          )
        : event;
    });

  it("derives the signing bytes from the canonical event exactly", async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryEvent, async (event: SignedEvent) => {
        const canonical = canonicalBytes(event);
        expect(signingBytesFromCanonical(event, canonical).toString("utf8")).toBe(
          eventSigningBytes(event).toString("utf8"),
        );
        expect(await verifyEventSignatureAsync(event, canonical, publicKey)).toBe(true);
        const tampered = { ...event, type: "tampered" };
        expect(await verifyEventSignatureAsync(tampered, canonicalBytes(tampered), publicKey)).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it("assembles a record's RFC 8785 bytes around the event's exactly", () => {
    fc.assert(
      fc.property(
        arbitraryEvent,
        fc.string({ minLength: 1, maxLength: 30 }),
        fc.nat(),
        (event, producer, index) => {
          const record: AuditRecord = {
            v: RECORD_VERSION,
            stream: "s",
            index,
            prev: "ab".repeat(32),
            received: "2026-11-24T12:00:00.000Z",
            producer,
            event,
          };
          expect(sealRecord(record, canonicalBytes(event)).bytes.toString("utf8")).toBe(
            canonicalBytes(record).toString("utf8"),
          );
        },
      ),
      { numRuns: 1000 },
    );
  });
});

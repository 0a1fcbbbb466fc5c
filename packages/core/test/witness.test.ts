/**
 * Witness cosignatures and policies (core witness.ts), pure: strict parsing of verifier keys and witness answers,
 * policy checks that count each witness once and report forgeries, and "never throws" for arbitrary input.
 * The same code is run against real witness software in test/witness/.
 */
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addCheckpointRequest,
  addCosignatures,
  checkWitnessPolicy,
  cosignatureMessage,
  FormatError,
  formatNote,
  makeWitnessKey,
  type Note,
  parseAddCheckpointResponse,
  parseNote,
  parseWitnessKey,
  type WitnessKey,
  witnessPolicy,
} from "../src/index.ts";

const TEXT = "log.test/a\n7\nKgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

function witness(name: string): { key: WitnessKey; privateKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  return { key: makeWitnessKey(name, raw), privateKey };
}

function cosign(w: { key: WitnessKey; privateKey: KeyObject }, text = TEXT, time = 1_700_000_000n) {
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(time);
  const signature = Buffer.concat([ts, sign(null, cosignatureMessage(text, time), w.privateKey)]);
  return { name: w.key.name, keyId: w.key.keyId, signature };
}

const logLine = { name: "log.test/a", keyId: Buffer.from("01020304", "hex"), signature: Buffer.alloc(64, 1) };

describe("witness verifier keys", () => {
  it("round-trip through their vkey string, type 0x04", () => {
    const w = witness("witness.test/w1");
    const parsed = parseWitnessKey(w.key.verifierKey);
    expect(parsed.verifierKey).toBe(w.key.verifierKey);
    expect(Buffer.from(w.key.verifierKey.split("+")[2]!, "base64")[0]).toBe(0x04);
  });

  it("refuse a log key (type 0x01), a wrong key ID, and junk", () => {
    const w = witness("witness.test/w1");
    const [name, , b64] = w.key.verifierKey.split("+") as [string, string, string];
    const asEd25519 = Buffer.from(b64, "base64");
    asEd25519[0] = 0x01;
    for (const bad of [
      `${name}+00000000+${b64}`,
      `${name}+${w.key.keyId.toString("hex")}+${asEd25519.toString("base64")}`,
      "",
      "a+b+c",
      "__proto__+12345678+BAAA",
    ])
      expect(() => parseWitnessKey(bad)).toThrow(FormatError);
  });
});

describe("witness policies", () => {
  it("default to every witness, and bound the quorum by their number", () => {
    const a = witness("w.test/a").key.verifierKey;
    const b = witness("w.test/b").key.verifierKey;
    expect(witnessPolicy([a, b]).quorum).toBe(2);
    expect(witnessPolicy([a, b], 1).quorum).toBe(1);
    for (const q of [0, 3, 1.5, Number.NaN]) expect(() => witnessPolicy([a, b], q)).toThrow(FormatError);
    expect(() => witnessPolicy([])).toThrow(FormatError);
    expect(() => witnessPolicy([a, a])).toThrow(/listed twice/);
  });

  it("count each witness once, ignore unknown keys, and report a forged cosignature", () => {
    const a = witness("w.test/a");
    const b = witness("w.test/b");
    const c = witness("w.test/c");
    const policy = witnessPolicy([a.key.verifierKey, b.key.verifierKey, c.key.verifierKey], 2);
    const stranger = witness("w.test/stranger");
    const forged = {
      ...cosign(b),
      signature: Buffer.concat([cosign(b).signature.subarray(0, 8), Buffer.alloc(64)]),
    };
    const note: Note = {
      text: TEXT,
      signatures: [logLine, cosign(a), cosign(a, TEXT, 5n), cosign(stranger), forged],
    };
    const verdict = checkWitnessPolicy(note, policy);
    expect(verdict.met).toBe(false);
    expect(verdict.signed).toEqual([
      { name: "w.test/a", verifierKey: a.key.verifierKey, time: 1_700_000_000 },
    ]);
    expect(verdict.missing).toEqual(["w.test/b", "w.test/c"]);
    expect(verdict.invalid.map((i) => i.name)).toEqual(["w.test/b"]);
    expect(verdict.detail).toMatch(/cosigned by 1 of the 2 witnesses the policy requires/);

    const met = checkWitnessPolicy({ text: TEXT, signatures: [cosign(c), cosign(a)] }, policy);
    expect(met).toMatchObject({ met: true, missing: ["w.test/b"], invalid: [] });
  });

  it("reject a cosignature over other text (another checkpoint, or the extension lines changed)", () => {
    const a = witness("w.test/a");
    const policy = witnessPolicy([a.key.verifierKey]);
    const moved = checkWitnessPolicy({ text: `${TEXT}time x\n`, signatures: [cosign(a)] }, policy);
    expect(moved.met).toBe(false);
    expect(moved.invalid).toHaveLength(1);
  });

  it("never throw, whatever the note holds", () => {
    const policy = witnessPolicy([witness("w.test/a").key.verifierKey]);
    const key = policy.witnesses[0]!;
    fc.assert(
      fc.property(fc.string(), fc.uint8Array({ maxLength: 100 }), (text, sig) => {
        const verdict = checkWitnessPolicy(
          { text, signatures: [{ name: key.name, keyId: key.keyId, signature: Buffer.from(sig) }] },
          policy,
        );
        expect(verdict.met).toBe(false);
      }),
    );
  });
});

describe("add-checkpoint", () => {
  it("formats the request: old size, proof lines, blank line, checkpoint", () => {
    const note = formatNote({ text: TEXT, signatures: [logLine] });
    const proof = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    expect(addCheckpointRequest(3, proof, note)).toBe(
      `old 3\n${proof[0]!.toString("base64")}\n${proof[1]!.toString("base64")}\n\n${note}`,
    );
    expect(addCheckpointRequest(0, [], note)).toBe(`old 0\n\n${note}`);
    expect(() => addCheckpointRequest(0, proof, note)).toThrow(RangeError);
    expect(() => addCheckpointRequest(1, new Array(64).fill(proof[0]), note)).toThrow(RangeError);
  });

  it("classifies every answer the protocol defines", () => {
    const a = witness("w.test/a");
    const line = cosign(a);
    const body = `\u2014 ${line.name} ${Buffer.concat([line.keyId, line.signature]).toString("base64")}\n`;
    expect(parseAddCheckpointResponse(200, "text/plain", body)).toMatchObject({ kind: "cosigned" });
    expect(parseAddCheckpointResponse(409, "text/x.tlog.size", "42\n")).toEqual({
      kind: "conflict",
      knownSize: 42,
    });
    const cases: [number, string | null, string, string][] = [
      [200, null, "not a signature\n", "witness-error"],
      [200, null, "", "witness-error"],
      [409, "text/plain", "42\n", "witness-conflict"],
      [409, "text/x.tlog.size", "042\n", "witness-conflict"],
      [404, null, "", "witness-unknown-log"],
      [403, null, "unknown log\n", "witness-unknown-log"],
      [403, null, "invalid signature\n", "witness-bad-signature"],
      [422, null, "bad consistency proof\n", "witness-bad-proof"],
      [400, null, "invalid input\n", "witness-bad-request"],
      [500, null, "\u0000\u0007 boom", "witness-error"],
    ];
    for (const [status, type, text, code] of cases)
      expect(parseAddCheckpointResponse(status, type, text)).toMatchObject({ kind: "refused", code, status });
  });

  it("never throws for any answer", () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 599 }), fc.option(fc.string()), fc.string(), (s, t, b) => {
        expect(["cosigned", "conflict", "refused"]).toContain(parseAddCheckpointResponse(s, t, b).kind);
      }),
    );
  });

  it("adds cosignatures to a note once each, keeping the log's signature first", () => {
    const a = witness("w.test/a");
    const note = formatNote({ text: TEXT, signatures: [logLine] });
    const once = addCosignatures(note, [cosign(a)]);
    const twice = addCosignatures(once, [cosign(a)]);
    expect(twice).toBe(once);
    expect(parseNote(twice).signatures.map((s) => s.name)).toEqual(["log.test/a", "w.test/a"]);
  });
});

/**
 * Who an event belongs to: dedup keys bound to the producer (docs/FORMAT.md §Dedup) and signatures in one
 * canonical form (§Signatures), so that nobody but a producer can decide what happens to its `source` + `id`.
 */
import { sign as nodeSign, verify as nodeVerify } from "node:crypto";
import { p256 } from "@noble/curves/nist.js";
import { describe, expect, it } from "vitest";
import { eventSigningBytes, type SignedEvent, signEvent } from "../src/event.ts";
import { canonicalEcdsaSignature, generateKeyPair, keyFingerprint } from "../src/keys.ts";
import { KeyObjectSigner } from "../src/memory.ts";
import { formatNote, parseNote, verifyNote } from "../src/note.ts";
import { DEPLOYMENT, memoryPorts, newSink, producer } from "./fixtures.ts";

const P256_ORDER = p256.Point.CURVE().n;
const ED25519_ORDER = (1n << 252n) + 27742317777372353535851937790883648493n;

/** The same ECDSA signature with s replaced by n − s: a different, equally valid signature. */
function flipS(der: Buffer): Buffer {
  const sig = p256.Signature.fromBytes(der, "der");
  return Buffer.from(new p256.Signature(sig.r, P256_ORDER - sig.s).toBytes("der"));
}

function withSignature(event: SignedEvent, signature: Buffer): SignedEvent {
  return { ...event, signature: signature.toString("base64") };
}

describe("dedup keys belong to the producer", () => {
  it("lets a producer submit its own source+id after another producer submitted the same pair first", async () => {
    // Prepare
    const ports = memoryPorts();
    const sink = newSink(ports);
    const victim = producer(ports, "victim");
    const squatter = producer(ports, "squatter");
    const real = victim.event("order-1");
    const forged = signEvent(
      { ...real, signature: undefined, sigkeyid: undefined, data: { forged: true } } as never,
      squatter.privateKey,
    );
    expect(forged.source).toBe(real.source);
    // Act
    const [squatted] = await sink.submit("s", [forged]);
    const [accepted] = await sink.submit("s", [real]);
    const [replayed] = await sink.submit("s", [real]);
    // Assess
    expect(squatted!.index).toBe(0);
    expect(accepted!.index).toBe(1);
    expect(replayed!.index).toBe(1);
    expect((await ports.heads.get("s"))!.size).toBe(2);
  });

  it("still refuses a producer's own source+id with other content", async () => {
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent");
    await sink.submit("s", [agent.event("1", { a: 1 })]);
    await expect(sink.submit("s", [agent.event("1", { a: 2 })])).rejects.toMatchObject({
      code: "id-conflict",
    });
  });
});

describe("producer signatures are accepted in one canonical form", () => {
  it("refuses a re-encoded (high-S) copy of a P-256 signature, so an observer cannot front-run the event", async () => {
    // Prepare: a real signature and its malleated twin, which node:crypto itself accepts.
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent", "ecdsa-p256");
    const event = agent.event("1");
    const original = Buffer.from(event.signature, "base64");
    const twin = flipS(original);
    expect(nodeVerify("sha256", eventSigningBytes(event), agent.publicKey, twin)).toBe(true);
    // Act
    const frontRun = sink.submit("s", [withSignature(event, twin)]);
    // Assess
    await expect(frontRun).rejects.toMatchObject({ code: "bad-signature", field: "events[0].signature" });
    const [receipt] = await sink.submit("s", [event]);
    expect(receipt!.index).toBe(0);
  });

  it("refuses the IEEE P1363 (r || s) encoding and non-minimal DER of a valid P-256 signature", async () => {
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent", "ecdsa-p256");
    const event = agent.event("1");
    const der = Buffer.from(event.signature, "base64");
    const p1363 = Buffer.from(p256.Signature.fromBytes(der, "der").toBytes("compact"));
    expect(
      nodeVerify(
        "sha256",
        eventSigningBytes(event),
        { key: agent.publicKey, dsaEncoding: "ieee-p1363" },
        p1363,
      ),
    ).toBe(true);
    // DER with a redundant leading zero in r: SEQUENCE and INTEGER lengths grow by one.
    const rLength = der[3]!;
    const padded = Buffer.concat([Buffer.of(0x30, der[1]! + 1, 0x02, rLength + 1, 0x00), der.subarray(4)]);
    for (const signature of [p1363, padded]) {
      await expect(sink.submit("s", [withSignature(event, signature)])).rejects.toMatchObject({
        code: "bad-signature",
      });
    }
    expect(await ports.heads.get("s")).toBeUndefined();
  });

  it("refuses an Ed25519 signature whose S is not reduced (S + L)", async () => {
    const ports = memoryPorts();
    const sink = newSink(ports);
    const agent = producer(ports, "agent", "ed25519");
    const event = agent.event("1");
    const sig = Buffer.from(event.signature, "base64");
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
    s += ED25519_ORDER;
    const twin = Buffer.from(sig);
    for (let i = 32; i < 64; i++) {
      twin[i] = Number(s & 0xffn);
      s >>= 8n;
    }
    await expect(sink.submit("s", [withSignature(event, twin)])).rejects.toMatchObject({
      code: "bad-signature",
    });
  });

  it("signs producer events and system events in low-S DER form", async () => {
    // Prepare: with random S, 40 signatures are all low-S by chance once in 2^40.
    const { privateKey, publicKey } = generateKeyPair("ecdsa-p256");
    const events = Array.from({ length: 40 }, (_, i) =>
      signEvent(
        { specversion: "1.0", id: `${i}`, source: "agent://a", type: "t", time: "2026-11-24T12:00:00Z" },
        privateKey,
      ),
    );
    // Assess
    for (const e of events) {
      expect(e.sigkeyid).toBe(keyFingerprint(publicKey));
      expect(canonicalEcdsaSignature(Buffer.from(e.signature, "base64"))).toBe(true);
    }
  });
});

describe("checkpoint notes of type 0x02", () => {
  it("verify with an ASN.1 DER signature and not with the same signature as 64-byte P1363", async () => {
    // Prepare
    const { privateKey, publicKey } = generateKeyPair("ecdsa-p256");
    const signer = new KeyObjectSigner(DEPLOYMENT, privateKey, publicKey);
    const text = `${DEPLOYMENT}/s\n1\n${Buffer.alloc(32).toString("base64")}\n`;
    const der = nodeSign("sha256", Buffer.from(text), privateKey);
    const p1363 = Buffer.from(p256.Signature.fromBytes(der, "der").toBytes("compact"));
    const note = (signature: Buffer) =>
      parseNote(formatNote({ text, signatures: [{ name: DEPLOYMENT, keyId: signer.key.keyId, signature }] }));
    // Act
    const withDer = verifyNote(note(der), [signer.key]);
    const withP1363 = verifyNote(note(p1363), [signer.key]);
    // Assess
    expect(withDer).toMatchObject({ ok: true });
    expect(withP1363).toMatchObject({ ok: false, reason: "bad-signature" });
  });
});

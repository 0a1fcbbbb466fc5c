import { describe, expect, it } from "vitest";
import { checkpointText, openCheckpoint, parseCheckpointText, signCheckpoint } from "../src/checkpoint.ts";
import { sha256 } from "../src/hash.ts";
import { generateKeyPair, spkiDer } from "../src/keys.ts";
import { KeyObjectSigner } from "../src/memory.ts";
import {
  formatNote,
  formatVerifierKey,
  makeNoteKey,
  parseNote,
  parseVerifierKey,
  SIG_ECDSA,
  verifyNote,
} from "../src/note.ts";

// golang.org/x/mod/sumdb/note: the package documentation's example key and signed note (Ed25519, type 0x01).
const GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_NOTE =
  "If you think cryptography is the answer to your problem,\n" +
  "then you don't know what your problem is.\n" +
  "\n" +
  "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

describe("signed notes (c2sp.org/signed-note)", () => {
  it("verifies the Go sumdb/note example with its published verifier key", () => {
    const key = parseVerifierKey(GO_VKEY);
    expect(formatVerifierKey(key)).toBe(GO_VKEY);
    expect(verifyNote(parseNote(GO_NOTE), [key])).toMatchObject({ ok: true });
  });

  it("rejects the Go example with one character of the text changed", () => {
    const key = parseVerifierKey(GO_VKEY);
    expect(verifyNote(parseNote(GO_NOTE.replace("answer", "Answer")), [key])).toMatchObject({
      ok: false,
      reason: "bad-signature",
    });
  });

  it("rejects the Go example re-encoded with non-zero base64 pad bits (same bytes, other text)", () => {
    // Prepare: 'M' and 'N' differ only in the two pad bits of the last base64 group
    const reencoded = GO_NOTE.replace("nAM=", "nAN=");
    expect(Buffer.from("nAN=", "base64")).toEqual(Buffer.from("nAM=", "base64"));
    // Act, Assess
    expect(() => parseNote(reencoded)).toThrow(/canonical base64/);
  });

  it("uses SHA-256(DER SPKI)[:4] as the ECDSA key ID and round-trips the verifier key", () => {
    const { publicKey } = generateKeyPair("ecdsa-p256");
    const key = makeNoteKey("auditsink.example/prod", publicKey);
    expect(key.type).toBe(SIG_ECDSA);
    expect(key.keyId).toEqual(sha256(spkiDer(publicKey)).subarray(0, 4));
    const parsed = parseVerifierKey(formatVerifierKey(key));
    expect(parsed.keyId).toEqual(key.keyId);
    expect(spkiDer(parsed.publicKey)).toEqual(spkiDer(publicKey));
  });

  it("ignores signatures by unknown keys and fails when no trusted key signed", async () => {
    const a = generateKeyPair("ecdsa-p256");
    const b = generateKeyPair("ed25519");
    const signerA = new KeyObjectSigner("auditsink.example/a", a.privateKey, a.publicKey);
    const signerB = new KeyObjectSigner("auditsink.example/b", b.privateKey, b.publicKey);
    const text = "hello\n";
    const note = {
      text,
      signatures: [
        {
          name: signerA.key.name,
          keyId: signerA.key.keyId,
          signature: Buffer.from(await signerA.sign(Buffer.from(text))),
        },
        {
          name: signerB.key.name,
          keyId: signerB.key.keyId,
          signature: Buffer.from(await signerB.sign(Buffer.from(text))),
        },
      ],
    };
    const parsed = parseNote(formatNote(note));
    expect(verifyNote(parsed, [signerB.key])).toMatchObject({ ok: true });
    expect(verifyNote(parsed, [signerA.key])).toMatchObject({ ok: true });
    expect(
      verifyNote(parseNote(formatNote({ text, signatures: [note.signatures[0]!] })), [signerB.key]),
    ).toMatchObject({
      ok: false,
      reason: "unknown-key",
    });
  });

  it.each([
    ["no signature block", "text\n"],
    ["control character", "te\u0001xt\n\n— a AAAAAAAA\n"],
    ["bad signature line", "text\n\n- a AAAAAAAA\n"],
    ["short signature", "text\n\n— a AAAA\n"],
  ])("refuses a note with %s", (_, note) => {
    expect(() => parseNote(note)).toThrow();
  });
});

describe("checkpoints (c2sp.org/tlog-checkpoint)", () => {
  it.each(["ecdsa-p256", "ed25519"] as const)("signs and opens a %s checkpoint", async (alg) => {
    const { privateKey, publicKey } = generateKeyPair(alg);
    const signer = new KeyObjectSigner("auditsink.example/prod", privateKey, publicKey);
    const cp = {
      origin: "auditsink.example/prod/agents",
      size: 5,
      root: sha256("r"),
      head: sha256("h"),
      time: "2026-11-24T12:00:00.000Z",
    };
    const signed = await signCheckpoint(cp, signer);
    const opened = openCheckpoint(signed, [signer.key]);
    expect(opened).toMatchObject({ ok: true, checkpoint: { origin: cp.origin, size: 5 } });
    expect(signed.startsWith(checkpointText(cp))).toBe(true);
    const other = generateKeyPair(alg);
    const stranger = new KeyObjectSigner("auditsink.example/prod", other.privateKey, other.publicKey);
    expect(openCheckpoint(signed, [stranger.key])).toMatchObject({
      ok: false,
      code: "checkpoint-unknown-key",
    });
    expect(openCheckpoint(signed.replace("\n5\n", "\n6\n"), [signer.key])).toMatchObject({
      ok: false,
      code: "checkpoint-signature-invalid",
    });
  });

  it.each([
    [
      "a size with a leading zero",
      "o\n05\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 2026-11-24T12:00:00.000Z\n",
    ],
    ["a short root", "o\n0\nAAAA\ntime 2026-11-24T12:00:00.000Z\n"],
    [
      "an unknown extension",
      "o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nfoo bar\ntime 2026-11-24T12:00:00.000Z\n",
    ],
    ["no time", "o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"],
    [
      "a head at size 0",
      `o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nhead ${"0".repeat(64)}\ntime 2026-11-24T12:00:00.000Z\n`,
    ],
  ])("refuses a checkpoint with %s", (_, text) => {
    expect(() => parseCheckpointText(text)).toThrow();
  });
});

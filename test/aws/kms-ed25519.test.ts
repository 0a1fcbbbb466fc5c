/**
 * KMS Ed25519 checkpoint keys (ECC_NIST_EDWARDS25519, ED25519_SHA_512 with MessageType RAW) on the emulators.
 * moto has no such key spec: test/emulators/moto_server_ed25519.py adds it, and the first tests here pin down
 * that extension's behaviour against the KMS API reference before KmsSigner is tested on it.
 */
import { createPublicKey, verify } from "node:crypto";
import { KmsSigner } from "@auditsink/aws";
import {
  checkpointKeyFor,
  formatVerifierKey,
  openCheckpoint,
  SIG_ED25519,
  signCheckpoint,
} from "@auditsink/core";
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  SignCommand,
  VerifyCommand,
} from "@aws-sdk/client-kms";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { goVerify } from "../embedded/go-ckpt.ts";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { ORIGIN, provision, useEmulators } from "./fixtures.ts";

let emulators: Emulators;
let kms: KMSClient;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
  kms = new KMSClient({});
});
afterAll(async () => emulators?.stop());

const ed25519Key = async () =>
  (await kms.send(new CreateKeyCommand({ KeySpec: "ECC_NIST_EDWARDS25519", KeyUsage: "SIGN_VERIFY" })))
    .KeyMetadata!;

describe("the emulators' KMS Ed25519 keys (the tests' extension of moto)", () => {
  it("creates ECC_NIST_EDWARDS25519 keys whose public key is a DER SPKI and whose algorithms KMS lists", async () => {
    // Act
    const created = await ed25519Key();
    const described = (await kms.send(new DescribeKeyCommand({ KeyId: created.KeyId }))).KeyMetadata!;
    const pub = await kms.send(new GetPublicKeyCommand({ KeyId: created.KeyId }));
    // Assess
    expect(created.KeySpec).toBe("ECC_NIST_EDWARDS25519");
    expect(described.SigningAlgorithms).toEqual(["ED25519_SHA_512", "ED25519_PH_SHA_512"]);
    expect(pub.KeySpec).toBe("ECC_NIST_EDWARDS25519");
    expect(pub.KeyUsage).toBe("SIGN_VERIFY");
    expect(pub.SigningAlgorithms).toEqual(["ED25519_SHA_512", "ED25519_PH_SHA_512"]);
    const key = createPublicKey({ key: Buffer.from(pub.PublicKey!), format: "der", type: "spki" });
    expect(key.asymmetricKeyType).toBe("ed25519");
  });

  it("signs RAW messages with ED25519_SHA_512 (64 bytes, pure Ed25519) and verifies them", async () => {
    // Prepare
    const { KeyId } = await ed25519Key();
    const message = Buffer.from("auditsink.test/aws/s\n1\n");
    const pub = await kms.send(new GetPublicKeyCommand({ KeyId }));
    const key = createPublicKey({ key: Buffer.from(pub.PublicKey!), format: "der", type: "spki" });
    // Act
    const { Signature } = await kms.send(
      new SignCommand({ KeyId, Message: message, MessageType: "RAW", SigningAlgorithm: "ED25519_SHA_512" }),
    );
    const good = await kms.send(
      new VerifyCommand({
        KeyId,
        Message: message,
        Signature,
        MessageType: "RAW",
        SigningAlgorithm: "ED25519_SHA_512",
      }),
    );
    const bad = await kms.send(
      new VerifyCommand({
        KeyId,
        Message: Buffer.from("another message"),
        Signature,
        MessageType: "RAW",
        SigningAlgorithm: "ED25519_SHA_512",
      }),
    );
    // Assess
    expect(Signature).toHaveLength(64);
    expect(verify(null, message, key, Buffer.from(Signature!))).toBe(true);
    expect(good.SignatureValid).toBe(true);
    expect(bad.SignatureValid).toBe(false);
  });

  it("refuses ED25519_SHA_512 with MessageType DIGEST, and algorithms of other key specs", async () => {
    // Prepare
    const { KeyId } = await ed25519Key();
    const message = Buffer.alloc(64, 1);
    // Act
    const digest = await kms
      .send(
        new SignCommand({
          KeyId,
          Message: message,
          MessageType: "DIGEST",
          SigningAlgorithm: "ED25519_SHA_512",
        }),
      )
      .catch((e: Error) => e);
    const ecdsa = await kms
      .send(
        new SignCommand({ KeyId, Message: message, MessageType: "RAW", SigningAlgorithm: "ECDSA_SHA_256" }),
      )
      .catch((e: Error) => e);
    // Assess
    expect(digest).toBeInstanceOf(Error);
    expect((digest as Error).name).toBe("ValidationException");
    expect((digest as Error).message).toContain("requires MessageType RAW");
    expect(ecdsa).toBeInstanceOf(Error);
    expect((ecdsa as Error).name).toBe("ValidationException");
    expect((ecdsa as Error).message).toContain("ED25519_SHA_512");
  });
});

describe("KmsSigner over an ECC_NIST_EDWARDS25519 key", () => {
  it("signs checkpoints as Ed25519 notes (type 0x01) that core and Go's x/mod note verify", async () => {
    // Prepare
    const p = await provision({ keySpec: "ECC_NIST_EDWARDS25519" });
    const rt = p.runtime();
    const signer = await KmsSigner.create(rt.clients.kms, p.settings.signingKeyId, ORIGIN);
    // Act
    const signed = await signCheckpoint(
      {
        origin: `${ORIGIN}/agents.s`,
        size: 1,
        root: Buffer.alloc(32, 7),
        head: Buffer.alloc(32, 1),
        time: "2026-11-24T00:00:00.000Z",
      },
      signer,
    );
    const go = await goVerify({
      checkpoints: [{ signed, vkey: formatVerifierKey(checkpointKeyFor(signer.key, `${ORIGIN}/agents.s`)) }],
    });
    // Assess
    expect(signer.key.type).toBe(SIG_ED25519);
    expect(signer.signingAlgorithm).toBe("ED25519_SHA_512");
    // `<name>+<key ID>+<base64>`; the base64 may itself hold '+'.
    const [name, , ...key] = formatVerifierKey(signer.key).split("+");
    const material = Buffer.from(key.join("+"), "base64");
    expect(name).toBe(ORIGIN);
    expect(material).toHaveLength(33); // type 0x01 || 32-byte Ed25519 key
    expect(material[0]).toBe(SIG_ED25519);
    expect(openCheckpoint(signed, [signer.key]).ok).toBe(true);
    expect(go.checkpoints[0]).toMatchObject({ ok: true, origin: `${ORIGIN}/agents.s`, size: 1 });
  });

  it("keeps signing ECDSA P-256 keys as type 0x02 with ECDSA_SHA_256", async () => {
    const p = await provision();
    const signer = await KmsSigner.create(p.runtime().clients.kms, p.settings.signingKeyId, ORIGIN);
    expect(signer.signingAlgorithm).toBe("ECDSA_SHA_256");
    expect(signer.key.type).toBe(0x02);
  });
});

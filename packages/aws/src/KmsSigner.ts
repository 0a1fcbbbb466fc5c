/**
 * The checkpoint Signer over an AWS KMS key (SIGN_VERIFY), of either key spec the stack offers
 * (docs/TRANSPARENCY.md §2):
 *   - ECC_NIST_P256: note signature type 0x02, ECDSA P-256 over SHA-256 of the note text (C2SP signed-note);
 *     KMS signs with ECDSA_SHA_256 and returns ASN.1 DER signatures;
 *   - ECC_NIST_EDWARDS25519: note signature type 0x01, pure Ed25519 over the note text; KMS signs with
 *     ED25519_SHA_512, which requires `MessageType: RAW`, and returns the raw 64-byte signature.
 * The key spec comes from GetPublicKey (its KeySpec and the SPKI's algorithm must agree).
 *
 * `Sign` is always called with `MessageType: RAW` so KMS hashes the message itself (moto re-hashes DIGEST
 * messages, see docs/AWS.md). The private key never leaves KMS; the public key is fetched once per container and
 * exported once into the archive at `keys/<note key ID>.json` so that old checkpoints stay verifiable even if
 * the KMS key is later lost or deleted.
 */

import {
  FormatError,
  makeNoteKey,
  type NoteKey,
  type PublicKeyDocument,
  publicKeyDocument,
  publicKeyDocumentKey,
  publicKeyFromSpki,
  SIG_ED25519,
  type Signer,
} from "@auditsink/core";
import {
  DescribeKeyCommand,
  GetPublicKeyCommand,
  type KMSClient,
  SignCommand,
  type SigningAlgorithmSpec,
} from "@aws-sdk/client-kms";
import { storeFailure } from "./errors.ts";
import type { S3WriteOnceStore } from "./S3WriteOnceStore.ts";

export class KmsSigner implements Signer {
  private constructor(
    private readonly kms: KMSClient,
    readonly kmsKeyId: string,
    readonly key: NoteKey,
    /** ECDSA_SHA_256 for an ECC_NIST_P256 key, ED25519_SHA_512 for an ECC_NIST_EDWARDS25519 key. */
    readonly signingAlgorithm: SigningAlgorithmSpec,
  ) {}

  /**
   * Fetches the public key and builds the signer. `name` is the deployment name (the note key name).
   * @example
   *   const signer = await KmsSigner.create(new KMSClient({}), process.env.SIGNING_KEY_ID!, "auditsink.example/prod");
   */
  static async create(kms: KMSClient, kmsKeyId: string, name: string): Promise<KmsSigner> {
    let out: { PublicKey?: Uint8Array; KeySpec?: string; CustomerMasterKeySpec?: string };
    try {
      out = await kms.send(new GetPublicKeyCommand({ KeyId: kmsKeyId }));
    } catch (e) {
      throw storeFailure(`KMS GetPublicKey ${kmsKeyId}`, e);
    }
    if (!out.PublicKey)
      throw storeFailure(`KMS GetPublicKey ${kmsKeyId}`, new Error("no public key returned"));
    const key = makeNoteKey(name, publicKeyFromSpki(out.PublicKey));
    const spec = key.type === SIG_ED25519 ? "ECC_NIST_EDWARDS25519" : "ECC_NIST_P256";
    const kmsSpec = out.KeySpec ?? out.CustomerMasterKeySpec;
    if (kmsSpec !== undefined && kmsSpec !== spec)
      throw new FormatError(
        "bad-key",
        `KMS key ${kmsKeyId} is ${kmsSpec}; checkpoint keys must be ECC_NIST_P256 or ECC_NIST_EDWARDS25519`,
      );
    return new KmsSigner(kms, kmsKeyId, key, key.type === SIG_ED25519 ? "ED25519_SHA_512" : "ECDSA_SHA_256");
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    try {
      const out = await this.kms.send(
        new SignCommand({
          KeyId: this.kmsKeyId,
          Message: message,
          MessageType: "RAW",
          SigningAlgorithm: this.signingAlgorithm,
        }),
      );
      if (!out.Signature) throw new Error("no signature returned");
      return out.Signature;
    } catch (e) {
      throw storeFailure(`KMS Sign ${this.kmsKeyId}`, e);
    }
  }

  /** KMS key state (`Enabled`, `Disabled`, `PendingDeletion`, …) for the verifier's key check. */
  async keyState(): Promise<string> {
    try {
      const out = await this.kms.send(new DescribeKeyCommand({ KeyId: this.kmsKeyId }));
      return out.KeyMetadata?.KeyState ?? "Unknown";
    } catch (e) {
      throw storeFailure(`KMS DescribeKey ${this.kmsKeyId}`, e);
    }
  }

  /** The document exported to the archive (core's format) plus the KMS key it came from. */
  publicKeyDocument(): PublicKeyDocument & { kmsKeyArn: string } {
    return { ...publicKeyDocument(this.key), kmsKeyArn: this.kmsKeyId };
  }

  /**
   * Exports the public key to `keys/<key ID>.json` unless it is already there. A HEAD first, because this
   * runs on every cold start and a HEAD costs a tenth of a PUT; the create-only put makes races harmless.
   */
  async exportPublicKey(store: S3WriteOnceStore): Promise<string> {
    const objectKey = publicKeyDocumentKey(this.key);
    if (!(await store.exists(objectKey))) {
      const body = `${JSON.stringify(this.publicKeyDocument(), null, 2)}\n`;
      await store.putIfAbsent(objectKey, Buffer.from(body, "utf8"));
    }
    return objectKey;
  }
}

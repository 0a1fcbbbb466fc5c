/**
 * Public keys, key ids and signatures for the two algorithms auditsink accepts: Ed25519 (RFC 8032) and
 * ECDSA P-256 with SHA-256. Keys travel as base64 DER SubjectPublicKeyInfo (SPKI).
 */
import {
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
  type VerifyKeyObjectInput,
} from "node:crypto";
import { FormatError } from "./errors.ts";
import { sha256, toHex } from "./hash.ts";

export type KeyAlgorithm = "ed25519" | "ecdsa-p256";

/** Which algorithm a key object is for; throws FormatError for anything else (RSA, P-384, …). */
export function keyAlgorithm(key: KeyObject): KeyAlgorithm {
  if (key.asymmetricKeyType === "ed25519") return "ed25519";
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1")
    return "ecdsa-p256";
  throw new FormatError("bad-key", "only Ed25519 and ECDSA P-256 keys are accepted");
}

export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return pub.export({ type: "spki", format: "der" });
}

/** Parses base64 DER SPKI (or PEM) into a public key of an accepted algorithm. */
export function publicKeyFromSpki(spki: string | Uint8Array): KeyObject {
  let key: KeyObject;
  try {
    if (typeof spki === "string" && spki.includes("-----BEGIN")) key = createPublicKey(spki);
    else {
      const der = typeof spki === "string" ? Buffer.from(spki, "base64") : Buffer.from(spki);
      key = createPublicKey({ key: der, format: "der", type: "spki" });
    }
  } catch (cause) {
    throw new FormatError("bad-key", "public key is not a DER SubjectPublicKeyInfo", { cause });
  }
  keyAlgorithm(key);
  return key;
}

/** A producer key id: lowercase hex SHA-256 of the DER SPKI (docs/FORMAT.md §Keys). */
export function keyFingerprint(key: KeyObject): string {
  return toHex(sha256(spkiDer(key)));
}

/** Ed25519 signs the message itself; ECDSA P-256 signs its SHA-256 and yields an ASN.1 DER signature. */
export function signBytes(privateKey: KeyObject, message: Uint8Array): Buffer {
  return nodeSign(keyAlgorithm(privateKey) === "ed25519" ? null : "sha256", message, privateKey);
}

/**
 * Verifies a signature made by signBytes. ECDSA signatures may be ASN.1 DER or the 64-byte IEEE P1363
 * form (r || s) that WebCrypto produces. Never throws for a bad signature: returns false.
 */
export function verifyBytes(publicKey: KeyObject, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    const [algorithm, key] = verifyArguments(publicKey, signature);
    return nodeVerify(algorithm, message, key, signature);
  } catch {
    return false;
  }
}

/**
 * verifyBytes on libuv's threadpool (node:crypto's callback form), so a batch of producer signatures is checked
 * on every core while the event loop goes on.
 */
export function verifyBytesAsync(
  publicKey: KeyObject,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      const [algorithm, key] = verifyArguments(publicKey, signature);
      nodeVerify(algorithm, message, key, signature, (error, ok) => resolve(!error && ok));
    } catch {
      resolve(false);
    }
  });
}

function verifyArguments(
  publicKey: KeyObject,
  signature: Uint8Array,
): [string | null, KeyObject | VerifyKeyObjectInput] {
  if (keyAlgorithm(publicKey) === "ed25519") return [null, publicKey];
  return ["sha256", { key: publicKey, dsaEncoding: signature.length === 64 ? "ieee-p1363" : "der" }];
}

export function generateKeyPair(algorithm: KeyAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  return algorithm === "ed25519"
    ? generateKeyPairSync("ed25519")
    : generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

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
import { p256 } from "@noble/curves/nist.js";
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
  let fingerprint = fingerprints.get(key);
  if (fingerprint === undefined) {
    fingerprint = toHex(sha256(spkiDer(key)));
    fingerprints.set(key, fingerprint);
  }
  return fingerprint;
}

/**
 * KeyObjects are immutable, so each key's fingerprint is computed once: signing every event (`sigkeyid`) and
 * caching batch-signature verdicts ask for it per event, and deriving it exports and hashes the whole key.
 */
const fingerprints = new WeakMap<KeyObject, string>();

/**
 * Ed25519 signs the message itself; ECDSA P-256 signs its SHA-256 and yields an ASN.1 DER signature in canonical
 * (low-S) form, the only ECDSA form the sink accepts from producers (canonicalEcdsaSignature).
 */
export function signBytes(privateKey: KeyObject, message: Uint8Array): Buffer {
  if (keyAlgorithm(privateKey) === "ed25519") return nodeSign(null, message, privateKey);
  return lowSEcdsaSignature(nodeSign("sha256", message, privateKey));
}

const P256_ORDER = p256.Point.CURVE().n;

/**
 * Whether an ECDSA P-256 signature is in the one form the sink accepts from producers: ASN.1 DER, minimally
 * encoded, with s ≤ n/2 (low-S, as in BIP 62 and @noble/curves). Any valid (r, s) also verifies as (r, n − s)
 * and in other encodings, so without this rule anyone who sees a signed event could submit a second,
 * differently signed copy of it first. Ed25519 needs no such rule: OpenSSL refuses S ≥ L (RFC 8032 §5.1.7).
 */
export function canonicalEcdsaSignature(signature: Uint8Array): boolean {
  try {
    const parsed = p256.Signature.fromBytes(signature, "der");
    return !parsed.hasHighS() && Buffer.from(parsed.toBytes("der")).equals(Buffer.from(signature));
  } catch {
    return false;
  }
}

/** The low-S form of an ECDSA P-256 DER signature (s → n − s when s > n/2); it verifies exactly as the input. */
export function lowSEcdsaSignature(der: Uint8Array): Buffer {
  const parsed = p256.Signature.fromBytes(der, "der");
  if (!parsed.hasHighS()) return Buffer.from(der);
  return Buffer.from(new p256.Signature(parsed.r, P256_ORDER - parsed.s).toBytes("der"));
}

/**
 * Which ECDSA encodings a verification takes: `der` only (checkpoint notes, c2sp.org/signed-note type 0x02),
 * `canonical` (DER, low-S: producer events at ingest), or `any` (DER or the 64-byte IEEE P1363 r || s that
 * WebCrypto produces: re-checking stored events).
 */
export type EcdsaEncoding = "der" | "canonical" | "any";

/** Verifies a signature made by signBytes. Never throws for a bad signature: returns false. */
export function verifyBytes(
  publicKey: KeyObject,
  message: Uint8Array,
  signature: Uint8Array,
  encoding: EcdsaEncoding = "any",
): boolean {
  try {
    const [algorithm, key] = verifyArguments(publicKey, signature, encoding);
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
  encoding: EcdsaEncoding = "any",
): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      const [algorithm, key] = verifyArguments(publicKey, signature, encoding);
      nodeVerify(algorithm, message, key, signature, (error, ok) => resolve(!error && ok));
    } catch {
      resolve(false);
    }
  });
}

/** Throws (so the caller answers false) for an ECDSA encoding `encoding` does not allow. */
function verifyArguments(
  publicKey: KeyObject,
  signature: Uint8Array,
  encoding: EcdsaEncoding,
): [string | null, KeyObject | VerifyKeyObjectInput] {
  if (keyAlgorithm(publicKey) === "ed25519") return [null, publicKey];
  if (encoding === "canonical" && !canonicalEcdsaSignature(signature))
    throw new FormatError("bad-key", "not a low-S DER signature");
  // A P-256 DER signature starts with SEQUENCE (0x30) and is 8–72 bytes, so it may be 64 bytes long too.
  const der = encoding !== "any" || signature[0] === 0x30;
  return ["sha256", { key: publicKey, dsaEncoding: der ? "der" : "ieee-p1363" }];
}

export function generateKeyPair(algorithm: KeyAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  return algorithm === "ed25519"
    ? generateKeyPairSync("ed25519")
    : generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

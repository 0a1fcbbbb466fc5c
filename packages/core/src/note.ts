/**
 * C2SP signed notes (c2sp.org/signed-note) and the verifier-key strings that name a trusted key.
 *
 *   text ending in "\n", a blank line, then lines "— <key name> base64(4-byte key ID || signature)\n"
 *
 * Signature types: 0x01 Ed25519 over the note text, key ID = SHA-256(name || 0x0A || 0x01 || 32-byte key)[:4];
 * 0x02 ECDSA P-256 (ASN.1 DER signature over SHA-256 of the note text), key ID = SHA-256(DER SPKI)[:4].
 */
import type { KeyObject } from "node:crypto";
import { FormatError } from "./errors.ts";
import { fromBase64, sha256 } from "./hash.ts";
import { keyAlgorithm, publicKeyFromSpki, spkiDer, verifyBytes } from "./keys.ts";

export const SIG_ED25519 = 0x01;
export const SIG_ECDSA = 0x02;
export type NoteSignatureType = typeof SIG_ED25519 | typeof SIG_ECDSA;

/** A key that signs notes. Implemented locally (packages/local) and by KMS (packages/aws). */
export interface NoteKey {
  /** Key name, a schema-less URL such as `auditsink.example/prod`. No spaces or '+'. */
  readonly name: string;
  readonly type: NoteSignatureType;
  readonly publicKey: KeyObject;
  /** The 4-byte key ID. */
  readonly keyId: Buffer;
}

/** The raw public key bytes a signature type commits to: 32 bytes for Ed25519, DER SPKI for ECDSA. */
function keyMaterial(type: NoteSignatureType, key: KeyObject): Buffer {
  if (type === SIG_ECDSA) return spkiDer(key);
  const jwk = key.export({ format: "jwk" });
  return Buffer.from(jwk.x!, "base64url");
}

export function noteKeyId(name: string, type: NoteSignatureType, key: KeyObject): Buffer {
  if (type === SIG_ECDSA) return sha256(spkiDer(key)).subarray(0, 4);
  return sha256(
    Buffer.concat([Buffer.from(`${name}\n`), Buffer.of(SIG_ED25519), keyMaterial(type, key)]),
  ).subarray(0, 4);
}

const KEY_NAME = /^[^\s+\u2014]+$/u;

export function makeNoteKey(name: string, publicKey: KeyObject): NoteKey {
  if (!KEY_NAME.test(name))
    throw new FormatError("bad-key", `key name "${name}" must not contain spaces or '+'`);
  const type = keyAlgorithm(publicKey) === "ed25519" ? SIG_ED25519 : SIG_ECDSA;
  return { name, type, publicKey, keyId: noteKeyId(name, type, publicKey) };
}

/**
 * The verifier key string (as golang.org/x/mod/sumdb/note): `<name>+<8 hex key ID>+base64(type || key)`,
 * where key is the 32-byte Ed25519 key or the DER SPKI for ECDSA. This is what an auditor pins.
 */
export function formatVerifierKey(key: NoteKey): string {
  const material = Buffer.concat([Buffer.of(key.type), keyMaterial(key.type, key.publicKey)]);
  return `${key.name}+${key.keyId.toString("hex")}+${material.toString("base64")}`;
}

export function parseVerifierKey(vkey: string): NoteKey {
  // The base64 key may itself contain '+': split on the first two only (as golang.org/x/mod/sumdb/note does).
  const m = /^([^+]+)\+([0-9a-fA-F]{8})\+(.+)$/.exec(vkey.trim());
  if (!m) throw new FormatError("bad-key", "verifier key must be <name>+<8 hex id>+<base64 key>");
  const [, name, idHex, b64] = m as unknown as [string, string, string, string];
  const material = fromBase64(b64, "verifier key");
  const type = material[0];
  let publicKey: KeyObject;
  if (type === SIG_ED25519 && material.length === 33) {
    // Wrap the raw 32-byte key in the fixed Ed25519 SPKI prefix (RFC 8410).
    publicKey = publicKeyFromSpki(
      Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), material.subarray(1)]),
    );
  } else if (type === SIG_ECDSA) {
    publicKey = publicKeyFromSpki(material.subarray(1));
  } else {
    throw new FormatError("bad-key", "verifier key has an unsupported signature type");
  }
  const key = makeNoteKey(name, publicKey);
  if (key.type !== type || key.keyId.toString("hex") !== idHex.toLowerCase()) {
    throw new FormatError("bad-key", "verifier key ID does not match its key");
  }
  return key;
}

export interface NoteSignature {
  name: string;
  keyId: Buffer;
  signature: Buffer;
}

export interface Note {
  /** The signed text, ending in a newline. */
  text: string;
  signatures: NoteSignature[];
}

const EM_DASH = "\u2014";

export function formatNote(note: Note): string {
  const lines = note.signatures.map(
    (s) => `${EM_DASH} ${s.name} ${Buffer.concat([s.keyId, s.signature]).toString("base64")}\n`,
  );
  return `${note.text}\n${lines.join("")}`;
}

/** Parses a signed note; throws FormatError("bad-note") for anything c2sp.org/signed-note forbids. */
export function parseNote(serialized: string): Note {
  if (/[\u0000-\u0009\u000b-\u001f]/.test(serialized))
    throw new FormatError("bad-note", "note contains control characters");
  const split = serialized.lastIndexOf("\n\n");
  if (split < 0 || !serialized.endsWith("\n"))
    throw new FormatError("bad-note", "note has no signature block");
  const text = serialized.slice(0, split + 1);
  return { text, signatures: parseSignatureLines(serialized.slice(split + 2)) };
}

/**
 * Parses one or more note signature lines, each `— <key name> base64(key ID || signature)` ending in a newline
 * (a note's signature block, or a witness's add-checkpoint answer, c2sp.org/tlog-witness). Throws
 * FormatError("bad-note") for anything else.
 */
export function parseSignatureLines(block: string): NoteSignature[] {
  if (!block.endsWith("\n") || /[\u0000-\u0009\u000b-\u001f]/.test(block))
    throw new FormatError("bad-note", "signature lines must each end in a newline");
  const signatures = block
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
      if (!m) throw new FormatError("bad-note", "malformed signature line");
      const blob = fromBase64(m[2]!, "note signature");
      if (blob.length < 5) throw new FormatError("bad-note", "signature too short");
      return { name: m[1]!, keyId: blob.subarray(0, 4), signature: blob.subarray(4) };
    });
  if (signatures.length === 0) throw new FormatError("bad-note", "note has no signatures");
  return signatures;
}

export type NoteVerdict =
  | { ok: true; key: NoteKey }
  | { ok: false; reason: "unknown-key" | "bad-signature"; detail: string };

/**
 * c2sp.org/signed-note verification: signatures from unknown keys are ignored; a signature from a known key
 * (same name and key ID) must verify; at least one known key must have signed.
 */
export function verifyNote(note: Note, trusted: readonly NoteKey[]): NoteVerdict {
  const message = Buffer.from(note.text, "utf8");
  let good: NoteKey | undefined;
  for (const sig of note.signatures) {
    const key = trusted.find((k) => k.name === sig.name && k.keyId.equals(sig.keyId));
    if (!key) continue;
    // Type 0x02 signatures are ASN.1 DER only (as Go's C2SP verifiers read them), never P1363.
    if (!verifyBytes(key.publicKey, message, sig.signature, "der")) {
      return { ok: false, reason: "bad-signature", detail: `signature by ${sig.name} does not verify` };
    }
    good = key;
  }
  if (good) return { ok: true, key: good };
  const by = note.signatures.map((s) => `${s.name}+${s.keyId.toString("hex")}`).join(", ");
  return { ok: false, reason: "unknown-key", detail: `signed only by keys that are not trusted (${by})` };
}

/** The public key document the sink stores at `keys/<8 hex key ID>.json` so old checkpoints stay verifiable. */
export interface PublicKeyDocument {
  name: string;
  keyId: string;
  algorithm: "ed25519" | "ecdsa-p256";
  /** Base64 DER SubjectPublicKeyInfo. */
  publicKey: string;
  /** The verifier key string an auditor pins (formatVerifierKey). */
  verifierKey: string;
}

export function publicKeyDocument(key: NoteKey): PublicKeyDocument {
  return {
    name: key.name,
    keyId: key.keyId.toString("hex"),
    algorithm: key.type === SIG_ECDSA ? "ecdsa-p256" : "ed25519",
    publicKey: spkiDer(key.publicKey).toString("base64"),
    verifierKey: formatVerifierKey(key),
  };
}

export const publicKeyDocumentKey = (key: NoteKey) => `keys/${key.keyId.toString("hex")}.json`;

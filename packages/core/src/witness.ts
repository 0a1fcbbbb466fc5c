/**
 * Witnesses, pure: cosignatures (c2sp.org/tlog-cosignature), the add-checkpoint request and answer
 * (c2sp.org/tlog-witness), and witness policies ("N of these witness keys must have cosigned"). No I/O: the HTTP
 * exchange is witness-cosigner.ts. Every parser here takes untrusted text and reports or throws FormatError, never
 * anything else.
 *
 * A cosignature is a note signature line on a checkpoint (type 0x04, Ed25519, timestamped):
 *
 *   — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)
 *
 * key ID = SHA-256(<name> || "\n" || 0x04 || 32-byte public key)[:4]; the signed message is
 * "cosignature/v1\ntime <timestamp>\n" followed by the whole checkpoint body (extension lines included).
 */
import { createPublicKey, type KeyObject, verify as nodeVerify } from "node:crypto";
import { FormatError } from "./errors.ts";
import { fromBase64, type Hash, sha256 } from "./hash.ts";
import { formatNote, type Note, type NoteSignature, parseNote, parseSignatureLines } from "./note.ts";

/** c2sp.org/tlog-cosignature: the signature type byte of an Ed25519 cosignature (cosignature/v1). */
export const SIG_COSIGNATURE_V1 = 0x04;

/** A witness's cosigning key, as a verifier key pins it. */
export interface WitnessKey {
  /** The witness name in its cosignature lines (a schema-less URL, e.g. `witness.example/w1`). */
  readonly name: string;
  readonly keyId: Buffer;
  readonly publicKey: KeyObject;
  /** `<name>+<8 hex key ID>+base64(0x04 || 32-byte key)`: what the operator configures and auditors pin. */
  readonly verifierKey: string;
}

const KEY_NAME = /^[^\s+\u2014]+$/u;
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function cosignatureKeyId(name: string, raw: Buffer): Buffer {
  return sha256(Buffer.concat([Buffer.from(`${name}\n`), Buffer.of(SIG_COSIGNATURE_V1), raw])).subarray(0, 4);
}

/** The witness key for `name` and a raw 32-byte Ed25519 public key. */
export function makeWitnessKey(name: string, raw: Uint8Array): WitnessKey {
  if (!KEY_NAME.test(name))
    throw new FormatError("bad-key", `witness name "${name}" must not be empty or contain spaces or '+'`);
  if (raw.length !== 32) throw new FormatError("bad-key", "a witness key is a 32-byte Ed25519 public key");
  const bytes = Buffer.from(raw);
  const keyId = cosignatureKeyId(name, bytes);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, bytes]),
      format: "der",
      type: "spki",
    });
  } catch (cause) {
    throw new FormatError("bad-key", "witness key is not an Ed25519 public key", { cause });
  }
  const material = Buffer.concat([Buffer.of(SIG_COSIGNATURE_V1), bytes]).toString("base64");
  return { name, keyId, publicKey, verifierKey: `${name}+${keyId.toString("hex")}+${material}` };
}

/**
 * Parses a witness verifier key (c2sp.org/signed-note vkey with type 0x04). Throws FormatError("bad-key") for
 * anything else, including a log's own key (type 0x01 or 0x02): a checkpoint signature is not a cosignature.
 */
export function parseWitnessKey(vkey: string): WitnessKey {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  if (!m) throw new FormatError("bad-key", "witness key must be <name>+<8 hex id>+<base64 key>");
  const [, name, idHex, b64] = m as unknown as [string, string, string, string];
  const material = fromBase64(b64, "witness key");
  if (material[0] !== SIG_COSIGNATURE_V1 || material.length !== 33)
    throw new FormatError(
      "bad-key",
      `witness key ${name} is not a cosignature/v1 key (type 0x04 and a 32-byte Ed25519 key)`,
    );
  const key = makeWitnessKey(name, material.subarray(1));
  if (key.keyId.toString("hex") !== idHex)
    throw new FormatError("bad-key", `witness key ${name}: the key ID does not match the key`);
  return key;
}

/** The message an Ed25519 cosignature signs (c2sp.org/tlog-cosignature, "Ed25519 signed message"). */
export function cosignatureMessage(checkpointText: string, timestamp: bigint): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timestamp}\n${checkpointText}`, "utf8");
}

const MAX_TIMESTAMP = (1n << 63n) - 1n;

export type CosignatureVerdict =
  | { ok: true /** When the witness cosigned, seconds since the epoch. */; time: number }
  | { ok: false; detail: string };

/** Verifies one signature line, already matched to `key` by name and key ID, over `checkpointText`. */
export function verifyCosignature(
  checkpointText: string,
  signature: NoteSignature,
  key: WitnessKey,
): CosignatureVerdict {
  if (signature.signature.length !== 8 + 64)
    return { ok: false, detail: `cosignature by ${key.name} is not a timestamp and an Ed25519 signature` };
  const timestamp = signature.signature.readBigUInt64BE(0);
  if (timestamp > MAX_TIMESTAMP)
    return { ok: false, detail: `cosignature by ${key.name}: timestamp too large` };
  let good = false;
  try {
    good = nodeVerify(
      null,
      cosignatureMessage(checkpointText, timestamp),
      key.publicKey,
      signature.signature.subarray(8),
    );
  } catch {
    good = false;
  }
  if (!good) return { ok: false, detail: `cosignature by ${key.name} does not verify` };
  return { ok: true, time: Number(timestamp) };
}

/** The cosignatures of `note` made by `keys` (matched by name and key ID); lines from other keys are ignored. */
export function cosignaturesBy(
  note: Note,
  keys: readonly WitnessKey[],
): { key: WitnessKey; signature: NoteSignature; verdict: CosignatureVerdict }[] {
  const found = [];
  for (const signature of note.signatures) {
    const key = keys.find((k) => k.name === signature.name && k.keyId.equals(signature.keyId));
    if (key) found.push({ key, signature, verdict: verifyCosignature(note.text, signature, key) });
  }
  return found;
}

/** "At least `quorum` of these witnesses cosigned the checkpoint." */
export interface WitnessPolicy {
  readonly quorum: number;
  readonly witnesses: readonly WitnessKey[];
}

/**
 * A witness policy from verifier key strings and a quorum (default: every witness). Throws FormatError("bad-key")
 * for a malformed or repeated key, or a quorum that is not 1 … the number of witnesses.
 */
export function witnessPolicy(verifierKeys: readonly string[], quorum?: number): WitnessPolicy {
  if (verifierKeys.length === 0)
    throw new FormatError("bad-key", "a witness policy needs at least one witness");
  const witnesses = verifierKeys.map(parseWitnessKey);
  for (const [i, w] of witnesses.entries()) {
    const raw = w.publicKey.export({ format: "jwk" }).x;
    // The Ed25519 message does not commit to the witness name: one key under two names would count twice.
    if (
      witnesses.some(
        (o, j) => j < i && (o.name === w.name || o.publicKey.export({ format: "jwk" }).x === raw),
      )
    )
      throw new FormatError("bad-key", `witness ${w.name} is listed twice (by name or by key)`);
  }
  const q = quorum ?? witnesses.length;
  if (!Number.isSafeInteger(q) || q < 1 || q > witnesses.length)
    throw new FormatError(
      "bad-key",
      `the witness quorum must be between 1 and ${witnesses.length}, not ${quorum}`,
    );
  return { quorum: q, witnesses };
}

export interface WitnessPolicyVerdict {
  /** Whether at least `quorum` witnesses of the policy have a valid cosignature on the checkpoint. */
  met: boolean;
  quorum: number;
  /** Witnesses of the policy with a valid cosignature, and when each cosigned (seconds since the epoch). */
  signed: { name: string; verifierKey: string; time: number }[];
  /** Witnesses of the policy without a valid cosignature. */
  missing: string[];
  /** Cosignature lines that name a witness of the policy but do not verify (a forgery or a corrupted note). */
  invalid: { name: string; detail: string }[];
  /** One line for a report. */
  detail: string;
}

/** Checks a checkpoint note's cosignatures against a policy. Pure; the log's own signature is checked apart. */
export function checkWitnessPolicy(note: Note, policy: WitnessPolicy): WitnessPolicyVerdict {
  const signed: WitnessPolicyVerdict["signed"] = [];
  const invalid: WitnessPolicyVerdict["invalid"] = [];
  for (const { key, verdict } of cosignaturesBy(note, policy.witnesses)) {
    if (!verdict.ok) invalid.push({ name: key.name, detail: verdict.detail });
    else if (!signed.some((s) => s.name === key.name))
      signed.push({ name: key.name, verifierKey: key.verifierKey, time: verdict.time });
  }
  const missing = policy.witnesses.filter((w) => !signed.some((s) => s.name === w.name)).map((w) => w.name);
  const met = signed.length >= policy.quorum;
  const detail = met
    ? `cosigned by ${signed.length} of ${policy.witnesses.length} witnesses (quorum ${policy.quorum}): ${signed.map((s) => s.name).join(", ")}`
    : `cosigned by ${signed.length} of the ${policy.quorum} witnesses the policy requires` +
      (signed.length > 0 ? ` (${signed.map((s) => s.name).join(", ")})` : "") +
      `; missing ${missing.join(", ")}` +
      (invalid.length > 0 ? `; invalid: ${invalid.map((i) => i.detail).join("; ")}` : "");
  return { met, quorum: policy.quorum, signed, missing, invalid, detail };
}

/** c2sp.org/tlog-witness: at most 63 consistency proof lines per request. */
export const MAX_WITNESS_PROOF_LINES = 63;

/**
 * The add-checkpoint request body (c2sp.org/tlog-witness): `old <size>`, one base64 hash per consistency proof
 * line, an empty line, then the signed checkpoint. The proof is empty when `oldSize` is 0.
 */
export function addCheckpointRequest(
  oldSize: number,
  proof: readonly Hash[],
  signedCheckpoint: string,
): string {
  if (!Number.isSafeInteger(oldSize) || oldSize < 0)
    throw new RangeError(`old size ${oldSize} is not a size`);
  if (oldSize === 0 && proof.length > 0) throw new RangeError("the proof from size 0 is empty");
  if (proof.length > MAX_WITNESS_PROOF_LINES)
    throw new RangeError("a consistency proof has at most 63 hashes");
  return `old ${oldSize}\n${proof.map((h) => `${h.toString("base64")}\n`).join("")}\n${signedCheckpoint}`;
}

/** Why a witness did not cosign. */
export type WitnessRefusal =
  /** 404 (or litewitness's 403 "unknown log"): the witness is not configured for this log's origin. */
  | "witness-unknown-log"
  /** 403: no signature on the checkpoint verifies with the log keys the witness holds for the origin. */
  | "witness-bad-signature"
  /** 422: the consistency proof does not verify against the checkpoint the witness last cosigned: a fork. */
  | "witness-bad-proof"
  /** 409 without a size: same size as the witness's newest, different root — a fork. */
  | "witness-conflict"
  /** 400: the witness could not parse the request. */
  | "witness-bad-request"
  /** Any other status, or a 200 whose body is not signature lines. */
  | "witness-error";

export type AddCheckpointAnswer =
  | { kind: "cosigned"; signatures: NoteSignature[] }
  /** 409 with the size of the newest checkpoint the witness cosigned for the origin: submit again from it. */
  | { kind: "conflict"; knownSize: number }
  | { kind: "refused"; code: WitnessRefusal; status: number; detail: string };

/** Classifies a witness's answer to add-checkpoint (c2sp.org/tlog-witness). Pure; never throws. */
export function parseAddCheckpointResponse(
  status: number,
  contentType: string | null,
  body: string,
): AddCheckpointAnswer {
  const said = body
    .trim()
    .slice(0, 200)
    .replace(/[^\x20-\x7e]/g, "?");
  const refused = (code: WitnessRefusal, detail: string): AddCheckpointAnswer => ({
    kind: "refused",
    code,
    status,
    detail: `${detail} (HTTP ${status}${said ? `: ${said}` : ""})`,
  });
  if (status === 200) {
    try {
      return { kind: "cosigned", signatures: parseSignatureLines(body) };
    } catch (e) {
      return refused("witness-error", `the answer is not note signature lines: ${(e as Error).message}`);
    }
  }
  if (status === 409) {
    const m = /^(0|[1-9]\d{0,15})\n$/.exec(body);
    if (
      m &&
      (contentType ?? "").split(";")[0]!.trim() === "text/x.tlog.size" &&
      Number.isSafeInteger(Number(m[1]))
    )
      return { kind: "conflict", knownSize: Number(m[1]) };
    return refused("witness-conflict", "the witness holds a different checkpoint of this size");
  }
  if (status === 404 || (status === 403 && /unknown log/i.test(body)))
    return refused("witness-unknown-log", "the witness does not know this log");
  if (status === 403)
    return refused("witness-bad-signature", "the witness does not accept the log's signature");
  if (status === 422) return refused("witness-bad-proof", "the witness refused the consistency proof");
  if (status === 400) return refused("witness-bad-request", "the witness could not parse the request");
  return refused("witness-error", "the witness failed");
}

/**
 * The note with `cosignatures` appended: each one not already on it (same name and key ID), in the order given.
 * The caller has verified them (cosignaturesBy): this only joins text.
 */
export function addCosignatures(signed: string, cosignatures: readonly NoteSignature[]): string {
  const note = parseNote(signed);
  const signatures = [...note.signatures];
  for (const c of cosignatures)
    if (!signatures.some((s) => s.name === c.name && s.keyId.equals(c.keyId))) signatures.push(c);
  return formatNote({ text: note.text, signatures });
}

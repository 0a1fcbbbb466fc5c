/**
 * Checkpoints: a c2sp.org/tlog-checkpoint body wrapped in a c2sp.org/signed-note.
 *
 *   <origin>\n            the deployment name, "/", the stream name
 *   <tree size>\n         decimal, no leading zeros
 *   <root hash>\n         base64 of the RFC 9162 root
 *   head <hex>\n          extension: record hash of record size−1 (omitted for size 0)
 *   time <RFC 3339>\n     extension: when the sink signed it (UTC, milliseconds)
 */
import { FormatError } from "./errors.ts";
import { fromBase64, type Hash, hashFromHex, toHex } from "./hash.ts";
import { formatNote, makeNoteKey, type Note, type NoteKey, parseNote, verifyNote } from "./note.ts";
import type { Signer } from "./ports.ts";

export interface Checkpoint {
  origin: string;
  size: number;
  root: Hash;
  /** Record hash of the last record; absent for the empty tree. */
  head?: Hash;
  time: string;
}

export function originFor(deployment: string, stream: string): string {
  return `${deployment}/${stream}`;
}

/** The deployment part of an origin `<deployment>/<stream>` (stream names have no "/"), or undefined. */
export function deploymentOf(origin: string): string | undefined {
  const slash = origin.lastIndexOf("/");
  return slash > 0 ? origin.slice(0, slash) : undefined;
}

/**
 * The note key that signs checkpoints of `origin`: the deployment's key under the origin's name, as
 * c2sp.org/tlog-checkpoint asks ("the key name SHOULD be the origin"), so one key signs every stream under names
 * a witness or Go's note package pins per log (FORMAT.md §2). The public key is the same; an Ed25519 key ID
 * depends on the name, so it changes with it (an ECDSA key ID does not).
 */
export function checkpointKeyFor(key: NoteKey, origin: string): NoteKey {
  if (key.name === origin) return key;
  // Memoized: making a note key exports and hashes the public key, which a commit at batch 1 would pay each time.
  let named = perOrigin.get(key);
  if (!named || named.size >= MAX_MEMOIZED_ORIGINS) {
    named = new Map();
    perOrigin.set(key, named);
  }
  let derived = named.get(origin);
  if (!derived) {
    derived = makeNoteKey(origin, key.publicKey);
    named.set(origin, derived);
  }
  return derived;
}

/** Per-origin note keys by deployment key; bounded (origins can come from stores being verified). */
const perOrigin = new WeakMap<NoteKey, Map<string, NoteKey>>();
const MAX_MEMOIZED_ORIGINS = 1024;

export function checkpointText(cp: Checkpoint): string {
  const lines = [cp.origin, String(cp.size), cp.root.toString("base64")];
  // FORMAT.md §8: the head line is present if and only if size > 0 (a writer's empty head carries 32 zero bytes).
  if (cp.head && cp.size > 0) lines.push(`head ${toHex(cp.head)}`);
  lines.push(`time ${cp.time}`);
  return `${lines.join("\n")}\n`;
}

/**
 * Any c2sp.org/tlog-checkpoint body: the three mandatory lines and the extension lines after them, in order.
 * auditsink's own checkpoints are this plus exactly the `head` and `time` extensions (`Checkpoint`).
 */
export interface PlainCheckpoint {
  origin: string;
  size: number;
  root: Hash;
  /** The extension lines (without their newline), in order; opaque to this parser. */
  extensions: string[];
}

/**
 * Parses any c2sp.org/tlog-checkpoint note text, strictly: at least three lines, every line non-empty and ending
 * in "\n"; a non-empty origin; the tree size in decimal without leading zeros (at most 2^53 − 1, the largest
 * size a JavaScript number holds exactly); the root as canonical standard base64 of 32 bytes (RFC 6962 SHA-256,
 * as tlog-tiles fixes); no control characters (c2sp.org/signed-note forbids them in a note). Extension lines
 * are kept in order, uninterpreted. Throws FormatError("bad-checkpoint" or "bad-base64").
 */
export function parsePlainCheckpoint(text: string): PlainCheckpoint {
  const lines = text.split("\n");
  if (lines.pop() !== "" || lines.length < 3)
    throw new FormatError("bad-checkpoint", "checkpoint needs origin, size and root lines");
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text))
    throw new FormatError("bad-checkpoint", "checkpoint contains control characters");
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw new FormatError("bad-checkpoint", "checkpoint origin is empty");
  if (!/^(0|[1-9]\d{0,19})$/.test(sizeText))
    throw new FormatError("bad-checkpoint", "checkpoint size is not a decimal integer");
  if (!Number.isSafeInteger(Number(sizeText)))
    throw new FormatError(
      "bad-checkpoint",
      "checkpoint size is larger than 2^53 − 1, the largest handled here",
    );
  const root = fromBase64(rootText, "checkpoint root");
  if (root.length !== 32) throw new FormatError("bad-checkpoint", "checkpoint root is not 32 bytes");
  // c2sp.org/tlog-checkpoint: "Extension lines, if any, MUST be non-empty."
  if (extensions.some((line) => line.length === 0))
    throw new FormatError("bad-checkpoint", "checkpoint has an empty extension line");
  return { origin, size: Number(sizeText), root, extensions };
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/** Parses an auditsink checkpoint body: a plain checkpoint with exactly the extensions of docs/FORMAT.md §8. */
export function parseCheckpointText(text: string): Checkpoint {
  const { origin, size, root, extensions: ext } = parsePlainCheckpoint(text);
  const cp: Checkpoint = { origin, size, root, time: "" };
  // Version 1 has exactly these extension lines, in this order, each once (docs/FORMAT.md §8):
  // `head <hex>` if and only if size > 0, then `time <RFC 3339 UTC>`.
  const expected = cp.size > 0 ? ["head", "time"] : ["time"];
  if (ext.length !== expected.length)
    throw new FormatError(
      "bad-checkpoint",
      `checkpoint must have the extension lines ${expected.join(", ")}`,
    );
  for (const [i, line] of ext.entries()) {
    const [tag, value, ...rest] = line.split(" ");
    if (rest.length > 0 || value === undefined || tag !== expected[i])
      throw new FormatError("bad-checkpoint", `bad or unexpected extension line "${line}"`);
    if (tag === "head") cp.head = hashFromHex(value, "checkpoint head");
    else if (RFC3339_UTC.test(value)) cp.time = value;
    else throw new FormatError("bad-checkpoint", `checkpoint time "${value}" is not RFC 3339 UTC`);
  }
  return cp;
}

/** Signs a checkpoint with the signer's key named after the checkpoint's origin; returns the signed note text. */
export async function signCheckpoint(cp: Checkpoint, signer: Signer): Promise<string> {
  const text = checkpointText(cp);
  const key = checkpointKeyFor(signer.key, cp.origin);
  const signature = Buffer.from(await signer.sign(Buffer.from(text, "utf8")));
  return formatNote({ text, signatures: [{ name: key.name, keyId: key.keyId, signature }] });
}

export type CheckpointVerdict =
  | {
      ok: true;
      checkpoint: Checkpoint;
      note: Note;
      /** The trusted key (as the caller gave it) that vouches for the signature. */
      key: NoteKey;
      /**
       * The deployment that key speaks for: its name, or for a key pinned under the origin's own name the
       * origin's deployment part. A caller checks the origin against `<deployment>/<stream>` with it.
       */
      deployment: string;
    }
  | {
      ok: false;
      code: "checkpoint-malformed" | "checkpoint-unknown-key" | "checkpoint-signature-invalid";
      detail: string;
    };

/**
 * Parses and verifies a signed checkpoint against trusted keys. Pure; never throws for bad input.
 *
 * A trusted key named N vouches for checkpoints of origin `N/<stream>` under two signature names: N itself
 * (checkpoints signed before key name = origin, FORMAT.md §2) and the origin (checkpointKeyFor). A key pinned
 * under the origin's name vouches for that origin only.
 */
export function openCheckpoint(signed: string, trusted: readonly NoteKey[]): CheckpointVerdict {
  let note: Note;
  let checkpoint: Checkpoint;
  try {
    note = parseNote(signed);
    checkpoint = parseCheckpointText(note.text);
  } catch (e) {
    if (e instanceof FormatError) return { ok: false, code: "checkpoint-malformed", detail: e.message };
    throw e;
  }
  // Only a signature line named after the origin asks for the per-origin key, so old checkpoints cost nothing more.
  const deployment = deploymentOf(checkpoint.origin);
  const perOrigin = new Map<NoteKey, NoteKey>();
  if (deployment !== undefined && note.signatures.some((s) => s.name === checkpoint.origin)) {
    for (const k of trusted)
      if (k.name === deployment) perOrigin.set(checkpointKeyFor(k, checkpoint.origin), k);
  }
  const verdict = verifyNote(note, perOrigin.size > 0 ? [...trusted, ...perOrigin.keys()] : trusted);
  if (!verdict.ok) {
    return {
      ok: false,
      code: verdict.reason === "unknown-key" ? "checkpoint-unknown-key" : "checkpoint-signature-invalid",
      detail: verdict.detail,
    };
  }
  const key = perOrigin.get(verdict.key) ?? verdict.key;
  const speaksFor = key.name === checkpoint.origin ? (deployment ?? key.name) : key.name;
  return { ok: true, checkpoint, note, key, deployment: speaksFor };
}

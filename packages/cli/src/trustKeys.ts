/**
 * `auditsink trust`: the checkpoint keys of a source and the verifier key strings to pin. A key signs each
 * stream's checkpoints under the note key name `<deployment>/<stream>` (docs/FORMAT.md §2): the deployment's
 * verifier key string vouches for every stream (what `verify` pins), and the per-stream string — the same key
 * under the origin's name, whose Ed25519 key ID differs — is what a witness or Go's sumdb/note pins for one log.
 * With keys pinned (--verifier-key, --trusted-keys, --fingerprint) it lists those; without, the keys the source
 * offers, marked as not trusted: a key found in an archive is information, never trust.
 */
import {
  checkpointKeyFor,
  formatVerifierKey,
  keyAlgorithm,
  type NoteKey,
  originFor,
  publicKeyDocument,
} from "@auditsink/core";
import { openSource } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";
import { noteKeyFingerprint, parseKeyLines, resolveTrust, type TrustOptions } from "./trust.ts";

export interface TrustKeysOptions extends TrustOptions {
  /** Streams to give per-stream verifier key strings for (default: every stream in the source). */
  streams?: readonly string[];
  s3?: S3ReadOptions;
}

export interface ListedKey {
  name: string;
  algorithm: "ed25519" | "ecdsa-p256";
  /** Hex SHA-256 of the DER SPKI: compare it with the one the operator publishes. */
  fingerprint: string;
  /** The verifier key string under the key's own name (the deployment's): vouches for every stream. */
  verifierKey: string;
  /** Per stream: its origin and the verifier key string under the origin's name. */
  streams: { stream: string; origin: string; verifierKey: string }[];
}

export interface TrustKeysResult {
  source: { kind: string; location: string; deployment?: string };
  /** False when nothing was pinned: the keys are the ones the source offers, not checked out of band. */
  pinned: boolean;
  /** How the keys were chosen, one line. */
  detail: string;
  keys: ListedKey[];
}

export async function trustKeys(location: string, options: TrustKeysOptions = {}): Promise<TrustKeysResult> {
  const source = await openSource(location, options.s3);
  const pins = Boolean(options.keyFiles?.length || options.keys?.length || options.fingerprints?.length);
  let keys: NoteKey[];
  let detail: string;
  if (pins) {
    const trust = await resolveTrust(options, source.offeredKeys, false);
    keys = trust.trusted;
    detail = `pinned: ${trust.detail}`;
  } else {
    keys = parseKeyLines(source.offeredKeys.join("\n"), "the source's keys");
    detail =
      "offered by the source, NOT trusted: compare each fingerprint with the operator's before pinning";
  }
  const strings = keys.map(formatVerifierKey);
  keys = keys.filter((_, i) => strings.indexOf(strings[i]!) === i);
  const streams = options.streams?.length ? [...options.streams] : await source.streams();
  return {
    source: {
      kind: source.kind,
      location,
      ...(source.deployment ? { deployment: source.deployment } : {}),
    },
    pinned: pins,
    detail,
    keys: keys.map((key) => {
      // The origin's deployment part is the source's deployment name, else the key's name (FORMAT.md §2).
      const deployment = source.deployment ?? key.name;
      return {
        name: key.name,
        algorithm: keyAlgorithm(key.publicKey),
        fingerprint: noteKeyFingerprint(key),
        verifierKey: publicKeyDocument(key).verifierKey,
        streams: streams.map((stream) => {
          const origin = originFor(deployment, stream);
          return { stream, origin, verifierKey: formatVerifierKey(checkpointKeyFor(key, origin)) };
        }),
      };
    }),
  };
}

/** Producer key files: PKCS#8 PEM private keys (Ed25519 or ECDSA P-256), as `auditsink producer create` writes. */
import { createPrivateKey, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { keyAlgorithm, type NoteKey, parseVerifierKey } from "@auditsink/core";
import { ClientError } from "./errors.ts";

export function privateKeyFromPem(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
    keyAlgorithm(key);
  } catch (cause) {
    throw new ClientError(
      "bad-config",
      "producer key must be an Ed25519 or ECDSA P-256 PKCS#8 PEM",
      {},
      { cause },
    );
  }
  return key;
}

export async function loadProducerKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (cause) {
    throw new ClientError("bad-config", `cannot read producer key file ${path}`, {}, { cause });
  }
  return privateKeyFromPem(pem);
}

/** A pinned sink key: a NoteKey, or the verifier key string (`<name>+<hex id>+<base64>`) an operator hands out. */
export function toNoteKey(key: NoteKey | string): NoteKey {
  if (typeof key !== "string") return key;
  try {
    return parseVerifierKey(key);
  } catch (cause) {
    throw new ClientError("bad-config", "the sink key is not a verifier key string", {}, { cause });
  }
}

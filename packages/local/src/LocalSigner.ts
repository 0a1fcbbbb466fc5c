/**
 * The embedded sink's checkpoint signing key: ECDSA P-256 (signed-note type 0x02) unless Ed25519 (type 0x01, the
 * one Go's sumdb/note and most witnesses accept) is asked for, created on first start at
 * `<data>/keys/checkpoint-key.pem` (PKCS#8, mode 0600). An existing key is never replaced: every checkpoint in the
 * directory is signed with it. Its public half is exported beside it, as PEM and as the C2SP verifier key string
 * an auditor pins (`checkpoint-key.pub.pem`, `verifier-key.txt`).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { chmod, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  FormatError,
  formatVerifierKey,
  generateKeyPair,
  type KeyAlgorithm,
  KeyObjectSigner,
  keyAlgorithm,
  keyFingerprint,
} from "@auditsink/core";
import { LocalError } from "./errors.ts";
import {
  createFileOnce,
  type FileSystem,
  isErrno,
  mkdirDurable,
  nodeFileSystem,
  replaceFile,
} from "./fsutil.ts";

export interface LocalSigningKey {
  signer: KeyObjectSigner;
  algorithm: KeyAlgorithm;
  /** The C2SP verifier key string (`<name>+<key id>+<base64>`). */
  verifierKey: string;
  publicKeyPem: string;
  /** Hex SHA-256 of the DER SubjectPublicKeyInfo. */
  fingerprint: string;
  /** True when this call created the key. */
  created: boolean;
  privateKeyPath: string;
}

export const signingKeyPaths = (dataDir: string) => ({
  dir: join(dataDir, "keys"),
  privateKey: join(dataDir, "keys", "checkpoint-key.pem"),
  publicKey: join(dataDir, "keys", "checkpoint-key.pub.pem"),
  verifierKey: join(dataDir, "keys", "verifier-key.txt"),
});

/**
 * Loads the signing key for `deployment`, creating it (0600) on first start with `algorithm` (default
 * ECDSA P-256). For an existing key, `algorithm` must be its algorithm or absent: LocalError `config-mismatch`
 * otherwise — the key is never replaced.
 */
export async function loadOrCreateSigningKey(
  dataDir: string,
  deployment: string,
  tmpDir: string,
  fs: FileSystem = nodeFileSystem,
  algorithm?: KeyAlgorithm,
): Promise<LocalSigningKey> {
  const paths = signingKeyPaths(dataDir);
  await mkdirDurable(paths.dir);
  let privateKey: KeyObject;
  let created = false;
  let pem: string | undefined;
  try {
    const info = await stat(paths.privateKey);
    if (info.size === 0) {
      // Left by a version that wrote the key in place and was killed before the bytes reached the disk: no
      // checkpoint can have been signed with a key that was never stored, so making a new one is safe.
      await unlink(paths.privateKey);
    } else {
      if (info.mode & 0o077) await chmod(paths.privateKey, 0o600);
      pem = await readFile(paths.privateKey, "utf8");
    }
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw unreadable(paths.privateKey, e);
  }
  if (pem === undefined) {
    // Created atomically (temp file, fsync, link, directory fsync): a kill leaves no key or the whole key.
    const fresh = generateKeyPair(algorithm ?? "ecdsa-p256").privateKey;
    const result = await createFileOnce(
      tmpDir,
      paths.privateKey,
      fresh.export({ type: "pkcs8", format: "pem" }) as string,
      0o600,
      fs,
      "signing-key",
    );
    pem = result.text;
    created = result.created;
  }
  let found: KeyAlgorithm;
  try {
    privateKey = createPrivateKey(pem);
    found = keyAlgorithm(privateKey);
  } catch (e) {
    throw unreadable(
      paths.privateKey,
      e instanceof FormatError ? new Error("not an Ed25519 or ECDSA P-256 key", { cause: e }) : e,
    );
  }
  if (algorithm !== undefined && algorithm !== found) {
    throw new LocalError(
      "config-mismatch",
      `the checkpoint key ${paths.privateKey} is ${found}, not ${algorithm}: an existing key is never replaced, ` +
        "since every checkpoint in the data directory is signed with it. Start without --checkpoint-key " +
        `(AUDITSINK_CHECKPOINT_KEY) or with ${found}, or use a new data directory for an ${algorithm} key.`,
    );
  }
  const publicKey = createPublicKey(privateKey);
  const signer = new KeyObjectSigner(deployment, privateKey, publicKey);
  const verifierKey = formatVerifierKey(signer.key);
  const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }) as string;
  // Checked on every start so the files always match the key in use; rewritten only when they differ, so a
  // start on a full disk does not fail here.
  await exportIfChanged(tmpDir, paths.publicKey, publicKeyPem, fs);
  await exportIfChanged(tmpDir, paths.verifierKey, `${verifierKey}\n`, fs);
  return {
    signer,
    algorithm: found,
    verifierKey,
    publicKeyPem,
    fingerprint: keyFingerprint(publicKey),
    created,
    privateKeyPath: paths.privateKey,
  };
}

function unreadable(path: string, cause: unknown): LocalError {
  return new LocalError(
    "data-dir-invalid",
    `cannot read the signing key ${path} (${(cause as Error)?.message}). Restore it from a backup: every ` +
      "checkpoint in this data directory is signed with it. Only if no checkpoint was ever signed (a new, empty " +
      "directory) may you delete it to have a new key made.",
    { cause },
  );
}

async function exportIfChanged(tmpDir: string, path: string, text: string, fs: FileSystem): Promise<void> {
  const current = await readFile(path, "utf8").catch(() => undefined);
  if (current !== text) await replaceFile(tmpDir, path, text, 0o644, fs);
}

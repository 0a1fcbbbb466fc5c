/**
 * The embedded sink's checkpoint signing key: ECDSA P-256, created on first start at
 * `<data>/keys/checkpoint-key.pem` (PKCS#8, mode 0600). Its public half is exported beside it, as PEM and as the
 * C2SP verifier key string an auditor pins (`checkpoint-key.pub.pem`, `verifier-key.txt`).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmod, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { formatVerifierKey, KeyObjectSigner, keyFingerprint } from "@auditsink/core";
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

/** Loads the signing key for `deployment`, creating it (0600) on first start. */
export async function loadOrCreateSigningKey(
  dataDir: string,
  deployment: string,
  tmpDir: string,
  fs: FileSystem = nodeFileSystem,
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
    const fresh = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
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
  try {
    privateKey = createPrivateKey(pem);
  } catch (e) {
    throw unreadable(paths.privateKey, e);
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

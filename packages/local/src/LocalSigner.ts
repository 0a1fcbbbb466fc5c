/**
 * The embedded sink's checkpoint signing key: ECDSA P-256, created on first start at
 * `<data>/keys/checkpoint-key.pem` (PKCS#8, mode 0600). Its public half is exported beside it, as PEM and as the
 * C2SP verifier key string an auditor pins (`checkpoint-key.pub.pem`, `verifier-key.txt`).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmod, open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { formatVerifierKey, KeyObjectSigner, keyFingerprint } from "@auditsink/core";
import { LocalError } from "./errors.ts";
import { fsyncDir, isErrno, mkdirDurable, replaceFile } from "./fsutil.ts";

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
): Promise<LocalSigningKey> {
  const paths = signingKeyPaths(dataDir);
  await mkdirDurable(paths.dir);
  let privateKey: KeyObject;
  let created = false;
  try {
    const mode = (await stat(paths.privateKey)).mode & 0o777;
    if (mode & 0o077) await chmod(paths.privateKey, 0o600);
    privateKey = createPrivateKey(await readFile(paths.privateKey, "utf8"));
  } catch (e) {
    if (!isErrno(e, "ENOENT")) {
      throw new LocalError("data-dir-invalid", `cannot read the signing key ${paths.privateKey}`, {
        cause: e,
      });
    }
    privateKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const fh = await open(paths.privateKey, "wx", 0o600);
    try {
      await fh.writeFile(pem);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(paths.dir);
    created = true;
  }
  const publicKey = createPublicKey(privateKey);
  const signer = new KeyObjectSigner(deployment, privateKey, publicKey);
  const verifierKey = formatVerifierKey(signer.key);
  const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }) as string;
  // Exported on every start so the files always match the key in use.
  await replaceFile(tmpDir, paths.publicKey, publicKeyPem, 0o644);
  await replaceFile(tmpDir, paths.verifierKey, `${verifierKey}\n`, 0o644);
  return {
    signer,
    verifierKey,
    publicKeyPem,
    fingerprint: keyFingerprint(publicKey),
    created,
    privateKeyPath: paths.privateKey,
  };
}

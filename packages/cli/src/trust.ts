/**
 * Which checkpoint keys verification trusts. An auditor pins keys out of band: as verifier key strings in a
 * file or on the command line (core's parseVerifierKey), or by fingerprint — the hex SHA-256 of the key's DER
 * SubjectPublicKeyInfo — chosen among the keys the source itself offers. A key a source offers is never
 * trusted just because the source offers it, except a data directory's own key when nothing is pinned (the
 * operator checking their own sink), which the report says.
 */
import { readFile } from "node:fs/promises";
import { keyFingerprint, type NoteKey, parseVerifierKey } from "@auditsink/core";
import { CliError } from "./errors.ts";

export interface TrustOptions {
  /** Files of verifier key strings, one per line; blank lines and lines starting with '#' are skipped. */
  keyFiles?: readonly string[];
  /** Verifier key strings. */
  keys?: readonly string[];
  /** Hex SHA-256 fingerprints of keys among those the source offers. */
  fingerprints?: readonly string[];
}

export function parseKeyLines(text: string, where: string): NoteKey[] {
  const keys: NoteKey[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    try {
      keys.push(parseVerifierKey(line));
    } catch (cause) {
      throw new CliError("usage", `${where}:${i + 1}: not a verifier key string`, { cause });
    }
  }
  return keys;
}

export const noteKeyFingerprint = (key: NoteKey) => keyFingerprint(key.publicKey);

/** One entry per distinct key (a source may offer the same key twice: key file and stored key document). */
function distinct(keys: NoteKey[]): NoteKey[] {
  const seen = new Set<string>();
  return keys.filter((k) => {
    const f = `${k.name} ${noteKeyFingerprint(k)}`;
    if (seen.has(f)) return false;
    seen.add(f);
    return true;
  });
}

export interface Trust {
  trusted: NoteKey[];
  /** How the keys were chosen, for the report. */
  how: "pinned" | "fingerprint" | "source-own-key";
}

export async function resolveTrust(
  options: TrustOptions,
  offered: readonly string[],
  allowOwnKey: boolean,
): Promise<Trust> {
  const trusted: NoteKey[] = [];
  for (const file of options.keyFiles ?? []) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (cause) {
      throw new CliError("usage", `cannot read key file ${file}`, { cause });
    }
    trusted.push(...parseKeyLines(text, file));
  }
  for (const k of options.keys ?? []) trusted.push(...parseKeyLines(k, "--key"));
  const fingerprints = (options.fingerprints ?? []).map((f) =>
    f
      .trim()
      .toLowerCase()
      .replace(/^sha256:/, ""),
  );
  for (const f of fingerprints) {
    if (!/^[0-9a-f]{64}$/.test(f)) throw new CliError("usage", `fingerprint ${f} is not 64 hex characters`);
  }
  if (fingerprints.length > 0) {
    const candidates = parseKeyLines(offered.join("\n"), "the source's keys");
    for (const f of fingerprints) {
      const match = candidates.find((k) => noteKeyFingerprint(k) === f);
      if (!match) throw new CliError("untrusted", `no key offered by the source has fingerprint ${f}`);
      trusted.push(match);
    }
  }
  if (trusted.length > 0)
    return { trusted: distinct(trusted), how: fingerprints.length > 0 ? "fingerprint" : "pinned" };
  if (allowOwnKey && offered.length > 0) {
    return {
      trusted: distinct(parseKeyLines(offered.join("\n"), "the data directory's key")),
      how: "source-own-key",
    };
  }
  throw new CliError(
    "untrusted",
    "no trusted checkpoint key: pin one with --trusted-keys <file>, --verifier-key <key> or --fingerprint <sha256>",
  );
}

/**
 * Which checkpoint keys verification trusts. An auditor pins keys out of band: as verifier key strings in a
 * file or on the command line (core's parseVerifierKey), or by fingerprint — the hex SHA-256 of the key's DER
 * SubjectPublicKeyInfo — chosen among the keys the source itself offers. A key a source offers is never
 * trusted just because the source offers it (docs/FORMAT.md §2). `verify` with nothing pinned refuses, unless
 * asked for trust on first use with an explicit file (`--trust-on-first-use <file>`): the first run saves the
 * source's one key to that file and says so loudly; every later run pins what the file holds. (`prove` and
 * `export` on a data directory still use its own key when nothing is pinned — the operator's own sink — and
 * say so.)
 */
import { readFile, writeFile } from "node:fs/promises";
import {
  formatVerifierKey,
  keyFingerprint,
  type NoteKey,
  parseVerifierKey,
  type TrustBasis,
} from "@auditsink/core";
import { CliError } from "./errors.ts";

export interface TrustOptions {
  /** Files of verifier key strings, one per line; blank lines and lines starting with '#' are skipped. */
  keyFiles?: readonly string[];
  /** Verifier key strings. */
  keys?: readonly string[];
  /** Hex SHA-256 fingerprints of keys among those the source offers. */
  fingerprints?: readonly string[];
  /**
   * Trust on first use: a key file that, when it does not exist yet, is created holding the source's one key
   * (refused when the source offers more than one); when it exists, its keys are pinned.
   */
  trustOnFirstUse?: string;
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
  /** How the keys were chosen, for the report (core's TrustBasis, or a data directory's own key for prove/export). */
  how: TrustBasis | "source-own-key";
  /** Where the keys came from, one line. */
  detail: string;
  /** True when this run created the trust-on-first-use file: the caller must say so loudly. */
  firstUse?: boolean;
}

async function readKeyFile(file: string): Promise<NoteKey[] | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError("usage", `cannot read key file ${file}`, { cause });
  }
  return parseKeyLines(text, file);
}

export async function resolveTrust(
  options: TrustOptions,
  offered: readonly string[],
  allowOwnKey: boolean,
  location = "the source",
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
  if (trusted.length > 0) {
    const how = fingerprints.length > 0 ? "fingerprint" : "pinned";
    const from = [
      ...(options.keyFiles ?? []).map((f) => `--trusted-keys ${f}`),
      ...(options.keys?.length ? ["--verifier-key"] : []),
      ...(fingerprints.length ? ["--fingerprint (matched among the source's keys)"] : []),
    ];
    return { trusted: distinct(trusted), how, detail: from.join(", ") };
  }
  if (options.trustOnFirstUse !== undefined)
    return trustOnFirstUse(options.trustOnFirstUse, offered, location);
  if (allowOwnKey && offered.length > 0) {
    return {
      trusted: distinct(parseKeyLines(offered.join("\n"), "the data directory's key")),
      how: "source-own-key",
      detail: "the data directory's own key (nothing pinned)",
    };
  }
  throw new CliError(
    "untrusted",
    "no trusted checkpoint key: pin one with --trusted-keys <file>, --verifier-key <key> or --fingerprint <sha256>, " +
      "or use --trust-on-first-use <file>. A key found in the archive itself is never trusted by itself.",
  );
}

/**
 * Trust on first use with an explicit state file. The first run pins the source's key — only when the source
 * offers exactly one, so a key document planted beside the real one makes the first use fail instead of
 * choosing — and writes it to the file; later runs pin the file's keys, whatever the source offers then.
 */
async function trustOnFirstUse(file: string, offered: readonly string[], location: string): Promise<Trust> {
  const saved = await readKeyFile(file);
  if (saved) {
    if (saved.length === 0) throw new CliError("untrusted", `${file} holds no verifier key`);
    return {
      trusted: distinct(saved),
      how: "trust-on-first-use",
      detail: `keys pinned in ${file} on first use (not checked out of band)`,
    };
  }
  const candidates = distinct(parseKeyLines(offered.join("\n"), "the source's keys"));
  if (candidates.length !== 1) {
    throw new CliError(
      "untrusted",
      `trust on first use needs exactly one key offered by the source, found ${candidates.length}: pin one with --fingerprint <sha256>`,
    );
  }
  const key = candidates[0]!;
  await writeFile(
    file,
    `# auditsink trust on first use: pinned ${new Date().toISOString()} from ${location}\n` +
      `# fingerprint (SHA-256 of the DER SPKI) ${noteKeyFingerprint(key)} — compare it out of band\n` +
      `${formatVerifierKey(key)}\n`,
    { flag: "wx" },
  ).catch((cause) => {
    throw new CliError("usage", `cannot create ${file}`, { cause });
  });
  return {
    trusted: [key],
    how: "trust-on-first-use",
    detail: `FIRST USE: the source's own key was pinned to ${file} without an out-of-band check`,
    firstUse: true,
  };
}

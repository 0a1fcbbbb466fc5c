/**
 * Receipts an auditor hands to `auditsink verify` (`--receipts <file>`, and a bundle's proofs/inclusion.json):
 * read every entry, keep those that are receipts, and turn every other entry into a `receipt-malformed`
 * finding that names where it is. Nothing here checks a receipt; core's verifier does (docs/FORMAT.md §9).
 */
import { readFile } from "node:fs/promises";
import {
  type Finding,
  parseReceipt,
  type Receipt,
  TLOG_PROOF_HEADER,
  tlogProofReceipt,
} from "@auditsink/core";
import { CliError } from "./errors.ts";

/** One entry of a receipts file: where it is (`<file>#<n>` or `<file>:<line>`), and its value or why none. */
export interface ReceiptEntry {
  at: string;
  value?: unknown;
  error?: string;
}

/** The receipts among some entries, and a finding for every entry that is not one. */
export interface ReceiptSet {
  receipts: Receipt[];
  malformed: Finding<string>[];
}

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Splits a receipts file into entries: a JSON array, `{"receipts": [...]}`, one receipt object, JSON lines
 * (one receipt per line; a line that is not JSON is an entry with an error, not a reason to give up), or one
 * c2sp.org/tlog-proof (docs/FORMAT.md §9; one entry, its error when it is not auditsink's receipt).
 * Throws CliError("usage") only when the text is none of these shapes at all.
 */
export function receiptEntries(text: string, label: string): ReceiptEntry[] {
  if (text.startsWith(`${TLOG_PROOF_HEADER}\n`)) {
    const parsed = tlogProofReceipt(text);
    return [parsed.ok ? { at: label, value: parsed.receipt } : { at: label, error: parsed.detail }];
  }
  const trimmed = text.trim();
  const whole = jsonOrUndefined(trimmed);
  const list = (values: unknown[]) => values.map((value, i) => ({ at: `${label}#${i}`, value }));
  if (Array.isArray(whole)) return list(whole);
  if (whole !== null && typeof whole === "object") {
    if (!Object.hasOwn(whole, "receipts")) return [{ at: `${label}#0`, value: whole }];
    const receipts = (whole as { receipts: unknown }).receipts;
    if (Array.isArray(receipts)) return list(receipts);
    throw new CliError("usage", `${label}: "receipts" is not an array`);
  }
  if (whole !== undefined || trimmed === "") {
    if (trimmed === "") return [];
    throw new CliError(
      "usage",
      `${label} holds no receipts (JSON array, {"receipts": [...]}, or JSON lines)`,
    );
  }
  const entries: ReceiptEntry[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    const value = jsonOrUndefined(line);
    entries.push(
      value === undefined
        ? { at: `${label}:${i + 1}`, error: "not JSON" }
        : { at: `${label}:${i + 1}`, value },
    );
  }
  if (entries.every((e) => e.error)) {
    throw new CliError(
      "usage",
      `${label} holds no receipts (JSON array, {"receipts": [...]}, or JSON lines)`,
    );
  }
  return entries;
}

/** Reads a receipts file given on the command line. */
export async function readReceiptEntries(path: string): Promise<ReceiptEntry[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new CliError("usage", `cannot read receipts file ${path}`, { cause });
  }
  return receiptEntries(text, path);
}

/** Keeps the receipts; every other entry becomes `receipt-malformed` at its place in the file. */
export function sortReceipts(entries: readonly ReceiptEntry[]): ReceiptSet {
  const set: ReceiptSet = { receipts: [], malformed: [] };
  for (const entry of entries) {
    const parsed = entry.error ? { ok: false as const, detail: entry.error } : parseReceipt(entry.value);
    if (parsed.ok) {
      set.receipts.push(parsed.receipt);
      continue;
    }
    const stream = (entry.value as { stream?: unknown } | null | undefined)?.stream;
    set.malformed.push({
      code: "receipt-malformed",
      stream: typeof stream === "string" ? stream : "",
      at: entry.at,
      message: `${entry.at} is not a receipt: ${parsed.detail}`,
    });
  }
  return set;
}

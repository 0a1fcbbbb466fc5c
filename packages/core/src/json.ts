/**
 * Strict JSON input (docs/FORMAT.md §Events, "JSON input"): what the sink accepts as JSON text, and the rules a
 * parsed value must follow before its RFC 8785 bytes are computed. Everything here is iterative, so no input can
 * exhaust the stack, and nothing here rebuilds objects, so every member (`__proto__` included) passes through as
 * the producer signed it.
 */
import { createScanner } from "jsonc-parser";
import { IngestError } from "./errors.ts";

/** Deepest nesting of arrays and objects in one event; the event object itself is level 1. */
export const MAX_EVENT_DEPTH = 64;

export type JsonPath = readonly (string | number)[];

/** `events[3].data.a` — a JSON path as the sink names fields in its problems. */
export function formatPath(prefix: string, path: JsonPath): string {
  return path.reduce<string>((acc, p) => (typeof p === "number" ? `${acc}[${p}]` : `${acc}.${p}`), prefix);
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
/** Keeps a leading byte order mark, which JSON.parse then refuses: the sink never stores one (RFC 8259 §8.1). */
const fatalUtf8KeepingBom = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Parses JSON text as the sink accepts it: UTF-8 that decodes without replacement (RFC 8259 §8.1), strict
 * JSON (RFC 8259), no object with two members of one name (RFC 8259 §4 leaves those undefined; the sink refuses
 * them rather than pick one), and at most `maxDepth` levels of nesting. `name` turns a path into the field the
 * error names. Throws IngestError("invalid-request").
 */
export function parseStrictJson(
  input: Uint8Array | string,
  options: {
    maxDepth: number;
    /** The limit the error message states (default maxDepth): a body may wrap events in two more levels. */
    statedDepth?: number;
    name?: (path: JsonPath) => string;
  },
): unknown {
  const name = options.name ?? ((path: JsonPath) => formatPath("body", path));
  let text: string;
  if (typeof input === "string") text = input;
  else {
    try {
      text = fatalUtf8.decode(input);
    } catch (cause) {
      throw new IngestError("invalid-request", "body: is not valid UTF-8", "body", { cause });
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new IngestError("invalid-request", "body: not valid JSON", "body", { cause });
  }
  // The tokenizer pass (scanMembers) finds duplicate members and over-deep nesting and names where. It only
  // runs when one of them is there: the text holds as many members as the parsed value (JSON.parse keeps one of
  // each duplicate name) and nests no deeper than allowed — two cheap counts.
  const written = shapeOf(text);
  if (written.depth > options.maxDepth || written.members !== inspectValue(value, {}).members) {
    const found = scanMembers(text, options.maxDepth);
    if (found?.rule === "too-deep") {
      const field = name(found.path.slice(0, 3));
      const limit = options.statedDepth ?? options.maxDepth;
      throw new IngestError(
        "invalid-request",
        `${field}: nests deeper than ${limit} levels of arrays and objects`,
        field,
      );
    }
    if (found) {
      const field = name(found.path);
      throw new IngestError("invalid-request", `${field}: duplicate member name`, field);
    }
  }
  return value;
}

export type StoredJson = { ok: true; value: unknown } | { ok: false; detail: string };

/**
 * Parses JSON bytes read back from storage — a record line, a head, an evidence bundle's manifest or proof file —
 * under the rules the sink applied when it accepted them (docs/FORMAT.md §3 "JSON input"), so that the bytes have
 * exactly one meaning and every verifier reads the same value from them: UTF-8 that decodes without replacement,
 * strict JSON, no object with two members of one name at any depth (JSON.parse keeps the last, other parsers the
 * first), strings and member names that are well-formed Unicode, finite numbers. The nesting limit is an event's,
 * left to the caller. Never throws: stored bytes are attacker-controlled, and what breaks a rule is a finding the
 * caller names (`record-malformed`, `head-malformed`, …).
 *
 * Costs one JSON.parse, one scan of the text and one walk of the value, as parseStrictJson: the tokenizer runs
 * only for text that holds a duplicate member, and strings are walked only when the text holds a `\u` escape.
 */
export function parseStoredJson(bytes: Uint8Array): StoredJson {
  let text: string;
  try {
    text = fatalUtf8KeepingBom.decode(bytes);
  } catch {
    return { ok: false, detail: "is not valid UTF-8" };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, detail: "is not JSON" };
  }
  // Text decoded without replacement is well-formed: a lone surrogate can only come from a `\u` escape.
  const found = inspectValue(value, { finite: true, wellFormed: text.includes("\\u") });
  if (shapeOf(text).members !== found.members) {
    const duplicate = scanMembers(text, Number.POSITIVE_INFINITY);
    if (duplicate)
      return { ok: false, detail: `has a duplicate member name at ${formatPath("$", duplicate.path)}` };
  }
  if (found.unwritable) return { ok: false, detail: found.unwritable };
  return { ok: true, value };
}

/**
 * The members written in JSON text that JSON.parse accepted, and its deepest nesting of arrays and objects. In
 * valid JSON a ':' outside a string literal separates a member name from its value, so counting those counts
 * members; string literals are skipped whole (a '"' ends one unless an odd run of '\\' precedes it).
 */
function shapeOf(text: string): { members: number; depth: number } {
  let members = 0;
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let end = i;
      for (;;) {
        end = text.indexOf('"', end + 1);
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      i = end;
    } else if (c === 0x3a) members++;
    else if (c === 0x7b || c === 0x5b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return { members, depth: deepest };
}

/**
 * Own members of every object in a parsed JSON value (iterative; `__proto__` members are own data members), and
 * whether the value holds what RFC 8785 cannot write: with `finite`, a number that overflowed to infinity (`1e400`);
 * with `wellFormed`, a string or member name with a lone surrogate, which has no UTF-8 form. `unwritable` says which.
 */
function inspectValue(
  value: unknown,
  check: { finite?: boolean; wellFormed?: boolean },
): { members: number; unwritable?: string } {
  let members = 0;
  let unwritable: string | undefined;
  const leaf = (v: unknown) => {
    if (typeof v === "number") {
      if (check.finite && !Number.isFinite(v)) unwritable ??= "holds a number that is not finite";
    } else if (typeof v === "string" && check.wellFormed && !isWellFormed(v))
      unwritable ??= "holds a string that is not well-formed Unicode (a lone surrogate)";
  };
  const leaves = check.finite || check.wellFormed;
  const pending = [value];
  if (leaves) leaf(value);
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (const item of v) {
        if (typeof item === "object" && item !== null) pending.push(item);
        else if (leaves) leaf(item);
      }
      continue;
    }
    const keys = Object.keys(v);
    members += keys.length;
    for (const key of keys) {
      const member = (v as Record<string, unknown>)[key];
      if (typeof member === "object" && member !== null) pending.push(member);
      else if (leaves) leaf(member);
      if (check.wellFormed && !isWellFormed(key))
        unwritable ??= "has a member name that is not well-formed Unicode (a lone surrogate)";
    }
  }
  return unwritable === undefined ? { members } : { members, unwritable };
}

/** String.prototype.isWellFormed (ES2024, Node ≥ 20): no lone surrogates. */
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/** jsonc-parser's SyntaxKind values (a const enum in its typings, which isolated modules cannot read). */
const SyntaxKind = {
  OpenBraceToken: 1,
  CloseBraceToken: 2,
  OpenBracketToken: 3,
  CloseBracketToken: 4,
  CommaToken: 5,
  StringLiteral: 10,
  EOF: 17,
} as const;

interface ObjectFrame {
  names: Set<string>;
  name: string | undefined;
  expectName: boolean;
}
interface ArrayFrame {
  index: number;
}

/**
 * One pass of jsonc-parser's tokenizer over text JSON.parse has already accepted: the first duplicate member
 * name or nesting deeper than `maxDepth`, with the path to it (undefined: neither).
 */
function scanMembers(
  text: string,
  maxDepth: number,
): { rule: "duplicate" | "too-deep"; path: (string | number)[] } | undefined {
  const scanner = createScanner(text, true);
  const stack: (ObjectFrame | ArrayFrame)[] = [];
  const path = (): (string | number)[] =>
    stack.flatMap((f): (string | number)[] =>
      "names" in f ? (f.name === undefined ? [] : [f.name]) : [f.index],
    );
  for (let kind: number = scanner.scan(); kind !== SyntaxKind.EOF; kind = scanner.scan()) {
    const top = stack[stack.length - 1];
    switch (kind) {
      case SyntaxKind.OpenBraceToken:
      case SyntaxKind.OpenBracketToken:
        if (stack.length >= maxDepth) return { rule: "too-deep", path: path() };
        stack.push(
          kind === SyntaxKind.OpenBraceToken
            ? { names: new Set(), name: undefined, expectName: true }
            : { index: 0 },
        );
        break;
      case SyntaxKind.CloseBraceToken:
      case SyntaxKind.CloseBracketToken:
        stack.pop();
        break;
      case SyntaxKind.CommaToken:
        if (top && "names" in top) top.expectName = true;
        else if (top) top.index++;
        break;
      case SyntaxKind.StringLiteral:
        if (top && "names" in top && top.expectName) {
          const member = scanner.getTokenValue();
          top.name = member;
          top.expectName = false;
          if (top.names.has(member)) return { rule: "duplicate", path: path() };
          top.names.add(member);
        }
        break;
    }
  }
  return undefined;
}

/**
 * The rules for a parsed event value that JSON.parse cannot enforce: at most MAX_EVENT_DEPTH levels, finite
 * numbers (`1e400` parses to Infinity, which RFC 8785 cannot serialize), and strings and member names that are
 * well-formed Unicode (no lone surrogates, which have no UTF-8 form). Iterative; reads own members only, so it
 * sees `__proto__` members as the data they are. Throws IngestError("invalid-event") naming the field.
 */
export function checkEventValue(value: unknown, prefix: string): void {
  const pending: { value: unknown; path: (string | number)[]; depth: number }[] = [
    { value, path: [], depth: 1 },
  ];
  const fail = (path: JsonPath, message: string): never => {
    const field = formatPath(prefix, path);
    throw new IngestError("invalid-event", `${field}: ${message}`, field);
  };
  while (pending.length > 0) {
    const { value: v, path, depth } = pending.pop()!;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) fail(path, "must be a finite number");
    } else if (typeof v === "string") {
      if (LONE_SURROGATE.test(v)) fail(path, "must be well-formed Unicode (a lone surrogate)");
    } else if (typeof v === "object" && v !== null) {
      if (depth > MAX_EVENT_DEPTH)
        fail(path.slice(0, 1), `nests deeper than ${MAX_EVENT_DEPTH} levels of arrays and objects`);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++)
          pending.push({ value: v[i], path: [...path, i], depth: depth + 1 });
      } else {
        if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null)
          fail(path, "must be a JSON object");
        for (const key of Object.keys(v)) {
          if (LONE_SURROGATE.test(key)) fail(path, "member names must be well-formed Unicode");
          const member = Object.getOwnPropertyDescriptor(v, key)!.value as unknown;
          pending.push({ value: member, path: [...path, key], depth: depth + 1 });
        }
      }
    } else if (typeof v !== "boolean" && v !== null) {
      fail(path, "must be a JSON value");
    }
  }
}

/** With the `u` flag a surrogate code unit only matches when it is not part of a pair. */
const LONE_SURROGATE = /\p{Cs}/u;

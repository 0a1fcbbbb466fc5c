import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalBytes, jcsOrdered, sha256 } from "../src/hash.ts";
import { VECTORS } from "./vectors.ts";

// RFC 8785 vectors from cyberphone/json-canonicalization (see ../shared/vectors/README.md).
const JCS = join(VECTORS, "jcs");
const names = readdirSync(join(JCS, "input")).filter((n) => n.endsWith(".json"));

describe("RFC 8785 canonicalization (cyberphone/json-canonicalization testdata)", () => {
  it("finds the vectors", () => {
    expect(names.length).toBeGreaterThanOrEqual(6);
  });

  it.each(names)("%s canonicalizes to the expected bytes", (name) => {
    const input = JSON.parse(readFileSync(join(JCS, "input", name), "utf8"));
    const expected = readFileSync(join(JCS, "output", name));
    const hex = readFileSync(join(JCS, "outhex", name.replace(/\.json$/, ".txt")), "utf8").replace(
      /\s+/g,
      "",
    );
    const actual = canonicalBytes(input);
    expect(actual.toString("hex")).toBe(hex);
    expect(actual.equals(expected.subarray(0, actual.length))).toBe(true);
    // Parsed from its canonical text, the value's members are already in JCS order (the path stored records take).
    expect(canonicalBytes(JSON.parse(actual.toString("utf8"))).toString("hex")).toBe(hex);
  });

  it("refuses values JSON cannot represent", () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, undefined]) {
      expect(() => canonicalBytes(value)).toThrow(expect.objectContaining({ code: "not-canonicalizable" }));
    }
  });

  it("hashes with SHA-256 (FIPS 180-4 'abc' vector)", () => {
    expect(sha256("abc").toString("hex")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
});

/**
 * RFC 8785 §3.2 written out: literals, strings and numbers as ECMAScript's JSON.stringify (§3.2.2), members sorted
 * by their names' UTF-16 code units (§3.2.3), no whitespace. For well-formed, finite JSON values only.
 */
function definition(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(definition).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const members = Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${definition((v as Record<string, unknown>)[k])}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(v);
}

/** Member names that trip implementations: prototype keys, integer-like keys (which objects enumerate first). */
const awkwardKey = fc.oneof(
  fc.constantFrom(
    "__proto__",
    "constructor",
    "toJSON",
    "10",
    "2",
    "-1",
    "01",
    "",
    "é",
    "\u{1f600}",
    "\uffff",
    "\u0000",
  ),
  fc.string({ unit: "binary", maxLength: 6 }),
);
/** JSON values built as JSON.parse builds them (own data members, `__proto__` included). */
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.string({ unit: "binary", maxLength: 12 }),
    fc.array(tie("value"), { maxLength: 4 }),
    fc
      .array(fc.tuple(awkwardKey, tie("value")), { maxLength: 5 })
      .map((entries) => Object.fromEntries(entries) as unknown),
  ),
})).value;

describe("RFC 8785 canonicalization against the definition", () => {
  it("matches the definition for any JSON value, in any member order", () => {
    fc.assert(
      fc.property(json, (value) => {
        const expected = definition(value);
        expect(canonicalBytes(value).toString("utf8")).toBe(expected);
        // The same value with its members already in JCS order, as a stored record parses.
        expect(canonicalBytes(JSON.parse(expected)).toString("utf8")).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it("keeps `__proto__` members as data", () => {
    const value = JSON.parse('{"z":1,"__proto__":{"a":[1]},"a":"x"}');
    expect(canonicalBytes(value).toString()).toBe('{"__proto__":{"a":[1]},"a":"x","z":1}');
    const ordered = JSON.parse('{"__proto__":{"a":[1]},"a":"x","z":1}');
    expect(canonicalBytes(ordered).toString()).toBe('{"__proto__":{"a":[1]},"a":"x","z":1}');
  });

  it("orders integer-like names by code units, not numerically", () => {
    expect(canonicalBytes(JSON.parse('{"2":"b","10":"a","b":0}')).toString()).toBe(
      '{"10":"a","2":"b","b":0}',
    );
  });

  it("refuses lone surrogates and non-finite numbers however the members are ordered", () => {
    for (const bad of [
      { a: "\ud800" },
      { "\udc00": 1 },
      { a: [1, "x\udfff"] },
      { a: Number.POSITIVE_INFINITY },
      { b: 1, a: "\ud800" },
      { b: { "\ud800": 1 }, a: 0 },
    ]) {
      expect(() => canonicalBytes(bad)).toThrow(expect.objectContaining({ code: "not-canonicalizable" }));
    }
  });

  it("refuses cycles", () => {
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.b = cycle;
    expect(() => canonicalBytes(cycle)).toThrow(expect.objectContaining({ code: "not-canonicalizable" }));
  });

  it("serializes values nested deeper than the fast path's limit", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 300; i++) deep = { a: deep };
    expect(canonicalBytes(deep).toString()).toBe(`${'{"a":'.repeat(300)}"x"${"}".repeat(300)}`);
  });
});

/** A JSON value rebuilt with jcsOrdered for every object in it. */
function ordered(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(ordered);
  if (typeof v !== "object" || v === null) return v;
  const members = v as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(members))
    Object.defineProperty(copy, key, { value: ordered(members[key]), enumerable: true, writable: true });
  return jcsOrdered(copy);
}

describe("jcsOrdered: members in RFC 8785 order", () => {
  it("makes JSON.stringify write the canonical form of a value built with it (no integer-like names), every member kept", () => {
    // Objects enumerate integer-like names ("2", "10") first, whatever order they were added in.
    const integerLike = (k: string) => /^(0|[1-9][0-9]*)$/.test(k) && Number(k) < 2 ** 32 - 1;
    const names = (v: unknown): string[] =>
      Array.isArray(v)
        ? v.flatMap(names)
        : typeof v === "object" && v !== null
          ? Object.entries(v).flatMap(([k, m]) => [k, ...names(m)])
          : [];
    fc.assert(
      fc.property(json, (value) => {
        const built = ordered(value);
        expect(canonicalBytes(built).toString("utf8")).toBe(definition(value));
        if (!names(value).some(integerLike)) expect(JSON.stringify(built)).toBe(definition(value));
      }),
      { numRuns: 1000 },
    );
  });

  it("merges objects, a later one's member replacing an earlier one's, and keeps `__proto__` as data", () => {
    const merged = jcsOrdered(JSON.parse('{"z":1,"__proto__":{"p":1},"b":2}'), { b: 3, a: 0 });
    expect(JSON.stringify(merged)).toBe('{"__proto__":{"p":1},"a":0,"b":3,"z":1}');
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).p).toBeUndefined();
  });
});

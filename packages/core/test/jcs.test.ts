import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { canonicalBytes, sha256 } from "../src/hash.ts";
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

import fc from "fast-check";
import { type Node, parseTree } from "jsonc-parser";
import { describe, expect, it } from "vitest";
import { parseStoredJson, parseStrictJson } from "../src/json.ts";

/** Names and strings that trip a text scanner: quotes, backslash runs, colons, brackets. */
const tricky = fc.string({
  unit: fc.constantFrom('"', "\\", ":", "{", "}", "[", "]", ",", "a", "é"),
  maxLength: 6,
});
/** JSON text (not values: a value cannot hold a duplicate member), with members often sharing a name. */
const jsonText = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.oneof(tricky, fc.integer(), fc.boolean(), fc.constant(null)).map((v) => JSON.stringify(v)),
    fc.array(tie("value"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`),
    fc
      .array(fc.tuple(fc.oneof(fc.constantFrom("a", "__proto__", "1"), tricky), tie("value")), {
        maxLength: 4,
      })
      .map((members) => `{${members.map(([k, v]) => `${JSON.stringify(k)}: ${v}`).join(",")}}`),
  ),
})).value as fc.Arbitrary<string>;

/** What the rules say, from jsonc-parser's syntax tree: a repeated member name, or nesting deeper than `max`. */
function refused(text: string, max: number): boolean {
  const walk = (node: Node, depth: number): boolean => {
    if (node.type === "object" || node.type === "array") {
      if (depth + 1 > max) return true;
      const names = new Set<string>();
      for (const child of node.children ?? []) {
        if (node.type === "object") {
          const name = child.children![0]!.value as string;
          if (names.has(name)) return true;
          names.add(name);
          if (walk(child.children![1]!, depth + 1)) return true;
        } else if (walk(child, depth + 1)) return true;
      }
    }
    return false;
  };
  return walk(parseTree(text)!, 0);
}

describe("parseStrictJson", () => {
  it("refuses exactly the texts with a duplicate member or too deep a nesting, and otherwise parses", () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        const max = 4;
        if (refused(text, max)) {
          expect(() => parseStrictJson(text, { maxDepth: max })).toThrow(
            expect.objectContaining({
              code: "invalid-request",
              message: expect.stringMatching(/duplicate member name|nests deeper than 4 levels/),
            }),
          );
        } else {
          expect(parseStrictJson(text, { maxDepth: max })).toEqual(JSON.parse(text));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("names the duplicate member's path", () => {
    expect(() => parseStrictJson('[{"a":{"b":1,"b":2}}]', { maxDepth: 8 })).toThrow(
      expect.objectContaining({ field: "body[0].a.b", message: "body[0].a.b: duplicate member name" }),
    );
    expect(() => parseStrictJson('{"__proto__":1,"__proto__":2}', { maxDepth: 8 })).toThrow(
      expect.objectContaining({ field: "body.__proto__" }),
    );
  });
});

describe("parseStoredJson", () => {
  it("refuses exactly the texts with a duplicate member at any depth, and otherwise parses as JSON.parse", () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        const parsed = parseStoredJson(Buffer.from(text));
        if (refused(text, Number.POSITIVE_INFINITY)) {
          expect(parsed).toEqual({
            ok: false,
            detail: expect.stringMatching(/^has a duplicate member name at \$/),
          });
        } else {
          expect(parsed).toEqual({ ok: true, value: JSON.parse(text) });
        }
      }),
      { numRuns: 3000 },
    );
  });

  for (const [what, bytes, detail] of [
    ["a duplicate member, naming where", '{"a":[{"b":1,"b":1}]}', "has a duplicate member name at $.a[0].b"],
    [
      "two `constructor` members",
      '{"constructor":1,"constructor":1}',
      "has a duplicate member name at $.constructor",
    ],
    ["bytes that are not UTF-8", Buffer.from([0x22, 0xff, 0x22]), "is not valid UTF-8"],
    ["a byte order mark (the sink never writes one)", "\ufeff{}", "is not JSON"],
    [
      "a lone surrogate escape",
      '{"a":["\\ud800"]}',
      "holds a string that is not well-formed Unicode (a lone surrogate)",
    ],
    [
      "a lone surrogate in a name",
      '{"\\udc00":1}',
      "has a member name that is not well-formed Unicode (a lone surrogate)",
    ],
    ["a number beyond double range", '{"a":[-1e400]}', "holds a number that is not finite"],
    ["a top-level number beyond double range", "1e400", "holds a number that is not finite"],
  ] as const) {
    it(`refuses ${what}`, () => {
      expect(parseStoredJson(typeof bytes === "string" ? Buffer.from(bytes) : bytes)).toEqual({
        ok: false,
        detail,
      });
    });
  }

  it("accepts escaped surrogate pairs and an escaped backslash before `ud800`", () => {
    expect(parseStoredJson(Buffer.from('["\\ud83d\\ude00","\\\\ud800"]'))).toEqual({
      ok: true,
      value: ["\u{1F600}", "\\ud800"],
    });
  });
});

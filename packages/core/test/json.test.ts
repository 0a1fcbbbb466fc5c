import fc from "fast-check";
import { type Node, parseTree } from "jsonc-parser";
import { describe, expect, it } from "vitest";
import { parseStrictJson } from "../src/json.ts";

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

import { describe, expect, it } from "vitest";
import { GatewayError, Policy, redact } from "../src/index.ts";

const policy = () =>
  Policy.parse({
    default: "deny",
    maxArgumentBytes: 100,
    redact: ["token"],
    rules: [
      {
        name: "no-writes",
        server: "fs",
        tool: ["write_*", "move_file"],
        action: "deny",
        reason: "read-only",
      },
      { name: "fs", server: "fs", action: "allow", redact: ["auth.*"] },
      {
        name: "search",
        tool: "search",
        action: "allow",
        rateLimit: { calls: 2, perSeconds: 10 },
        maxArgumentBytes: 20,
      },
    ],
  });

describe("Policy.decide", () => {
  it("takes the first rule that matches server and tool, else the default", () => {
    const p = policy();
    expect(p.decide("fs", "write_file", {}, 2)).toEqual({
      decision: "deny",
      rule: "no-writes",
      reason: "read-only",
    });
    expect(p.decide("fs", "read_file", {}, 2)).toEqual({ decision: "allow", rule: "fs" });
    expect(p.decide("github", "merge", {}, 2)).toMatchObject({ decision: "deny", rule: "default" });
  });

  it("refuses arguments over the rule's limit, or the policy's", () => {
    const p = policy();
    expect(p.decide("web", "search", {}, 21)).toMatchObject({ decision: "deny", rule: "search" });
    expect(p.decide("fs", "read_file", {}, 101).reason).toContain("exceed the limit of 100");
  });

  it("rate-limits per tool in a sliding window, counting only calls let through", () => {
    const p = policy();
    expect(p.decide("web", "search", {}, 2, 0).decision).toBe("allow");
    expect(p.decide("web", "search", {}, 2, 1000).decision).toBe("allow");
    expect(p.decide("web", "search", {}, 2, 2000).decision).toBe("rate-limit");
    expect(p.decide("other", "search", {}, 2, 2000).decision).toBe("allow");
    expect(p.decide("web", "search", {}, 2, 10_001).decision).toBe("allow");
  });

  it("names the redaction paths that hold a value, the policy's and the rule's", () => {
    const p = policy();
    expect(p.decide("fs", "read_file", { token: "s", auth: { user: "u" } }, 2)).toEqual({
      decision: "redact",
      rule: "fs",
      redacted: ["token", "auth.*"],
    });
  });
});

describe("redact", () => {
  it("replaces values at paths in a copy, treating __proto__ as an ordinary key", () => {
    const args = JSON.parse('{"__proto__": {"secret": 1}, "list": [{"k": "a"}, {"k": "b"}], "keep": true}');
    const copy = redact(args, ["__proto__.secret", "list.*.k"]) as Record<string, unknown>;
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(JSON.stringify(copy)).toBe(
      '{"__proto__":{"secret":"[redacted]"},"list":[{"k":"[redacted]"},{"k":"[redacted]"}],"keep":true}',
    );
    expect(JSON.stringify(args)).toContain('"secret":1');
  });
});

describe("Policy.parse", () => {
  it("refuses a bad policy with an error naming the field, and duplicate rule names", () => {
    const bad = (input: unknown) => {
      try {
        Policy.parse(input);
      } catch (e) {
        expect(e).toBeInstanceOf(GatewayError);
        return (e as Error).message;
      }
      throw new Error("accepted");
    };
    expect(bad({ rules: [{ name: "x", action: "maybe" }] })).toContain("policy.rules.0.action");
    expect(bad({ rules: [{ name: "x", action: "allow", extra: 1 }] })).toContain("policy.rules.0");
    expect(
      bad({
        rules: [
          { name: "x", action: "allow" },
          { name: "x", action: "deny" },
        ],
      }),
    ).toContain("two rules are named x");
    expect(bad({ default: "allow", rateLimit: 1 })).toContain("policy");
  });
});

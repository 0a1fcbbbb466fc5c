/**
 * The gateway's policy: which tool calls go through, decided per call from an ordered list of rules — first
 * match wins. A starting point, not a policy engine: server and tool name patterns, argument-size limits,
 * per-tool rate limits and a redaction list. docs/MCP.md §Policy describes the file.
 */
import { readFile } from "node:fs/promises";
import picomatch from "picomatch";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { GatewayError } from "./errors.ts";

/**
 * - `allow`: forwarded, arguments recorded as configured;
 * - `redact`: forwarded, with the values at the rule's redaction paths left out of the record;
 * - `deny`: refused by a rule, by the default, or because the arguments are larger than the limit;
 * - `rate-limit`: refused because the rule's rate limit for this tool is used up.
 */
export type Decision = "allow" | "redact" | "deny" | "rate-limit";

export interface PolicyVerdict {
  decision: Decision;
  /** The rule that decided (`default` when none matched). */
  rule: string;
  /** Why a call was refused, for the agent and the record. */
  reason?: string;
  /** Redaction paths that matched a value in the arguments. */
  redacted?: string[];
}

const name = z.string().min(1).max(256);
const patterns = z.union([name, z.array(name).min(1)]);
const rateLimit = z.strictObject({
  calls: z.number().int().positive(),
  perSeconds: z.number().positive(),
});
const rule = z.strictObject({
  name,
  server: patterns.default("*"),
  tool: patterns.default("*"),
  action: z.enum(["allow", "deny"]),
  reason: z.string().max(1024).optional(),
  maxArgumentBytes: z.number().int().positive().optional(),
  rateLimit: rateLimit.optional(),
  redact: z.array(z.string().min(1).max(1024)).optional(),
});
export const policySchema = z.strictObject({
  default: z.enum(["allow", "deny"]).default("deny"),
  /** Largest RFC 8785 JSON of a call's arguments, in bytes, for every rule without its own limit. */
  maxArgumentBytes: z
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  /** Redaction paths applied to every call, besides a rule's own. */
  redact: z.array(z.string().min(1).max(1024)).default([]),
  rules: z.array(rule).default([]),
});

export type PolicyConfig = z.input<typeof policySchema>;
type Rule = z.output<typeof rule>;

/** Turns zod issues into one line naming the field. */
export function describeIssues(error: z.ZodError, prefix: string): string {
  return error.issues
    .map((i) => `${prefix}${i.path.length ? `.${i.path.join(".")}` : ""}: ${i.message}`)
    .join("; ");
}

const REDACTED = "[redacted]";

/**
 * @example
 *   const policy = Policy.parse({ default: "deny", rules: [{ name: "read-only", server: "fs", tool: "read_*", action: "allow" }] });
 *   policy.decide("fs", "read_text_file", { path: "/etc/hosts" }); // { decision: "allow", rule: "read-only" }
 */
export class Policy {
  private readonly matchers: { rule: Rule; server: (s: string) => boolean; tool: (s: string) => boolean }[];
  /** Per rule, server and tool: the times (ms) of the calls let through inside the rule's window. */
  private readonly windows = new Map<string, number[]>();

  private constructor(readonly config: z.output<typeof policySchema>) {
    this.matchers = config.rules.map((r) => ({
      rule: r,
      server: picomatch(r.server, { dot: true }),
      tool: picomatch(r.tool, { dot: true }),
    }));
  }

  /** Validates a policy object (from JSON or YAML); throws GatewayError("bad-config") naming the field. */
  static parse(input: unknown): Policy {
    const parsed = policySchema.safeParse(input ?? {});
    if (!parsed.success) throw new GatewayError("bad-config", describeIssues(parsed.error, "policy"));
    const names = new Set<string>();
    for (const r of parsed.data.rules) {
      if (names.has(r.name)) throw new GatewayError("bad-config", `policy: two rules are named ${r.name}`);
      names.add(r.name);
    }
    return new Policy(parsed.data);
  }

  /** Reads a policy file: YAML (JSON is YAML too). */
  static async load(file: string): Promise<Policy> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (cause) {
      throw new GatewayError("bad-config", `cannot read policy file ${file}`, { cause });
    }
    return Policy.parse(parseYamlFile(text, file));
  }

  /**
   * Decides one call. `argumentBytes` is the size of the arguments' RFC 8785 JSON. A call let through counts
   * against the rate limit of its rule; a refused one does not.
   */
  decide(
    server: string,
    tool: string,
    args: unknown,
    argumentBytes: number,
    now = Date.now(),
  ): PolicyVerdict {
    const match = this.matchers.find((m) => m.server(server) && m.tool(tool));
    if (!match) {
      return this.config.default === "allow"
        ? this.allow("default", args, [], argumentBytes, this.config.maxArgumentBytes)
        : { decision: "deny", rule: "default", reason: "no rule allows this tool" };
    }
    const r = match.rule;
    if (r.action === "deny")
      return { decision: "deny", rule: r.name, reason: r.reason ?? `denied by rule ${r.name}` };
    const verdict = this.allow(
      r.name,
      args,
      r.redact ?? [],
      argumentBytes,
      r.maxArgumentBytes ?? this.config.maxArgumentBytes,
    );
    if (verdict.decision === "deny" || !r.rateLimit) return verdict;
    const key = JSON.stringify([r.name, server, tool]);
    const since = now - r.rateLimit.perSeconds * 1000;
    const calls = (this.windows.get(key) ?? []).filter((t) => t > since);
    if (calls.length >= r.rateLimit.calls) {
      this.windows.set(key, calls);
      return {
        decision: "rate-limit",
        rule: r.name,
        reason: `rate limit of ${r.rateLimit.calls} call(s) per ${r.rateLimit.perSeconds} s reached for ${tool}`,
      };
    }
    calls.push(now);
    this.windows.set(key, calls);
    return verdict;
  }

  private allow(rule: string, args: unknown, paths: string[], bytes: number, limit: number): PolicyVerdict {
    if (bytes > limit) {
      return { decision: "deny", rule, reason: `arguments of ${bytes} bytes exceed the limit of ${limit}` };
    }
    const redacted = [...this.config.redact, ...paths].filter((p) => matchPath(args, p.split(".")));
    return redacted.length > 0 ? { decision: "redact", rule, redacted } : { decision: "allow", rule };
  }
}

export function parseYamlFile(text: string, file: string): unknown {
  try {
    return parseYaml(text);
  } catch (cause) {
    throw new GatewayError("bad-config", `${file} is not YAML or JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;

/** Whether a value exists at `path` (keys, array indexes, or `*` for any). */
function matchPath(value: unknown, path: string[]): boolean {
  if (path.length === 0) return true;
  if (!isObject(value)) return false;
  const [head, ...rest] = path as [string, ...string[]];
  if (head === "*") return Object.keys(value).some((k) => matchPath(value[k], rest));
  return Object.hasOwn(value, head) && matchPath(value[head], rest);
}

/**
 * A copy of `args` with the value at each path replaced by `[redacted]`. Keys are copied as own data
 * properties, so `__proto__` in the arguments is a key like any other.
 */
export function redact(args: unknown, paths: readonly string[]): unknown {
  let copy = structuredClone(args);
  for (const p of paths) copy = replaceAt(copy, p.split("."));
  return copy;
}

function replaceAt(value: unknown, path: string[]): unknown {
  if (path.length === 0) return REDACTED;
  if (!isObject(value)) return value;
  const [head, ...rest] = path as [string, ...string[]];
  const keys = head === "*" ? Object.keys(value) : Object.hasOwn(value, head) ? [head] : [];
  for (const k of keys) {
    Object.defineProperty(value, k, {
      value: replaceAt(value[k], rest),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return value;
}

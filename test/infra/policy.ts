/** Reading IAM statements out of synthesized templates, for tests that assert by action. */
import type { Synth, TemplateJson } from "./synth.ts";

export interface Statement {
  Sid?: string;
  Effect: "Allow" | "Deny";
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: unknown;
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

export const list = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** IAM action patterns match case-insensitively, `*` and `?` as wildcards. */
export function actionMatches(pattern: string, action: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .split("")
      .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
      .join("")}$`,
    "i",
  );
  return regex.test(action);
}

export function coversAction(statement: Statement, action: string): boolean {
  if (statement.NotAction !== undefined)
    return !list(statement.NotAction).some((p) => actionMatches(p, action));
  return list(statement.Action).some((p) => actionMatches(p, action));
}

interface RoleResource {
  stack: string;
  logicalId: string;
  template: TemplateJson;
}

/** The role with this RoleName, wherever it is. */
export function findRole(synth: Synth, roleName: string): RoleResource {
  for (const [stack, template] of Object.entries(synth.json)) {
    for (const [logicalId, resource] of Object.entries(template.Resources)) {
      if (resource.Type === "AWS::IAM::Role" && resource.Properties?.RoleName === roleName) {
        return { stack, logicalId, template };
      }
    }
  }
  throw new Error(`no role named ${roleName}`);
}

/** Every identity-policy statement that applies to the role: inline, attached policies and managed policies. */
export function roleStatements(synth: Synth, roleName: string): Statement[] {
  const role = findRole(synth, roleName);
  const refersToRole = (value: unknown) => JSON.stringify(value) === JSON.stringify({ Ref: role.logicalId });
  const statements: Statement[] = [];
  const properties = role.template.Resources[role.logicalId]!.Properties ?? {};
  for (const policy of list(properties.Policies as { PolicyDocument: { Statement: Statement[] } }[])) {
    statements.push(...policy.PolicyDocument.Statement);
  }
  for (const resource of Object.values(role.template.Resources)) {
    const p = resource.Properties ?? {};
    const isPolicy = resource.Type === "AWS::IAM::Policy" || resource.Type === "AWS::IAM::ManagedPolicy";
    if (isPolicy && list(p.Roles as unknown[]).some(refersToRole)) {
      statements.push(...(p.PolicyDocument as { Statement: Statement[] }).Statement);
    }
  }
  if (properties.ManagedPolicyArns !== undefined) {
    throw new Error(
      `${roleName} has managed policies this helper does not read: ${JSON.stringify(properties.ManagedPolicyArns)}`,
    );
  }
  return statements;
}

/** Actions the role's Allow statements name (as written, wildcards kept), sorted and unique. */
export function allowedActions(statements: Statement[]): string[] {
  return [...new Set(statements.filter((s) => s.Effect === "Allow").flatMap((s) => list(s.Action)))].sort();
}

export function denyStatementsFor(statements: Statement[], action: string): Statement[] {
  return statements.filter((s) => s.Effect === "Deny" && coversAction(s, action));
}

/**
 * True when the CloudFormation value refers to the resource whose logical id is `<name><8 hex digits>`, in this
 * stack (Ref, Fn::GetAtt) or another (Fn::ImportValue of CDK's cross-stack export).
 */
export function refersTo(value: unknown, name: string): boolean {
  const text = JSON.stringify(value);
  const local = new RegExp(`"(Ref|Fn::GetAtt)":\\s*(\\[\\s*)?"${name}[0-9A-F]{8}"`);
  const imported = new RegExp(`"Fn::ImportValue":\\s*"[^"]*ExportsOutput(Ref|FnGetAtt)${name}[0-9A-F]{8}`);
  return local.test(text) || imported.test(text);
}

/** All strings in a CloudFormation value, joined: enough to search an Fn::Join for a literal part. */
export function flatText(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(flatText).join("");
  if (value && typeof value === "object") return Object.values(value).map(flatText).join("");
  return String(value);
}

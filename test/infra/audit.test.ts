/**
 * What auditors get: a read-only role (nothing else, even if more is attached later) and IAM-authorized query
 * routes.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ROLE, SETTINGS, STAGE } from "./fixtures.ts";
import { allowedActions, coversAction, findRole, flatText, refersTo, roleStatements } from "./policy.ts";
import { ACCOUNT, resourcesOf, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

const QUERY_ROUTES = [
  "GET /v1/streams",
  "GET /v1/streams/{stream}/checkpoint",
  "GET /v1/streams/{stream}/records",
  "GET /v1/streams/{stream}/proofs/inclusion",
  "GET /v1/streams/{stream}/proofs/consistency",
  "GET /v1/events",
  "GET /v1/receipts",
  "GET /v1/keys",
  "GET /v1/producers",
  "GET /tlog/{stream}/checkpoint",
  "GET /tlog/{stream}/tile/{tile+}",
  "GET /tlog/{stream}/records/{range+}",
];

describe("auditor role", () => {
  it("may read and list the archive's objects, versions and locks, read the ledger, and verify: nothing else", () => {
    expect(allowedActions(roleStatements(synth, ROLE.auditor))).toEqual(
      [
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:GetBucketObjectLockConfiguration",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:DescribeTable",
        "kms:GetPublicKey",
        "kms:Verify",
      ].sort(),
    );
  });

  it.each([
    "s3:PutObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "dynamodb:PutItem",
    "kms:Sign",
    "iam:AttachRolePolicy",
    "sts:AssumeRole",
  ])("is denied %s whatever else is attached to it", (action) => {
    const denies = roleStatements(synth, ROLE.auditor).filter(
      (s) => s.Effect === "Deny" && coversAction(s, action) && JSON.stringify(s.Resource) === '"*"',
    );
    expect(denies).toHaveLength(1);
  });

  it("can be assumed from the deploying account and the configured auditor accounts", () => {
    const role = findRole(synth, ROLE.auditor);
    const trust = role.template.Resources[role.logicalId]!.Properties!.AssumeRolePolicyDocument as {
      Statement: { Principal: { AWS: unknown }; Action: string }[];
    };
    const principals = trust.Statement.map((s) => {
      expect(s.Action).toBe("sts:AssumeRole");
      return flatText(s.Principal.AWS);
    });
    expect(principals.sort()).toEqual(
      [`arn:AWS::Partition:iam::${ACCOUNT}:root`, "arn:AWS::Partition:iam::777788889999:root"].sort(),
    );
  });
});

describe("query routes", () => {
  const queryRoutes = () =>
    Object.fromEntries(
      resourcesOf(synth.json.Audit!, "AWS::ApiGatewayV2::Route").map(([, p]) => [p.RouteKey, p]),
    );

  it.each(QUERY_ROUTES)("%s requires IAM authorization and invokes the query function", (routeKey) => {
    const route = queryRoutes()[routeKey]!;
    expect(route, routeKey).toBeDefined();
    expect(route.AuthorizationType).toBe("AWS_IAM");
    expect(refersTo(route.ApiId, "Api")).toBe(true);
    const integrationId = (route.Target as { "Fn::Join": [string, [string, { Ref: string }]] })[
      "Fn::Join"
    ][1][1].Ref;
    const integration = synth.json.Audit!.Resources[integrationId]!.Properties!;
    expect(refersTo(integration.IntegrationUri, "QueryFunction")).toBe(true);
  });

  it("are the only routes the Audit stack adds", () => {
    expect(Object.keys(queryRoutes()).sort()).toEqual([...QUERY_ROUTES].sort());
  });

  it("come with a managed policy that allows calling exactly these GET routes", () => {
    const [[, policy]] = resourcesOf(synth.json.Audit!, "AWS::IAM::ManagedPolicy") as [
      [string, Record<string, unknown>],
    ];
    const [statement] = (policy.PolicyDocument as { Statement: { Action: string; Resource: unknown[] }[] })
      .Statement;
    expect(statement!.Action).toBe("execute-api:Invoke");
    expect(
      statement!.Resource.map((r) => flatText(r).replace(/^.*Api[0-9A-F]{8}[0-9A-F]*/, "")).sort(),
    ).toEqual(
      [
        "/$default/GET/v1/streams",
        "/$default/GET/v1/streams/*/checkpoint",
        "/$default/GET/v1/streams/*/records",
        "/$default/GET/v1/streams/*/proofs/inclusion",
        "/$default/GET/v1/streams/*/proofs/consistency",
        "/$default/GET/v1/events",
        "/$default/GET/v1/receipts",
        "/$default/GET/v1/keys",
        "/$default/GET/v1/producers",
        "/$default/GET/tlog/*/checkpoint",
        "/$default/GET/tlog/*/tile/*",
        "/$default/GET/tlog/*/records/*",
      ].sort(),
    );
  });
});

describe("tlog-tiles objects (docs/FORMAT.md §7)", () => {
  /** Whether an Allow statement of the role grants `action` on an archive object key (the resource's path part). */
  const allows = (role: string, action: string, key: string) =>
    roleStatements(synth, role).some(
      (s) =>
        s.Effect === "Allow" &&
        coversAction(s, action) &&
        [s.Resource]
          .flat()
          .map((r) => flatText(r))
          .some((r) => {
            const path = r.slice(r.indexOf("/"));
            return (
              path.startsWith("/") &&
              new RegExp(`^${path.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`).test(key)
            );
          }),
    );
  const tile = "/streams/agents.prod/tile/0/x001/234";
  const bundle = "/streams/agents.prod/tile/entries/x001/234";

  it("the sequencer may create tiles and entry bundles; the query function may read them", () => {
    for (const key of [tile, bundle]) {
      expect(allows(ROLE.sequencer, "s3:PutObject", key), key).toBe(true);
      expect(allows(ROLE.query, "s3:GetObject", key), key).toBe(true);
      expect(allows(ROLE.query, "s3:PutObject", key), key).toBe(false);
    }
  });
});

/**
 * The Lambda functions: runtime, architecture, handlers, one role and one log group each, and the environment
 * the runtime reads (packages/aws/src/config.ts).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ROLE, SETTINGS, STAGE } from "./fixtures.ts";
import { refersTo } from "./policy.ts";
import { ACCOUNT, allResources, REGION, ROOT, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

const FUNCTIONS = {
  IngestHttpFunction: {
    stack: "Ingest",
    handler: "functions/ingest-http.handler",
    role: ROLE.ingestHttp,
    service: "ingest-http",
  },
  IngestQueueFunction: {
    stack: "Ingest",
    handler: "functions/ingest-queue.handler",
    role: ROLE.ingestQueue,
    service: "ingest-queue",
  },
  SequencerFunction: {
    stack: "Ingest",
    handler: "functions/sequencer.handler",
    role: ROLE.sequencer,
    service: "sequencer",
  },
  ProducerAdminFunction: {
    stack: "ProducerAdmin",
    handler: "functions/producer-admin.handler",
    role: ROLE.producerAdmin,
    service: "producer-admin",
  },
  QueryFunction: { stack: "Audit", handler: "functions/query.handler", role: ROLE.query, service: "query" },
  VerifierFunction: {
    stack: "Verify",
    handler: "functions/verifier.handler",
    role: ROLE.verifier,
    service: "verifier",
  },
} as const;
type Name = keyof typeof FUNCTIONS;
const NAMES = Object.keys(FUNCTIONS) as Name[];

const lambdas = () => allResources(synth).filter((r) => r.type === "AWS::Lambda::Function");
const lambda = (name: Name) => {
  const found = lambdas().filter(
    (r) => r.stack === FUNCTIONS[name].stack && new RegExp(`^${name}[0-9A-F]{8}$`).test(r.id),
  );
  expect(found, name).toHaveLength(1);
  return { ...found[0]!, props: found[0]!.resource.Properties! };
};

describe("every Lambda function in the app", () => {
  it("runs nodejs22.x on arm64", () => {
    expect(lambdas().length).toBeGreaterThanOrEqual(NAMES.length);
    for (const { stack, id, resource } of lambdas()) {
      expect(resource.Properties?.Runtime, `${stack}/${id}`).toBe("nodejs22.x");
      expect(resource.Properties?.Architectures, `${stack}/${id}`).toEqual(["arm64"]);
    }
  });
});

describe.each(NAMES)("%s", (name) => {
  const spec = FUNCTIONS[name];

  it("deploys its handler from functions/", () => {
    expect(lambda(name).props.Handler).toBe(spec.handler);
    expect(synth.bundled).toContainEqual({
      handler: spec.handler,
      runtime: "nodejs22.x",
      architecture: "arm_64",
    });
  });

  it("names a handler file that exists, so `sst deploy` can bundle it", () => {
    expect(existsSync(path.join(ROOT, spec.handler.replace(/\.handler$/, ".ts")))).toBe(true);
  });

  it("has its own role, which no other function shares", () => {
    const role = lambda(name).props.Role as { "Fn::GetAtt": [string, string] };
    const roleId = role["Fn::GetAtt"][0];
    const roleResource = synth.json[spec.stack]!.Resources[roleId]!;
    expect(roleResource.Properties?.RoleName).toBe(spec.role);
    expect(roleResource.Properties?.ManagedPolicyArns).toBeUndefined();
    const sharing = NAMES.filter(
      (other) => JSON.stringify(lambda(other).props.Role) === JSON.stringify(role),
    );
    expect(sharing).toEqual([name]);
  });

  it("logs to its own retained log group with the stage's retention, and traces with X-Ray", () => {
    const { props } = lambda(name);
    const logGroup = (props.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
    const group = synth.json[spec.stack]!.Resources[logGroup]!;
    expect(group.Type).toBe("AWS::Logs::LogGroup");
    expect(group.Properties?.RetentionInDays).toBe(365);
    expect(group.DeletionPolicy).toBe("Retain");
    expect(props.TracingConfig).toEqual({ Mode: "Active" });
  });

  it("is told where the archive, ledger and signing key are, and its origin, retention and metrics names", () => {
    const env = (lambda(name).props.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(refersTo(env.ARCHIVE_BUCKET, "Archive")).toBe(true);
    expect(refersTo(env.LEDGER_TABLE, "Ledger")).toBe(true);
    expect(JSON.stringify(env.SIGNING_KEY_ID)).toMatch(/SigningKey/);
    expect(env).toMatchObject({
      ORIGIN: `auditsink.${STAGE}.${REGION}.${ACCOUNT}`,
      RETENTION_DAYS: "400",
      POWERTOOLS_SERVICE_NAME: `${spec.service}-${STAGE}`,
      POWERTOOLS_METRICS_NAMESPACE: "auditsink",
      NODE_OPTIONS: "--enable-source-maps",
    });
  });
});

describe("VerifierFunction alerting", () => {
  it("is told the alerts topic and publishes alert events to the default bus", () => {
    const env = (lambda("VerifierFunction").props.Environment as { Variables: Record<string, unknown> })
      .Variables;
    expect(refersTo(env.ALERTS_TOPIC_ARN, "Alerts")).toBe(true);
    expect(env.EVENT_BUS_NAME).toBe("default");
  });
});

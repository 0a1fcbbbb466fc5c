/**
 * Both ways in: the HTTP API (ingest routes → ingest-http) and EventBridge (bus → rule → SQS with DLQ →
 * ingest-queue).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { SETTINGS, STAGE } from "./fixtures.ts";
import { flatText, refersTo } from "./policy.ts";
import { resourcesOf, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
let minimal: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
  minimal = await synthesize(`${STAGE}-defaults`, {});
});

const routes = (s: Synth, stack: string) =>
  Object.fromEntries(
    resourcesOf(s.json[stack]!, "AWS::ApiGatewayV2::Route").map(([, p]) => [p.RouteKey as string, p]),
  );

/** The function an HTTP route invokes, by following Route → Integration → IntegrationUri. */
const routeFunction = (s: Synth, stack: string, routeKey: string): unknown => {
  const route = routes(s, stack)[routeKey]!;
  const integrationId = (route.Target as { "Fn::Join": [string, [string, { Ref: string }]] })[
    "Fn::Join"
  ][1][1].Ref;
  return s.json[stack]!.Resources[integrationId]!.Properties!.IntegrationUri;
};

describe("HTTP API", () => {
  it("is one HTTP (v2) API, in the Ingest stack", () => {
    const apis = resourcesOf(synth.json.Ingest!, "AWS::ApiGatewayV2::Api");
    expect(apis).toHaveLength(1);
    expect(apis[0]![1].ProtocolType).toBe("HTTP");
    expect(apis[0]![1].CorsConfiguration).toBeUndefined();
  });

  it.each([
    ["POST /v1/streams/{stream}/events", "NONE"],
    ["GET /healthz", "NONE"],
  ])("routes %s to ingest-http with authorization %s", (routeKey, authorization) => {
    const route = routes(synth, "Ingest")[routeKey];
    expect(route, routeKey).toBeDefined();
    expect(route!.AuthorizationType).toBe(authorization);
    expect(refersTo(routeFunction(synth, "Ingest", routeKey), "IngestHttpFunction")).toBe(true);
  });

  it.each(["POST /v1/producers", "POST /v1/producers/{id}/revoke"])(
    "routes %s to producer-admin (its own role) with authorization AWS_IAM",
    (routeKey) => {
      const route = routes(synth, "ProducerAdmin")[routeKey];
      expect(route, routeKey).toBeDefined();
      expect(route!.AuthorizationType).toBe("AWS_IAM");
      expect(refersTo(routeFunction(synth, "ProducerAdmin", routeKey), "ProducerAdminFunction")).toBe(true);
    },
  );

  it("has no other routes in the Ingest stack", () => {
    expect(Object.keys(routes(synth, "Ingest")).sort()).toEqual(
      ["GET /healthz", "POST /v1/streams/{stream}/events"].sort(),
    );
  });

  it("throttles every route and writes JSON access logs that name the IAM caller", () => {
    const [[, stage]] = resourcesOf(synth.json.Ingest!, "AWS::ApiGatewayV2::Stage") as [
      [string, Record<string, unknown>],
    ];
    expect(stage.StageName).toBe("$default");
    expect(stage.DefaultRouteSettings).toMatchObject({
      ThrottlingRateLimit: 1000,
      ThrottlingBurstLimit: 2000,
    });
    const logs = stage.AccessLogSettings as { DestinationArn: unknown; Format: string };
    expect(refersTo(logs.DestinationArn, "ApiAccessLogs")).toBe(true);
    expect(JSON.parse(logs.Format)).toMatchObject({
      callerArn: "$context.identity.userArn",
      status: "$context.status",
    });
  });

  it("offers operators a managed policy for exactly the producer administration routes", () => {
    const [[, policy]] = resourcesOf(synth.json.Ingest!, "AWS::IAM::ManagedPolicy").filter(([id]) =>
      id.startsWith("ProducerAdmins"),
    ) as [[string, Record<string, unknown>]];
    const [statement] = (policy.PolicyDocument as { Statement: { Action: string; Resource: unknown[] }[] })
      .Statement;
    expect(statement!.Action).toBe("execute-api:Invoke");
    expect(statement!.Resource.map((r) => flatText(r).replace(/^.*Api[0-9A-F]{8}/, ""))).toEqual([
      "/$default/POST/v1/producers",
      "/$default/POST/v1/producers/*/revoke",
    ]);
  });
});

describe("EventBridge ingest", () => {
  const bus = () => {
    const buses = resourcesOf(synth.json.Ingest!, "AWS::Events::EventBus");
    expect(buses).toHaveLength(1);
    return buses[0]!;
  };
  const rule = () => {
    const rules = resourcesOf(synth.json.Ingest!, "AWS::Events::Rule").filter(([id]) =>
      id.startsWith("IngestRule"),
    );
    expect(rules).toHaveLength(1);
    return rules[0]![1];
  };
  const queues = () => Object.fromEntries(resourcesOf(synth.json.Ingest!, "AWS::SQS::Queue"));
  const mainQueueId = () => Object.keys(queues()).find((id) => id.startsWith("IngestQueue"))!;
  const deadLetterId = () => Object.keys(queues()).find((id) => id.startsWith("IngestDeadLetters"))!;

  it("has a dedicated bus named after the stage", () => {
    expect(bus()[1].Name).toBe(`auditsink-${STAGE}-ingest`);
  });

  it("lets each allowed producer account, and only those, put events on the bus", () => {
    const policies = resourcesOf(synth.json.Ingest!, "AWS::Events::EventBusPolicy").map(([, p]) => p);
    const grants = policies.map((p) => {
      const statement = p.Statement as {
        Effect: string;
        Action: string;
        Principal: { AWS: unknown };
        Resource: unknown;
      };
      expect(statement.Effect).toBe("Allow");
      expect(statement.Action).toBe("events:PutEvents");
      expect(refersTo(p.EventBusName, "Bus")).toBe(true);
      expect(refersTo(statement.Resource, "Bus")).toBe(true);
      return flatText(statement.Principal.AWS);
    });
    expect(grants.sort()).toEqual([
      "arn:AWS::Partition:iam::111122223333:root",
      "arn:AWS::Partition:iam::444455556666:root",
    ]);
  });

  it("has no bus policy when no producer account is allowed", () => {
    expect(resourcesOf(minimal.json.Ingest!, "AWS::Events::EventBusPolicy")).toEqual([]);
  });

  it("routes audit events from the deploying and allowed accounts to the ingest queue, with a DLQ and retries", () => {
    const r = rule();
    expect(refersTo(r.EventBusName, "Bus")).toBe(true);
    expect(r.EventPattern).toEqual({
      "detail-type": ["auditsink.event"],
      account: [{ Ref: "AWS::AccountId" }, "111122223333", "444455556666"],
    });
    const [target] = r.Targets as {
      Arn: unknown;
      DeadLetterConfig: { Arn: unknown };
      RetryPolicy: unknown;
    }[];
    expect(refersTo(target!.Arn, "IngestQueue")).toBe(true);
    expect(refersTo(target!.DeadLetterConfig.Arn, "IngestDeadLetters")).toBe(true);
    expect(target!.RetryPolicy).toEqual({ MaximumRetryAttempts: 185, MaximumEventAgeInSeconds: 86400 });
  });

  it("sends messages that fail five times to the dead-letter queue", () => {
    const queue = queues()[mainQueueId()]!;
    expect(queue.RedrivePolicy).toEqual({
      deadLetterTargetArn: { "Fn::GetAtt": [deadLetterId(), "Arn"] },
      maxReceiveCount: 5,
    });
    expect(queues()[deadLetterId()]!.MessageRetentionPeriod).toBe(14 * 24 * 3600);
  });

  it("encrypts both queues and refuses non-TLS access to them", () => {
    for (const [id, queue] of Object.entries(queues())) {
      expect(queue.SqsManagedSseEnabled, id).toBe(true);
      const policies = resourcesOf(synth.json.Ingest!, "AWS::SQS::QueuePolicy").filter(([, p]) =>
        JSON.stringify(p.Queues).includes(id),
      );
      expect(JSON.stringify(policies), id).toContain('"aws:SecureTransport":"false"');
    }
  });

  it("only the rule may send to the queues", () => {
    for (const [, policy] of resourcesOf(synth.json.Ingest!, "AWS::SQS::QueuePolicy")) {
      const allows = (
        policy.PolicyDocument as { Statement: { Effect: string; Principal: unknown; Condition: unknown }[] }
      ).Statement.filter((s) => s.Effect === "Allow");
      for (const allow of allows) {
        expect(allow.Principal).toEqual({ Service: "events.amazonaws.com" });
        expect(refersTo(allow.Condition, "IngestRule")).toBe(true);
      }
    }
  });

  it("feeds ingest-queue in batches with partial batch failure reporting", () => {
    const mappings = resourcesOf(synth.json.Ingest!, "AWS::Lambda::EventSourceMapping").filter(([, m]) =>
      refersTo(m.EventSourceArn, "IngestQueue"),
    );
    expect(mappings).toHaveLength(1);
    const [, mapping] = mappings[0]!;
    expect(refersTo(mapping.FunctionName, "IngestQueueFunction")).toBe(true);
    expect(mapping.FunctionResponseTypes).toEqual(["ReportBatchItemFailures"]);
    expect(mapping.BatchSize).toBe(100);
  });

  it("gives the queue a visibility timeout of at least six times the function timeout", () => {
    const fn = resourcesOf(synth.json.Ingest!, "AWS::Lambda::Function").find(([id]) =>
      id.startsWith("IngestQueueFunction"),
    )![1];
    expect(queues()[mainQueueId()]!.VisibilityTimeout).toBeGreaterThanOrEqual(6 * (fn.Timeout as number));
  });
});

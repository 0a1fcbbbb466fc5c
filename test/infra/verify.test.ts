/**
 * Watching the sink: the verifier's schedule, the alerts topic, the alarms and the dashboard.
 */
import { METRICS } from "@auditsink/core";
import { beforeAll, describe, expect, it } from "vitest";
import { SETTINGS, STAGE } from "./fixtures.ts";
import { flatText, refersTo } from "./policy.ts";
import { resourcesOf, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
let minimal: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
  minimal = await synthesize(`${STAGE}-quiet`, { verifierIntervalMinutes: 15 });
});

const alarms = (s: Synth) => resourcesOf(s.json.Verify!, "AWS::CloudWatch::Alarm").map(([, p]) => p);
const alarmOn = (s: Synth, metricName: string) => {
  const found = alarms(s).filter((a) => a.MetricName === metricName);
  expect(found, metricName).toHaveLength(1);
  return found[0]!;
};
const scheduleRules = (s: Synth) =>
  resourcesOf(s.json.Verify!, "AWS::Events::Rule").filter(([, r]) => r.ScheduleExpression !== undefined);
const patternRules = (s: Synth) =>
  resourcesOf(s.json.Verify!, "AWS::Events::Rule")
    .filter(([, r]) => r.EventPattern !== undefined)
    .map(([id, r]) => ({ id, rule: r, pattern: r.EventPattern as Record<string, unknown> }));
const notifiesTopic = (alarm: Record<string, unknown>) =>
  refersTo(alarm.AlarmActions, "Alerts") && refersTo(alarm.OKActions, "Alerts");

describe("verifier schedule", () => {
  it("runs the verifier every 5 minutes by default", () => {
    const rules = scheduleRules(synth);
    expect(rules).toHaveLength(1);
    const [, rule] = rules[0]!;
    expect(rule.ScheduleExpression).toBe("rate(5 minutes)");
    expect(rule.State).toBe("ENABLED");
    const [target] = rule.Targets as { Arn: unknown }[];
    expect(refersTo(target!.Arn, "VerifierFunction")).toBe(true);
  });

  it("follows the stage's interval, and the verifier stops before the next run starts", () => {
    const [[, rule]] = scheduleRules(minimal) as [[string, Record<string, unknown>]];
    expect(rule.ScheduleExpression).toBe("rate(15 minutes)");
    const [, fn] = resourcesOf(minimal.json.Verify!, "AWS::Lambda::Function").find(([id]) =>
      id.startsWith("VerifierFunction"),
    )!;
    expect(fn.Timeout).toBeLessThan(15 * 60);
  });
});

describe("alerts topic", () => {
  it("is encrypted with a customer-managed key that rotates and refuses non-TLS publishing", () => {
    const [[, topic]] = resourcesOf(synth.json.Verify!, "AWS::SNS::Topic") as [
      [string, Record<string, unknown>],
    ];
    expect(refersTo(topic.KmsMasterKeyId, "AlertsKey")).toBe(true);
    const [[, key]] = resourcesOf(synth.json.Verify!, "AWS::KMS::Key") as [[string, Record<string, unknown>]];
    expect(key.EnableKeyRotation).toBe(true);
    const [[, policy]] = resourcesOf(synth.json.Verify!, "AWS::SNS::TopicPolicy") as [
      [string, Record<string, unknown>],
    ];
    expect(JSON.stringify(policy.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
  });

  it("lets CloudWatch publish only for this account's alarms", () => {
    const [[, policy]] = resourcesOf(synth.json.Verify!, "AWS::SNS::TopicPolicy") as [
      [string, Record<string, unknown>],
    ];
    const allows = (
      policy.PolicyDocument as { Statement: { Effect: string; Principal: unknown; Condition: unknown }[] }
    ).Statement.filter(
      (s) => s.Effect === "Allow" && JSON.stringify(s.Principal).includes("cloudwatch.amazonaws.com"),
    );
    expect(allows).toHaveLength(1);
    expect(allows[0]!.Principal).toEqual({ Service: "cloudwatch.amazonaws.com" });
    expect(allows[0]!.Condition).toMatchObject({ StringEquals: { "aws:SourceAccount": "123456789012" } });
    expect(flatText(allows[0]!.Condition)).toContain(":cloudwatch:eu-central-1:123456789012:alarm:*");
  });

  it("mails the stage's alert address when one is set", () => {
    const subscriptions = resourcesOf(synth.json.Verify!, "AWS::SNS::Subscription").map(([, p]) => p);
    expect(subscriptions).toHaveLength(1);
    expect(subscriptions[0]).toMatchObject({ Protocol: "email", Endpoint: "secops@example.com" });
    expect(refersTo(subscriptions[0]!.TopicArn, "Alerts")).toBe(true);
  });

  it("has no subscription when no alert address is set", () => {
    expect(resourcesOf(minimal.json.Verify!, "AWS::SNS::Subscription")).toEqual([]);
  });
});

describe("alarms", () => {
  it("fires on any integrity failure reported by this stage's verifier", () => {
    const alarm = alarmOn(synth, "IntegrityFailures");
    expect(alarm).toMatchObject({
      Namespace: "auditsink",
      Dimensions: [{ Name: "service", Value: `verifier-${STAGE}` }],
      Statistic: "Sum",
      ComparisonOperator: "GreaterThanThreshold",
      Threshold: 0,
      EvaluationPeriods: 1,
    });
    expect(notifiesTopic(alarm)).toBe(true);
  });

  it("fires when the verifier stops reporting, treating missing data as breaching", () => {
    const alarm = alarmOn(synth, METRICS.verifierRuns.name);
    expect(alarm).toMatchObject({
      Namespace: "auditsink",
      Dimensions: [{ Name: "service", Value: `verifier-${STAGE}` }],
      Statistic: "Sum",
      Period: 300,
      ComparisonOperator: "LessThanThreshold",
      Threshold: 1,
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
      TreatMissingData: "breaching",
    });
    expect(notifiesTopic(alarm)).toBe(true);
  });

  it("fires on any runtime integrity alert of the sequencer, producer-admin, ingest-http or query", () => {
    const found = alarms(synth).filter((a) =>
      JSON.stringify(a.Metrics ?? []).includes('"IntegrityFailures"'),
    );
    expect(found).toHaveLength(1);
    const metrics = found[0]!.Metrics as { Expression?: string; MetricStat?: { Metric: unknown } }[];
    const services = metrics
      .filter((m) => m.MetricStat)
      .map(
        (m) =>
          (m.MetricStat!.Metric as { Dimensions: { Value: string }[]; MetricName: string }).Dimensions[0]!
            .Value,
      );
    expect(services.sort()).toEqual(
      ["ingest-http", "producer-admin", "query", "sequencer"].map((s) => `${s}-${STAGE}`),
    );
    expect(metrics.find((m) => m.Expression)?.Expression).toBe(
      "FILL(m0, 0) + FILL(m1, 0) + FILL(m2, 0) + FILL(m3, 0)",
    );
    expect(found[0]).toMatchObject({
      ComparisonOperator: "GreaterThanThreshold",
      Threshold: 0,
      TreatMissingData: "notBreaching",
    });
    expect(notifiesTopic(found[0]!)).toBe(true);
  });

  it("fires on ingest errors from either ingest function", () => {
    const found = alarms(synth).filter((a) =>
      JSON.stringify(a.Metrics ?? []).includes(`"${METRICS.eventsRejected.name}"`),
    );
    expect(found).toHaveLength(1);
    const metrics = found[0]!.Metrics as {
      Id: string;
      Expression?: string;
      MetricStat?: { Metric: unknown };
    }[];
    const services = metrics
      .filter((m) => m.MetricStat)
      .map(
        (m) =>
          (m.MetricStat!.Metric as { Dimensions: { Value: string }[]; Namespace: string }).Dimensions[0]!
            .Value,
      );
    expect(services.sort()).toEqual([`ingest-http-${STAGE}`, `ingest-queue-${STAGE}`]);
    expect(metrics.find((m) => m.Expression)?.Expression).toBe("FILL(http, 0) + FILL(queue, 0)");
    expect(found[0]).toMatchObject({ ComparisonOperator: "GreaterThanThreshold", Threshold: 0 });
    expect(notifiesTopic(found[0]!)).toBe(true);
  });

  it.each(["IngestDeadLetters", "ArchiveChangesDeadLetters"])(
    "fires when a message waits in the dead-letter queue %s",
    (queue) => {
      const found = alarms(synth).filter(
        (a) => a.MetricName === "ApproximateNumberOfMessagesVisible" && refersTo(a.Dimensions, queue),
      );
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({
        Namespace: "AWS/SQS",
        ComparisonOperator: "GreaterThanThreshold",
        Threshold: 0,
      });
      expect(notifiesTopic(found[0]!)).toBe(true);
    },
  );

  it.each([
    "IngestHttpFunction",
    "IngestQueueFunction",
    "ProducerAdminFunction",
    "QueryFunction",
    "VerifierFunction",
  ])("fires when %s fails", (fn) => {
    const found = alarms(synth).filter((a) => a.MetricName === "Errors" && refersTo(a.Dimensions, fn));
    expect(found).toHaveLength(1);
    expect(notifiesTopic(found[0]!)).toBe(true);
  });
});

describe("dashboard", () => {
  it.each([
    [METRICS.eventsAccepted.name],
    [METRICS.commitDuration.name],
    [METRICS.commitBatchSize.name],
    [METRICS.verifierRuns.name],
    ["IntegrityFailures"],
    [METRICS.eventsRejected.name],
    ["ApproximateNumberOfMessagesVisible"],
  ])("charts %s", (metric) => {
    const [[, dashboard]] = resourcesOf(synth.json.Verify!, "AWS::CloudWatch::Dashboard") as [
      [string, Record<string, unknown>],
    ];
    expect(flatText(dashboard.DashboardBody)).toContain(`"${metric}"`);
  });
});

describe("verifier function", () => {
  const verifierFunction = () =>
    resourcesOf(synth.json.Verify!, "AWS::Lambda::Function").find(([id]) =>
      id.startsWith("VerifierFunction"),
    )![1];

  it("never runs twice at once (reserved concurrency 1)", () => {
    expect(verifierFunction().ReservedConcurrentExecutions).toBe(1);
  });

  it("is told where archive changes arrive and which keys are pinned", () => {
    const env = (verifierFunction().Environment as { Variables: Record<string, unknown> }).Variables;
    expect(refersTo(env.ARCHIVE_CHANGES_QUEUE_URL, "ArchiveChanges")).toBe(true);
    expect(env.TRUSTED_KEY_FINGERPRINTS).toBe("");
  });
});

describe("archive change notifications", () => {
  it("sends every object created or deleted in the archive bucket to the verifier's change queue", () => {
    const found = patternRules(synth).filter(({ rule }) => refersTo(rule.Targets, "ArchiveChanges"));
    expect(found).toHaveLength(1);
    const { pattern, rule } = found[0]!;
    expect(pattern.source).toEqual(["aws.s3"]);
    expect(pattern["detail-type"]).toEqual(["Object Created", "Object Deleted"]);
    expect(refersTo(pattern.detail, "Archive")).toBe(true);
    expect(refersTo(rule.Targets, "ArchiveChangesDeadLetters")).toBe(true);
  });

  it("keeps the change queue encrypted and TLS-only, with a dead-letter queue", () => {
    const queues = resourcesOf(synth.json.Verify!, "AWS::SQS::Queue");
    const changes = queues.find(([id]) => /^ArchiveChanges[0-9A-F]{8}$/.test(id))![1];
    expect(changes.SqsManagedSseEnabled).toBe(true);
    expect(refersTo(changes.RedrivePolicy, "ArchiveChangesDeadLetters")).toBe(true);
    const policies = resourcesOf(synth.json.Verify!, "AWS::SQS::QueuePolicy").map(([, p]) =>
      JSON.stringify(p),
    );
    expect(
      policies.some((p) => p.includes('"aws:SecureTransport":"false"') && p.includes("ArchiveChanges")),
    ).toBe(true);
  });

  it("alerts at once on any deletion in the archive", () => {
    const found = patternRules(synth).filter(
      ({ pattern, rule }) =>
        JSON.stringify(pattern["detail-type"]) === '["Object Deleted"]' && refersTo(rule.Targets, "Alerts"),
    );
    expect(found).toHaveLength(1);
    expect(refersTo(found[0]!.pattern.detail, "Archive")).toBe(true);
  });
});

describe("control-plane alarms (CloudTrail management events)", () => {
  const controlPlaneRule = (source: string) => {
    const found = patternRules(synth).filter(
      ({ pattern }) =>
        JSON.stringify(pattern.source) === JSON.stringify([source]) &&
        JSON.stringify(pattern["detail-type"]) === '["AWS API Call via CloudTrail"]',
    );
    expect(found).toHaveLength(1);
    expect(refersTo(found[0]!.rule.Targets, "Alerts")).toBe(true);
    return found[0]!.pattern.detail as Record<string, unknown>;
  };

  it("alerts on the signing key's policy, disabling, deletion and grants, for this key only", () => {
    const detail = controlPlaneRule("aws.kms");
    expect(detail.eventName).toEqual(
      expect.arrayContaining(["PutKeyPolicy", "DisableKey", "ScheduleKeyDeletion", "CreateGrant"]),
    );
    expect(flatText(detail.resources)).toMatch(/SigningKey/);
  });

  it("alerts on the archive's bucket policy, Object Lock, versioning and public access block, for this bucket only", () => {
    const detail = controlPlaneRule("aws.s3");
    expect(detail.eventName).toEqual(
      expect.arrayContaining([
        "PutBucketPolicy",
        "DeleteBucketPolicy",
        "PutObjectLockConfiguration",
        "PutBucketVersioning",
        "PutBucketPublicAccessBlock",
        "DeleteBucketPublicAccessBlock",
      ]),
    );
    expect(flatText(detail.requestParameters)).toMatch(/Archive/);
  });

  it("publish through a role only this account's EventBridge rules may assume, not a service-wide grant", () => {
    const roles = resourcesOf(synth.json.Verify!, "AWS::IAM::Role").filter(([id]) =>
      id.startsWith("AlertRulesRole"),
    );
    expect(roles).toHaveLength(1);
    const [roleId, role] = roles[0]!;
    expect((role.AssumeRolePolicyDocument as { Statement: unknown[] }).Statement).toEqual([
      expect.objectContaining({
        Principal: { Service: "events.amazonaws.com" },
        Condition: { StringEquals: { "aws:SourceAccount": "123456789012" } },
      }),
    ]);
    for (const { rule } of patternRules(synth).filter(({ rule }) => refersTo(rule.Targets, "Alerts")))
      expect(JSON.stringify(rule.Targets)).toContain(roleId);
    const [[, key]] = resourcesOf(synth.json.Verify!, "AWS::KMS::Key") as [[string, Record<string, unknown>]];
    const [[, topicPolicy]] = resourcesOf(synth.json.Verify!, "AWS::SNS::TopicPolicy") as [
      [string, Record<string, unknown>],
    ];
    expect(JSON.stringify(key.KeyPolicy)).not.toContain("events.amazonaws.com");
    expect(JSON.stringify(topicPolicy.PolicyDocument)).not.toContain("events.amazonaws.com");
  });
});

describe("ingest bus archive", () => {
  it("keeps every audit event the ingest bus accepted for 30 days, for replay", () => {
    const archives = resourcesOf(synth.json.Verify!, "AWS::Events::Archive");
    expect(archives).toHaveLength(1);
    const [, archive] = archives[0]!;
    expect(archive.RetentionDays).toBe(30);
    expect(refersTo(archive.SourceArn, "Bus")).toBe(true);
    expect((archive.EventPattern as Record<string, unknown>)["detail-type"]).toEqual(["auditsink.event"]);
  });
});

/**
 * Watching the sink: the verifier's schedule, the alerts topic, the alarms and the dashboard.
 */
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
const notifiesTopic = (alarm: Record<string, unknown>) =>
  refersTo(alarm.AlarmActions, "Alerts") && refersTo(alarm.OKActions, "Alerts");

describe("verifier schedule", () => {
  it("runs the verifier every 5 minutes by default", () => {
    const rules = resourcesOf(synth.json.Verify!, "AWS::Events::Rule");
    expect(rules).toHaveLength(1);
    const [, rule] = rules[0]!;
    expect(rule.ScheduleExpression).toBe("rate(5 minutes)");
    expect(rule.State).toBe("ENABLED");
    const [target] = rule.Targets as { Arn: unknown }[];
    expect(refersTo(target!.Arn, "VerifierFunction")).toBe(true);
  });

  it("follows the stage's interval, and the verifier stops before the next run starts", () => {
    const [[, rule]] = resourcesOf(minimal.json.Verify!, "AWS::Events::Rule") as [
      [string, Record<string, unknown>],
    ];
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
    ).Statement.filter((s) => s.Effect === "Allow");
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
    const alarm = alarmOn(synth, "VerifierRuns");
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

  it("fires on ingest errors from either ingest function", () => {
    const found = alarms(synth).filter((a) => JSON.stringify(a.Metrics ?? []).includes('"IngestErrors"'));
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

  it("fires when a message waits in the dead-letter queue", () => {
    const alarm = alarmOn(synth, "ApproximateNumberOfMessagesVisible");
    expect(alarm).toMatchObject({
      Namespace: "AWS/SQS",
      ComparisonOperator: "GreaterThanThreshold",
      Threshold: 0,
    });
    expect(refersTo(alarm.Dimensions, "IngestDeadLetters")).toBe(true);
    expect(notifiesTopic(alarm)).toBe(true);
  });

  it.each(["IngestHttpFunction", "IngestQueueFunction", "QueryFunction", "VerifierFunction"])(
    "fires when %s fails",
    (fn) => {
      const found = alarms(synth).filter((a) => a.MetricName === "Errors" && refersTo(a.Dimensions, fn));
      expect(found).toHaveLength(1);
      expect(notifiesTopic(found[0]!)).toBe(true);
    },
  );
});

describe("dashboard", () => {
  it.each([
    ["EventsCommitted"],
    ["CommitLatency"],
    ["VerifierRuns"],
    ["IntegrityFailures"],
    ["IngestErrors"],
    ["ApproximateNumberOfMessagesVisible"],
  ])("charts %s", (metric) => {
    const [[, dashboard]] = resourcesOf(synth.json.Verify!, "AWS::CloudWatch::Dashboard") as [
      [string, Record<string, unknown>],
    ];
    expect(flatText(dashboard.DashboardBody)).toContain(`"${metric}"`);
  });
});

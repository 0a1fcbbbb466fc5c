import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cwActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import { type Function as SstFunction, type StackContext, use } from "sst/constructs";
import { Archive } from "./Archive.ts";
import { Audit } from "./Audit.ts";
import { Ingest } from "./Ingest.ts";
import { Ledger } from "./Ledger.ts";
import { sinkFunction } from "./lambda.ts";
import { METRICS_NAMESPACE, serviceName, useSettings } from "./naming.ts";
import {
  ARCHIVE_PROTECTED_ACTIONS,
  archiveReadOnly,
  archiveReadStatements,
  keyProtections,
  LEDGER_READ_ACTIONS,
  ledgerProtections,
  noSigning,
} from "./policies.ts";
import { Signing } from "./Signing.ts";

/**
 * Verifier alert events go to the account's default event bus, not the ingest bus: the ingest rule forwards
 * everything on the ingest bus into the ingest queue, and an alert must never become an audit event.
 */
export const ALERT_EVENT_BUS = "default";

/** Partition keys of the ledger items the verifier writes (packages/aws/src/ledger-table.ts). */
export const VERIFIER_PARTITIONS = ["stream#*", "verifier"];

/** Verifier runs may be missed this many times in a row before "verifier not reporting" fires. */
const VERIFIER_MISSED_RUNS_TOLERATED = 2;

/**
 * Watching the sink: the scheduled verifier, the alerts topic, the alarms (PCI DSS 10.7.2: failures of
 * critical security controls are detected and reported) and the dashboard.
 */
export function Verify({ app, stack }: StackContext) {
  const settings = useSettings(app);
  const { archive } = use(Archive);
  const { table } = use(Ledger);
  const { signingKeyArn } = use(Signing);
  const { deadLetters, ingestHttp, ingestQueue } = use(Ingest);
  const { query } = use(Audit);

  // ---- Alerts topic ----
  // SNS encryption needs a customer-managed key: CloudWatch alarms cannot publish to a topic under aws/sns.
  const alertsKey = new kms.Key(stack, "AlertsKey", {
    description: `auditsink ${app.stage}: encrypts the alerts topic`,
    enableKeyRotation: true,
    pendingWindow: Duration.days(30),
    removalPolicy: RemovalPolicy.RETAIN,
  });
  // Who may publish is decided by the topic policy below (CloudWatch, for this account's alarms only); the key
  // only has to let CloudWatch encrypt what it publishes.
  alertsKey.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: "CloudWatchAlarmsEncrypt",
      principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
      actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
      resources: ["*"],
    }),
  );
  const topic = new sns.Topic(stack, "Alerts", {
    displayName: `auditsink ${app.stage} alerts`,
    masterKey: alertsKey,
    enforceSSL: true,
  });
  topic.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: "CloudWatchAlarmsPublish",
      principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
      actions: ["sns:Publish"],
      resources: [topic.topicArn],
      conditions: {
        StringEquals: { "aws:SourceAccount": stack.account },
        ArnLike: {
          "aws:SourceArn": `arn:${stack.partition}:cloudwatch:${stack.region}:${stack.account}:alarm:*`,
        },
      },
    }),
  );
  if (settings.alertEmail) topic.addSubscription(new subscriptions.EmailSubscription(settings.alertEmail));

  // ---- Verifier ----
  const verifier = sinkFunction(stack, "verifier", {
    resources: { archiveBucketName: archive.bucketName, ledgerTableName: table.tableName, signingKeyArn },
    description: "auditsink verifier: recomputes chains, trees and checkpoints from the archive and alerts",
    // Shorter than the schedule's interval so that runs do not pile up.
    timeout: Math.min(settings.verifierIntervalMinutes * 60 - 10, 900),
    memorySize: 1024,
    environment: { ALERTS_TOPIC_ARN: topic.topicArn, EVENT_BUS_NAME: ALERT_EVENT_BUS },
    statements: [
      ...archiveReadStatements(archive),
      new iam.PolicyStatement({
        sid: "ReadLedger",
        actions: LEDGER_READ_ACTIONS,
        resources: [table.tableArn, `${table.tableArn}/index/*`],
      }),
      // Per-stream watermarks and the run cursor only: items keyed `stream#<name>` and `verifier` (see
      // packages/aws/src/ledger-table.ts). Producers, keys and dedup entries stay out of the verifier's reach.
      new iam.PolicyStatement({
        sid: "WriteWatermarks",
        actions: ["dynamodb:PutItem", "dynamodb:UpdateItem"],
        resources: [table.tableArn],
        conditions: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": VERIFIER_PARTITIONS } },
      }),
      new iam.PolicyStatement({
        sid: "CheckSigningKey",
        actions: ["kms:DescribeKey", "kms:GetPublicKey"],
        resources: [signingKeyArn],
      }),
      // The IntegrityFailures metric is also put directly, so an alarm fires even if the logs are delayed.
      new iam.PolicyStatement({
        sid: "PutIntegrityMetric",
        actions: ["cloudwatch:PutMetricData"],
        resources: ["*"],
        conditions: { StringEquals: { "cloudwatch:namespace": METRICS_NAMESPACE } },
      }),
      new iam.PolicyStatement({
        sid: "PublishAlertEvents",
        actions: ["events:PutEvents"],
        resources: [
          `arn:${stack.partition}:events:${stack.region}:${stack.account}:event-bus/${ALERT_EVENT_BUS}`,
        ],
      }),
      archiveReadOnly({ kind: "identity" }, archive.bucketArn),
      new iam.PolicyStatement({
        sid: "DenyArchiveDeleteUnlockReconfigure",
        effect: iam.Effect.DENY,
        actions: ARCHIVE_PROTECTED_ACTIONS,
        resources: [archive.bucketArn, archive.arnForObjects("*")],
      }),
      ledgerProtections(table.tableArn),
      noSigning(signingKeyArn),
      keyProtections(signingKeyArn),
    ],
  });
  topic.grantPublish(verifier.role);

  new events.Rule(stack, "VerifierSchedule", {
    description: "Runs the verifier",
    schedule: events.Schedule.rate(Duration.minutes(settings.verifierIntervalMinutes)),
    targets: [
      new targets.LambdaFunction(verifier.fn, { retryAttempts: 2, maxEventAge: Duration.minutes(10) }),
    ],
  });

  // ---- Metrics ----
  const period = Duration.minutes(5);
  const metric = (name: string, service: string, statistic = "Sum", metricPeriod = period) =>
    new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: name,
      dimensionsMap: { service },
      statistic,
      period: metricPeriod,
    });
  const ingestServices = [serviceName(app, "ingest-http"), serviceName(app, "ingest-queue")];
  const verifierService = serviceName(app, "verifier");
  const sumOverIngest = (name: string, label: string) =>
    new cloudwatch.MathExpression({
      expression: "FILL(http, 0) + FILL(queue, 0)",
      usingMetrics: { http: metric(name, ingestServices[0]!), queue: metric(name, ingestServices[1]!) },
      label,
      period,
    });

  const integrityFailures = metric("IntegrityFailures", verifierService);
  const verifierRuns = metric(
    "VerifierRuns",
    verifierService,
    "Sum",
    Duration.minutes(settings.verifierIntervalMinutes),
  );
  const ingestErrors = sumOverIngest("IngestErrors", "Ingest errors");
  const eventsCommitted = sumOverIngest("EventsCommitted", "Events committed");
  const deadLettered = deadLetters.metricApproximateNumberOfMessagesVisible({ period, statistic: "Maximum" });

  // ---- Alarms ----
  const notify = new cwActions.SnsAction(topic);
  const alarm = (id: string, props: cloudwatch.AlarmProps) => {
    const created = new cloudwatch.Alarm(stack, id, props);
    created.addAlarmAction(notify);
    created.addOkAction(notify);
    return created;
  };
  const alarms = [
    alarm("IntegrityFailuresAlarm", {
      alarmDescription: "The verifier found a gap, a fork, a changed or unlocked object, or a bad signature.",
      metric: integrityFailures,
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    alarm("VerifierNotReportingAlarm", {
      alarmDescription:
        "The verifier has not reported a run: the archive is not being checked. No data counts as breaching.",
      metric: verifierRuns,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: VERIFIER_MISSED_RUNS_TOLERATED + 1,
      datapointsToAlarm: VERIFIER_MISSED_RUNS_TOLERATED + 1,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    }),
    alarm("IngestErrorsAlarm", {
      alarmDescription: "Ingest failed to commit events (HTTP or EventBridge).",
      metric: ingestErrors,
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    alarm("DeadLettersAlarm", {
      alarmDescription: "Events from EventBridge could not be committed and wait in the dead-letter queue.",
      metric: deadLettered,
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    ...(
      [
        ["IngestHttp", ingestHttp],
        ["IngestQueue", ingestQueue],
        ["Query", query],
        ["Verifier", verifier.fn],
      ] as [string, SstFunction][]
    ).map(([name, fn]) =>
      alarm(`${name}FunctionErrorsAlarm`, {
        alarmDescription: `The ${name} function failed (uncaught errors or timeouts).`,
        metric: fn.metricErrors({ period, statistic: "Sum" }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    ),
  ];

  // ---- Dashboard ----
  const dashboard = new cloudwatch.Dashboard(stack, "Dashboard", {
    dashboardName: `${app.name}-${app.stage}-${app.region}`,
    defaultInterval: Duration.hours(24),
  });
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({ title: "Events committed", left: [eventsCommitted], width: 12 }),
    new cloudwatch.GraphWidget({
      title: "Commit latency (ms)",
      left: ingestServices.flatMap((service) => [
        metric("CommitLatency", service, "p50"),
        metric("CommitLatency", service, "p99"),
      ]),
      width: 12,
    }),
  );
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({ title: "Verifier runs", left: [verifierRuns], width: 8 }),
    new cloudwatch.GraphWidget({ title: "Integrity failures", left: [integrityFailures], width: 8 }),
    new cloudwatch.GraphWidget({
      title: "Ingest errors and dead letters",
      left: [ingestErrors, deadLettered],
      width: 8,
    }),
  );
  dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: "Alarms", alarms, width: 24 }));

  stack.addOutputs({
    AlertsTopicArn: topic.topicArn,
    DashboardName: dashboard.dashboardName,
  });
  return { topic, verifier: verifier.fn };
}

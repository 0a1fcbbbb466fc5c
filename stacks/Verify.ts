import { Aws, Duration, RemovalPolicy } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cwActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import * as sqs from "aws-cdk-lib/aws-sqs";
import { NagSuppressions } from "cdk-nag";
import { type Function as SstFunction, type StackContext, use } from "sst/constructs";
import { VERIFIER_ENV } from "../packages/aws/src/env-names.ts";
import { METRICS } from "../packages/core/src/metrics.ts";
import { Archive } from "./Archive.ts";
import { Audit } from "./Audit.ts";
import { AUDIT_EVENT_DETAIL_TYPE, Ingest } from "./Ingest.ts";
import { Ledger } from "./Ledger.ts";
import { sinkFunction } from "./lambda.ts";
import { METRICS_NAMESPACE, serviceName, useSettings } from "./naming.ts";
import { ProducerAdmin } from "./ProducerAdmin.ts";
import {
  ARCHIVE_PROTECTED_ACTIONS,
  archiveReadOnly,
  archiveReadStatements,
  eventIndexProtections,
  keyProtections,
  LEDGER_PARTITIONS,
  LEDGER_READ_ACTIONS,
  ledgerProtections,
  ledgerWrites,
  noSigning,
  runtimeAlertStatements,
} from "./policies.ts";
import { Signing } from "./Signing.ts";
import { witnessEnvironment } from "./settings.ts";

/**
 * Verifier alert events go to the account's default event bus, not the ingest bus: the ingest rule forwards
 * everything on the ingest bus into the ingest queue, and an alert must never become an audit event.
 */
export const ALERT_EVENT_BUS = "default";

/** Functions that send runtime alerts (core Sink's and the HTTP app's) to the IntegrityFailures metric. */
export const RUNTIME_ALERT_SERVICES = ["sequencer", "producer-admin", "ingest-http", "query"] as const;

/** Partition keys of the ledger items the verifier writes (packages/aws/src/ledger-table.ts). */
export const VERIFIER_PARTITIONS = LEDGER_PARTITIONS.verifier;

/**
 * S3 change notifications the verifier reads (through EventBridge, into the archive-changes queue): every
 * object created and every deletion, including delete markers, so changes to keys it passed long ago are seen
 * on the next run instead of on the next full sweep.
 */
export const ARCHIVE_CHANGE_DETAIL_TYPES = ["Object Created", "Object Deleted"];

/**
 * Control-plane calls (CloudTrail management events, through EventBridge) that could weaken the archive or the
 * signing key; each goes straight to the alerts topic. EventBridge receives these only while a CloudTrail trail
 * records management events in the region (docs/DEPLOY.md §Control-plane alarms).
 */
export const CONTROL_PLANE_EVENTS = {
  kms: [
    "PutKeyPolicy",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CreateGrant",
    "DeleteImportedKeyMaterial",
    "UpdateKeyDescription",
  ],
  s3: [
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "PutObjectLockConfiguration",
    "PutBucketVersioning",
    "PutBucketPublicAccessBlock",
    "DeleteBucketPublicAccessBlock",
    "PutBucketLifecycle",
    "PutBucketEncryption",
    "DeleteBucketEncryption",
    "PutBucketReplication",
    "PutBucketOwnershipControls",
    "PutBucketAcl",
    "PutBucketNotification",
  ],
};

/** How long the ingest bus keeps every audit event it received, for replay after a DLQ expiry or an outage. */
export const INGEST_ARCHIVE_RETENTION_DAYS = 30;

/** Verifier runs may be missed this many times in a row before "verifier not reporting" fires. */
const VERIFIER_MISSED_RUNS_TOLERATED = 2;

/**
 * Watching the sink: the scheduled verifier, the alerts topic, the alarms (PCI DSS 10.7.2: failures of
 * critical security controls are detected and reported) and the dashboard.
 */
export function Verify({ app, stack }: StackContext) {
  const settings = useSettings(app);
  const { archive } = use(Archive);
  const { table, eventIndex } = use(Ledger);
  const { signingKeyArn } = use(Signing);
  const { bus, deadLetters, ingestHttp, ingestQueue } = use(Ingest);
  const { query } = use(Audit);
  const { producerAdmin } = use(ProducerAdmin);

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
  // EventBridge rules publish to the topic through this role, which only this account's rules may assume; the
  // topic and its key then need no statement for the EventBridge service (which any account's rule could use).
  const alertRules = new iam.Role(stack, "AlertRulesRole", {
    description: `auditsink ${app.stage}: lets this account's EventBridge rules publish to the alerts topic`,
    assumedBy: new iam.ServicePrincipal("events.amazonaws.com").withConditions({
      StringEquals: { "aws:SourceAccount": stack.account },
    }),
  });
  topic.grantPublish(alertRules);
  NagSuppressions.addResourceSuppressions(
    alertRules,
    [
      {
        id: "AwsSolutions-IAM5",
        reason: "Publishing to the KMS-encrypted alerts topic needs kms:GenerateDataKey* on that one key.",
        appliesTo: ["Action::kms:GenerateDataKey*"],
      },
    ],
    true,
  );
  const toAlerts = (message: events.RuleTargetInput) =>
    new targets.SnsTopic(topic, { message, role: alertRules });
  if (settings.alertEmail) topic.addSubscription(new subscriptions.EmailSubscription(settings.alertEmail));

  // ---- Archive change notifications ----
  // Every object created or deleted in the archive (S3 → EventBridge, enabled on the bucket in Archive.ts) waits
  // here for the verifier's next run; what it cannot handle five times goes to the dead-letter queue (alarmed).
  const changeDeadLetters = new sqs.Queue(stack, "ArchiveChangesDeadLetters", {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  const changes = new sqs.Queue(stack, "ArchiveChanges", {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
    // The verifier hides what it received for 5 minutes (ReceiveMessage VisibilityTimeout) and deletes it once
    // its findings are stored.
    visibilityTimeout: Duration.minutes(5),
    deadLetterQueue: { queue: changeDeadLetters, maxReceiveCount: 5 },
  });
  new events.Rule(stack, "ArchiveChangesRule", {
    description: "Forwards every object created or deleted in the archive to the verifier's change queue",
    eventPattern: {
      source: ["aws.s3"],
      detailType: ARCHIVE_CHANGE_DETAIL_TYPES,
      detail: { bucket: { name: [archive.bucketName] } },
    },
    targets: [new targets.SqsQueue(changes, { deadLetterQueue: changeDeadLetters, retryAttempts: 185 })],
  });
  // The sink never deletes: any deletion in the archive (a delete marker included) is an alert at once.
  new events.Rule(stack, "ArchiveDeletionRule", {
    description: "Alerts at once on any deletion or delete marker in the archive",
    eventPattern: {
      source: ["aws.s3"],
      detailType: ["Object Deleted"],
      detail: { bucket: { name: [archive.bucketName] } },
    },
    targets: [
      toAlerts(
        events.RuleTargetInput.fromText(
          `auditsink ${app.stage}: ${events.EventField.fromPath("$.detail.deletion-type")} on ` +
            `${events.EventField.fromPath("$.detail.object.key")} in the archive (${events.EventField.fromPath("$.detail.bucket.name")})`,
        ),
      ),
    ],
  });

  // ---- Control-plane alarms ----
  const controlPlane = (id: string, source: string, eventSource: string, names: string[], detail: object) =>
    new events.Rule(stack, id, {
      description: `Alerts on ${eventSource} calls that could weaken the archive or the signing key`,
      eventPattern: {
        source: [source],
        detailType: ["AWS API Call via CloudTrail"],
        detail: { eventSource: [eventSource], eventName: names, ...detail },
      },
      targets: [
        toAlerts(
          events.RuleTargetInput.fromText(
            `auditsink ${app.stage}: ${events.EventField.fromPath("$.detail.eventName")} by ` +
              `${events.EventField.fromPath("$.detail.userIdentity.arn")} (error: ` +
              `${events.EventField.fromPath("$.detail.errorCode")})`,
          ),
        ),
      ],
    });
  controlPlane("SigningKeyControlPlaneRule", "aws.kms", "kms.amazonaws.com", CONTROL_PLANE_EVENTS.kms, {
    resources: { ARN: [signingKeyArn] },
  });
  controlPlane("ArchiveControlPlaneRule", "aws.s3", "s3.amazonaws.com", CONTROL_PLANE_EVENTS.s3, {
    requestParameters: { bucketName: [archive.bucketName] },
  });

  // ---- Ingest bus archive ----
  // Every audit event the bus accepted is kept for INGEST_ARCHIVE_RETENTION_DAYS, past the dead-letter queue's 14
  // days: an event that expired there, or an outage, can be replayed into the ingest queue (docs/DEPLOY.md §Replay).
  // Defined here, not in Ingest.ts, so that it follows the verifier's alarms it complements.
  new events.Archive(stack, "IngestBusArchive", {
    sourceEventBus: bus,
    description: "Every audit event accepted on the ingest bus, for replay",
    eventPattern: {
      detailType: [AUDIT_EVENT_DETAIL_TYPE],
      account: [Aws.ACCOUNT_ID, ...settings.producerAccounts],
    },
    retention: Duration.days(INGEST_ARCHIVE_RETENTION_DAYS),
  });

  // ---- Verifier ----
  const verifier = sinkFunction(stack, "verifier", {
    resources: {
      archiveBucketName: archive.bucketName,
      ledgerTableName: table.tableName,
      eventIndexTableName: eventIndex.tableName,
      signingKeyArn,
    },
    description: "auditsink verifier: recomputes chains, trees and checkpoints from the archive and alerts",
    // Shorter than the schedule's interval so that runs do not pile up.
    timeout: Math.min(settings.verifierIntervalMinutes * 60 - 10, 900),
    memorySize: 1024,
    environment: {
      ALERTS_TOPIC_ARN: topic.topicArn,
      EVENT_BUS_NAME: ALERT_EVENT_BUS,
      [VERIFIER_ENV.archiveChangesQueueUrl]: changes.queueUrl,
      [VERIFIER_ENV.trustedKeyFingerprints]: settings.trustedKeyFingerprints.join(","),
      // With witnesses, each run checks the witness policy (witness-policy-unmet).
      ...witnessEnvironment(settings),
    },
    statements: [
      ...archiveReadStatements(archive),
      new iam.PolicyStatement({
        sid: "ReadLedger",
        actions: LEDGER_READ_ACTIONS,
        resources: [table.tableArn, `${table.tableArn}/index/*`],
      }),
      // Its own state only: watermarks, findings and cursors (packages/aws/src/ledger-table.ts). Heads, producers,
      // keys and dedup entries stay out of the verifier's reach.
      ledgerWrites("WriteVerifierState", table.tableArn, VERIFIER_PARTITIONS, [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
      ]),
      new iam.PolicyStatement({
        sid: "ReadArchiveChanges",
        actions: [
          "sqs:ReceiveMessage",
          "sqs:DeleteMessage",
          "sqs:ChangeMessageVisibility",
          "sqs:GetQueueAttributes",
        ],
        resources: [changes.queueArn],
      }),
      new iam.PolicyStatement({
        sid: "CheckSigningKey",
        actions: ["kms:DescribeKey", "kms:GetPublicKey"],
        resources: [signingKeyArn],
      }),
      // The IntegrityFailures metric is also put directly, so an alarm fires even if the logs are delayed; alert
      // events go to the default bus (ALERT_EVENT_BUS), as the runtime functions' do.
      ...runtimeAlertStatements(stack),
      archiveReadOnly({ kind: "identity" }, archive.bucketArn),
      new iam.PolicyStatement({
        sid: "DenyArchiveDeleteUnlockReconfigure",
        effect: iam.Effect.DENY,
        actions: ARCHIVE_PROTECTED_ACTIONS,
        resources: [archive.bucketArn, archive.arnForObjects("*")],
      }),
      ...eventIndexProtections(eventIndex.tableArn, false),
      ...ledgerProtections(table.tableArn),
      noSigning(signingKeyArn),
      keyProtections(signingKeyArn),
    ],
  });
  topic.grantPublish(verifier.role);
  // One run at a time: runs share cursors and findings, and a second run would only repeat the first's work.
  // A scheduled invocation that finds one still running is throttled and retried by EventBridge.
  (verifier.fn.node.defaultChild as lambda.CfnFunction).reservedConcurrentExecutions = 1;

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
    METRICS.verifierRuns.name,
    verifierService,
    "Sum",
    Duration.minutes(settings.verifierIntervalMinutes),
  );
  const ingestErrors = sumOverIngest(METRICS.eventsRejected.name, "Events rejected");
  const eventsCommitted = sumOverIngest(METRICS.eventsAccepted.name, "Events accepted");
  const sequencerService = serviceName(app, "sequencer");
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
    alarm("RuntimeIntegrityFailuresAlarm", {
      alarmDescription:
        "A function found the sink's own state inconsistent (head-mismatch, store-mismatch: it refused to sign " +
        "and repaired from the archive) or read stored data that failed an integrity check.",
      metric: new cloudwatch.MathExpression({
        expression: RUNTIME_ALERT_SERVICES.map((_, i) => `FILL(m${i}, 0)`).join(" + "),
        usingMetrics: Object.fromEntries(
          RUNTIME_ALERT_SERVICES.map((s, i) => [`m${i}`, metric("IntegrityFailures", serviceName(app, s))]),
        ),
        label: "Runtime integrity failures",
        period,
      }),
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
      alarmDescription: "Ingest refused or failed to commit events (HTTP or EventBridge).",
      metric: ingestErrors,
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    alarm("ArchiveChangesDeadLettersAlarm", {
      alarmDescription:
        "Archive change notifications the verifier could not process wait in their dead-letter queue.",
      metric: changeDeadLetters.metricApproximateNumberOfMessagesVisible({ period, statistic: "Maximum" }),
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
        ["ProducerAdmin", producerAdmin],
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
    new cloudwatch.GraphWidget({ title: "Events accepted", left: [eventsCommitted], width: 8 }),
    new cloudwatch.GraphWidget({
      title: "Segment commit duration (s)",
      left: [
        metric(METRICS.commitDuration.name, sequencerService, "p50"),
        metric(METRICS.commitDuration.name, sequencerService, "p99"),
      ],
      width: 8,
    }),
    // How well the sequencers batch: commits (each one segment, one Sign, one head write) and events per commit.
    // Events per commit that stay near 1 under load mean the pending hand-off is not grouping.
    new cloudwatch.GraphWidget({
      title: "Sequencer commits and events per commit",
      left: [metric(METRICS.commitBatchSize.name, sequencerService, "SampleCount")],
      right: [
        metric(METRICS.commitBatchSize.name, sequencerService, "p50"),
        metric(METRICS.commitBatchSize.name, sequencerService, "Maximum"),
      ],
      width: 8,
    }),
  );
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({ title: "Verifier runs", left: [verifierRuns], width: 8 }),
    new cloudwatch.GraphWidget({ title: "Integrity failures", left: [integrityFailures], width: 8 }),
    new cloudwatch.GraphWidget({
      title: "Events rejected and dead letters",
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

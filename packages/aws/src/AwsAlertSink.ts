/**
 * Alerts out of the AWS runtime, three ways so that no single misconfigured channel silences them:
 *   - SNS: one message per alert (subject names the code) for people and ticketing;
 *   - EventBridge: one event per alert, `source` "auditsink", `detail-type` the failure code, for automation;
 *   - CloudWatch: the `IntegrityFailures` metric (count of alerts) that the stack's alarm watches.
 * `send` resolves only when all three accepted the alerts; otherwise it throws StoreError.
 * The scheduled verifier uses `report` instead: its findings are de-duplicated, so SNS and EventBridge carry only
 * findings seen for the first time, and the metric carries the number of open (unacknowledged) findings on
 * every run, so that the alarm stays in ALARM until each finding is acknowledged.
 */

import type { Alert, AlertSink } from "@auditsink/core";
import { type CloudWatchClient, PutMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { type EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import { PublishCommand, type SNSClient } from "@aws-sdk/client-sns";
import { storeFailure } from "./errors.ts";

export const ALERT_SOURCE = "auditsink";
export const INTEGRITY_FAILURES_METRIC = "IntegrityFailures";

export interface AwsAlertSinkOptions {
  sns: SNSClient;
  topicArn?: string;
  events: EventBridgeClient;
  eventBusName?: string;
  cloudwatch: CloudWatchClient;
  namespace: string;
  /** Value of the `service` dimension, as Powertools Metrics uses for the EMF metrics. */
  service: string;
  /** Deployment name, carried in every alert so one topic can serve several deployments. */
  deployment: string;
}

/** PutEvents takes at most 10 entries per call. */
const EVENTS_PER_CALL = 10;

export class AwsAlertSink implements AlertSink {
  constructor(private readonly o: AwsAlertSinkOptions) {}

  async send(alerts: readonly Alert[]): Promise<void> {
    if (alerts.length === 0) return;
    await Promise.all([...this.publish(alerts), this.putMetric(alerts.length)]);
  }

  /** Publishes `fresh` (SNS and EventBridge) and sets the metric to `openFindings`, even when it is 0. */
  async report(fresh: readonly Alert[], openFindings: number): Promise<void> {
    await Promise.all([...this.publish(fresh), this.putMetric(openFindings)]);
  }

  private publish(alerts: readonly Alert[]): Promise<unknown>[] {
    const detail = (a: Alert) => JSON.stringify({ deployment: this.o.deployment, ...a });
    const work: Promise<unknown>[] = [];
    if (this.o.topicArn) {
      for (const a of alerts) {
        work.push(
          this.o.sns
            .send(
              new PublishCommand({
                TopicArn: this.o.topicArn,
                Subject: `auditsink ${this.o.deployment}: ${a.code}`.slice(0, 100),
                Message: detail(a),
                MessageAttributes: { code: { DataType: "String", StringValue: a.code } },
              }),
            )
            .catch((e) => {
              throw storeFailure("SNS Publish", e);
            }),
        );
      }
    }
    for (let i = 0; i < alerts.length; i += EVENTS_PER_CALL) {
      const chunk = alerts.slice(i, i + EVENTS_PER_CALL);
      work.push(
        this.o.events
          .send(
            new PutEventsCommand({
              Entries: chunk.map((a) => ({
                Source: ALERT_SOURCE,
                DetailType: a.code,
                Detail: detail(a),
                Time: new Date(a.time),
                ...(this.o.eventBusName ? { EventBusName: this.o.eventBusName } : {}),
              })),
            }),
          )
          .then((out) => {
            if ((out.FailedEntryCount ?? 0) > 0)
              throw new Error(`${out.FailedEntryCount} events not accepted`);
          })
          .catch((e) => {
            throw storeFailure("EventBridge PutEvents", e);
          }),
      );
    }
    return work;
  }

  private putMetric(value: number): Promise<unknown> {
    return this.o.cloudwatch
      .send(
        new PutMetricDataCommand({
          Namespace: this.o.namespace,
          MetricData: [
            {
              MetricName: INTEGRITY_FAILURES_METRIC,
              Unit: "Count",
              Value: value,
              Dimensions: [{ Name: "service", Value: this.o.service }],
            },
          ],
        }),
      )
      .catch((e) => {
        throw storeFailure("CloudWatch PutMetricData", e);
      });
  }
}

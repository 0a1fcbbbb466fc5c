/**
 * cdk-nag's AwsSolutions pack runs over the whole app: no unsuppressed finding, and every suppression says why.
 * The synthesized templates are written under test/output/infra/<stage>/ for review.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as s3 from "aws-cdk-lib/aws-s3";
import type { StackContext } from "sst/constructs";
import { beforeAll, describe, expect, it } from "vitest";
import { auditsink } from "../../stacks/index.ts";
import { SETTINGS, STAGE } from "./fixtures.ts";
import { allResources, type Synth, synthesize, synthesizeWith } from "./synth.ts";

let synth: Synth;
let defaults: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
  defaults = await synthesize(`${STAGE}-defaults`, {});
});

interface Suppression {
  id: string;
  reason: string;
  applies_to?: unknown[];
}

const suppressions = (s: Synth) =>
  allResources(s).flatMap(({ stack, id, resource }) =>
    (
      ((resource.Metadata as { cdk_nag?: { rules_to_suppress?: Suppression[] } } | undefined)?.cdk_nag
        ?.rules_to_suppress ?? []) as Suppression[]
    ).map((rule) => ({ stack, resource: id, ...rule })),
  );

describe("cdk-nag AwsSolutions", () => {
  it("reports no unsuppressed error or warning, with production-like settings", () => {
    expect(synth.findings.filter((f) => f.level === "error")).toEqual([]);
    expect(synth.findings.filter((f) => f.level === "warning")).toEqual([]);
  });

  it("reports no unsuppressed error or warning, with default settings", () => {
    expect(defaults.findings.filter((f) => f.level === "error" || f.level === "warning")).toEqual([]);
  });

  it("really runs over every stack of the app: a careless stack added beside the sink is caught", async () => {
    const careless = await synthesizeWith(`${STAGE}-careless`, (app) => {
      auditsink(app, {});
      app.stack(function Careless({ stack }: StackContext) {
        new s3.Bucket(stack, "Careless");
      });
    });
    const errors = careless.findings.filter((f) => f.level === "error");
    expect(errors.map((f) => `${f.stack}:${f.rule}`)).toEqual(
      expect.arrayContaining(["Careless:AwsSolutions-S1", "Careless:AwsSolutions-S10"]),
    );
    expect(errors.filter((f) => f.stack !== "Careless")).toEqual([]);
  });

  it("has a reason on every suppression", () => {
    const all = suppressions(synth);
    expect(all.length).toBeGreaterThan(0);
    for (const s of all) {
      expect(s.reason.length, `${s.stack}/${s.resource} ${s.id}`).toBeGreaterThanOrEqual(40);
    }
  });

  it("suppresses only the rules reviewed for this app", () => {
    const rules = [...new Set(suppressions(synth).map((s) => s.id))].sort();
    expect(rules).toEqual(
      [
        "AwsSolutions-APIG4",
        "AwsSolutions-COG4",
        "AwsSolutions-IAM4",
        "AwsSolutions-IAM5",
        "AwsSolutions-L1",
        "AwsSolutions-S1",
        "AwsSolutions-SQS3",
      ].sort(),
    );
  });

  it("suppresses the no-DLQ finding (SQS3) only on the sequencer's dead-letter queue, which it fills itself", () => {
    const sqs3 = suppressions(synth).filter((s) => s.id === "AwsSolutions-SQS3");
    expect(sqs3.map((s) => `${s.stack}/${s.resource}`)).toEqual([
      expect.stringMatching(/^Ingest\/SequencerDeadLetters/),
    ]);
  });

  it("suppresses wildcard findings (IAM5) only for listed findings, never for a whole resource", () => {
    for (const s of suppressions(synth).filter((s) => s.id === "AwsSolutions-IAM5")) {
      expect(s.applies_to?.length, `${s.stack}/${s.resource}`).toBeGreaterThan(0);
    }
  });

  it("suppresses the managed-policy finding (IAM4) only on SST's own custom-resource handler", () => {
    const iam4 = suppressions(synth).filter((s) => s.id === "AwsSolutions-IAM4");
    expect(iam4.length).toBeGreaterThan(0);
    for (const s of iam4) expect(s.resource, s.stack).toMatch(/^CustomResourceHandler/);
  });
});

describe("synthesized templates", () => {
  it("are written under test/output/infra/<stage>/, one file per stack, for review", () => {
    for (const [name, template] of Object.entries(synth.json)) {
      const file = path.join(synth.outputDir, `${STAGE}-auditsink-${name}.template.json`);
      expect(JSON.parse(readFileSync(file, "utf8")), file).toEqual(template);
    }
    expect(Object.keys(synth.json).sort()).toEqual([
      "Archive",
      "Audit",
      "Ingest",
      "Ledger",
      "ProducerAdmin",
      "Signing",
      "Verify",
    ]);
  });
});

import { type AwsRuntime, AwsVerifier, keys } from "@auditsink/aws";
import { checkpointKey, generateKeyPair, segmentKey, signEvent } from "@auditsink/core";
import { DisableKeyCommand, ScheduleKeyDeletionCommand } from "@aws-sdk/client-kms";
import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { PutCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import {
  deliveredAlerts,
  lambdaContext,
  type Provisioned,
  provision,
  registerProducer,
  useEmulators,
} from "./fixtures.ts";

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
});
afterAll(async () => emulators?.stop());

const STREAM = "agent.tools";
const DAY_MS = 86_400_000;
/** moto's DisableKey and ScheduleKeyDeletion accept the key id but not the key ARN (docs/AWS.md §moto gaps). */
const keyUuid = (p: Provisioned) => p.settings.signingKeyId.split("/").pop()!;

/** A deployment with three committed batches (records 0–2, 3–5, 6–8) and one clean verifier run behind it. */
async function committedStream(): Promise<{ p: Provisioned; rt: AwsRuntime; verifier: AwsVerifier }> {
  const p = await provision();
  const rt = p.runtime();
  const producer = await registerProducer(rt, "agent-v");
  const { sink } = await rt.start();
  for (let b = 0; b < 3; b++) {
    await sink.submit(
      STREAM,
      [0, 1, 2].map((i) => producer.event(`e-${b}-${i}`)),
    );
  }
  const verifier = new AwsVerifier(rt);
  const clean = await verifier.run({ remainingMs: () => 300_000 });
  expect(clean.alerts).toEqual([]);
  expect(await deliveredAlerts(p)).toEqual({ sns: [], events: [], metric: 0 });
  return { p, rt, verifier };
}

async function expectAlerted(p: Provisioned, codes: string[], alerts: { code: string }[]): Promise<void> {
  const raised = alerts.map((a) => a.code);
  for (const code of codes) expect(raised).toContain(code);
  const delivered = await deliveredAlerts(p);
  for (const code of codes) {
    expect(delivered.sns).toContain(code);
    expect(delivered.events).toContain(code);
  }
  expect(delivered.metric).toBe(alerts.length);
}

describe("AwsVerifier on a clean archive", () => {
  it("verifies incrementally from watermarks and raises nothing", async () => {
    // Prepare
    const { rt, verifier } = await committedStream();
    // Act
    const again = await verifier.run({ remainingMs: () => 300_000 });
    const full = await verifier.run({ remainingMs: () => 300_000, full: true });
    // Assess
    expect(again).toMatchObject({ complete: true, alerts: [], streamsVerified: [STREAM] });
    expect(full.alerts).toEqual([]);
    expect((await rt.watermarks.get(STREAM))!.size).toBe(9);
  });

  it("stops before the Lambda runs out of time and resumes at the cursor", async () => {
    const { rt, verifier } = await committedStream();
    const stopped = await verifier.run({ remainingMs: () => 1_000, reserveMs: 30_000 });
    expect(stopped).toMatchObject({ complete: false, streamsVerified: [] });
    expect(await rt.watermarks.cursor()).toBe(STREAM);
    const resumed = await verifier.run({ remainingMs: () => 300_000 });
    expect(resumed).toMatchObject({ complete: true, streamsVerified: [STREAM] });
  });
});

describe("AwsVerifier detects tampering and alerts through SNS, EventBridge and the metric", () => {
  it("a delete marker over a segment key", async () => {
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["object-delete-marker"], result.alerts);
  });

  it("a missing segment (full run)", async () => {
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    const result = await verifier.run({ remainingMs: () => 300_000, full: true });
    await expectAlerted(p, ["segment-gap", "object-delete-marker"], result.alerts);
  });

  it("a new version over a segment key with altered records", async () => {
    const { p, rt, verifier } = await committedStream();
    const original = Buffer.from((await rt.objects.get(segmentKey(STREAM, 0)))!).toString();
    await rt.clients.s3.send(
      new PutObjectCommand({
        Bucket: p.settings.archiveBucket,
        Key: segmentKey(STREAM, 0),
        Body: original.replace("search", "delete"),
      }),
    );
    const result = await verifier.run({ remainingMs: () => 300_000, full: true });
    await expectAlerted(
      p,
      ["object-version-extra", "retention-missing", "checkpoint-root-mismatch"],
      result.alerts,
    );
  });

  it("an object with missing or shorter retention", async () => {
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new PutObjectCommand({
        Bucket: p.settings.archiveBucket,
        Key: checkpointKey(STREAM, 100),
        Body: "not a checkpoint\n",
        ObjectLockMode: "COMPLIANCE",
        ObjectLockRetainUntilDate: new Date(Date.now() + DAY_MS),
        ChecksumAlgorithm: "SHA256",
      }),
    );
    await rt.clients.s3.send(
      new PutObjectCommand({
        Bucket: p.settings.archiveBucket,
        Key: checkpointKey(STREAM, 101),
        Body: "x\n",
      }),
    );
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["retention-short", "retention-missing"], result.alerts);
  });

  it("a delete marker over the exported public key", async () => {
    const { p, rt, verifier } = await committedStream();
    const [keyObject] = await rt.objects.list("keys/");
    await rt.clients.s3.send(new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: keyObject! }));
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["object-delete-marker"], result.alerts);
  });

  it("a disabled signing key", async () => {
    const { p, rt, verifier } = await committedStream();
    await rt.clients.kms.send(new DisableKeyCommand({ KeyId: keyUuid(p) }));
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["signing-key-disabled"], result.alerts);
  });

  it("a signing key scheduled for deletion", async () => {
    const { p, rt, verifier } = await committedStream();
    await rt.clients.kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyUuid(p), PendingWindowInDays: 7 }));
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["signing-key-pending-deletion"], result.alerts);
  });

  it("a head rolled back behind the newest checkpoint", async () => {
    const { p, rt, verifier } = await committedStream();
    const head = (await rt.heads.get(STREAM))!;
    await rt.clients.doc.send(
      new PutCommand({
        TableName: p.settings.ledgerTable,
        Item: { ...keys.head(STREAM), gsi1pk: "streams", gsi1sk: STREAM, stream: STREAM, ...head, size: 3 },
      }),
    );
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["head-rollback"], result.alerts);
  });
});

describe("functions/verifier handler", () => {
  it("runs on a scheduled event and reports a clean run", async () => {
    const { p } = await committedStream();
    Object.assign(process.env, p.env);
    const { handler } = await import("../../functions/verifier.ts");
    const result = await handler(
      {
        version: "0",
        id: "1",
        "detail-type": "Scheduled Event",
        source: "aws.events",
        account: "123456789012",
        time: "2026-11-24T12:00:00Z",
        region: "us-east-1",
        resources: ["arn:aws:events:us-east-1:123456789012:rule/verifier"],
        detail: {},
      },
      lambdaContext() as never,
    );
    expect(result).toEqual({ complete: true, streams: 1, failures: 0 });
  });
});

describe("producer heartbeats", () => {
  it("alerts producer-silent only for a producer that declared a heartbeat and then went quiet", async () => {
    // Prepare
    const p = await provision();
    const rt = p.runtime();
    const expecting = generateKeyPair("ed25519");
    await rt.producers.register({
      id: "agent-hb",
      publicKey: expecting.publicKey,
      streams: ["*"],
      heartbeatSeconds: 600,
    });
    await registerProducer(rt, "agent-no-expectation");
    const { sink } = await rt.start();
    await sink.submit("beats", [
      signEvent(
        {
          specversion: "1.0",
          id: "hb-1",
          source: "agent://hb",
          type: "heartbeat",
          time: "2026-11-24T12:00:00Z",
        },
        expecting.privateKey,
      ),
    ]);
    // Act
    const now = await new AwsVerifier(rt).run({ remainingMs: () => 300_000 });
    const inAnHour = await new AwsVerifier(rt, () => new Date(Date.now() + 3_600_000)).run({
      remainingMs: () => 300_000,
    });
    // Assess
    expect(now.alerts).toEqual([]);
    expect(inAnHour.alerts.map((a) => [a.code, a.at])).toEqual([["producer-silent", "agent-hb"]]);
    await expectAlerted(p, ["producer-silent"], inAnHour.alerts);
  });
});

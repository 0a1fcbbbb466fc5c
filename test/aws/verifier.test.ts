import { type AwsRuntime, AwsVerifier, acknowledgeFinding, FINDING_ACKNOWLEDGED, keys } from "@auditsink/aws";
import {
  admit,
  checkpointKey,
  generateKeyPair,
  keyFingerprint,
  makeNoteKey,
  publicKeyDocument,
  SYSTEM_PRODUCER,
  segmentKey,
  signEvent,
  signSystemEvent,
  tileKey,
} from "@auditsink/core";
import { DisableKeyCommand, ScheduleKeyDeletionCommand } from "@aws-sdk/client-kms";
import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { PutCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import {
  deliveredAlerts,
  lambdaContext,
  type Provisioned,
  provision,
  registerProducer,
  useEmulators,
} from "./fixtures.ts";

// Each test provisions its own bucket, table and key on the emulators and commits through the real runtime.
vi.setConfig({ testTimeout: 120_000 });

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
  // As the producer-admin role runs it: the first start exports the public key document (ingest may not).
  const rt = p.runtime({ exportPublicKey: true });
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

/** The EventBridge event S3 sends when a DeleteObject creates a delete marker (moto sends none). */
async function notifyDeleteMarker(p: Provisioned, key: string): Promise<void> {
  await p.sqs.send(
    new SendMessageCommand({
      QueueUrl: p.changesQueueUrl,
      MessageBody: JSON.stringify({
        version: "0",
        "detail-type": "Object Deleted",
        source: "aws.s3",
        detail: {
          bucket: { name: p.settings.archiveBucket },
          object: { key, sequencer: "617f08299329d189" },
          "deletion-type": "Delete Marker Created",
        },
      }),
    }),
  );
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
    // `_system` (which records each stream's creation) first, then the stream.
    expect(again).toMatchObject({ complete: true, alerts: [], streamsVerified: ["_system", STREAM] });
    expect(full.alerts).toEqual([]);
    expect((await rt.watermarks.get(STREAM))!.size).toBe(9);
  });

  it("stops before the Lambda runs out of time and resumes at the cursor", async () => {
    const { rt, verifier } = await committedStream();
    const stopped = await verifier.run({ remainingMs: () => 1_000, reserveMs: 30_000 });
    expect(stopped).toMatchObject({ complete: false, streamsVerified: [] });
    expect(await rt.watermarks.cursor()).toBe("_system");
    const resumed = await verifier.run({ remainingMs: () => 300_000 });
    expect(resumed).toMatchObject({ complete: true, streamsVerified: ["_system", STREAM] });
  });
});

describe("AwsVerifier detects tampering and alerts through SNS, EventBridge and the metric", () => {
  it("a delete marker over a segment key the verifier already passed, as S3 notifies it", async () => {
    // Prepare: moto sends no notification for a delete marker; this is the event S3 sends to EventBridge.
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    await notifyDeleteMarker(p, segmentKey(STREAM, 3));
    // Act
    const result = await verifier.run({ remainingMs: () => 300_000 });
    // Assess
    await expectAlerted(p, ["object-delete-marker"], result.alerts);
    expect(result.changes.keysChecked).toBe(1);
  });

  it("an incremental run looks up the tiles its new records complete: their versions are checked, the original verified", async () => {
    // Prepare: 250 more records complete tile 0 (docs/FORMAT.md §14); a delete marker is put over it, which moto
    // does not notify: only the walk's own look-up of the tile can find it.
    const { p, rt, verifier } = await committedStream();
    const producer = await registerProducer(rt, "agent-tiles");
    const { sink } = await rt.start();
    await sink.submit(
      STREAM,
      Array.from({ length: 250 }, (_, i) => producer.event(`t-${i}`)),
    );
    const tile = tileKey(STREAM, { level: 0, index: 0, width: 256 });
    await rt.clients.s3.send(new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: tile }));
    // Act
    const result = await verifier.run({ remainingMs: () => 300_000 });
    // Assess: the marker is reported; the locked original verifies (no tile-mismatch, nothing missing).
    await expectAlerted(p, ["object-delete-marker"], result.alerts);
    expect(result.alerts.map((a) => [a.code, a.at])).toEqual([["object-delete-marker", tile]]);
    // 259 producer-signed events committed and verified on the emulators (about 15 s on the loaded machine).
  }, 60_000);

  it("a delete marker hides nothing from a full run: the locked original is verified, the marker reported", async () => {
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    const result = await verifier.run({ remainingMs: () => 300_000, full: true });
    await expectAlerted(p, ["object-delete-marker"], result.alerts);
    expect(result.alerts.map((a) => a.code)).not.toContain("segment-gap");
  });

  it("a new version over an old segment key, as S3 notifies it (no full run needed)", async () => {
    // Prepare: a plain PutObject (no If-None-Match) adds a version; moto notifies EventBridge → changes queue.
    const { p, rt, verifier } = await committedStream();
    const original = Buffer.from((await rt.objects.get(segmentKey(STREAM, 0)))!).toString();
    await rt.clients.s3.send(
      new PutObjectCommand({
        Bucket: p.settings.archiveBucket,
        Key: segmentKey(STREAM, 0),
        Body: original.replace("search", "delete"),
      }),
    );
    // Act
    const result = await verifier.run({ remainingMs: () => 300_000 });
    // Assess: the extra version is reported; the records verify from the original, locked version.
    await expectAlerted(p, ["object-version-extra", "retention-missing"], result.alerts);
    expect(result.alerts.map((a) => a.code)).not.toContain("checkpoint-root-mismatch");
    expect(result.changes.keysChecked).toBe(1);
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
    expect(result).toEqual({ complete: true, streams: 2, newFindings: 0, openFindings: 0 });
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

/** Records the input of every ListObjectVersions call a client sends. */
function captureVersionListings(rt: AwsRuntime): { Prefix?: string; KeyMarker?: string }[] {
  const seen: { Prefix?: string; KeyMarker?: string }[] = [];
  rt.clients.s3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === "ListObjectVersionsCommand")
        seen.push(args.input as { Prefix?: string; KeyMarker?: string });
      return next(args);
    },
    { step: "initialize", name: "capture-version-listings" },
  );
  return seen;
}

describe("AwsVerifier reads only what follows its watermarks", () => {
  it("lists a stream's versions from the watermark's keys onward (the newest verified segment and checkpoint)", async () => {
    // Prepare: records 0–8 verified; three more committed after.
    const { rt, verifier } = await committedStream();
    const { sink } = await rt.start();
    const producer = await registerProducer(rt, "agent-w");
    await sink.submit(
      STREAM,
      [0, 1, 2].map((i) => producer.event(`late-${i}`)),
    );
    const listings = captureVersionListings(rt);
    // Act
    const result = await verifier.run({ remainingMs: () => 300_000 });
    // Assess
    expect(result.alerts).toEqual([]);
    const streamListings = listings.filter((l) => l.Prefix?.startsWith(`streams/${STREAM}/`));
    expect(streamListings.map((l) => [l.Prefix, l.KeyMarker])).toEqual([
      [`streams/${STREAM}/segments/`, segmentKey(STREAM, 6)],
      [`streams/${STREAM}/checkpoints/`, checkpointKey(STREAM, 6)],
    ]);
    expect((await rt.watermarks.get(STREAM))!.size).toBe(12);
  });
});

describe("findings are de-duplicated and acknowledged through the _system stream", () => {
  it("alerts a finding once, blocks the watermark until it is acknowledged, then keeps it in the report", async () => {
    // Prepare: records 0–8 verified, 9–11 committed, and a delete marker over segment 9 before the next run.
    const { p, rt, verifier } = await committedStream();
    const { sink } = await rt.start();
    const producer = await registerProducer(rt, "agent-a");
    await sink.submit(
      STREAM,
      [0, 1, 2].map((i) => producer.event(`later-${i}`)),
    );
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 9) }),
    );

    // Act 1: the finding is new, alerted, and holds the watermark.
    const first = await verifier.run({ remainingMs: () => 300_000 });
    // Assess 1
    await expectAlerted(p, ["object-delete-marker"], first.alerts);
    expect((await rt.watermarks.get(STREAM))!.size).toBe(9);
    const [finding] = first.findings.open;
    expect(finding).toMatchObject({
      code: "object-delete-marker",
      stream: STREAM,
      at: segmentKey(STREAM, 9),
    });

    // Act 2: found again, not alerted again; still open, still blocking.
    const second = await verifier.run({ remainingMs: () => 300_000 });
    // Assess 2
    expect(second.alerts).toEqual([]);
    expect(second.findings.open.map((f) => f.id)).toEqual([finding!.id]);
    expect((await rt.watermarks.get(STREAM))!.size).toBe(9);
    expect(await deliveredAlerts(p)).toMatchObject({ sns: [], events: [] });

    // Act 3: an operator acknowledges it (an event in _system), and the verifier runs again.
    const receipt = await acknowledgeFinding(
      rt,
      finding!.id,
      "delete marker under COMPLIANCE; original kept",
    );
    const third = await verifier.run({ remainingMs: () => 300_000 });
    // Assess 3
    expect(receipt.stream).toBe("_system");
    expect(third.alerts).toEqual([]);
    expect(third.findings.open).toEqual([]);
    expect(third.findings.acknowledged).toEqual([
      expect.objectContaining({
        id: finding!.id,
        acknowledged: expect.objectContaining({
          index: receipt.index,
          reason: expect.stringContaining("COMPLIANCE"),
        }),
      }),
    ]);
    expect((await rt.watermarks.get(STREAM))!.size).toBe(12);
  });

  it("refuses to acknowledge a finding that does not exist, recording nothing", async () => {
    const { rt } = await committedStream();
    const before = (await rt.heads.get("_system"))!.size;
    await expect(acknowledgeFinding(rt, "0".repeat(32), "no such thing")).rejects.toMatchObject({
      code: "unknown-finding",
    });
    await expect(acknowledgeFinding(rt, "../etc", "bad id")).rejects.toMatchObject({ code: "bad-finding" });
    expect((await rt.heads.get("_system"))!.size).toBe(before);
  });

  it("functions/producer-admin acknowledges on direct invocation and answers a coded error for a bad id", async () => {
    // Prepare: an open finding, and the handler running with this deployment's environment.
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    await notifyDeleteMarker(p, segmentKey(STREAM, 3));
    const [finding] = (await verifier.run({ remainingMs: () => 300_000 })).findings.open;
    Object.assign(process.env, p.env);
    const { handler } = await import("../../functions/producer-admin.ts");
    // Act
    const bad = await handler({ acknowledge: { finding: "nope", reason: "x" } }, lambdaContext() as never);
    const good = await handler(
      { acknowledge: { finding: finding!.id, reason: "marker under COMPLIANCE" } },
      lambdaContext() as never,
    );
    const after = await verifier.run({ remainingMs: () => 300_000 });
    // Assess
    expect(bad).toEqual({ error: { code: "bad-finding", message: expect.any(String) } });
    expect(good).toMatchObject({ acknowledged: { stream: "_system" } });
    expect(after.findings.open).toEqual([]);
    expect(after.findings.acknowledged.map((f) => f.id)).toEqual([finding!.id]);
  });

  it("does not honour an acknowledgement in _system that producer administration never confirmed", async () => {
    // Prepare: an open finding, and a signer other than producer administration (ingest, say) appending an
    // acknowledgement event to _system without the confirmation item it cannot write.
    const { p, rt, verifier } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    await notifyDeleteMarker(p, segmentKey(STREAM, 3));
    const [finding] = (await verifier.run({ remainingMs: () => 300_000 })).findings.open;
    const { sink, signer } = await rt.start();
    const forged = await signSystemEvent(signer, FINDING_ACKNOWLEDGED, {
      finding: finding!.id,
      reason: "forged",
    });
    await sink.commit("_system", [admit(forged, SYSTEM_PRODUCER)]);
    // Act
    const result = await verifier.run({ remainingMs: () => 300_000 });
    // Assess
    expect(result.findings.open.map((f) => f.code).sort()).toEqual([
      "acknowledgement-unconfirmed",
      "object-delete-marker",
    ]);
    expect(result.findings.acknowledged).toEqual([]);
  });
});

describe("the verifier trusts only the live KMS key and pinned keys", () => {
  /** A key document for a key the sink never had, planted under keys/ with valid retention. */
  async function plantKeyDocument(p: Provisioned, rt: AwsRuntime): Promise<string> {
    const planted = generateKeyPair("ecdsa-p256");
    const doc = publicKeyDocument(makeNoteKey(p.settings.origin, planted.publicKey));
    await rt.objects.putIfAbsent(`keys/${doc.keyId}.json`, Buffer.from(JSON.stringify(doc)));
    return keyFingerprint(planted.publicKey);
  }

  it("reports a key document found in the archive and does not trust it", async () => {
    const { p, rt, verifier } = await committedStream();
    const fingerprint = await plantKeyDocument(p, rt);
    const result = await verifier.run({ remainingMs: () => 300_000 });
    await expectAlerted(p, ["key-document-untrusted"], result.alerts);
    expect(result.trust.pinned).toEqual([]);
    expect(result.trust.live).toBeDefined();
    expect(result.trust.live).not.toBe(fingerprint);
  });

  it("trusts a key document whose fingerprint is pinned", async () => {
    const { p, rt } = await committedStream();
    const fingerprint = await plantKeyDocument(p, rt);
    p.settings.trustedKeyFingerprints = [fingerprint];
    const result = await new AwsVerifier(p.runtime()).run({ remainingMs: () => 300_000 });
    expect(result.alerts).toEqual([]);
    expect(result.trust.pinned).toEqual([fingerprint]);
  });
});

describe("the archive sweep", () => {
  it("resumes from its persisted cursor, a page at a time, and finds what no notification reported", async () => {
    // Prepare: a delete marker no notification reports; a week and a day later the next pass is due.
    const { p, rt } = await committedStream();
    await rt.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.settings.archiveBucket, Key: segmentKey(STREAM, 3) }),
    );
    p.settings.sweepPagesPerRun = 1;
    const later = new AwsVerifier(p.runtime(), () => new Date(Date.now() + 8 * 86_400_000));
    // Act: runs of one five-version page each until the pass completes.
    const runs = [];
    for (let i = 0; i < 10; i++) {
      const r = await later.run({ remainingMs: () => 300_000, sweepPageSize: 5 });
      runs.push(r);
      if (r.sweep.passCompleted) break;
    }
    // Assess
    expect(runs.length).toBeGreaterThan(1);
    for (const r of runs) expect(r.sweep.versions).toBeLessThanOrEqual(5);
    expect(runs.at(-1)!.sweep.passCompleted).toBe(true);
    expect(runs.flatMap((r) => r.alerts.map((a) => [a.code, a.at]))).toContainEqual([
      "object-delete-marker",
      segmentKey(STREAM, 3),
    ]);
    const again = await later.run({ remainingMs: () => 300_000, sweepPageSize: 5 });
    expect(again.sweep).toEqual({ versions: 0, passCompleted: false });
  });
});

/**
 * `auditsink verify s3://…` against moto (DESIGN.md §6): the sink's objects written by packages/aws's
 * S3WriteOnceStore, or copied under a prefix; the CLI reads them with an endpoint override and nothing else.
 */

import { S3WriteOnceStore } from "@auditsink/aws";
import type { VerifyResult } from "@auditsink/cli";
import {
  formatVerifierKey,
  generateKeyPair,
  KeyObjectSigner,
  keyFingerprint,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  type ObjectStore,
  Sink,
  segmentKey,
  signEvent,
} from "@auditsink/core";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMoto } from "../emulators/harness.ts";
import { cli } from "./helpers.ts";

const DEPLOYMENT = "auditsink.test/s3";
let moto: Awaited<ReturnType<typeof startMoto>>;
let s3: S3Client;
const sinkKey = generateKeyPair("ecdsa-p256");
const signer = new KeyObjectSigner(DEPLOYMENT, sinkKey.privateKey, sinkKey.publicKey);
const verifierKey = formatVerifierKey(signer.key);
const producer = generateKeyPair("ed25519");

beforeAll(async () => {
  moto = await startMoto();
  process.env.AWS_ACCESS_KEY_ID = "testing";
  process.env.AWS_SECRET_ACCESS_KEY = "testing";
  process.env.AWS_REGION = "us-east-1";
  s3 = new S3Client({ endpoint: moto.endpoint, forcePathStyle: true, region: "us-east-1" });
});

afterAll(async () => {
  s3?.destroy();
  await moto?.stop();
});

async function fill(objects: ObjectStore, stream: string, count: number): Promise<void> {
  const producers = new MemoryProducerRegistry();
  producers.add({
    keyId: keyFingerprint(producer.publicKey),
    publicKey: producer.publicKey,
    producer: "agent",
    streams: ["*"],
    revoked: false,
  });
  const sink = new Sink({
    deployment: DEPLOYMENT,
    objects,
    heads: new MemoryHeadStore(),
    dedup: new MemoryDedupStore(),
    producers,
    signer,
  });
  for (let i = 0; i < count; i++) {
    const event = signEvent(
      {
        specversion: "1.0",
        id: `e-${i}`,
        source: "agent://a",
        type: "ai.agent.tool_call",
        time: "2026-11-24T12:00:00.000Z",
        data: { "gen_ai.tool.name": "search" },
      },
      producer.privateKey,
    );
    await sink.submit(stream, [event]);
  }
}

describe("auditsink verify s3://bucket", () => {
  it("verifies what S3WriteOnceStore wrote to an Object Lock bucket, exit 0", async () => {
    // Prepare
    await s3.send(new CreateBucketCommand({ Bucket: "archive-a", ObjectLockEnabledForBucket: true }));
    await fill(new S3WriteOnceStore(s3, "archive-a"), "agents.s3", 4);
    // Act
    const r = await cli([
      "verify",
      "s3://archive-a",
      "--endpoint",
      moto.endpoint,
      "--verifier-key",
      verifierKey,
      "--json",
    ]);
    // Assess
    const report = JSON.parse(r.out) as VerifyResult;
    expect(r.code).toBe(0);
    expect(report.source.kind).toBe("s3");
    // _system (the sink records each stream's creation there) and the stream itself.
    expect(report.streams.map((s) => s.stream)).toEqual(["_system", "agents.s3"]);
    expect(report.streams.find((s) => s.stream === "agents.s3")).toMatchObject({ records: 4, failures: [] });
  });

  it("reads under a prefix, and reports a segment overwritten in the bucket (exit 1)", async () => {
    // Prepare: the objects under archive/ in a versioned bucket, then one segment overwritten.
    const memory = new MemoryObjectStore();
    await fill(memory, "agents.s3", 3);
    await s3.send(new CreateBucketCommand({ Bucket: "archive-b" }));
    for (const [key, bytes] of memory.objects) {
      await s3.send(new PutObjectCommand({ Bucket: "archive-b", Key: `archive/${key}`, Body: bytes }));
    }
    const args = [
      "verify",
      "s3://archive-b/archive",
      "--endpoint",
      moto.endpoint,
      "--verifier-key",
      verifierKey,
      "--json",
    ];
    const clean = await cli(args);
    const original = memory.objects.get(segmentKey("agents.s3", 1))!;
    const forged = Buffer.from(original).toString("utf8").replace('"id":"e-1"', '"id":"e-X"');
    await s3.send(
      new PutObjectCommand({
        Bucket: "archive-b",
        Key: `archive/${segmentKey("agents.s3", 1)}`,
        Body: forged,
      }),
    );
    // Act
    const tampered = await cli(args);
    // Assess
    expect(clean.code).toBe(0);
    expect(tampered.code).toBe(1);
    const report = JSON.parse(tampered.out) as VerifyResult;
    const stream = report.streams.find((s) => s.stream === "agents.s3")!;
    expect(stream.failures.map((f) => f.code)).toContain("checkpoint-root-mismatch");
  });
});

describe("auditsink query s3://bucket", () => {
  it("finds events by id, and by type and source a page at a time, in the archive", async () => {
    // Prepare
    await s3.send(new CreateBucketCommand({ Bucket: "archive-q", ObjectLockEnabledForBucket: true }));
    await fill(new S3WriteOnceStore(s3, "archive-q"), "agents.s3", 5);
    const query = (args: string[]) =>
      cli(["query", "s3://archive-q", "--endpoint", moto.endpoint, "--json", ...args]);
    // Act
    const byId = await query(["--id", "e-3"]);
    const first = await query(["--type", "ai.agent.tool_call", "--source", "agent://a", "--limit", "3"]);
    const cursor = /^cursor (\S+)\n$/.exec(first.err)?.[1];
    const second = await query(["--type", "ai.agent.tool_call", "--limit", "3", "--cursor", cursor ?? ""]);
    // Assess
    const lines = (out: string) =>
      out
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { stream: string; index: number; event: { id: string } });
    expect(byId.code, byId.err).toBe(0);
    expect(lines(byId.out)).toMatchObject([{ stream: "agents.s3", index: 3, event: { id: "e-3" } }]);
    expect(lines(first.out).map((e) => e.event.id)).toEqual(["e-0", "e-1", "e-2"]);
    expect(cursor).toBeDefined();
    expect(lines(second.out).map((e) => e.event.id)).toEqual(["e-3", "e-4"]);
    expect(second.err).toBe("");
  });
});

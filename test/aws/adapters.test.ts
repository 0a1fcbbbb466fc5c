import { createHash } from "node:crypto";
import {
  AwsConfigError,
  DynamoWatermarkStore,
  KmsSigner,
  S3WriteOnceStore,
  settingsFromEnv,
} from "@auditsink/aws";
import { generateKeyPair, keyFingerprint, openCheckpoint, StoreError, signCheckpoint } from "@auditsink/core";
import { describePortContracts } from "@auditsink/core/contract";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import * as vitest from "vitest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { ORIGIN, type Provisioned, provision, useEmulators } from "./fixtures.ts";

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
});
afterAll(async () => emulators?.stop());

describePortContracts(
  vitest,
  "S3WriteOnceStore + DynamoHeadStore + DynamoDedupStore on the emulators",
  async () => {
    const p = await provision();
    const rt = p.runtime();
    return { objects: rt.objects, heads: rt.heads, dedup: rt.dedup };
  },
);

describe("S3WriteOnceStore", () => {
  let p: Provisioned;
  beforeAll(async () => {
    p = await provision();
  });

  it("stores each object with COMPLIANCE retention of at least the floor and a SHA-256 checksum", async () => {
    // Prepare
    const rt = p.runtime();
    const before = Date.now();
    // Act
    await rt.objects.putIfAbsent("streams/lock/segments/00000000000000000000", Buffer.from("record\n"));
    // Assess
    const head = await rt.clients.s3.send(
      new HeadObjectCommand({
        Bucket: p.settings.archiveBucket,
        Key: "streams/lock/segments/00000000000000000000",
        ChecksumMode: "ENABLED",
      }),
    );
    expect(head.ObjectLockMode).toBe("COMPLIANCE");
    expect(head.ObjectLockRetainUntilDate!.getTime()).toBeGreaterThanOrEqual(
      before + 180 * 86_400_000 - 1000,
    );
    expect(head.ChecksumSHA256).toBe(createHash("sha256").update("record\n").digest("base64"));
  });

  it("never lowers the retention floor below 180 days", () => {
    const store = new S3WriteOnceStore(p.runtime().clients.s3, "any-bucket", { retentionDays: 30 });
    expect(store.retentionDays).toBe(180);
  });

  it("lists every version and delete marker, with the lock fields of each version", async () => {
    // Prepare
    const rt = p.runtime();
    await rt.objects.putIfAbsent("streams/ver/segments/00000000000000000000", Buffer.from("a\n"));
    // Act
    const versions = [];
    for await (const v of rt.objects.versions("streams/ver/")) versions.push(v);
    const lock = await rt.objects.lock(versions[0]!.key, versions[0]!.versionId);
    // Assess
    expect(versions).toHaveLength(1);
    expect(versions[0]).toMatchObject({
      key: "streams/ver/segments/00000000000000000000",
      deleteMarker: false,
    });
    expect(lock.mode).toBe("COMPLIANCE");
    expect(await rt.objects.lockEnabled()).toBe(true);
  });

  it("turns S3's 409 ConditionalRequestConflict (concurrent conditional writes) into a retryable StoreError", async () => {
    // Prepare: moto never answers 409, so the answer is injected below the SDK's retries.
    const rt = p.runtime();
    (rt.clients.s3.middlewareStack as { add: (m: never, o: never) => void }).add(
      (() => async () => {
        throw Object.assign(new Error("conflict"), {
          name: "ConditionalRequestConflict",
          $metadata: { httpStatusCode: 409 },
        });
      }) as never,
      { step: "deserialize", name: "conflict-409" } as never,
    );
    // Act
    const error = await rt.objects
      .putIfAbsent("streams/c/segments/00000000000000000000", Buffer.from("x"))
      .catch((e) => e);
    // Assess
    expect(error).toBeInstanceOf(StoreError);
    expect(error.message).toContain("ConditionalRequestConflict");
  });

  it("has exactly one winner per key when many conditional creates race, as S3 does (the tests' moto extension)", async () => {
    // Prepare: 40 keys, 16 concurrent creates each, all at once (on plain moto two won on some key in one of two
    // runs on an idle machine: its check and write are two steps; docs/AWS.md)
    const rt = p.runtime();
    const keys = Array.from({ length: 40 }, (_, k) => `streams/many/segments/${String(k).padStart(20, "0")}`);

    // Act
    const wins = await Promise.all(
      keys.map(async (key) => {
        const results = await Promise.all(
          Array.from({ length: 16 }, (_, i) => rt.objects.putIfAbsent(key, Buffer.from(`${key} w${i}`))),
        );
        return results.filter(Boolean).length;
      }),
    );

    // Assess
    expect(wins).toEqual(keys.map(() => 1));
  });

  it("wraps SDK failures as StoreError with the cause", async () => {
    const store = new S3WriteOnceStore(p.runtime().clients.s3, "no-such-bucket-anywhere");
    const error = await store.putIfAbsent("k", Buffer.from("x")).catch((e) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(error.code).toBe("store-failed");
    expect(error.cause).toBeDefined();
  });
});

describe("KmsSigner", () => {
  it("signs checkpoints that verify with the exported public key (ECDSA_SHA_256, RAW)", async () => {
    // Prepare
    const p = await provision();
    const rt = p.runtime();
    const signer = await KmsSigner.create(rt.clients.kms, p.settings.signingKeyId, ORIGIN);
    // Act
    const signed = await signCheckpoint(
      {
        origin: `${ORIGIN}/s`,
        size: 1,
        root: Buffer.alloc(32, 7),
        head: Buffer.alloc(32, 1),
        time: "2026-11-24T00:00:00.000Z",
      },
      signer,
    );
    const objectKey = await signer.exportPublicKey(rt.objects);
    const again = await signer.exportPublicKey(rt.objects);
    // Assess
    expect(openCheckpoint(signed, [signer.key]).ok).toBe(true);
    expect(objectKey).toBe(`keys/${signer.key.keyId.toString("hex")}.json`);
    expect(again).toBe(objectKey);
    const doc = JSON.parse(Buffer.from((await rt.objects.get(objectKey))!).toString());
    expect(doc.verifierKey).toMatch(/^auditsink\.test\/aws\+[0-9a-f]{8}\+/);
    const versions = [];
    for await (const v of rt.objects.versions("keys/")) versions.push(v);
    expect(versions).toHaveLength(1);
    expect(await signer.keyState()).toBe("Enabled");
  });
});

describe("DynamoProducerAdmin", () => {
  it("registers, looks up, lists and revokes producer keys; a taken key conflicts", async () => {
    // Prepare
    const rt = (await provision()).runtime({ producerCacheSeconds: 0 });
    const { publicKey } = generateKeyPair("ed25519");
    const second = generateKeyPair("ecdsa-p256").publicKey;
    // Act
    const info = await rt.producers.register({
      id: "agent-a",
      publicKey,
      streams: ["tools.*"],
      heartbeatSeconds: 60,
    });
    await rt.producers.register({ id: "agent-a", publicKey: second, streams: ["tools.*", "ops"] });
    const conflict = await rt.producers
      .register({ id: "agent-b", publicKey, streams: ["x"] })
      .catch((e) => e);
    const revoked = await rt.producers.revoke("agent-a", keyFingerprint(publicKey));
    // Assess
    expect(info.keys).toHaveLength(1);
    expect(conflict).toBeInstanceOf(StoreError);
    expect(conflict.code).toBe("conflict");
    expect(revoked.keys.find((k) => k.keyId === keyFingerprint(publicKey))!.revokedAt).toBeDefined();
    expect((await rt.producers.key(keyFingerprint(publicKey)))!.revoked).toBe(true);
    expect(await rt.producers.key(keyFingerprint(second))).toMatchObject({
      producer: "agent-a",
      streams: ["tools.*", "ops"],
      revoked: false,
    });
    expect((await rt.producers.list()).map((p) => p.id)).toEqual(["agent-a"]);
    expect(await rt.producers.revoke("nobody").catch((e) => e.code)).toBe("conflict");
  });
});

describe("DynamoWatermarkStore", () => {
  it("moves watermarks forward only", async () => {
    const p = await provision();
    const rt = p.runtime();
    const w = new DynamoWatermarkStore(rt.clients.doc, p.settings.ledgerTable);
    const state = (size: number) => ({ size, headHash: "0".repeat(64), frontier: [], checkpointSize: size });
    await w.put("s", state(5), "t1");
    await w.put("s", state(3), "t2");
    expect((await w.get("s"))!.size).toBe(5);
    await w.put("s", state(9), "t3");
    expect((await w.get("s"))!.size).toBe(9);
    expect(await w.get("other")).toBeUndefined();
  });
});

describe("settingsFromEnv", () => {
  it("names the missing variable and refuses retention below 180 days", () => {
    const env = {
      ARCHIVE_BUCKET: "b",
      LEDGER_TABLE: "t",
      EVENT_INDEX_TABLE: "p",
      SIGNING_KEY_ID: "k",
      ORIGIN: "o",
    };
    expect(settingsFromEnv(env).retentionDays).toBe(180);
    expect(() => settingsFromEnv({ ...env, RETENTION_DAYS: "30" })).toThrow(AwsConfigError);
    expect(() => settingsFromEnv({ ...env, ORIGIN: undefined })).toThrow(/ORIGIN/);
  });
});

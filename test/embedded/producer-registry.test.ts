/**
 * The registry trail rules (core's AuditedProducerAdmin) over the embedded registry file, and how a start
 * reconciles a change interrupted between producers.json and `_system`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  generateKeyPair,
  keyFingerprint,
  PRODUCER_REGISTERED,
  PRODUCER_REVOKED,
  StoreError,
  SYSTEM_STREAM,
} from "@auditsink/core";
import { describeProducerRegistryRules } from "@auditsink/core/contract";
import * as vitest from "vitest";
import { afterEach } from "vitest";
import { openLocalSink, systemRecords } from "../../packages/local/src/index.ts";
import { tempDir } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describeProducerRegistryRules(vitest, "LocalProducerAdmin", async () => {
  const t = await tempDir("auditsink-registry-");
  const local = await openLocalSink({ dataDir: t.dir });
  cleanups.push(t.remove, () => local.close());
  return { store: local.registry, sink: local.sink };
});

vitest.describe("AuditedProducerAdmin over LocalProducerAdmin", () => {
  vitest.it(
    "undoes a registration whose event cannot be recorded, so the key can be registered again",
    async () => {
      // Prepare: the archive refuses writes for the first attempt.
      const t = await tempDir("auditsink-registry-");
      const local = await openLocalSink({ dataDir: t.dir });
      cleanups.push(t.remove, () => local.close());
      const { publicKey } = generateKeyPair("ed25519");
      const put = local.objects.putIfAbsent.bind(local.objects);
      local.objects.putIfAbsent = async () => {
        throw new StoreError("store-failed", "disk full");
      };
      // Act
      const failed = await local.producers
        .register({ id: "agent", publicKey, streams: ["a"] })
        .catch((e: unknown) => e);
      const keyAfterFailure = await local.registry.key(keyFingerprint(publicKey));
      local.objects.putIfAbsent = put;
      const info = await local.producers.register({ id: "agent", publicKey, streams: ["a"] });
      // Assess
      vitest.expect(failed).toMatchObject({ code: "store-failed" });
      vitest.expect(keyAfterFailure).toBeUndefined();
      vitest.expect(info.keys.map((k) => k.keyId)).toEqual([keyFingerprint(publicKey)]);
    },
  );
});

/** The `_system` registry events of a data directory, in order (opening it runs the start-up reconciliation). */
async function trailOf(dataDir: string) {
  const local = await openLocalSink({ dataDir });
  try {
    const size = (await local.heads.get(SYSTEM_STREAM))?.size ?? 0;
    const records = await systemRecords(local.objects, local.signingKey, 0, size);
    return {
      events: records
        .map((r) => r.event)
        .filter((e) => e.type === PRODUCER_REGISTERED || e.type === PRODUCER_REVOKED)
        .map((e) => ({
          type: e.type,
          data: e.data as { producer: string; keyId?: string; keyIds?: string[] },
        })),
      producers: await local.registry.list(),
    };
  } finally {
    await local.close();
  }
}

vitest.describe(
  "a registry change interrupted between producers.json and _system (docs/EMBEDDED.md §6.3)",
  () => {
    vitest.it("a registration the log never recorded is undone at the next start", async () => {
      // Prepare: the store holds the registration (with its pending entry), and the process ends before recording it.
      const t = await tempDir("auditsink-registry-");
      cleanups.push(t.remove);
      const { publicKey } = generateKeyPair("ed25519");
      const local = await openLocalSink({ dataDir: t.dir });
      await local.registry.register({ id: "agent", publicKey, streams: ["a"] });
      const pendingBefore = JSON.parse(await readFile(join(t.dir, "producers.json"), "utf8")).pending;
      await local.close();
      // Act
      const after = await trailOf(t.dir);
      // Assess
      vitest
        .expect(pendingBefore)
        .toEqual([{ kind: "register", producer: "agent", keyIds: [keyFingerprint(publicKey)] }]);
      vitest.expect(after.events).toEqual([]);
      vitest.expect(after.producers).toEqual([]);
      vitest.expect(JSON.parse(await readFile(join(t.dir, "producers.json"), "utf8")).pending).toEqual([]);
    });

    vitest.it(
      "a revocation whose event could not be recorded stays in force and is recorded once at the next start",
      async () => {
        // Prepare: a registered key; the archive refuses writes while it is revoked.
        const t = await tempDir("auditsink-registry-");
        cleanups.push(t.remove);
        const agent = generateKeyPair("ed25519");
        const keyId = keyFingerprint(agent.publicKey);
        const local = await openLocalSink({ dataDir: t.dir });
        await local.producers.register({ id: "agent", publicKey: agent.publicKey, streams: ["a"] });
        const put = local.objects.putIfAbsent.bind(local.objects);
        local.objects.putIfAbsent = async () => {
          throw new StoreError("store-failed", "disk full");
        };
        // Act
        const failed = await local.producers.revoke("agent").catch((e: unknown) => e);
        const keyAfterFailure = await local.registry.key(keyId);
        local.objects.putIfAbsent = put;
        await local.close();
        const first = await trailOf(t.dir);
        const second = await trailOf(t.dir);
        // Assess
        vitest.expect(failed).toMatchObject({ code: "store-failed" });
        vitest.expect(keyAfterFailure?.revoked).toBe(true);
        const expected = [
          { type: PRODUCER_REGISTERED, data: vitest.expect.objectContaining({ producer: "agent", keyId }) },
          { type: PRODUCER_REVOKED, data: { producer: "agent", keyIds: [keyId] } },
        ];
        vitest.expect(first.events).toEqual(expected);
        vitest.expect(second.events).toEqual(expected);
        vitest.expect(second.producers[0]!.keys[0]!.revokedAt).toBeDefined();
      },
    );
  },
);

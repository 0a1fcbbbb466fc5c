/** The registry trail rules (core's AuditedProducerAdmin) over the embedded registry file. */
import { generateKeyPair, keyFingerprint, StoreError } from "@auditsink/core";
import { describeProducerRegistryRules } from "@auditsink/core/contract";
import * as vitest from "vitest";
import { afterEach } from "vitest";
import { openLocalSink } from "../../packages/local/src/index.ts";
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

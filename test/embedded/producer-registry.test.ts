/** The registry trail rules (core's AuditedProducerAdmin) over the embedded registry file. */
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

/** The registry trail rules (core's AuditedProducerAdmin) over DynamoProducerAdmin, on DynamoDB Local. */
import { describeProducerRegistryRules } from "@auditsink/core/contract";
import * as vitest from "vitest";
import { afterAll, beforeAll } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { provision, useEmulators } from "./fixtures.ts";

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
});
afterAll(async () => emulators?.stop());

describeProducerRegistryRules(vitest, "DynamoProducerAdmin on the emulators", async () => {
  const rt = (await provision()).runtime();
  const { sink } = await rt.start();
  return { store: rt.producers, sink };
});

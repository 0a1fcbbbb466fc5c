import { type AwsRuntime, AwsVerifier } from "@auditsink/aws";
import { type Receipt, verifyReceipt, verifyStoredStream } from "@auditsink/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { type Provisioned, provision, registerProducer, useEmulators } from "./fixtures.ts";
import { type FaultKind, injectFaults } from "./sdk-middleware.ts";

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
});
afterAll(async () => emulators?.stop());

const STREAM = "faults";

/** Submits `batches` batches of 4 events, retrying a failed batch from a fresh container as a client would. */
async function ingestWithRetries(p: Provisioned, faulty: AwsRuntime, batches: number) {
  const producer = await registerProducer(p.runtime(), `agent-${Math.random().toString(36).slice(2, 8)}`);
  const receipts: Receipt[] = [];
  let failures = 0;
  for (let b = 0; b < batches; b++) {
    const events = [0, 1, 2, 3].map((i) => producer.event(`f-${b}-${i}`));
    let rt = faulty;
    for (let attempt = 0; ; attempt++) {
      try {
        const { sink } = await rt.start();
        receipts.push(...(await sink.submit(STREAM, events)));
        break;
      } catch (e) {
        failures++;
        if (attempt >= 3) throw e;
        rt = p.runtime(); // the client retries; its request lands on another (healthy) container
      }
    }
  }
  return { receipts, failures };
}

/** Everything acknowledged is in the log once, the chain verifies and the verifier raises nothing. */
async function expectIntact(p: Provisioned, receipts: Receipt[], expected: number) {
  const rt = p.runtime();
  const { signer } = await rt.start();
  const report = await verifyStoredStream(rt.objects, STREAM, {
    trusted: [signer.key],
    deployment: p.settings.origin,
    receipts,
  });
  expect(report.failures).toEqual([]);
  expect(report.state.size).toBe(expected);
  expect(new Set(receipts.map((r) => r.index)).size).toBe(expected);
  for (const r of receipts) expect(verifyReceipt(r, { trusted: [signer.key] }).ok).toBe(true);
  const run = await new AwsVerifier(rt).run({ remainingMs: () => 300_000, full: true });
  expect(run.alerts).toEqual([]);
}

describe("a crash after the segment is stored but before the head moves", () => {
  it("loses nothing acknowledged and duplicates nothing when the batch is retried", async () => {
    // Prepare
    const p = await provision();
    const faulty = p.runtime();
    // Every head write of this container dies before it reaches DynamoDB (the 2nd PutItem of each commit).
    const crashes = injectFaults(faulty.clients.dynamo, {
      kind: "crash",
      command: "PutItemCommand",
      when: () => true,
    });
    // Act
    const { receipts, failures } = await ingestWithRetries(p, faulty, 3);
    // Assess
    expect(crashes()).toBeGreaterThan(0);
    expect(failures).toBeGreaterThan(0);
    await expectIntact(p, receipts, 12);
  });
});

const services = ["s3", "dynamo", "kms"] as const;
const kinds: FaultKind[] = ["throttle", "server-error", "timeout"];

describe.each(services)("faults from %s", (service) => {
  it.each(kinds)(
    "%s on every third call is retried: nothing lost, nothing duplicated, no false alarms",
    async (kind) => {
      // Prepare
      const p = await provision();
      const faulty = p.runtime();
      // Timeouts strike after the service acted (the response is lost); throttles and 5xx before it.
      const injected = injectFaults(faulty.clients[service], {
        kind,
        when: (n) => n % 3 === 0,
        phase: kind === "timeout" ? "after" : "before",
      });
      // Act
      const { receipts } = await ingestWithRetries(p, faulty, 3);
      // Assess
      expect(injected()).toBeGreaterThan(0);
      await expectIntact(p, receipts, 12);
    },
  );
});

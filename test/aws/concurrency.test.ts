import { AwsVerifier, createHttpHandler } from "@auditsink/aws";
import {
  listStoredStreams,
  parseStoreKey,
  type Receipt,
  readStoredSegment,
  SYSTEM_STREAM,
  streamCreatedBy,
  streamPrefix,
  verifyStoredStream,
} from "@auditsink/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { lambdaContext, postEventsEvent, provision, registerProducer, useEmulators } from "./fixtures.ts";
import { atomicCreates } from "./sdk-middleware.ts";

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
  useEmulators(emulators);
});
afterAll(async () => emulators?.stop());

const CONTAINERS = 8;
const BATCHES = 6;
const PER_BATCH = 2;
const STREAM = "contended";

const postEvents = (stream: string, events: unknown[]) =>
  postEventsEvent(stream, events, { "content-type": "application/cloudevents-batch+json" });

describe("concurrent ingest handlers on one stream", () => {
  it(`${CONTAINERS} containers × ${BATCHES} batches make one contiguous verified chain, no duplicates, no orphans`, async () => {
    // Prepare: eight Lambda containers, each with its own clients, Sink and cached head.
    const p = await provision();
    const producer = await registerProducer(p.runtime(), "agent-c");
    const creates = new Map<string, Promise<unknown>>();
    const handlers = Array.from({ length: CONTAINERS }, () => {
      const runtime = p.runtime();
      atomicCreates(runtime.clients.s3, creates);
      return createHttpHandler(runtime);
    });
    // Act
    const receipts: Receipt[] = [];
    await Promise.all(
      handlers.map(async (handler, c) => {
        for (let b = 0; b < BATCHES; b++) {
          const events = Array.from({ length: PER_BATCH }, (_, i) => producer.event(`c${c}-b${b}-e${i}`));
          const response = await handler(postEvents(STREAM, events), lambdaContext());
          expect(response.statusCode).toBe(200);
          receipts.push(...(JSON.parse(response.body) as { receipts: Receipt[] }).receipts);
        }
      }),
    );
    // Assess
    const total = CONTAINERS * BATCHES * PER_BATCH;
    const rt = p.runtime();
    const { signer } = await rt.start();
    const report = await verifyStoredStream(rt.objects, STREAM, {
      trusted: [signer.key],
      deployment: p.settings.origin,
      receipts,
      head: (await rt.heads.get(STREAM))!,
    });
    expect(report.failures).toEqual([]);
    expect(report.state.size).toBe(total);
    expect(new Set(receipts.map((r) => r.index)).size).toBe(total);
    expect(new Set(receipts.map((r) => `${r.source} ${r.id}`)).size).toBe(total);
    // No orphans: every object under the stream is a segment or checkpoint in the layout, one version each.
    const keys = await rt.objects.list(streamPrefix(STREAM));
    expect(keys.every((k) => parseStoreKey(k)?.stream === STREAM)).toBe(true);
    // The sink records each stream's creation in `_system` (core Sink), which holds the producer's registration.
    expect(await listStoredStreams(rt.objects)).toEqual([SYSTEM_STREAM, STREAM]);
    const system = await verifyStoredStream(rt.objects, SYSTEM_STREAM, {
      trusted: [signer.key],
      deployment: p.settings.origin,
      head: (await rt.heads.get(SYSTEM_STREAM))!,
    });
    expect(system.failures).toEqual([]);
    const created: string[] = [];
    for (const key of await rt.objects.list(streamPrefix(SYSTEM_STREAM))) {
      const at = parseStoreKey(key);
      if (at?.kind !== "segments") continue;
      for (const r of readStoredSegment(SYSTEM_STREAM, at.n, (await rt.objects.get(key))!)) {
        const name = streamCreatedBy(r.record);
        if (name !== undefined) created.push(name);
      }
    }
    expect(created).toEqual([STREAM]);
    const run = await new AwsVerifier(rt).run({ remainingMs: () => 300_000, full: true });
    expect(run.alerts).toEqual([]);
  }, 600_000);
});

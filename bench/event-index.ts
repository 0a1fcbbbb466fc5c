/**
 * The embedded event index (core ScanningEventIndex): heap bytes per indexed event, and the time of one lookup
 * by source + id (GET /v1/receipts, the average of 20) and by trace id, over N committed events in
 * memory stores. Every lookup scans the index and then reads and parses the segment holding the event.
 * Run: node --expose-gc --import tsx bench/event-index.ts [N]   → bench/results/event-index.json
 */
import { writeFile } from "node:fs/promises";
import {
  generateKeyPair,
  KeyObjectSigner,
  keyFingerprint,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  ScanningEventIndex,
  Sink,
  signEvent,
} from "@auditsink/core";

const N = Number(process.argv[2] ?? 50_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc --import tsx bench/event-index.ts");

async function measure(traced: boolean) {
  const sk = generateKeyPair("ecdsa-p256");
  const objects = new MemoryObjectStore();
  const heads = new MemoryHeadStore();
  const registry = new MemoryProducerRegistry();
  const producer = generateKeyPair("ed25519");
  registry.add({
    keyId: keyFingerprint(producer.publicKey),
    publicKey: producer.publicKey,
    producer: "bench-agent",
    streams: ["*"],
    revoked: false,
  });
  const signer = new KeyObjectSigner("bench/index", sk.privateKey, sk.publicKey);
  const sink = new Sink({
    deployment: "bench/index",
    objects,
    heads,
    dedup: new MemoryDedupStore(),
    producers: registry,
    signer,
  });
  const traceId = (n: number) => n.toString(16).padStart(32, "0");
  for (let b = 0; b < N / 1000; b++) {
    const events = Array.from({ length: 1000 }, (_, i) =>
      signEvent(
        {
          specversion: "1.0",
          id: `call-${b}-${i}-${"x".repeat(20)}`,
          source: "agent://bench-agent/prod",
          type: "ai.agent.tool_call",
          time: new Date().toISOString(),
          // One trace per event: the worst case for the index (a real trace spans several events).
          ...(traced ? { traceparent: `00-${traceId(b * 1000 + i + 1)}-00f067aa0ba902b7-01` } : {}),
          data: { "gen_ai.agent.id": "bench-agent", "gen_ai.conversation.id": `run-${b}` },
        },
        producer.privateKey,
      ),
    );
    await sink.submit("bench", events);
  }
  gc!();
  const before = process.memoryUsage().heapUsed;
  const index = new ScanningEventIndex(objects, () => heads.streams());
  await index.sync();
  gc!();
  const bytesPerEvent = Math.round((process.memoryUsage().heapUsed - before) / N);
  const time = async (find: (k: number) => Promise<unknown>) => {
    const t = performance.now();
    for (let k = 0; k < 20; k++) await find(k);
    return Number(((performance.now() - t) / 20).toFixed(2));
  };
  const receiptLookupMs = await time((k) =>
    index.find({ source: "agent://bench-agent/prod", id: `call-${k}-7-${"x".repeat(20)}`, limit: 2 }),
  );
  const traceLookupMs = traced
    ? await time((k) => index.find({ traceId: traceId(k * 1000 + 8), limit: 2 }))
    : null;
  return { traced, bytesPerEvent, receiptLookupMs, traceLookupMs };
}

const results = {
  events: N,
  node: process.version,
  at: new Date().toISOString(),
  runs: [await measure(false), await measure(true)],
};
await writeFile(
  new URL("./results/event-index.json", import.meta.url),
  `${JSON.stringify(results, null, 2)}\n`,
);
console.log(JSON.stringify(results));

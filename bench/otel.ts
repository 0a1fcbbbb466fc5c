/**
 * AuditSpanProcessor: what it costs the application, and how fast spans become receipted events.
 *
 *   npx tsx bench/otel.ts                → prints the figures and writes bench/results/otel.json
 *   SPANS=50000 npx tsx bench/otel.ts
 *
 * 1. onEnd: the processor's onEnd on spans already ended (real SDK spans, a `chat` span with model, usage and
 *    two content attributes of ~1 KB each), timed alone: this is all the application's thread pays per span.
 * 2. convert + sign: spanToEvent (content digested) and the client's Ed25519 signature per span, done later off
 *    the application's call stack.
 * 3. end to end: SPANS spans ended through a BasicTracerProvider into an embedded sink running in this same
 *    process (so sink and producer share the cores), from the first span to forceFlush() resolved: every event
 *    stored and its receipt verified. Client batches of 100.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { AuditClient } from "@auditsink/client";
import { generateKeyPair, spkiDer } from "@auditsink/core";
import { startEmbeddedSink } from "@auditsink/local";
import { AuditSpanProcessor, spanToEvent } from "@auditsink/opentelemetry";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";

const SPANS = Number(process.env.SPANS ?? 20_000);
const content = (n: number) => JSON.stringify([{ role: "user", content: "x".repeat(1000), n }]);
const attributes = (i: number) => ({
  "gen_ai.operation.name": "chat",
  "gen_ai.provider.name": "aws.bedrock",
  "gen_ai.request.model": "anthropic.claude-sonnet-4",
  "gen_ai.agent.id": "bench-agent",
  "gen_ai.conversation.id": `c-${i % 100}`,
  "gen_ai.usage.input_tokens": 412,
  "gen_ai.usage.output_tokens": 96,
  "gen_ai.input.messages": content(i),
  "gen_ai.output.messages": content(-i),
});

function endedSpans(count: number): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer(
    "b",
  );
  for (let i = 0; i < count; i++) tracer.startSpan("chat", { attributes: attributes(i) }).end();
  return exporter.getFinishedSpans();
}

const work = mkdtempSync(join(tmpdir(), "auditsink-bench-otel-"));
const sink = await startEmbeddedSink({
  dataDir: join(work, "data"),
  port: 0,
  verifyIntervalSeconds: 0,
  print: () => {},
  log: () => {},
});
try {
  const producer = generateKeyPair("ed25519");
  const registered = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${sink.local.adminToken}` },
    body: JSON.stringify({
      id: "bench",
      publicKey: spkiDer(producer.publicKey).toString("base64"),
      streams: ["agents.*"],
    }),
  });
  if (registered.status !== 201) throw new Error(`register: ${registered.status}`);
  const client = () =>
    AuditClient.create({
      endpoint: sink.url,
      producerKey: producer.privateKey,
      sinkKey: sink.local.signingKey.verifierKey,
      stream: "agents.bench",
      source: "agent://bench",
      batch: { maxEvents: 100 },
    });

  // 1. onEnd alone (the processor's drain runs after the timed loop: setImmediate).
  const sample = endedSpans(Math.min(SPANS, 10_000));
  const probe = new AuditSpanProcessor({ client: await client(), maxQueueSize: sample.length });
  let t0 = performance.now();
  for (const span of sample) probe.onEnd(span);
  const onEndMicros = ((performance.now() - t0) * 1000) / sample.length;
  await probe.shutdown();

  // 2. convert + sign.
  const signer = await client();
  t0 = performance.now();
  for (const span of sample) signer.sign(spanToEvent(span));
  const convertSignMicros = ((performance.now() - t0) * 1000) / sample.length;
  await signer.close();

  // 3. end to end.
  const processor = new AuditSpanProcessor({ client: await client(), maxQueueSize: SPANS });
  const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("b");
  t0 = performance.now();
  for (let i = 0; i < SPANS; i++) tracer.startSpan("chat", { attributes: attributes(i) }).end();
  await processor.forceFlush();
  const seconds = (performance.now() - t0) / 1000;
  const stats = processor.stats;
  await processor.shutdown();
  if (stats.recorded !== SPANS) throw new Error(`recorded ${stats.recorded} of ${SPANS}`);

  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg(), node: process.version },
    spans: SPANS,
    onEndMicrosPerSpan: Number(onEndMicros.toFixed(2)),
    convertAndSignMicrosPerSpan: Number(convertSignMicros.toFixed(1)),
    endToEnd: {
      seconds: Number(seconds.toFixed(2)),
      spansPerSecond: Math.round(SPANS / seconds),
      recorded: stats.recorded,
      failed: stats.failed,
      dropped: stats.dropped,
    },
  };
  const file = join(import.meta.dirname, "results", "otel.json");
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
} finally {
  await sink.close();
  rmSync(work, { recursive: true, force: true });
}

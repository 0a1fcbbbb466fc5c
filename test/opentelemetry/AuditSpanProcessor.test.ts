/**
 * AuditSpanProcessor under the real OpenTelemetry SDK (BasicTracerProvider, its tracer and span objects) against
 * a running embedded sink: what is recorded, when forceFlush() resolves, what an outage does, deduplication of a
 * re-exported span, and offline verification of the result.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { ClientError, ReceiptError } from "@auditsink/client";
import { canonicalBytes, type Receipt, verifyReceipt } from "@auditsink/core";
import { AuditExportError, AuditSpanProcessor, spanEventId } from "@auditsink/opentelemetry";
import { context, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";
import { hrTimeToTimeStamp } from "@opentelemetry/core";
import { BasicTracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../cli/helpers.ts";
import { captureDiag, startTestSink, type TestSink } from "./helpers.ts";

const STREAM = "agents.support-bot";
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Starts a child span of `parent` (explicit contexts: BasicTracerProvider registers no context manager). */
function child(
  tracer: Tracer,
  parent: Span,
  name: string,
  attributes: Record<string, string | number>,
): Span {
  return tracer.startSpan(name, { attributes }, trace.setSpan(context.active(), parent));
}

/** One turn of an agent: invoke_agent around chat → execute_tool → chat, plus an HTTP span that is no GenAI. */
function agentLoop(tracer: Tracer, conversation: string, args = '{"email":"jane@example.com"}'): Span[] {
  const common = { "gen_ai.agent.id": "support-bot", "gen_ai.conversation.id": conversation };
  const agent = tracer.startSpan("invoke_agent support-bot", {
    attributes: { "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Support bot", ...common },
  });
  const chat1 = child(tracer, agent, "chat m", {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "m",
    "gen_ai.input.messages": '[{"role":"user","content":"Where is my order?"}]',
    "gen_ai.usage.input_tokens": 412,
    "gen_ai.usage.output_tokens": 31,
    ...common,
  });
  chat1.end();
  const tool = child(tracer, agent, "execute_tool crm.lookup_customer", {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "crm.lookup_customer",
    "gen_ai.tool.call.id": "call-1",
    "gen_ai.tool.call.arguments": args,
    ...common,
  });
  const http = child(tracer, tool, "GET /customers", { "http.request.method": "GET" });
  http.end();
  tool.setAttribute("gen_ai.tool.call.result", '{"customer":"C-7"}');
  tool.end();
  const chat2 = child(tracer, agent, "chat m", { "gen_ai.operation.name": "chat", ...common });
  chat2.end();
  agent.end();
  return [chat1, tool, http, chat2, agent];
}

describe("AuditSpanProcessor against a running sink", () => {
  let t: TestSink;
  beforeAll(async () => {
    t = await startTestSink();
  });
  afterAll(async () => {
    await t.remove();
  });

  it("records each GenAI span of an agent loop as a signed event with a verified receipt", async () => {
    // Prepare
    const receipts: Receipt[] = [];
    const processor = new AuditSpanProcessor({
      client: await t.client(),
      onReceipt: (r) => receipts.push(r),
    });
    const provider = new BasicTracerProvider({ spanProcessors: [processor] });
    const tracer = provider.getTracer("agent-framework", "1.2.3");
    // Act
    const [chat1, tool, , chat2, agent] = agentLoop(tracer, "c-1") as unknown as ReadableSpan[];
    await processor.forceFlush();
    // Assess
    expect(processor.stats).toEqual({ ended: 5, skipped: 1, recorded: 4, failed: 0, dropped: 0, pending: 0 });
    const trusted = [t.sink.local.signingKey.signer.key];
    for (const r of receipts) expect(verifyReceipt(r, { trusted }).ok).toBe(true);
    const events = (await t.records(STREAM)).map((r) => r.record.event);
    expect(events.map((e) => e.type)).toEqual([
      "dev.auditsink.genai.chat",
      "dev.auditsink.genai.execute_tool",
      "dev.auditsink.genai.chat",
      "dev.auditsink.genai.invoke_agent",
    ]);
    const ordered = [chat1!, tool!, chat2!, agent!];
    expect(events.map((e) => e.id)).toEqual(ordered.map(spanEventId));
    expect(events.map((e) => e.time)).toEqual(ordered.map((s) => hrTimeToTimeStamp(s.endTime)));
    const toolEvent = events[1]!;
    const { traceId, spanId } = tool!.spanContext();
    expect(toolEvent).toMatchObject({
      source: "agent://support-bot",
      subject: "conversation/c-1",
      traceparent: `00-${traceId}-${spanId}-01`,
      data: {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "crm.lookup_customer",
        "gen_ai.tool.call.id": "call-1",
        "gen_ai.agent.id": "support-bot",
        "gen_ai.conversation.id": "c-1",
        "gen_ai.tool.call.arguments.sha256": sha256('{"email":"jane@example.com"}'),
        "gen_ai.tool.call.result.sha256": sha256('{"customer":"C-7"}'),
        "otel.span.name": "execute_tool crm.lookup_customer",
        "otel.span.kind": "internal",
        "otel.trace_id": traceId,
        "otel.span_id": spanId,
        "otel.parent_span_id": agent!.spanContext().spanId,
        "otel.status_code": "UNSET",
        "otel.scope.name": "agent-framework",
        "otel.scope.version": "1.2.3",
      },
    });
    expect((toolEvent.data as Record<string, unknown>)["otel.duration_ms"]).toBeGreaterThanOrEqual(0);
    // The content is nowhere in what was stored, only its digest.
    const stored = canonicalBytes(events).toString("utf8");
    expect(stored).not.toContain("jane@example.com");
    expect(stored).not.toContain("Where is my order?");
    expect(events[0]!.data).toMatchObject({
      "gen_ai.usage.input_tokens": 412,
      "gen_ai.input.messages.sha256": sha256('[{"role":"user","content":"Where is my order?"}]'),
    });
    await processor.shutdown();
  });

  it("spans that do not name their agent or conversation inherit them from an enclosing span, as agentid/runid", async () => {
    // Prepare: the agent span learns its conversation after it started; the tool span sits under a plain span.
    const processor = new AuditSpanProcessor({ client: await t.client() });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    const agent = tracer.startSpan("invoke_agent planner", {
      attributes: { "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": "planner-7" },
    });
    agent.setAttribute("gen_ai.conversation.id", "c-inherit");
    // Act
    const chat = child(tracer, agent, "chat m", { "gen_ai.operation.name": "chat" });
    chat.end();
    const step = child(tracer, agent, "step 2", {});
    const tool = child(tracer, step, "execute_tool search", { "gen_ai.operation.name": "execute_tool" });
    tool.end();
    step.end();
    agent.end();
    await processor.forceFlush();
    // Assess
    const page = (await (
      await fetch(`${t.sink.url}/v1/events?agent=planner-7&run=c-inherit&limit=10`)
    ).json()) as { events: { event: Record<string, unknown> }[] };
    // Results come by producer time (docs/EMBEDDED.md §Finding events); which span starts first is not the point.
    const found = page.events
      .map((e) => e.event)
      .sort((a, b) => String(a.type).localeCompare(String(b.type)));
    expect(found.map((e) => e.type)).toEqual([
      "dev.auditsink.genai.chat",
      "dev.auditsink.genai.execute_tool",
      "dev.auditsink.genai.invoke_agent",
    ]);
    for (const e of found.slice(0, 2)) {
      expect(e).toMatchObject({
        agentid: "planner-7",
        runid: "c-inherit",
        subject: "conversation/c-inherit",
      });
      // The data holds only what the span itself recorded.
      expect(e.data).not.toHaveProperty(["gen_ai.agent.id"]);
    }
    expect(found[2]).not.toHaveProperty("agentid");
    expect(found[2]!.data).toMatchObject({
      "gen_ai.agent.id": "planner-7",
      "gen_ai.conversation.id": "c-inherit",
    });
    await processor.shutdown();
  });

  it("forceFlush() resolves only once every span ended before it is recorded; onEnd only queues", async () => {
    // Prepare
    const processor = new AuditSpanProcessor({ client: await t.client({ batch: { lingerMs: 1_000 } }) });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    const before = (await t.records(STREAM)).length;
    // Act
    for (let i = 0; i < 25; i++)
      tracer.startSpan("execute_tool x", { attributes: { "gen_ai.operation.name": "execute_tool" } }).end();
    const queued = processor.stats.pending;
    await processor.forceFlush();
    // Assess: nothing was sent from inside span.end(); after forceFlush every span is stored and receipted
    // (a linger of a second would otherwise hold the batch back).
    expect(queued).toBe(25);
    expect(processor.stats).toMatchObject({ recorded: 25, pending: 0, failed: 0 });
    expect((await t.records(STREAM)).length).toBe(before + 25);
    await processor.shutdown();
  });

  it("a re-exported span gets its original receipt and is recorded once, by the same or a new processor", async () => {
    // Prepare
    const first: Receipt[] = [];
    let span: ReadableSpan | undefined;
    const processor = new AuditSpanProcessor({
      client: await t.client(),
      onReceipt: (r, s) => {
        first.push(r);
        span = s;
      },
    });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    tracer.startSpan("chat m", { attributes: { "gen_ai.operation.name": "chat" } }).end();
    await processor.forceFlush();
    const size = (await t.records(STREAM)).length;
    // Act: the same span again through the same processor, then through a new processor and client (a restart).
    const again: Receipt[] = [];
    processor.onEnd(span!);
    const restarted = new AuditSpanProcessor({ client: await t.client(), onReceipt: (r) => again.push(r) });
    restarted.onEnd(span!);
    await Promise.all([processor.forceFlush(), restarted.forceFlush()]);
    // Assess
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ index: first[0]!.index, recordHash: first[0]!.recordHash });
    expect((await t.records(STREAM)).length).toBe(size);
    await Promise.all([processor.shutdown(), restarted.shutdown()]);
  });

  it("the queue is bounded: spans beyond maxQueueSize are dropped, counted, logged and make forceFlush reject", async () => {
    // Prepare
    const logged = captureDiag();
    const processor = new AuditSpanProcessor({ client: await t.client(), maxQueueSize: 5 });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    try {
      // Act
      for (let i = 0; i < 8; i++)
        tracer.startSpan("chat m", { attributes: { "gen_ai.operation.name": "chat" } }).end();
      const flushed = processor.forceFlush();
      // Assess
      await expect(flushed).rejects.toMatchObject({
        code: "spans-dropped",
        counts: { failed: 0, dropped: 3 },
      });
      expect(processor.stats).toMatchObject({ recorded: 5, dropped: 3, pending: 0 });
      expect(logged.lines.filter((l) => l.level === "warn")).toHaveLength(1);
      expect(logged.lines[0]!.message).toContain("the queue is full (5 spans)");
      // A flush that had nothing dropped since the last one resolves.
      await expect(processor.forceFlush()).resolves.toBeUndefined();
    } finally {
      logged.restore();
      await processor.shutdown();
    }
  });

  it("shutdown() flushes, closes the client and is idempotent; later spans are dropped, not sent", async () => {
    // Prepare
    const client = await t.client();
    const processor = new AuditSpanProcessor({ client });
    const provider = new BasicTracerProvider({ spanProcessors: [processor] });
    const tracer = provider.getTracer("t");
    tracer.startSpan("invoke_agent a", { attributes: { "gen_ai.operation.name": "invoke_agent" } }).end();
    // Act
    const first = processor.shutdown();
    const second = processor.shutdown();
    await provider.shutdown(); // the provider shuts its processors down too: a third call
    await first;
    // Assess
    expect(second).toBe(first);
    expect(processor.stats).toMatchObject({ recorded: 1, pending: 0 });
    await expect(client.send({ type: "x" })).rejects.toMatchObject({ code: "closed" });
    const late = tracer.startSpan("chat late", { attributes: { "gen_ai.operation.name": "chat" } });
    processor.onEnd(late as unknown as ReadableSpan);
    expect(processor.stats).toMatchObject({ dropped: 1, pending: 0 });
  });

  it("a failed tool span records its status, error type and exception (message as a digest, no stack)", async () => {
    // Prepare
    const processor = new AuditSpanProcessor({ client: await t.client() });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    // Act
    const span = tracer.startSpan("execute_tool refund", {
      kind: SpanKind.INTERNAL,
      attributes: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "payments.refund" },
    });
    span.recordException(new RangeError("amount 9000 exceeds the limit for jane@example.com"));
    span.setAttribute("error.type", "RangeError");
    span.setStatus({ code: SpanStatusCode.ERROR, message: "refund refused" });
    span.end();
    await processor.forceFlush();
    // Assess
    const records = await t.records(STREAM);
    const event = records[records.length - 1]!.record.event;
    expect(event.data).toMatchObject({
      "error.type": "RangeError",
      "otel.status_code": "ERROR",
      "otel.status_description": "refund refused",
      "otel.events": { exception: 1 },
      "otel.exception_count": 1,
      "otel.exceptions": [
        {
          "exception.type": "RangeError",
          "exception.message.sha256": sha256("amount 9000 exceeds the limit for jane@example.com"),
        },
      ],
    });
    expect(canonicalBytes(event).toString()).not.toMatch(/jane@example\.com|at .*\.ts:\d+/);
    await processor.shutdown();
  });

  it("a filter or callback that throws never reaches the application; the span counts as failed", async () => {
    // Prepare
    const processor = new AuditSpanProcessor({
      client: await t.client(),
      filter: (span) => {
        if (span.name === "bad") throw new TypeError("filter bug");
        return true;
      },
      onReceipt: () => {
        throw new Error("receipt callback bug");
      },
      onError: () => {
        throw new Error("error callback bug");
      },
    });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    // Act
    const end = (name: string) => () => tracer.startSpan(name).end();
    // Assess
    expect(end("bad")).not.toThrow();
    expect(end("good")).not.toThrow();
    const error = (await processor.forceFlush().catch((e: unknown) => e)) as AuditExportError;
    expect(error).toMatchObject({ code: "export-failed", counts: { failed: 1, dropped: 0 } });
    expect(error.cause).toBeInstanceOf(TypeError);
    expect(processor.stats).toMatchObject({ ended: 2, recorded: 1, failed: 1 });
    await processor.shutdown();
  });

  it("the stored events verify offline with `auditsink verify`, producer signatures and receipts included", async () => {
    // Prepare
    const receipts: Receipt[] = [];
    const processor = new AuditSpanProcessor({
      client: await t.client(),
      onReceipt: (r) => receipts.push(r),
    });
    agentLoop(new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t"), "c-verify");
    await processor.shutdown();
    const fingerprint = t.sink.local.signingKey.fingerprint;
    await t.sink.close();
    const file = `${t.dataDir}.receipts.jsonl`;
    await writeFile(file, receipts.map((r) => JSON.stringify(r)).join("\n"));
    // Act
    const r = await cli(["verify", t.dataDir, "--fingerprint", fingerprint, "--receipts", file, "--json"]);
    // Assess
    const report = JSON.parse(r.out) as {
      ok: boolean;
      producerSignatures: boolean;
      receipts: { given: number; checked: number };
      streams: { stream: string; failures: unknown[] }[];
    };
    expect(r.code).toBe(0);
    expect(report).toMatchObject({ ok: true, producerSignatures: true, receipts: { given: 4, checked: 4 } });
    expect(report.streams.find((s) => s.stream === STREAM)?.failures).toEqual([]);
  });
});

describe("AuditSpanProcessor with an ECDSA P-256 producer key", () => {
  let t: TestSink;
  beforeAll(async () => {
    t = await startTestSink("ecdsa-p256");
  });
  afterAll(async () => {
    await t.remove();
  });

  it("a re-export by a new client is refused (id-conflict), never recorded twice: ECDSA signatures differ", async () => {
    // Prepare
    let span: ReadableSpan | undefined;
    const first = new AuditSpanProcessor({ client: await t.client(), onReceipt: (_r, s) => (span = s) });
    new BasicTracerProvider({ spanProcessors: [first] })
      .getTracer("t")
      .startSpan("chat m", { attributes: { "gen_ai.operation.name": "chat" } })
      .end();
    await first.shutdown();
    // Act
    const restarted = new AuditSpanProcessor({ client: await t.client() });
    restarted.onEnd(span!);
    const error = (await restarted.forceFlush().catch((e: unknown) => e)) as AuditExportError;
    // Assess
    expect(error.cause).toMatchObject({ code: "rejected", details: { status: 409 } });
    expect(((error.cause as ClientError).details.problem as { code?: string }).code).toBe("id-conflict");
    expect(await t.records(STREAM)).toHaveLength(1);
    await restarted.shutdown();
  });
});

describe("AuditSpanProcessor when the sink is down", () => {
  let t: TestSink;
  let logged: ReturnType<typeof captureDiag>;
  beforeAll(async () => {
    t = await startTestSink();
    logged = captureDiag();
  });
  afterEach(() => {
    logged.lines.length = 0;
  });
  afterAll(async () => {
    logged.restore();
    await t.remove();
  });

  it("ending spans never throws; forceFlush rejects with the failure, which is counted and reported", async () => {
    // Prepare
    const errors: unknown[] = [];
    const processor = new AuditSpanProcessor({ client: await t.client(), onError: (e) => errors.push(e) });
    const provider = new BasicTracerProvider({ spanProcessors: [processor] });
    const tracer = provider.getTracer("t");
    await t.sink.close();
    // Act
    const spans = agentLoop(tracer, "c-outage");
    const flushed = processor.forceFlush();
    // Assess
    const error = (await flushed.catch((e: unknown) => e)) as AuditExportError;
    expect(error).toBeInstanceOf(AuditExportError);
    expect(error).toMatchObject({ code: "export-failed", counts: { failed: 4, dropped: 0 } });
    expect(error.cause).toBeInstanceOf(ClientError);
    expect((error.cause as ClientError).code).toBe("unavailable");
    expect(processor.stats).toMatchObject({ ended: 5, recorded: 0, failed: 4, pending: 0 });
    expect(errors).toHaveLength(4);
    expect(spans.every((s) => !s.isRecording())).toBe(true);
    // One diag error for the run of failures, not one per span.
    expect(logged.lines.filter((l) => l.level === "error")).toHaveLength(1);
    // The provider's forceFlush rejects with its processors' errors.
    agentLoop(tracer, "c-outage-2");
    const errorsOfProvider = await provider.forceFlush().catch((e: unknown) => e);
    expect(errorsOfProvider).toEqual([expect.objectContaining({ code: "export-failed" })]);
    expect(processor.stats).toMatchObject({ failed: 8 });

    // Act: the sink comes back.
    await t.restart();
    agentLoop(tracer, "c-after");
    // Assess: what ends now is recorded, and the flush reports no old failure again.
    await expect(processor.forceFlush()).resolves.toBeUndefined();
    expect(processor.stats).toMatchObject({ recorded: 4, failed: 8 });
    const events = (await t.records(STREAM)).map((r) => r.record.event);
    expect(events.map((e) => e.subject)).toEqual(Array(4).fill("conversation/c-after"));
    await processor.shutdown();
  });

  it("a receipt that does not verify is a failure too", async () => {
    // Prepare: checkpoints must name a deployment this sink is not, so no receipt verifies.
    const processor = new AuditSpanProcessor({ client: await t.client({ deployment: "elsewhere/prod" }) });
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
    // Act
    tracer.startSpan("chat m", { attributes: { "gen_ai.operation.name": "chat" } }).end();
    const error = (await processor.forceFlush().catch((e: unknown) => e)) as AuditExportError;
    // Assess
    expect(error.code).toBe("export-failed");
    expect(error.cause).toBeInstanceOf(ReceiptError);
    expect((error.cause as ReceiptError).message).toContain("checkpoint origin");
    expect(processor.stats).toMatchObject({ recorded: 0, failed: 1 });
    await processor.shutdown();
  });
});

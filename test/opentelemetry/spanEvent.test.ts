/**
 * spanToEvent on spans made by the real OpenTelemetry SDK (collected with its InMemorySpanExporter): content
 * policies, value limits, hostile attribute names and values, and the CloudEvents attributes it derives. The
 * events it builds are checked against the sink's own event schema, signed, so "the sink would take it" is
 * proven rather than assumed.
 */
import { createHash } from "node:crypto";
import {
  canonicalEvent,
  generateKeyPair,
  parseSignedEvent,
  type SignedEvent,
  signEvent,
  type UnsignedEvent,
} from "@auditsink/core";
import { type SpanEventOptions, spanToEvent } from "@auditsink/opentelemetry";
import { type Attributes, ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const { privateKey } = generateKeyPair("ed25519");

/** Ends one span with these attributes under the real SDK and returns it as the processor would see it. */
function endedSpan(attributes: Attributes, parent = ROOT_CONTEXT, name = "span"): ReadableSpan {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  provider.getTracer("scope").startSpan(name, { attributes }, parent).end();
  const [span] = exporter.getFinishedSpans();
  return span!;
}

/** The event as the sink would parse it: signed, schema-checked, canonical size checked. */
function accepted(span: ReadableSpan, options: SpanEventOptions = {}): SignedEvent {
  const input = spanToEvent(span, { source: "agent://test", ...options });
  const { extensions, ...attributes } = input;
  const event = signEvent({ ...extensions, ...attributes, specversion: "1.0" } as UnsignedEvent, privateKey);
  const parsed = parseSignedEvent(JSON.parse(JSON.stringify(event)));
  canonicalEvent(parsed);
  return parsed;
}

const data = (e: SignedEvent) => e.data as Record<string, unknown>;

describe("spanToEvent", () => {
  const tool = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "crm.lookup",
    "gen_ai.tool.call.arguments": '{"email":"jane@example.com"}',
    "gen_ai.tool.call.result": '{"id":7}',
    "http.request.method": "GET",
  };

  it("replaces content by its SHA-256 digest by default and leaves non-GenAI attributes out", () => {
    const d = data(accepted(endedSpan(tool)));
    expect(d["gen_ai.tool.call.arguments"]).toBeUndefined();
    expect(d["gen_ai.tool.call.arguments.sha256"]).toBe(sha256(tool["gen_ai.tool.call.arguments"]));
    expect(d["gen_ai.tool.call.result.sha256"]).toBe(sha256(tool["gen_ai.tool.call.result"]));
    expect(d["gen_ai.tool.name"]).toBe("crm.lookup");
    expect(d["http.request.method"]).toBeUndefined();
  });

  it("`omit` leaves content out without a trace; `include` records it", () => {
    const omitted = data(accepted(endedSpan(tool), { content: "omit" }));
    expect(Object.keys(omitted).filter((k) => k.startsWith("gen_ai.tool.call."))).toEqual([]);
    const included = data(accepted(endedSpan(tool), { content: "include" }));
    expect(included["gen_ai.tool.call.arguments"]).toBe('{"email":"jane@example.com"}');
  });

  it("treats older instrumentations' indexed prompt and completion attributes as content", () => {
    const d = data(
      accepted(
        endedSpan({
          "gen_ai.operation.name": "chat",
          "gen_ai.prompt.0.content": "hello",
          "gen_ai.prompt": "p",
        }),
      ),
    );
    expect(d).toEqual(
      expect.objectContaining({
        "gen_ai.prompt.0.content.sha256": sha256("hello"),
        "gen_ai.prompt.sha256": sha256("p"),
      }),
    );
    expect(JSON.stringify(d)).not.toContain('"hello"');
  });

  it("digests any value longer than maxValueLength, whatever the policy", () => {
    const long = "x".repeat(300_000);
    const d = data(
      accepted(
        endedSpan({
          "gen_ai.operation.name": "chat",
          "gen_ai.response.id": long,
          "gen_ai.input.messages": long,
        }),
        {
          content: "include",
        },
      ),
    );
    expect(d["gen_ai.response.id"]).toBeUndefined();
    expect(d["gen_ai.response.id.sha256"]).toBe(sha256(long));
    expect(d["gen_ai.input.messages.sha256"]).toBe(sha256(long));
  });

  it("records array values as JSON arrays and digests them over their JSON", () => {
    const d = data(
      accepted(
        endedSpan({
          "gen_ai.operation.name": "chat",
          "gen_ai.response.finish_reasons": ["stop", "length"],
          "gen_ai.input.messages": ["a", "b"],
        }),
      ),
    );
    expect(d["gen_ai.response.finish_reasons"]).toEqual(["stop", "length"]);
    expect(d["gen_ai.input.messages.sha256"]).toBe(sha256('["a","b"]'));
  });

  it("keeps `__proto__`, `constructor` and non-finite numbers as plain data members", () => {
    // The SDK's own setAttribute cannot store a `__proto__` key (assignment sets the prototype); a span from
    // another source can carry one, as JSON.parse makes it.
    const real = endedSpan({
      "gen_ai.operation.name": "chat",
      "gen_ai.request.temperature": Number.NaN,
      "gen_ai.request.top_p": Number.POSITIVE_INFINITY,
    });
    const attributes = { ...real.attributes, ...JSON.parse('{"__proto__":"polluted","constructor":"c"}') };
    const span = Object.create(real, { attributes: { value: attributes } }) as ReadableSpan;
    const d = data(accepted(span, { includeAttribute: () => true }));
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype);
    expect(Object.hasOwn(d, "__proto__")).toBe(true);
    expect(Object.getOwnPropertyDescriptor(d, "__proto__")?.value).toBe("polluted");
    expect(d.constructor).toBe("c");
    expect(d["gen_ai.request.temperature"]).toBe("NaN");
    expect(d["gen_ai.request.top_p"]).toBe("Infinity");
  });

  it("derives type, subject, traceparent and tracestate; an unusable subject is left out, not sent to be refused", () => {
    // Prepare: a parent span context with a trace state, as an incoming traceparent/tracestate would give.
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: TraceFlags.SAMPLED,
      traceState: new TraceState("vendor=abc"),
      isRemote: true,
    });
    // Act
    const e = accepted(
      endedSpan(
        { "gen_ai.operation.name": "Invoke Agent!", "gen_ai.conversation.id": "c\u0007bell" },
        parent,
      ),
    );
    const plain = accepted(endedSpan({ "gen_ai.operation.name": "chat", "gen_ai.agent.id": "bot-1" }));
    const custom = accepted(endedSpan({ "http.route": "/x" }), {
      typePrefix: "com.example.",
      subject: () => "s",
    });
    // Assess
    expect(e.type).toBe("dev.auditsink.genai.invoke_agent_");
    expect(e.subject).toBeUndefined();
    expect(e.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(e.tracestate).toBe("vendor=abc");
    expect(e.id).toBe(`4bf92f3577b34da6a3ce929d0e0e4736-${data(e)["otel.span_id"]}`);
    expect(data(e)["otel.parent_span_id"]).toBe("00f067aa0ba902b7");
    expect(plain.subject).toBe("agent/bot-1");
    expect(plain.tracestate).toBeUndefined();
    expect(custom).toMatchObject({ type: "com.example.span", subject: "s" });
  });
});

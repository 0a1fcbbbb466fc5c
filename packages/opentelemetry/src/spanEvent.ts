/**
 * From a finished OpenTelemetry span to the audit event that records it: pure, no I/O. The mapping is described
 * in docs/OPENTELEMETRY.md §Events; attribute names are those of the OpenTelemetry GenAI semantic conventions
 * (https://opentelemetry.io/docs/specs/semconv/gen-ai/), which are still in Development status.
 */
import type { AuditEventInput } from "@auditsink/client";
import { sha256, toHex } from "@auditsink/core";
import { type AttributeValue, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { hrTimeToMilliseconds, hrTimeToTimeStamp } from "@opentelemetry/core";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";

/** Event types are this prefix and the span's `gen_ai.operation.name`, e.g. `dev.auditsink.genai.execute_tool`. */
export const DEFAULT_TYPE_PREFIX = "dev.auditsink.genai.";

/** The type suffix of a span that passed a custom filter without a `gen_ai.operation.name`. */
export const UNNAMED_OPERATION = "span";

/**
 * Attributes that carry conversation content: prompts, completions, system instructions, tool definitions, tool
 * arguments and results. The GenAI conventions make them opt-in because they "may contain sensitive
 * information"; here they are replaced by a SHA-256 digest unless `content` says otherwise.
 */
export const CONTENT_ATTRIBUTES: readonly string[] = [
  "gen_ai.input.messages",
  "gen_ai.output.messages",
  "gen_ai.system_instructions",
  "gen_ai.tool.definitions",
  "gen_ai.tool.call.arguments",
  "gen_ai.tool.call.result",
  // Names of older instrumentations (gen_ai.prompt, gen_ai.prompt.0.content, gen_ai.completion.0.content, …).
  "gen_ai.prompt",
  "gen_ai.completion",
];

const CONTENT_PREFIXES = ["gen_ai.prompt.", "gen_ai.completion."];

/**
 * What happens to content attributes (CONTENT_ATTRIBUTES, or `isContent`) and to exception messages:
 * - `digest` (default): the value is left out; `<name>.sha256` holds the SHA-256 (hex) of its UTF-8 text
 *   (arrays: of their JSON), so whoever keeps the text elsewhere can prove it is the one the agent used;
 * - `omit`: left out, with no trace of it;
 * - `include`: recorded as it is (still subject to `maxValueLength`).
 */
export type ContentPolicy = "digest" | "omit" | "include";

export interface SpanEventOptions {
  /** Event type prefix (default `dev.auditsink.genai.`). */
  typePrefix?: string;
  /** CloudEvents `source`, or a function of the span; default the AuditClient's `source`. */
  source?: string | ((span: ReadableSpan) => string | undefined);
  /**
   * CloudEvents `subject`; default `conversation/<gen_ai.conversation.id>`, else `agent/<gen_ai.agent.id>` (the
   * span's own, else inherited from an enclosing span).
   */
  subject?: (span: ReadableSpan) => string | undefined;
  /** Which span attributes go into `data` (default: `gen_ai.*` and `error.type`). */
  includeAttribute?: (name: string) => boolean;
  /** Which of those are content (default: CONTENT_ATTRIBUTES and `gen_ai.prompt.*`, `gen_ai.completion.*`). */
  isContent?: (name: string) => boolean;
  /** Default `digest`. */
  content?: ContentPolicy;
  /**
   * A string longer than this many characters (an array: whose JSON is) is recorded as its digest whatever the
   * policy (default 4,096), so one attribute cannot make an event larger than the sink takes (256 KiB).
   */
  maxValueLength?: number;
}

/** Exceptions summarised per span; more are only counted. */
export const MAX_EXCEPTIONS = 10;

const SUBJECT = /^[^\u0000-\u001f\u007f]{1,1024}$/;
const KINDS: Record<number, string> = {
  [SpanKind.INTERNAL]: "internal",
  [SpanKind.SERVER]: "server",
  [SpanKind.CLIENT]: "client",
  [SpanKind.PRODUCER]: "producer",
  [SpanKind.CONSUMER]: "consumer",
};
const STATUS: Record<number, string> = {
  [SpanStatusCode.UNSET]: "UNSET",
  [SpanStatusCode.OK]: "OK",
  [SpanStatusCode.ERROR]: "ERROR",
};

/** The span's `gen_ai.operation.name`, when it has one (the default filter). */
export function operationName(span: ReadableSpan): string | undefined {
  const name = span.attributes["gen_ai.operation.name"];
  return typeof name === "string" && name.length > 0 ? name : undefined;
}

/**
 * The stable event id of a span: `<trace id>-<span id>`. A span exported twice (a retry, a second exporter, a
 * restart that replays) gets the same id, so the sink answers the second time with the original receipt.
 */
export function spanEventId(span: ReadableSpan): string {
  const { traceId, spanId } = span.spanContext();
  return `${traceId}-${spanId}`;
}

/** The W3C `traceparent` of the span itself (CloudEvents distributed tracing extension). */
export function traceparent(span: ReadableSpan): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/**
 * The agent and conversation a span belongs to when it does not say so itself: those of its nearest enclosing
 * span that does (an `invoke_agent` span, typically). They go into the `agentid` and `runid` extension
 * attributes, which `GET /v1/events?agent=&run=` also matches; `data` keeps only what the span itself recorded.
 */
export interface InheritedContext {
  agent?: string;
  conversation?: string;
}

/** Values an extension attribute can take (docs/FORMAT.md §3): 1–4,096 characters, no control characters. */
const EXTENSION_VALUE = /^[^\u0000-\u001f\u007f]{1,4096}$/;

/** The audit event that records `span` (unsigned: AuditClient signs it). */
export function spanToEvent(
  span: ReadableSpan,
  options: SpanEventOptions = {},
  inherited: InheritedContext = {},
): AuditEventInput {
  const op = operationName(span);
  const context = span.spanContext();
  const source = typeof options.source === "function" ? options.source(span) : options.source;
  const subject = options.subject ? options.subject(span) : defaultSubject(span, inherited);
  const tracestate = context.traceState?.serialize();
  const own = (name: string) => typeof span.attributes[name] === "string";
  return {
    type: `${options.typePrefix ?? DEFAULT_TYPE_PREFIX}${op ? typeSuffix(op) : UNNAMED_OPERATION}`,
    id: spanEventId(span),
    ...(source !== undefined ? { source } : {}),
    time: hrTimeToTimeStamp(span.endTime),
    ...(subject !== undefined && SUBJECT.test(subject) ? { subject } : {}),
    datacontenttype: "application/json",
    data: spanData(span, options),
    extensions: {
      traceparent: traceparent(span),
      ...(tracestate ? { tracestate } : {}),
      ...(!own("gen_ai.agent.id") && inherited.agent && EXTENSION_VALUE.test(inherited.agent)
        ? { agentid: inherited.agent }
        : {}),
      ...(!own("gen_ai.conversation.id") &&
      inherited.conversation &&
      EXTENSION_VALUE.test(inherited.conversation)
        ? { runid: inherited.conversation }
        : {}),
    },
  };
}

function defaultSubject(span: ReadableSpan, inherited: InheritedContext): string | undefined {
  const attribute = (name: string) => {
    const v = span.attributes[name];
    return typeof v === "string" && v ? v : undefined;
  };
  const conversation = attribute("gen_ai.conversation.id") ?? inherited.conversation;
  if (conversation) return `conversation/${conversation}`;
  const agent = attribute("gen_ai.agent.id") ?? inherited.agent;
  return agent ? `agent/${agent}` : undefined;
}

/** Operation names are free text in the conventions; a type keeps lowercase letters, digits, `.`, `_` and `-`. */
function typeSuffix(op: string): string {
  return op
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, "_")
    .slice(0, 128);
}

const defaultInclude = (name: string) => name.startsWith("gen_ai.") || name === "error.type";
const defaultIsContent = (name: string) =>
  CONTENT_ATTRIBUTES.includes(name) || CONTENT_PREFIXES.some((p) => name.startsWith(p));

/**
 * The event's `data`: the selected attributes under their own names, then the span's identity, timing, status
 * and an events summary under `otel.*` names. Built with Object.fromEntries, so an attribute named `__proto__`
 * is an ordinary member, never a prototype.
 */
function spanData(span: ReadableSpan, options: SpanEventOptions): Record<string, unknown> {
  const include = options.includeAttribute ?? defaultInclude;
  const isContent = options.isContent ?? defaultIsContent;
  const policy = options.content ?? "digest";
  const max = options.maxValueLength ?? 4096;
  const entries: [string, unknown][] = [];
  for (const [name, value] of Object.entries(span.attributes)) {
    if (value === undefined || !include(name)) continue;
    entries.push(...recordValue(name, value, isContent(name) ? policy : "include", max));
  }
  const context = span.spanContext();
  const parent = span.parentSpanContext;
  const scope = span.instrumentationScope;
  const service = span.resource.attributes["service.name"];
  entries.push(
    ["otel.span.name", span.name],
    ["otel.span.kind", KINDS[span.kind] ?? String(span.kind)],
    ["otel.trace_id", context.traceId],
    ["otel.span_id", context.spanId],
    ...(parent ? [["otel.parent_span_id", parent.spanId] as [string, unknown]] : []),
    ["otel.start_time", hrTimeToTimeStamp(span.startTime)],
    ["otel.duration_ms", hrTimeToMilliseconds(span.duration)],
    ["otel.status_code", STATUS[span.status.code] ?? String(span.status.code)],
    ...(span.status.message
      ? recordValue("otel.status_description", span.status.message, "include", max)
      : []),
    ["otel.scope.name", scope.name],
    ...(scope.version ? [["otel.scope.version", scope.version] as [string, unknown]] : []),
    ...(typeof service === "string" ? [["service.name", service] as [string, unknown]] : []),
    ...eventSummary(span, policy, max),
  );
  if (span.droppedAttributesCount > 0)
    entries.push(["otel.dropped_attributes_count", span.droppedAttributesCount]);
  return Object.fromEntries(entries);
}

/**
 * Span events are counted by name; `exception` events (OpenTelemetry's recordException) are listed with their
 * type, and their message under the content policy (messages quote inputs often enough). Stack traces are
 * never recorded.
 */
function eventSummary(span: ReadableSpan, policy: ContentPolicy, max: number): [string, unknown][] {
  if (span.events.length === 0 && span.droppedEventsCount === 0) return [];
  const names = new Map<string, number>();
  const exceptions: Record<string, unknown>[] = [];
  let exceptionCount = 0;
  for (const event of span.events) {
    names.set(event.name, (names.get(event.name) ?? 0) + 1);
    if (event.name !== "exception") continue;
    exceptionCount++;
    if (exceptions.length >= MAX_EXCEPTIONS) continue;
    const a = event.attributes ?? {};
    exceptions.push(
      Object.fromEntries([
        ["time", hrTimeToTimeStamp(event.time)],
        ...recordValue("exception.type", a["exception.type"], "include", max),
        ...recordValue("exception.message", a["exception.message"], policy, max),
      ]),
    );
  }
  return [
    ["otel.events", Object.fromEntries([...names].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))],
    ...(span.droppedEventsCount > 0
      ? [["otel.dropped_events_count", span.droppedEventsCount] as [string, unknown]]
      : []),
    ...(exceptionCount > 0
      ? [
          ["otel.exceptions", exceptions] as [string, unknown],
          ["otel.exception_count", exceptionCount] as [string, unknown],
        ]
      : []),
  ];
}

/** One attribute as data members: itself, its digest (`<name>.sha256`), or nothing. */
function recordValue(
  name: string,
  value: AttributeValue | undefined,
  policy: ContentPolicy,
  max: number,
): [string, unknown][] {
  if (value === undefined) return [];
  const json = jsonValue(value);
  const text = typeof json === "string" ? json : JSON.stringify(json);
  if (policy === "omit") return [];
  if (policy === "digest" || text.length > max) return [[`${name}.sha256`, toHex(sha256(text))]];
  return [[name, json]];
}

/** Attribute values as JSON: non-finite numbers become their names, missing array members null. */
function jsonValue(value: AttributeValue): unknown {
  const one = (v: unknown) =>
    v === undefined || v === null ? null : typeof v === "number" && !Number.isFinite(v) ? String(v) : v;
  return Array.isArray(value) ? value.map(one) : one(value);
}

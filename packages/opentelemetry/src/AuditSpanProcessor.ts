/**
 * An OpenTelemetry span processor that records finished GenAI spans (tool executions, model calls, agent
 * invocations) as signed audit events through an AuditClient, which batches them, retries idempotently and
 * verifies every receipt. docs/OPENTELEMETRY.md describes the events and the delivery guarantees.
 */
import type { AuditClient } from "@auditsink/client";
import type { Receipt } from "@auditsink/core";
import { type Context, diag } from "@opentelemetry/api";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { AuditExportError } from "./errors.ts";
import {
  type InheritedContext,
  operationName,
  type SpanEventOptions,
  spanEventId,
  spanToEvent,
} from "./spanEvent.ts";

export interface AuditSpanProcessorOptions extends SpanEventOptions {
  /** The client that signs and sends the events (its producer key, sink key, stream and source). */
  client: AuditClient;
  /** Stream to record into (default: the client's stream). */
  stream?: string;
  /** Which ended spans are recorded (default: those with a `gen_ai.operation.name`). */
  filter?: (span: ReadableSpan) => boolean;
  /**
   * Most spans held at once, waiting to be sent or for their receipt (default 2,048). A span that ends while
   * the queue is full is dropped and counted: the newest are dropped, never the ones already in flight.
   */
  maxQueueSize?: number;
  /** Whether shutdown() closes the client too (default true). */
  closeClient?: boolean;
  /** Called with each verified receipt (to keep receipts for later proofs). */
  onReceipt?: (receipt: Receipt, span: ReadableSpan) => void;
  /** Called with the error of each span that was not recorded (besides the diag logger). */
  onError?: (error: unknown, span?: ReadableSpan) => void;
}

/** Counters since the processor was made. `pending` is what the queue holds now. */
export interface AuditSpanProcessorStats {
  /** Spans that reached onEnd. */
  ended: number;
  /** Spans the filter passed over. */
  skipped: number;
  /** Spans recorded: the sink's receipt came back and verified. */
  recorded: number;
  /** Spans whose event was not recorded (refused, unavailable after retries, bad receipt, filter threw). */
  failed: number;
  /** Spans dropped: queue full, or ended after shutdown. */
  dropped: number;
  pending: number;
}

interface Unflushed {
  failed: number;
  dropped: number;
  errors: unknown[];
}

/** How many errors an AuditExportError carries. */
const KEPT_ERRORS = 10;
/** Most spans in progress tracked for inheritance; spans started beyond it inherit nothing. */
export const MAX_OPEN_SPANS = 10_000;
/** Deepest chain of enclosing spans searched for an agent or conversation. */
const MAX_ANCESTORS = 64;

const spanKey = (traceId: string, spanId: string) => `${traceId}-${spanId}`;

/**
 * @example
 *   const client = await AuditClient.create({ endpoint, producerKey, sinkKey, stream: "agents.support-bot",
 *     source: "agent://support-bot" });
 *   const provider = new NodeTracerProvider({ spanProcessors: [new AuditSpanProcessor({ client })] });
 *   provider.register();
 *   // … the agent runs; its GenAI spans become signed, receipted audit events …
 *   await provider.shutdown(); // flushes, then closes the client
 */
export class AuditSpanProcessor implements SpanProcessor {
  private readonly client: AuditClient;
  private readonly filter: (span: ReadableSpan) => boolean;
  private readonly maxQueueSize: number;
  /** Ended spans not yet handed to the client (converted and signed off the application's call stack). */
  private readonly buffer: { span: ReadableSpan; inherited: InheritedContext }[] = [];
  /** Spans in progress by trace and span id, with their parent: where an ending span finds its agent. */
  private readonly open = new Map<string, { span: Span; parent?: string }>();
  /** One promise per span handed to the client; each settles (never rejects) once it is recorded or failed. */
  private readonly inflight = new Set<Promise<void>>();
  private scheduled: NodeJS.Immediate | undefined;
  private readonly counts = { ended: 0, skipped: 0, recorded: 0, failed: 0, dropped: 0 };
  private unflushed: Unflushed = { failed: 0, dropped: 0, errors: [] };
  /** Whether a drop or a failure has been logged since the last time things went well. */
  private dropping = false;
  private failing = false;
  private shutdownOnce: Promise<void> | undefined;

  constructor(private readonly options: AuditSpanProcessorOptions) {
    this.client = options.client;
    this.filter = options.filter ?? ((span) => operationName(span) !== undefined);
    this.maxQueueSize = options.maxQueueSize ?? 2048;
    if (!Number.isInteger(this.maxQueueSize) || this.maxQueueSize < 1)
      throw new RangeError("maxQueueSize must be a positive integer");
  }

  get stats(): AuditSpanProcessorStats {
    return { ...this.counts, pending: this.buffer.length + this.inflight.size };
  }

  /** Remembers the span while it is open, so that spans inside it can inherit its agent and conversation. */
  onStart(span: Span, _parentContext: Context): void {
    try {
      if (this.shutdownOnce || this.open.size >= MAX_OPEN_SPANS) return;
      const { traceId, spanId } = span.spanContext();
      const parent = span.parentSpanContext?.spanId;
      this.open.set(spanKey(traceId, spanId), parent ? { span, parent } : { span });
    } catch {
      // Inheritance is best effort; nothing here may reach the application.
    }
  }

  /** Queues the span and returns at once; never throws. Conversion, signing and sending happen later. */
  onEnd(span: ReadableSpan): void {
    try {
      this.counts.ended++;
      const { traceId, spanId } = span.spanContext();
      this.open.delete(spanKey(traceId, spanId));
      if (this.shutdownOnce) {
        this.drop(span, "the processor is shut down");
        return;
      }
      if (!this.filter(span)) {
        this.counts.skipped++;
        return;
      }
      if (this.buffer.length + this.inflight.size >= this.maxQueueSize) {
        this.drop(span, `the queue is full (${this.maxQueueSize} spans)`);
        return;
      }
      this.dropping = false;
      this.buffer.push({ span, inherited: this.inherited(span) });
      this.scheduled ??= setImmediate(() => this.drain());
    } catch (error) {
      this.fail(error, span);
    }
  }

  /**
   * Sends every span ended so far and resolves once each is recorded with a verified receipt. Rejects with an
   * AuditExportError when any span since the previous flush was not recorded or was dropped (the provider's
   * own forceFlush() rejects with an array of its processors' errors).
   */
  async forceFlush(): Promise<void> {
    this.drain();
    const waiting = [...this.inflight];
    await this.client.flush();
    await Promise.all(waiting);
    const { failed, dropped, errors } = this.unflushed;
    this.unflushed = { failed: 0, dropped: 0, errors: [] };
    if (failed === 0 && dropped === 0) return;
    const first = errors[0] instanceof Error ? `: ${errors[0].message}` : "";
    throw failed > 0
      ? new AuditExportError(
          "export-failed",
          `${failed} span(s) not recorded${dropped ? `, ${dropped} dropped` : ""}${first}`,
          { failed, dropped },
          errors,
        )
      : new AuditExportError("spans-dropped", `${dropped} span(s) dropped`, { failed, dropped }, errors);
  }

  /**
   * Flushes, then closes the client (unless `closeClient: false`); spans that end afterwards are dropped.
   * Idempotent: every call returns the first call's promise, which rejects as forceFlush() does.
   */
  shutdown(): Promise<void> {
    this.shutdownOnce ??= (async () => {
      this.open.clear();
      try {
        await this.forceFlush();
      } finally {
        if (this.options.closeClient ?? true) await this.client.close();
      }
    })();
    return this.shutdownOnce;
  }

  /**
   * The agent and conversation of the span's nearest open ancestors that name them (read now, so attributes
   * they set after they started count), for a span that does not name them itself.
   */
  private inherited(span: ReadableSpan): InheritedContext {
    const { traceId } = span.spanContext();
    const found: InheritedContext = {};
    const need = (name: string) => typeof span.attributes[name] !== "string";
    let wantAgent = need("gen_ai.agent.id");
    let wantConversation = need("gen_ai.conversation.id");
    let parent = span.parentSpanContext?.spanId;
    for (let depth = 0; parent && (wantAgent || wantConversation) && depth < MAX_ANCESTORS; depth++) {
      const entry = this.open.get(spanKey(traceId, parent));
      if (!entry) break;
      const { attributes } = entry.span;
      const agent = attributes["gen_ai.agent.id"];
      const conversation = attributes["gen_ai.conversation.id"];
      if (wantAgent && typeof agent === "string") {
        found.agent = agent;
        wantAgent = false;
      }
      if (wantConversation && typeof conversation === "string") {
        found.conversation = conversation;
        wantConversation = false;
      }
      parent = entry.parent;
    }
    return found;
  }

  private drain(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    for (const { span, inherited } of this.buffer.splice(0)) this.send(span, inherited);
  }

  private send(span: ReadableSpan, inherited: InheritedContext): void {
    let outcome: Promise<Receipt>;
    try {
      const event = spanToEvent(span, this.options, inherited);
      outcome = this.client.send(event, this.options.stream ? { stream: this.options.stream } : {});
    } catch (error) {
      outcome = Promise.reject(error);
    }
    const settled: Promise<void> = outcome
      .then(
        (receipt) => {
          this.counts.recorded++;
          this.failing = false;
          if (this.options.onReceipt) this.callback(() => this.options.onReceipt?.(receipt, span));
        },
        (error) => this.fail(error, span),
      )
      .finally(() => this.inflight.delete(settled));
    this.inflight.add(settled);
  }

  private drop(span: ReadableSpan, why: string): void {
    this.counts.dropped++;
    this.unflushed.dropped++;
    if (this.dropping) return;
    this.dropping = true;
    this.callback(() =>
      diag.warn(`AuditSpanProcessor: dropping spans: ${why} (first: ${span.name} ${spanEventId(span)})`),
    );
  }

  /** Counts and reports a span that was not recorded: diag.error for the first of a run of failures. */
  private fail(error: unknown, span: ReadableSpan): void {
    this.counts.failed++;
    this.unflushed.failed++;
    if (this.unflushed.errors.length < KEPT_ERRORS) this.unflushed.errors.push(error);
    this.callback(() => {
      const message = `AuditSpanProcessor: span ${span.name} ${spanEventId(span)} not recorded`;
      if (this.failing) diag.debug(message, error);
      else diag.error(message, error);
    });
    this.failing = true;
    if (this.options.onError) this.callback(() => this.options.onError?.(error, span));
  }

  /**
   * Runs a user callback (or a diag logger, which is user code too); what it throws is logged if the logger
   * lets it, and never thrown into the application's or the sink's path.
   */
  private callback(run: () => void): void {
    try {
      run();
    } catch (error) {
      try {
        diag.error("AuditSpanProcessor: a callback threw", error);
      } catch {
        // The logger itself throws: nowhere left to report to.
      }
    }
  }
}

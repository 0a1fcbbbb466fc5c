/**
 * An agent loop instrumented with the OpenTelemetry SDK, the way agent frameworks do it (GenAI semantic
 * conventions: an `invoke_agent` span around `chat` and `execute_tool` spans), with AuditSpanProcessor beside
 * whatever exporter the app already has. Each GenAI span becomes a signed audit event whose receipt the client
 * verifies; the tool's arguments and result are recorded as SHA-256 digests, not as text.
 *
 * The model is a stand-in (two canned turns), so the example runs without a model provider.
 *
 *   npx tsx examples/otel-agent-loop.ts
 */
import type { AuditClient } from "@auditsink/client";
import type { Receipt } from "@auditsink/core";
import { AuditSpanProcessor } from "@auditsink/opentelemetry";
import { type Attributes, SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { connect, isMain } from "./connect.ts";

const AGENT = { "gen_ai.agent.id": "support-bot", "gen_ai.agent.name": "Support bot" };
const MODEL = { "gen_ai.provider.name": "aws.bedrock", "gen_ai.request.model": "anthropic.claude-sonnet-4" };

interface ModelTurn {
  toolCall?: { id: string; name: string; arguments: Record<string, unknown> };
  text?: string;
  usage: { input: number; output: number };
}

/** The stand-in model: first asks for a tool, then answers with what the tool returned. */
function model(messages: unknown[]): ModelTurn {
  return messages.length === 1
    ? {
        toolCall: { id: "call-1", name: "crm.lookup_customer", arguments: { email: "jane@example.com" } },
        usage: { input: 412, output: 31 },
      }
    : { text: "Jane's order shipped on Monday.", usage: { input: 480, output: 12 } };
}

const tools: Record<string, (args: Record<string, unknown>) => Promise<unknown>> = {
  "crm.lookup_customer": async () => ({ customer: "C-7", lastOrder: { status: "shipped" } }),
};

/** One conversation turn: model call → tool call → model call, each in its own GenAI span. */
export async function runAgentLoop(tracer: Tracer, conversation: string, question: string): Promise<string> {
  const common = { ...AGENT, "gen_ai.conversation.id": conversation };
  return tracer.startActiveSpan(
    "invoke_agent support-bot",
    { kind: SpanKind.INTERNAL, attributes: { "gen_ai.operation.name": "invoke_agent", ...common, ...MODEL } },
    async (agent) => {
      try {
        const messages: unknown[] = [{ role: "user", content: question }];
        for (;;) {
          const turn = await chat(tracer, common, messages);
          if (!turn.toolCall) return turn.text ?? "";
          messages.push({ role: "assistant", tool_call: turn.toolCall });
          messages.push({ role: "tool", content: await executeTool(tracer, common, turn.toolCall) });
        }
      } catch (error) {
        agent.recordException(error as Error);
        agent.setStatus({ code: SpanStatusCode.ERROR });
        throw error;
      } finally {
        agent.end();
      }
    },
  );
}

function chat(tracer: Tracer, common: Attributes, messages: unknown[]): Promise<ModelTurn> {
  return tracer.startActiveSpan(
    `chat ${MODEL["gen_ai.request.model"]}`,
    { kind: SpanKind.CLIENT, attributes: { "gen_ai.operation.name": "chat", ...common, ...MODEL } },
    async (span) => {
      try {
        // Content attributes: recorded by the processor as digests unless configured otherwise.
        span.setAttribute("gen_ai.input.messages", JSON.stringify(messages));
        const turn = model(messages);
        span.setAttributes({
          "gen_ai.response.model": MODEL["gen_ai.request.model"],
          "gen_ai.usage.input_tokens": turn.usage.input,
          "gen_ai.usage.output_tokens": turn.usage.output,
          "gen_ai.response.finish_reasons": [turn.toolCall ? "tool_call" : "stop"],
          "gen_ai.output.messages": JSON.stringify([
            { role: "assistant", content: turn.text ?? turn.toolCall },
          ]),
        });
        return turn;
      } finally {
        span.end();
      }
    },
  );
}

function executeTool(
  tracer: Tracer,
  common: Attributes,
  call: NonNullable<ModelTurn["toolCall"]>,
): Promise<unknown> {
  return tracer.startActiveSpan(
    `execute_tool ${call.name}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        "gen_ai.operation.name": "execute_tool",
        ...common,
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": call.id,
        "gen_ai.tool.call.arguments": JSON.stringify(call.arguments),
      },
    },
    async (span) => {
      try {
        const tool = tools[call.name];
        if (!tool) throw new Error(`no tool ${call.name}`);
        const result = await tool(call.arguments);
        span.setAttribute("gen_ai.tool.call.result", JSON.stringify(result));
        return result;
      } catch (error) {
        span.recordException(error as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: "tool failed" });
        span.setAttribute("error.type", (error as Error).name);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/**
 * Runs the loop under a tracer provider whose processor records into the sink through `client`, flushes, and
 * returns the answer and the receipts (one per GenAI span).
 */
export async function recordAgentLoop(client: AuditClient, conversation: string, question: string) {
  const receipts: Receipt[] = [];
  const audit = new AuditSpanProcessor({ client, onReceipt: (r) => receipts.push(r) });
  const provider = new NodeTracerProvider({ spanProcessors: [audit] });
  // Registers the provider and its AsyncLocalStorage context manager globally, so that startActiveSpan parents
  // the model and tool spans under the agent span across awaits.
  provider.register();
  const tracer = provider.getTracer("examples/otel-agent-loop", "0.1.0");
  const answer = await runAgentLoop(tracer, conversation, question);
  // The processor's own forceFlush rejects with an AuditExportError when a span was not recorded.
  await audit.forceFlush();
  await provider.shutdown(); // flushes again and closes the client
  return { answer, receipts };
}

if (isMain(import.meta.url)) {
  const client = await connect("agents.support-bot", "agent://support-bot");
  const { answer, receipts } = await recordAgentLoop(client, "c-2f9a", "Where is my order?");
  console.log(`agent answered: ${answer}`);
  for (const r of receipts)
    console.log(`  recorded ${r.stream} #${r.index} (${r.source} ${r.id}); receipt verified`);
}

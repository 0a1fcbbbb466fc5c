/**
 * `npm run demo`: the embedded sink end to end in one minute.
 *
 *   1. start the sink on a fresh data directory;
 *   2. register two producers — an agent runtime (Ed25519) and an MCP tool proxy (ECDSA P-256) — over HTTP with
 *      the admin token; both registrations land in the `_system` stream;
 *   3. send a realistic agent session (OpenTelemetry GenAI attribute names: invoke_agent → chat → execute_tool …)
 *      and check every receipt offline with nothing but the exported verifier key;
 *   4. find the session again by its conversation id;
 *   5. copy the data directory, tamper with the copy (rewrite one tool call, drop the newest segment), and start
 *      the sink on the copy: its scheduled verifier catches both, while the original still verifies clean.
 */
import { chmod, cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  generateKeyPair,
  parseVerifierKey,
  type Receipt,
  type SignedEvent,
  signEvent,
  spkiDer,
  verifyReceipt,
} from "@auditsink/core";
import { DirectoryObjects, startEmbeddedSink } from "../packages/local/src/index.ts";

const say = (text: string) => process.stdout.write(`${text}\n`);
// Bold step titles only on a terminal: piped into a file or a CI log, escape codes are noise.
const bold = process.stdout.isTTY && !process.env.NO_COLOR;
const step = (n: number, text: string) => say(bold ? `\n\x1b[1m${n}. ${text}\x1b[0m` : `\n${n}. ${text}`);

const root = await mkdtemp(join(tmpdir(), "auditsink-demo-"));
const dataDir = join(root, "data");
const alertLines: string[] = [];

step(1, "Start the embedded sink");
const sink = await startEmbeddedSink({ dataDir, port: 0, verifyIntervalSeconds: 0, log: () => undefined });
const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();

step(2, "Register two producers (recorded as events in the _system stream)");
const runtime = { id: "support-agent-runtime", ...generateKeyPair("ed25519") };
const proxy = { id: "mcp-tool-proxy", ...generateKeyPair("ecdsa-p256") };
for (const p of [runtime, proxy]) {
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({
      id: p.id,
      publicKey: spkiDer(p.publicKey).toString("base64"),
      streams: ["agents.*"],
      heartbeatSeconds: 3600,
    }),
  });
  say(`   ${p.id}: HTTP ${res.status}`);
}

step(3, "Send an agent session; every event gets a signed receipt");
const conversation = `conv-${Date.now().toString(36)}`;
const agentId = "asst_support_7";
let seq = 0;
const at = Date.now();
function event(p: typeof runtime, type: string, attributes: Record<string, unknown>): SignedEvent {
  seq++;
  return signEvent(
    {
      specversion: "1.0",
      id: `${conversation}-${seq}`,
      source: p === runtime ? "agent://support-agent-runtime/eu-west-1" : "mcp://tool-proxy/prod",
      type,
      time: new Date(at + seq * 850).toISOString(),
      subject: conversation,
      data: {
        "gen_ai.agent.id": agentId,
        "gen_ai.agent.name": "Support assistant",
        "gen_ai.conversation.id": conversation,
        "gen_ai.provider.name": "openai",
        ...attributes,
      } as never,
    },
    p.privateKey,
  );
}
const session: [typeof runtime, SignedEvent][] = [
  [
    runtime,
    event(runtime, "gen_ai.agent.invoked", {
      "gen_ai.operation.name": "invoke_agent",
      "enduser.id": "customer-4411",
    }),
  ],
  [
    runtime,
    event(runtime, "gen_ai.chat", {
      "gen_ai.operation.name": "chat",
      "gen_ai.request.model": "gpt-4.1",
      "gen_ai.usage.input_tokens": 812,
      "gen_ai.usage.output_tokens": 64,
    }),
  ],
  [
    proxy,
    event(proxy, "gen_ai.tool.executed", {
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "crm.lookup_order",
      "gen_ai.tool.call.id": "call_01",
      "gen_ai.tool.type": "function",
      "tool.arguments": { order: "A-1042" },
    }),
  ],
  [
    proxy,
    event(proxy, "gen_ai.tool.executed", {
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "payments.refund",
      "gen_ai.tool.call.id": "call_02",
      "gen_ai.tool.type": "function",
      "tool.arguments": { order: "A-1042", amount_eur: 49.9 },
    }),
  ],
  [
    runtime,
    event(runtime, "gen_ai.chat", {
      "gen_ai.operation.name": "chat",
      "gen_ai.request.model": "gpt-4.1",
      "gen_ai.usage.input_tokens": 1040,
      "gen_ai.usage.output_tokens": 120,
    }),
  ],
  [
    runtime,
    event(runtime, "gen_ai.agent.completed", {
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.response.finish_reasons": ["stop"],
    }),
  ],
];
const trusted = [
  parseVerifierKey((await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim()),
];
const receipts: Receipt[] = [];
async function submit(contentType: string, body: unknown): Promise<Receipt[]> {
  const res = await fetch(`${sink.url}/v1/streams/agents.support/events`, {
    method: "POST",
    headers: { "content-type": contentType },
    body: JSON.stringify(body),
  });
  return ((await res.json()) as { receipts: Receipt[] }).receipts;
}
// The first three go one by one (CloudEvents structured mode), the rest as one batch.
for (const [, e] of session.slice(0, 3)) receipts.push(...(await submit("application/cloudevents+json", e)));
receipts.push(
  ...(await submit(
    "application/cloudevents-batch+json",
    session.slice(3).map(([, e]) => e),
  )),
);
for (const [i, r] of receipts.entries()) {
  const ok = verifyReceipt(r, { trusted, deployment: sink.local.deployment }).ok;
  const tool = (session[i]![1].data as Record<string, unknown>)["gen_ai.tool.name"] ?? "";
  say(
    `   #${r.index} ${session[i]![1].type.padEnd(24)} ${String(tool).padEnd(18)} receipt ${ok ? "verifies ✓" : "FAILS ✗"}`,
  );
}
const [again] = await submit("application/cloudevents+json", session[0]![1]);
say(`   a retry of event #0 returns the original receipt (index ${again!.index}); no new record`);

step(4, `Find the session by gen_ai.conversation.id`);
const found = (await (await fetch(`${sink.url}/v1/events?run=${conversation}`)).json()) as {
  events: { index: number; event: SignedEvent }[];
};
say(
  `   GET /v1/events?run=${conversation} → ${found.events.length} events: ${found.events.map((e) => e.event.type).join(", ")}`,
);
const clean = await sink.verifier.runOnce({ full: true });
say(`   scheduled verifier on the original: ${clean.records} records, ${clean.failures.length} failures`);
await sink.close();

step(5, "Tamper with a copy of the data directory, and let the verifier look");
const copy = join(root, "tampered");
await cp(dataDir, copy, { recursive: true });
const store = new DirectoryObjects(join(copy, "objects"), "fanned");
const [first, ...rest] = await store.list("streams/agents.support/segments/");
const firstPath = store.pathOf(first!);
await chmod(firstPath, 0o644);
const original = await readFile(firstPath, "utf8");
await writeFile(firstPath, original.replace('"enduser.id":"customer-4411"', '"enduser.id":"customer-0000"'));
say(`   rewrote a record in ${first} (enduser.id customer-4411 → customer-0000)`);
const lastSegment = rest[rest.length - 1];
if (lastSegment) {
  await chmod(dirname(store.pathOf(lastSegment)), 0o755);
  await rm(store.pathOf(lastSegment), { force: true });
  say(`   deleted the newest segment ${lastSegment} (the refund tool call and what followed)`);
}
await writeFile(join(copy, "objects", "streams", "agents.support", "README.txt"), "nothing to see here\n");
say("   dropped an unexpected file into the store");
const tampered = await startEmbeddedSink({
  dataDir: copy,
  port: 0,
  verifyIntervalSeconds: 0,
  print: () => undefined,
  log: (line) => alertLines.push(line),
});
const run = await tampered.verifier.runOnce({ full: true });
await tampered.close();
say(
  `   the verifier raised ${run.alerts.length} alerts (log line, ${join(copy, "alerts.jsonl")}, webhook if set):`,
);
for (const a of run.alerts) say(`     ${a.code.padEnd(28)} ${a.message}`);
say(`\nOriginal data: ${dataDir}\nTampered copy: ${copy}\n(remove both with: rm -rf ${root})`);
process.exitCode = run.alerts.length > 0 && clean.failures.length === 0 ? 0 : 1;

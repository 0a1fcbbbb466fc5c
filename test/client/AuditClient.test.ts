import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AuditClient,
  type AuditClientOptions,
  ClientError,
  ReceiptError,
  WitnessError,
} from "@auditsink/client";
import { formatVerifierKey, segmentPrefix, verifyReceipt, verifyStoredStream } from "@auditsink/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEPLOYMENT, type FakeSink, memorySink, startFakeSink } from "./fakeSink.ts";

let sink: FakeSink;

beforeEach(async () => {
  sink = await startFakeSink();
});
afterEach(async () => {
  await sink.close();
});

function client(extra: Partial<AuditClientOptions> = {}): Promise<AuditClient> {
  return AuditClient.create({
    endpoint: sink.url,
    producerKey: sink.producerKey.privateKey,
    sinkKey: formatVerifierKey(sink.signer.key),
    deployment: DEPLOYMENT,
    stream: "agent-actions",
    source: "agent://support-bot",
    retry: { baseDelayMs: 1, maxDelayMs: 5 },
    ...extra,
  });
}

const toolCall = (n: number) => ({
  type: "ai.agent.tool_call",
  data: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", n },
});

describe("AuditClient.send", () => {
  it("signs events, batches them by count, and resolves with receipts that verify offline", async () => {
    // Prepare
    const c = await client({ batch: { maxEvents: 3, lingerMs: 10_000 } });
    // Act
    const sends = Array.from({ length: 7 }, (_, i) => c.send(toolCall(i)));
    await c.flush();
    const receipts = await Promise.all(sends);
    // Assess
    expect(receipts.map((r) => r.index).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(sink.requests.filter((r) => r.method === "POST").map((r) => r.ids.length)).toEqual([3, 3, 1]);
    for (const r of receipts) expect(verifyReceipt(r, { trusted: [sink.signer.key] }).ok).toBe(true);
    const report = await verifyStoredStream(sink.current.objects, "agent-actions", {
      trusted: [sink.signer.key],
    });
    expect(report.failures).toEqual([]);
    expect(report.records).toBe(7);
  });

  it("groups events sent within the linger time into one request", async () => {
    const c = await client({ batch: { maxEvents: 100, lingerMs: 50 } });
    const receipts = await Promise.all([c.send(toolCall(1)), c.send(toolCall(2)), c.send(toolCall(3))]);
    expect(receipts).toHaveLength(3);
    expect(sink.requests.filter((r) => r.method === "POST")).toHaveLength(1);
  });

  it("cuts a batch before it would exceed maxBytes", async () => {
    const c = await client({ batch: { maxEvents: 100, maxBytes: 1500, lingerMs: 10_000 } });
    const big = (n: number) => ({ type: "ai.agent.tool_call", data: { pad: "x".repeat(600), n } });
    const sends = [c.send(big(1)), c.send(big(2)), c.send(big(3))];
    await c.close();
    await Promise.all(sends);
    expect(sink.requests.filter((r) => r.method === "POST").map((r) => r.ids.length)).toEqual([1, 1, 1]);
  });

  it("retries network errors, 5xx and 429 with the same source+id, and the stream holds each event once", async () => {
    // Prepare
    const c = await client();
    sink.failNext.push(0, 503, 429, 500);
    // Act
    const receipt = await c.send({ ...toolCall(1), id: "call-1" });
    // Assess
    const posts = sink.requests.filter((r) => r.method === "POST");
    expect(posts).toHaveLength(5);
    expect(new Set(posts.map((p) => p.ids.join()))).toEqual(new Set(["call-1"]));
    expect(receipt.id).toBe("call-1");
    expect(await sink.current.objects.list(segmentPrefix("agent-actions"))).toHaveLength(1);
  });

  it("rejects with ClientError('unavailable') once the attempts are used up", async () => {
    const c = await client({ retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 } });
    sink.failNext.push(503, 503, 503);
    await expect(c.send(toolCall(1))).rejects.toMatchObject({ name: "ClientError", code: "unavailable" });
    expect(sink.requests).toHaveLength(3);
  });

  it("does not retry a request the sink refuses, and reports the problem", async () => {
    const c = await client();
    const error = await c.send({ ...toolCall(1), type: "bad\u0001type" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ClientError);
    expect(error).toMatchObject({ code: "rejected", details: { status: 400 } });
    expect(sink.requests).toHaveLength(1);
  });

  it("signs once: every attempt of a request sends the same bytes", async () => {
    // Prepare
    const c = await client();
    sink.failNext.push(503, 0, 500);
    // Act
    await c.send({ ...toolCall(1), id: "call-1" });
    // Assess
    const bodies = sink.requests.filter((r) => r.method === "POST").map((r) => r.body);
    expect(bodies).toHaveLength(4);
    expect(new Set(bodies).size).toBe(1);
  });

  it("answers a second send() of the same id with the original receipt, and the stream holds it once", async () => {
    // Prepare: the first send() fills in `time` (now); a second one a moment later must not sign a new time.
    const c = await client();
    const first = await c.send({ ...toolCall(1), id: "call-1" });
    await new Promise((resolve) => setTimeout(resolve, 5));
    // Act
    const again = await c.send({ ...toolCall(1), id: "call-1" });
    // Assess
    expect(again).toEqual(first);
    expect((await sink.current.sink.head("agent-actions"))!.size).toBe(1);
  });

  it("resends the same signed event when send() is called again after the attempts ran out", async () => {
    // Prepare
    const c = await client({ retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 2 } });
    sink.failNext.push(503, 503);
    const failed = await c.send({ ...toolCall(1), id: "call-1" }).catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: "unavailable" });
    await new Promise((resolve) => setTimeout(resolve, 5));
    // Act
    const receipt = await c.send({ ...toolCall(1), id: "call-1" });
    // Assess
    const bodies = sink.requests.filter((r) => r.method === "POST").map((r) => r.body);
    expect(new Set(bodies).size).toBe(1);
    expect(receipt.index).toBe(0);
  });

  it("signs anew when the same id is sent with other content (the sink then refuses it)", async () => {
    const c = await client();
    await c.send({ ...toolCall(1), id: "call-1" });
    const error = await c.send({ ...toolCall(2), id: "call-1" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "rejected" });
    expect(sink.requests.filter((r) => r.method === "POST")).toHaveLength(2);
  });

  it("does not retry an event nested too deeply: one request, a 400", async () => {
    // Prepare: 1,700 levels, which once overflowed the sink's stack (a 500 the SDK retried).
    const c = await client();
    const deep = JSON.parse(`${"[".repeat(1700)}${"]".repeat(1700)}`);
    // Act
    const error = await c.send({ ...toolCall(1), data: deep }).catch((e: unknown) => e);
    // Assess
    expect(error).toMatchObject({ code: "rejected", details: { status: 400 } });
    expect(sink.requests).toHaveLength(1);
  });

  it("refuses events after close()", async () => {
    const c = await client();
    await c.close();
    await expect(c.send(toolCall(1))).rejects.toMatchObject({ code: "closed" });
  });
});

describe("AuditClient receipt verification", () => {
  it("rejects a receipt whose inclusion proof does not verify", async () => {
    const c = await client();
    await c.send(toolCall(0));
    sink.tamper = (r) => {
      r.recordHash = "00".repeat(32);
    };
    const error = await c.send(toolCall(1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReceiptError);
    expect(error).toMatchObject({ code: "receipt-inclusion-invalid" });
  });

  it("rejects a receipt signed by a key that is not pinned", async () => {
    const other = await startFakeSink();
    const c = await client({ sinkKey: formatVerifierKey(other.signer.key) });
    await other.close();
    await expect(c.send(toolCall(1))).rejects.toMatchObject({
      name: "ReceiptError",
      code: "receipt-checkpoint-invalid",
    });
  });

  it("raises WitnessError('log-fork') when the sink signs a larger log that does not extend the one seen", async () => {
    // Prepare: the producer sees size 3, then the sink's history is replaced by another one, same key.
    const c = await client();
    await Promise.all([c.send(toolCall(1)), c.send(toolCall(2)), c.send(toolCall(3))]);
    sink.current = memorySink(sink.signer, sink.producerKey);
    const other = await client({ source: "agent://other" });
    await Promise.all([1, 2, 3, 4, 5].map((n) => other.send(toolCall(n))));
    // Act
    const error = await c.send(toolCall(4)).catch((e: unknown) => e);
    // Assess
    expect(error).toBeInstanceOf(WitnessError);
    expect(error).toMatchObject({ code: "log-fork", evidence: { stream: "agent-actions" } });
  });

  it("raises WitnessError('log-rollback') when the sink presents a smaller log it cannot extend to the one seen", async () => {
    const c = await client();
    await Promise.all([c.send(toolCall(1)), c.send(toolCall(2)), c.send(toolCall(3))]);
    sink.current = memorySink(sink.signer, sink.producerKey);
    const error = await c.send(toolCall(4)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WitnessError);
    expect(error).toMatchObject({ code: "log-rollback" });
  });

  it("remembers the newest checkpoint in its state file, so a rollback across restarts is caught", async () => {
    // Prepare
    const stateFile = join(await mkdtemp(join(tmpdir(), "auditsink-client-")), "witness.json");
    const first = await client({ stateFile });
    await Promise.all([first.send(toolCall(1)), first.send(toolCall(2))]);
    await first.close();
    sink.current = memorySink(sink.signer, sink.producerKey);
    // Act
    const second = await client({ stateFile });
    const error = await second.send(toolCall(3)).catch((e: unknown) => e);
    // Assess
    expect(second.witness.newest("agent-actions")).toContain("\n2\n");
    expect(error).toMatchObject({ name: "WitnessError", code: "log-rollback" });
  });

  it("checkLog accepts the sink's current checkpoint when it extends the one seen", async () => {
    const c = await client();
    await c.send(toolCall(1));
    const other = await client({ source: "agent://other" });
    await other.send(toolCall(2));
    const signed = await c.checkLog("agent-actions");
    expect(signed).toContain("\n2\n");
    expect(c.witness.newest("agent-actions")).toBe(signed);
  });
});

describe("CheckpointWitness state file", () => {
  it("keeps every stream's newest checkpoint when streams are observed concurrently", async () => {
    // Prepare
    const stateFile = join(await mkdtemp(join(tmpdir(), "auditsink-client-")), "witness.json");
    const c = await client({ stateFile });
    // Act
    await Promise.all(["s-a", "s-b", "s-c", "s-d"].map((stream) => c.send(toolCall(1), { stream })));
    await c.close();
    // Assess
    const reopened = await client({ stateFile });
    for (const stream of ["s-a", "s-b", "s-c", "s-d"])
      expect(reopened.witness.newest(stream)).toContain(`/${stream}\n1\n`);
  });
  it.each([
    ["not JSON", "{not json"],
    ["JSON without checkpoints", "null"],
  ])("refuses a state file that is %s with ClientError('bad-config') naming the file", async (_, text) => {
    // Prepare
    const stateFile = join(await mkdtemp(join(tmpdir(), "auditsink-client-")), "witness.json");
    await writeFile(stateFile, text);
    // Act
    const opened = client({ stateFile });
    // Assess
    await expect(opened).rejects.toMatchObject({ name: "ClientError", code: "bad-config" });
    await expect(opened).rejects.toThrow(stateFile);
  });
});

/**
 * The MCP gateway end to end: the official SDK client, through the gateway (Streamable HTTP in front), to the
 * reference server `@modelcontextprotocol/server-everything` (spawned over stdio), recording into a running
 * embedded sink. Every tools/call — allowed, denied, redacted, rate-limited — is one event whose receipt
 * verifies, and `auditsink verify` is clean at the end.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { serveHttp } from "@auditsink/mcp";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ErrorCode, type McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { cli, sinkWithProducer, tempDir } from "../cli/helpers.ts";
import { FAIL_CODE } from "./failing-server.ts";
import { everythingServer, gateway, gatewayConfig, keptReceipts, records } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function agent(url: string, headers: Record<string, string> = {}) {
  const client = new Client({ name: "test-agent", version: "1.2.3" }, { capabilities: { sampling: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: "assistant",
    model: "test-model",
    content: { type: "text", text: "sampled by the agent" },
  }));
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  cleanups.push(() => client.close());
  return client;
}

describe("MCP gateway over Streamable HTTP to server-everything (stdio)", () => {
  it("forwards faithfully and records each decision as one receipted event with its fields", async () => {
    // Prepare
    const work = await tempDir("auditsink-mcp-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    const config = gatewayConfig({ url: s.sink.url, keyFile: s.keyFile, verifierKey: s.verifierKey }, work, {
      policy: {
        default: "allow",
        rules: [
          { name: "no-env", tool: "get-env", action: "deny", reason: "environment is secret" },
          { name: "sum-redacted", tool: "get-sum", action: "allow", redact: ["b"] },
          { name: "echo-limited", tool: "echo", action: "allow", rateLimit: { calls: 2, perSeconds: 60 } },
        ],
      },
    });
    const running = await gateway(config);
    const http = await serveHttp(running, { port: 0 });
    cleanups.push(async () => {
      await http.close();
      await running.close();
    });
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const client = await agent(http.url, { traceparent, "x-conversation-id": "run-42" });

    // Act
    const tools = await client.listTools();
    const echo1 = await client.callTool({ name: "echo", arguments: { message: "hello" } });
    const echo2 = await client.callTool({ name: "echo", arguments: { message: "again" } });
    const echo3 = await client.callTool({ name: "echo", arguments: { message: "too many" } });
    const env = await client.callTool({ name: "get-env", arguments: {} });
    const sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } });
    const progress: number[] = [];
    const long = await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 0.2, steps: 2 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    );
    const sampled = await client.callTool({
      name: "trigger-sampling-request",
      arguments: { prompt: "hi", maxTokens: 5 },
    });
    const cancel = new AbortController();
    setTimeout(() => cancel.abort(), 300);
    const cancelled = await client
      .callTool({ name: "trigger-long-running-operation", arguments: { duration: 5, steps: 5 } }, undefined, {
        signal: cancel.signal,
      })
      .then(
        () => "completed",
        () => "cancelled",
      );
    const proto = await client.callTool({
      name: "get-structured-content",
      arguments: JSON.parse('{"location": "New York", "__proto__": {"polluted": true}}'),
    });
    const resources = await client.listResources();
    const read = await client.readResource({ uri: resources.resources[0]!.uri });
    const prompts = await client.listPrompts();
    await running.recorder.drain(10_000);
    await http.close();
    await running.close();
    await s.sink.close();

    // Assess: the agent sees the upstream server through the gateway, unchanged
    expect(tools.tools.map((t) => t.name)).toEqual(
      expect.arrayContaining(["echo", "get-sum", "get-env", "trigger-sampling-request"]),
    );
    expect(echo1.content).toEqual([{ type: "text", text: "Echo: hello" }]);
    expect(echo2.isError).toBeFalsy();
    expect(echo3.isError).toBe(true);
    expect(JSON.stringify(echo3.content)).toContain("rate-limit");
    expect(env.isError).toBe(true);
    expect(JSON.stringify(env.content)).toContain("environment is secret");
    expect(JSON.stringify(sum.content)).toContain("42");
    expect(long.isError).toBeFalsy();
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(sampled.content)).toContain("sampled by the agent");
    expect(read.contents.length).toBeGreaterThan(0);
    expect(prompts.prompts.length).toBeGreaterThan(0);

    // Assess: exactly one event per tools/call, in call order, with the decision and the rule
    const recs = await records(s.dataDir);
    const data = recs.map((r) => r.event.data as Record<string, unknown>);
    expect(
      data.map((d) => [d["gen_ai.tool.name"], d["auditsink.mcp.decision"], d["auditsink.mcp.rule"]]),
    ).toEqual([
      ["echo", "allow", "echo-limited"],
      ["echo", "allow", "echo-limited"],
      ["echo", "rate-limit", "echo-limited"],
      ["get-env", "deny", "no-env"],
      ["get-sum", "redact", "sum-redacted"],
      ["trigger-long-running-operation", "allow", "default"],
      ["trigger-sampling-request", "allow", "default"],
      ["trigger-long-running-operation", "allow", "default"],
      ["get-structured-content", "allow", "default"],
    ]);
    expect(cancelled).toBe("cancelled");
    // `__proto__` in the arguments is data: forwarded, recorded as a member, and nothing is polluted
    expect(proto.isError).toBeFalsy();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const protoArgs = data[8]!["gen_ai.tool.call.arguments"] as Record<string, unknown>;
    expect(Object.hasOwn(protoArgs, "__proto__")).toBe(true);
    expect(JSON.stringify(protoArgs)).toBe('{"__proto__":{"polluted":true},"location":"New York"}');
    expect(data[7]!["auditsink.mcp.result.status"]).toBe("error");
    expect(data[7]!["auditsink.mcp.latency_ms"]).toBeLessThan(4000);
    const [first] = recs;
    expect(first!.event.type).toBe("dev.auditsink.mcp.tool_call");
    expect(first!.event.source).toBe("mcp-proxy://test");
    expect(first!.event.traceparent).toBe(traceparent);
    expect(data[0]).toMatchObject({
      "gen_ai.operation.name": "execute_tool",
      "mcp.method.name": "tools/call",
      "auditsink.mcp.server": "everything",
      "auditsink.mcp.result.status": "ok",
      "gen_ai.agent.name": "test-agent",
      "gen_ai.conversation.id": "run-42",
      "network.transport": "tcp",
      "gen_ai.tool.call.arguments": { message: "hello" },
    });
    expect(data[0]!["gen_ai.tool.call.arguments.sha256"]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(data[0]!["gen_ai.tool.call.result.sha256"]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(typeof data[0]!["mcp.session.id"]).toBe("string");
    expect(typeof data[0]!["jsonrpc.request.id"]).toBe("string");
    expect(data[2]!["auditsink.mcp.result.status"]).toBe("refused");
    expect(data[3]).toMatchObject({
      "auditsink.mcp.result.status": "refused",
      "auditsink.mcp.reason": "environment is secret",
    });
    expect(data[3]!["gen_ai.tool.call.result.sha256"]).toBeUndefined();
    expect(data[4]).toMatchObject({
      "gen_ai.tool.call.arguments": { a: 2, b: "[redacted]" },
      "auditsink.mcp.redacted": ["b"],
    });

    // Assess: every receipt the gateway kept verifies against the pinned key; the whole log verifies
    const receipts = await keptReceipts(join(work, "spool"), s.verifierKey);
    expect(receipts.map((r) => r.index)).toEqual(recs.map((r) => r.index));
    const verified = await cli([
      "verify",
      s.dataDir,
      "--verifier-key",
      s.verifierKey,
      "--receipts",
      join(work, "spool", "receipts.jsonl"),
    ]);
    expect(verified.code, verified.out + verified.err).toBe(0);
    expect(verified.out).toContain("receipts: 9 given, 9 checked against the log");
  }, 30_000);

  it("admits only agents with a configured bearer token, and records the authenticated agent", async () => {
    // Prepare
    const work = await tempDir("auditsink-mcp-auth-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    const token = "t0ken-for-release-bot";
    const running = await gateway(
      gatewayConfig({ url: s.sink.url, keyFile: s.keyFile, verifierKey: s.verifierKey }, work, {
        policy: { default: "allow" },
        agents: [{ id: "release-bot", tokenSha256: createHash("sha256").update(token).digest("hex") }],
      }),
    );
    const http = await serveHttp(running, { port: 0 });
    cleanups.push(async () => {
      await http.close();
      await running.close();
    });

    // Act
    const anonymous = await agent(http.url).then(
      () => "connected",
      (e: Error) => e.message,
    );
    const wrong = await agent(http.url, { authorization: "Bearer nope" }).then(
      () => "connected",
      (e: Error) => e.message,
    );
    const client = await agent(http.url, { authorization: `Bearer ${token}`, "x-agent-id": "someone-else" });
    await client.callTool({ name: "echo", arguments: { message: "hi" } });
    await running.recorder.drain(5000);
    await http.close();
    await running.close();
    await s.sink.close();

    // Assess
    expect(anonymous).toContain("a valid bearer token is required");
    expect(wrong).toContain("a valid bearer token is required");
    const recs = await records(s.dataDir);
    expect(recs).toHaveLength(1);
    expect((recs[0]!.event.data as Record<string, unknown>)["gen_ai.agent.id"]).toBe("release-bot");
  }, 30_000);
});

describe("tools/call through the gateway's own path (past the SDK's server and client)", () => {
  it("passes a server's JSON-RPC error on as the server sent it, times a call out as the SDK does, and keeps concurrent calls' progress apart", async () => {
    // Prepare: two servers (names prefixed), one that answers with JSON-RPC errors or not at all
    const work = await tempDir("auditsink-mcp-direct-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    const cancelledFile = join(work, "cancelled.txt");
    const failing = {
      name: "failing",
      command: process.execPath,
      args: ["--import", "tsx", join(import.meta.dirname, "failing-server.ts")],
      env: { CANCELLED_FILE: cancelledFile },
    };
    const running = await gateway(
      gatewayConfig({ url: s.sink.url, keyFile: s.keyFile, verifierKey: s.verifierKey }, work, {
        servers: [everythingServer, failing],
        policy: { default: "allow" },
        requestTimeoutMs: 1000,
      }),
    );
    const http = await serveHttp(running, { port: 0 });
    cleanups.push(async () => {
      await http.close();
      await running.close();
    });
    const client = await agent(http.url);
    const failure = (e: unknown) => ({
      code: (e as McpError).code,
      message: (e as McpError).message,
      data: (e as McpError).data,
    });

    // Act
    const failed = await client
      .callTool({ name: "failing__fail", arguments: { attempt: 1 } })
      .then(() => undefined, failure);
    const timedOut = await client
      .callTool({ name: "failing__hang", arguments: {} }, undefined, { timeout: 30_000 })
      .then(() => undefined, failure);
    const direct = new Client({ name: "test-agent", version: "1.2.3" });
    await direct.connect(new StdioClientTransport({ ...failing, stderr: "ignore" }));
    const failedDirectly = await direct
      .callTool({ name: "fail", arguments: { attempt: 1 } })
      .then(() => undefined, failure);
    await direct.close();
    const progress: [number[], number[]] = [[], []];
    const long = await Promise.all(
      progress.map((seen) =>
        client.callTool(
          { name: "everything__trigger-long-running-operation", arguments: { duration: 0.3, steps: 3 } },
          undefined,
          { onprogress: (p) => seen.push(p.progress) },
        ),
      ),
    );
    await running.recorder.drain(10_000);
    await http.close();
    await running.close();
    await s.sink.close();

    // Assess: what the agent got
    // The server's error object itself, as a direct connection gets it (not wrapped in a gateway error).
    expect(failed).toEqual(failedDirectly);
    expect(failed).toMatchObject({ code: FAIL_CODE, data: { attempt: 1 } });
    expect(timedOut).toMatchObject({ code: ErrorCode.RequestTimeout, data: { timeout: 1000 } });
    expect(await readFile(cancelledFile, "utf8")).toMatch(
      /^cancelled auditsink-\d+ McpError: MCP error -32001: Request timed out\n$/,
    );
    for (const [i, call] of long.entries()) {
      expect(call.isError).toBeFalsy();
      expect(progress[i]).toEqual([1, 2, 3]);
    }

    // Assess: one event per call, each with its outcome
    const data = (await records(s.dataDir)).map((r) => r.event.data as Record<string, unknown>);
    const outcome = (d: Record<string, unknown>) => [
      d["auditsink.mcp.server"],
      d["gen_ai.tool.name"],
      d["auditsink.mcp.result.status"],
      d["error.type"],
    ];
    expect(data.slice(0, 2).map(outcome)).toEqual([
      ["failing", "fail", "error", `mcp-${FAIL_CODE}`],
      ["failing", "hang", "error", `mcp-${ErrorCode.RequestTimeout}`],
    ]);
    expect(data.slice(2).map(outcome)).toEqual([
      ["everything", "trigger-long-running-operation", "ok", undefined],
      ["everything", "trigger-long-running-operation", "ok", undefined],
    ]);
    // The message as the server sent it (its SDK prefixes the code).
    expect(data[0]!["auditsink.mcp.error.message"]).toBe(`MCP error ${FAIL_CODE}: the tool failed`);
  }, 40_000);
});

describe("MCP sessions over Streamable HTTP that go quiet", () => {
  it("are closed after the idle time with their upstream servers, while an active one and one in a long call stay open", async () => {
    // Prepare: each session starts its activity as soon as it exists (opening the next one spawns an upstream
    // server, which can take longer than the idle time on a loaded machine).
    const work = await tempDir("auditsink-mcp-idle-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    const running = await gateway(
      gatewayConfig({ url: s.sink.url, keyFile: s.keyFile, verifierKey: s.verifierKey }, work, {
        policy: { default: "allow" },
      }),
    );
    const idleSeconds = 1;
    const http = await serveHttp(running, { port: 0, sessionIdleSeconds: idleSeconds });
    cleanups.push(async () => {
      await http.close();
      await running.close();
    });

    // Act: one session says one thing and then nothing; one calls every quarter idle period; one is in a single
    // call that lasts 2.5 idle periods.
    const quiet = await agent(http.url);
    await quiet.callTool({ name: "echo", arguments: { message: "once" } });
    const busy = await agent(http.url);
    let ticking = true;
    const ticks = (async () => {
      for (let i = 0; ticking; i++) {
        await busy.callTool({ name: "echo", arguments: { message: `tick ${i}` } });
        await new Promise((r) => setTimeout(r, (idleSeconds * 1000) / 4));
      }
    })();
    const waiting = await agent(http.url);
    const long = await waiting.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: idleSeconds * 2.5, steps: 1 } },
      undefined,
      { timeout: 20_000 },
    );
    ticking = false;
    await ticks;
    await vi.waitFor(() => expect(running.gateway.sessions.size).toBe(2), { timeout: 10_000, interval: 100 });
    const late = await quiet.callTool({ name: "echo", arguments: { message: "late" } }).then(
      () => "answered",
      (e: Error) => e.message,
    );

    // Assess
    expect(long.isError).toBeFalsy();
    expect(late).toContain("unknown MCP session");
    expect(running.gateway.sessions.size).toBe(2);
    expect((await busy.callTool({ name: "echo", arguments: { message: "still here" } })).isError).toBeFalsy();
    expect((await waiting.callTool({ name: "echo", arguments: { message: "done" } })).isError).toBeFalsy();
  }, 40_000);
});

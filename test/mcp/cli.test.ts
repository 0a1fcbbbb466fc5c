/**
 * `auditsink mcp-proxy` as an MCP client runs it: spawned over stdio by the official SDK client, fronting two
 * reference servers at once — `@modelcontextprotocol/server-filesystem` spawned over stdio and
 * `@modelcontextprotocol/server-everything` reached over Streamable HTTP — with a policy file.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { CLI } from "../built.ts";
import { cli, sinkWithProducer, tempDir } from "../cli/helpers.ts";
import { EVERYTHING, FILESYSTEM, records } from "./helpers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as { port: number };
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

/** server-everything's own Streamable HTTP server, on a free port, up once it says it listens. */
async function everythingOverHttp(): Promise<string> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [EVERYTHING, "streamableHttp"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  cleanups.push(async () => {
    child.kill("SIGTERM");
  });
  await new Promise<void>((ok, fail) => {
    child.stderr?.on("data", (c: Buffer) => c.toString().includes("listening") && ok());
    child.on("exit", (code) => fail(new Error(`server-everything exited with ${code}`)));
  });
  return `http://127.0.0.1:${port}/mcp`;
}

describe("auditsink mcp-proxy (stdio, two upstream servers)", () => {
  it("serves an MCP client that spawns it and records each tools/call with its server", async () => {
    // Prepare
    const work = await tempDir("auditsink-mcp-cli-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    const files = join(work, "files");
    await mkdir(files);
    await writeFile(join(files, "notes.txt"), "hello from the filesystem\n");
    await writeFile(
      join(work, "policy.yaml"),
      stringify({
        default: "deny",
        rules: [
          { name: "fs-read", server: "fs", tool: ["read_*", "list_*"], action: "allow" },
          { name: "echo", server: "everything", tool: "echo", action: "allow" },
        ],
      }),
    );
    await writeFile(
      join(work, "gateway.yaml"),
      stringify({
        servers: [
          { name: "fs", command: process.execPath, args: [FILESYSTEM, files] },
          { name: "everything", url: await everythingOverHttp() },
        ],
        sink: { url: s.sink.url, keyFile: "agent.key.pem", verifierKey: s.verifierKey, stream: "agents.mcp" },
        spool: "spool",
        failMode: "closed",
        policy: "policy.yaml",
        agentId: "release-bot",
      }),
    );
    const client = new Client({ name: "cli-agent", version: "1" });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, "mcp-proxy", "--config", join(work, "gateway.yaml")],
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    await client.connect(transport);
    cleanups.push(() => client.close());

    // Act
    const tools = (await client.listTools()).tools.map((t) => t.name);
    const read = await client.callTool({
      name: "fs__read_text_file",
      arguments: { path: join(files, "notes.txt") },
    });
    const write = await client.callTool({
      name: "fs__write_file",
      arguments: { path: join(files, "evil.txt"), content: "x" },
    });
    const echo = await client.callTool({ name: "everything__echo", arguments: { message: "via http" } });
    const unknown = await client.callTool({ name: "github__merge", arguments: {} });
    await client.close();
    await new Promise((r) => setTimeout(r, 200));
    await s.sink.close();

    // Assess
    expect(tools).toEqual(
      expect.arrayContaining(["fs__read_text_file", "fs__write_file", "everything__echo"]),
    );
    expect(JSON.stringify(read.content)).toContain("hello from the filesystem");
    expect(write.isError, stderr).toBe(true);
    await expect(readFile(join(files, "evil.txt"))).rejects.toThrow();
    expect(echo.content).toEqual([{ type: "text", text: "Echo: via http" }]);
    const recs = await records(s.dataDir);
    expect(
      recs.map((r) => {
        const d = r.event.data as Record<string, unknown>;
        return [
          d["auditsink.mcp.server"],
          d["gen_ai.tool.name"],
          d["auditsink.mcp.decision"],
          d["auditsink.mcp.rule"],
        ];
      }),
    ).toEqual([
      ["fs", "read_text_file", "allow", "fs-read"],
      ["fs", "write_file", "deny", "default"],
      ["everything", "echo", "allow", "echo"],
      ["github", "merge", "deny", "unknown-server"],
    ]);
    expect(unknown.isError).toBe(true);
    const d0 = recs[0]!.event.data as Record<string, unknown>;
    expect(d0).toMatchObject({ "gen_ai.agent.id": "release-bot", "network.transport": "pipe" });
    expect(d0["gen_ai.tool.call.arguments"]).toBeUndefined();
    const verified = await cli(["verify", s.dataDir, "--verifier-key", s.verifierKey]);
    expect(verified.code, verified.out + verified.err).toBe(0);
  }, 30_000);

  it("ends, with its upstream servers, when the agent that spawned it goes away (its stdin ends)", async () => {
    // Prepare: the gateway spawned as an MCP client spawns it, one session initialized
    const work = await tempDir("auditsink-mcp-cli-eof-");
    const s = await sinkWithProducer(work, "mcp-gateway");
    cleanups.push(() => s.sink.close());
    await writeFile(
      join(work, "gateway.yaml"),
      stringify({
        servers: [{ name: "everything", command: process.execPath, args: [EVERYTHING, "stdio"] }],
        sink: { url: s.sink.url, keyFile: "agent.key.pem", verifierKey: s.verifierKey, stream: "agents.mcp" },
        spool: "spool",
        failMode: "open",
        policy: { default: "allow" },
      }),
    );
    const child = spawn(process.execPath, [CLI, "mcp-proxy", "--config", join(work, "gateway.yaml")], {
      stdio: ["pipe", "pipe", "ignore"],
    });
    cleanups.push(async () => void child.kill("SIGKILL"));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let out = "";
    const answered = new Promise<string>((r) =>
      child.stdout!.on("data", (c: Buffer) => {
        out += c.toString();
        const line = out.split("\n").find((l) => l.startsWith('{"result"') || l.includes('"id":1'));
        if (line) r(line);
      }),
    );
    child.stdin!.write(
      `${JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "raw", version: "1" },
        },
      })}\n`,
    );
    const initialized = JSON.parse(await answered) as { id: number; result?: unknown };
    const upstream = execFileSync("ps", ["-o", "pid=", "--ppid", String(child.pid)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.trim())
      .map(Number);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };

    // Act: the agent closes its end of the pipe, as when it exits or crashes
    child.stdin!.end();
    const code = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r("still running after 10 s"), 10_000)),
    ]);

    for (const until = Date.now() + 5000; upstream.some(alive) && Date.now() < until; )
      await new Promise((r) => setTimeout(r, 50));

    // Assess
    expect(initialized.id).toBe(1);
    expect(initialized.result).toBeDefined();
    expect(code).toBe(0);
    expect(upstream).toHaveLength(1);
    expect(upstream.filter(alive)).toEqual([]);
  }, 30_000);
});

/**
 * auditsink as a user installs it: the CLI, the packages it needs and the SDK are packed with `npm pack`,
 * installed into an empty directory with production dependencies only, and run from there — `--version`, a
 * sink started with the installed bin, a signed event sent to it, a clean stop, and an offline `verify`. The
 * install must stay small (no AWS SDK for an auditor's offline verify) and the SDK must not load the AWS SDK
 * unless its EventBridge entry point is used.
 */
import { execFile } from "node:child_process";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../embedded/helpers.ts";
import { logLines, startSink, stopWith, userEnv } from "./processes.ts";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "../..");
const PACKAGES = ["core", "api", "local", "client", "cli"];
/**
 * The bound on the install of the CLI and the packages it runs (docs/OPERATIONS.md states the measured size). The
 * goal was 50 MB; the embedded index's SQLite (libsql) adds 9.3 MB per libc build, and npm installs both the
 * glibc and the musl build because they do not declare `libc`, so the install is ~53 MB.
 */
const MAX_INSTALL_BYTES = 56 * 1024 * 1024;

let work: Awaited<ReturnType<typeof tempDir>>;
let app: string;
let bin: string;

/** Runs the installed `auditsink` bin; resolves with its exit code and output whatever the code. */
async function auditsink(args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(bin, args, { cwd: app, env: userEnv(env) });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const r = e as { code: number; stdout: string; stderr: string };
    return { code: r.code, out: r.stdout, err: r.stderr };
  }
}

beforeAll(
  async () => {
    work = await tempDir("auditsink-install-");
    app = join(work.dir, "app");
    bin = join(app, "node_modules/.bin/auditsink");
    // Prepare: compile (incremental: `npm ci` already built through `prepare`), then pack each package.
    await run("npm", ["run", "build"], { cwd: repo, env: userEnv() });
    await run(
      "npm",
      ["pack", "--pack-destination", work.dir, ...PACKAGES.flatMap((p) => ["-w", `packages/${p}`])],
      { cwd: repo, env: userEnv() },
    );
    await run("mkdir", [app]);
    // fs-ext (the data directory's flock) compiles a native addon at install: this npm runs dependency install
    // scripts only when the project allows them, as a user's project must too (docs/OPERATIONS.md).
    await writeFile(
      join(app, "package.json"),
      JSON.stringify({ name: "auditsink-install-test", private: true, allowScripts: { "fs-ext": true } }),
    );
    await run(
      "npm",
      [
        "install",
        "--omit=dev",
        "--no-audit",
        "--no-fund",
        ...PACKAGES.map((p) => join(work.dir, `auditsink-${p}-0.1.0.tgz`)),
      ],
      { cwd: app, env: userEnv() },
    );
  },
  // Builds, packs five packages and installs their third-party dependencies from the npm registry (about 20 s
  // on an idle machine, several times that on a loaded 2-core CI machine or a slow registry).
  600_000,
);

afterAll(async () => {
  await work?.remove();
});

describe("the installed CLI", () => {
  it("prints its version", async () => {
    const { version } = JSON.parse(await readFile(join(repo, "packages/cli/package.json"), "utf8")) as {
      version: string;
    };
    const r = await auditsink(["--version"]);
    expect(r).toMatchObject({ code: 0, out: `${version}\n` });
  });

  it(`installs in under ${MAX_INSTALL_BYTES / 1024 / 1024} MB, without the AWS SDK`, async () => {
    const { stdout } = await run("du", ["-sb", "node_modules"], { cwd: app });
    const bytes = Number(stdout.split("\t")[0]);
    process.stdout.write(`installed size (du -sb node_modules): ${bytes} bytes\n`);
    expect(bytes).toBeLessThan(MAX_INSTALL_BYTES);
    const { stdout: ls } = await run("npm", ["ls", "--all", "--parseable"], { cwd: app, env: userEnv() });
    expect(ls).not.toMatch(/@aws-sdk/);
  });

  it("runs a sink, takes a signed event, stops cleanly on SIGTERM, and the result verifies offline", async () => {
    // Prepare: the installed bin, configured through the environment, on a free port and a fresh directory.
    const dataDir = join(work.dir, "data");
    const env = { AUDITSINK_DATA_DIR: dataDir, AUDITSINK_PORT: "0", AUDITSINK_VERIFY_INTERVAL: "0" };
    const sink = await startSink(bin, ["start"], { cwd: app, env });
    const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
    const sinkKey = (await readFile(join(dataDir, "keys/verifier-key.txt"), "utf8")).trim();
    // Act: register a producer (token from the environment, as the start banner shows), send one event.
    const created = await auditsink(
      ["producer", "create", "--url", sink.url, "--id", "installed-agent", "--streams", "agents.*"],
      { AUDITSINK_ADMIN_TOKEN: token },
    );
    expect(created.code, created.err).toBe(0);
    const sent = await auditsink([
      "send",
      "--url",
      sink.url,
      "--key",
      join(app, "installed-agent.key.pem"),
      "--sink-key",
      sinkKey,
      "--stream",
      "agents.installed",
      "--type",
      "ai.agent.tool_call",
      "--data",
      '{"gen_ai.tool.name":"search"}',
      "--json",
    ]);
    expect(sent.code, sent.err).toBe(0);
    expect(JSON.parse(sent.out)).toMatchObject({ stream: "agents.installed", index: 0 });
    const code = await stopWith(sink, "SIGTERM");
    // Assess: a clean stop, then an offline verification of what the sink wrote.
    expect(code, sink.err()).toBe(0);
    expect(logLines(sink.err())).toContainEqual(
      expect.objectContaining({ msg: "auditsink stopped", signal: "SIGTERM" }),
    );
    // Two worker threads, whatever the machine's cores: their module must load from the installed dist/.
    const verified = await auditsink(["verify", dataDir, "--verifier-key", sinkKey, "--jobs", "2", "--json"]);
    expect(verified.code, verified.err).toBe(0);
    const report = JSON.parse(verified.out) as {
      ok: boolean;
      jobs: number;
      streams: { stream: string; records: number }[];
    };
    expect(report.ok).toBe(true);
    expect(report.jobs).toBe(2);
    expect(report.streams.find((s) => s.stream === "agents.installed")?.records).toBe(1);
    // The lock was released: the same directory opens again.
    const again = await startSink(bin, ["start"], { cwd: app, env });
    expect(await stopWith(again, "SIGINT"), again.err()).toBe(0);
  });

  it("verifies offline without the optional native lock module; start says what to install", async () => {
    // Prepare: the install as it is where fs-ext could not be built (no toolchain, install script not allowed):
    // npm leaves a failed optional dependency out. The data directory is the one the sink test above wrote.
    const dataDir = join(work.dir, "data");
    const sinkKey = (await readFile(join(dataDir, "keys/verifier-key.txt"), "utf8")).trim();
    const fsExt = join(app, "node_modules/fs-ext");
    await rename(fsExt, `${fsExt}.absent`);
    try {
      // Act
      const verified = await auditsink(["verify", dataDir, "--verifier-key", sinkKey, "--json"]);
      const started = await auditsink(["start"], {
        AUDITSINK_DATA_DIR: join(work.dir, "no-lock-data"),
        AUDITSINK_PORT: "0",
      });
      // Assess: verify needs no lock; start refuses before creating anything, naming the module.
      expect(verified.code, verified.err).toBe(0);
      expect((JSON.parse(verified.out) as { ok: boolean }).ok).toBe(true);
      expect(started.code).toBe(2);
      expect(started.err).toMatch(/needs the native module fs-ext.*npm install fs-ext/s);
      await expect(readFile(join(work.dir, "no-lock-data", "sink.json"))).rejects.toThrow(/ENOENT/);
    } finally {
      await rename(`${fsExt}.absent`, fsExt);
    }
  });

  it("says what to install when an s3:// source needs the AWS SDK it does not have", async () => {
    const r = await auditsink(["verify", "s3://some-bucket/archive", "--verifier-key", "x+00000000+AA=="]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/npm install @aws-sdk\/client-s3/);
  });

  it("says what to install when mcp-proxy needs the MCP gateway it does not have", async () => {
    const r = await auditsink(["mcp-proxy", "--config", "gateway.yaml"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/npm install @auditsink\/mcp/);
  });
});

describe("the installed type declarations", () => {
  it("compile in a strict NodeNext project, without skipLibCheck and without the optional AWS SDK peers", async () => {
    // Prepare: a consumer of the SDK, core and the CLI's API (TypeScript and @types/node from this repository).
    await writeFile(
      join(app, "consumer.ts"),
      [
        'import { AuditClient } from "@auditsink/client";',
        'import { verifyReceipt } from "@auditsink/core";',
        'import { run } from "@auditsink/cli";',
        "export const used = [AuditClient, verifyReceipt, run];",
      ].join("\n"),
    );
    const compilerOptions = {
      strict: true,
      module: "nodenext",
      moduleResolution: "nodenext",
      target: "es2022",
      noEmit: true,
      types: ["node"],
      typeRoots: [join(repo, "node_modules/@types")],
    };
    await writeFile(join(app, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["consumer.ts"] }));
    // Act
    const tsc = await run(join(repo, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], { cwd: app }).then(
      () => "",
      (e: { stdout: string }) => e.stdout,
    );
    // Assess
    expect(tsc).toBe("");
  }, 180_000); // Without skipLibCheck tsc checks every installed declaration (hono's, zod's): 60 s measured under load.
});

describe("the installed SDK", () => {
  it("loads without the AWS SDK; only its EventBridge entry point needs @aws-sdk/client-eventbridge", async () => {
    const load = (specifier: string) =>
      run(process.execPath, ["--input-type=module", "-e", `await import(${JSON.stringify(specifier)})`], {
        cwd: app,
      }).then(
        () => "loaded",
        (e: { stderr: string }) => e.stderr,
      );
    expect(await load("@auditsink/client")).toBe("loaded");
    expect(await load("@auditsink/client/eventbridge")).toMatch(
      /Cannot find package '@aws-sdk\/client-eventbridge'/,
    );
  });
});

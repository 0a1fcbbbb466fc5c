/**
 * `auditsink start` is configured by AUDITSINK_* environment variables as fully as by flags (a supervisor has no
 * command line to spare), flags win, and docs/OPERATIONS.md's one table names every variable.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { buildProgram, defaultDataDir } from "@auditsink/cli";
import type { Command, Option } from "commander";
import { afterEach, describe, expect, it } from "vitest";

const quiet = { out: () => {}, err: () => {}, isTTY: false, setExitCode: () => {} };

/** The options `start` would run with, for this argv and environment (the action is replaced: nothing starts). */
async function startOptions(argv: string[], env: Record<string, string>): Promise<Record<string, unknown>> {
  const program = buildProgram(quiet);
  let seen: Record<string, unknown> = {};
  program.commands
    .find((c) => c.name() === "start")!
    .action((o) => {
      seen = o;
    });
  Object.assign(process.env, env);
  try {
    await program.parseAsync(["start", ...argv], { from: "user" });
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
  return seen;
}

const startCommand = (): Command => buildProgram(quiet).commands.find((c) => c.name() === "start")!;
const visible = (o: Option) => !o.hidden;

const saved = { XDG_DATA_HOME: process.env.XDG_DATA_HOME };
afterEach(() => {
  if (saved.XDG_DATA_HOME === undefined) delete process.env.XDG_DATA_HOME;
  else process.env.XDG_DATA_HOME = saved.XDG_DATA_HOME;
});

describe("auditsink start configuration", () => {
  it("takes every option from its AUDITSINK_* variable", async () => {
    const o = await startOptions([], {
      AUDITSINK_DATA_DIR: "/srv/audit",
      AUDITSINK_HOST: "0.0.0.0",
      AUDITSINK_PORT: "9090",
      AUDITSINK_DEPLOYMENT: "audit.example/prod",
      AUDITSINK_CHECKPOINT_KEY: "ed25519",
      AUDITSINK_VERIFY_INTERVAL: "30",
      AUDITSINK_FULL_VERIFY_INTERVAL: "600",
      AUDITSINK_VERIFY_SWEEP_SHARE: "0.25",
      AUDITSINK_WEBHOOK_URL: "https://alerts.example/hook",
      AUDITSINK_TILES: "off",
      AUDITSINK_WITNESSES: "https://w1.example w1+00000000+BA==\nhttps://w2.example w2+00000000+BA==",
      AUDITSINK_WITNESS_QUORUM: "1",
      AUDITSINK_WITNESS_INTERVAL: "60",
      AUDITSINK_WITNESS_MAX_LAG: "900",
      AUDITSINK_WITNESS_STREAMS: "agents.*",
      LOG_LEVEL: "warn",
    });
    expect(o).toEqual({
      dataDir: "/srv/audit",
      host: "0.0.0.0",
      port: 9090,
      deployment: "audit.example/prod",
      checkpointKey: "ed25519",
      verifyInterval: 30,
      fullVerifyInterval: 600,
      verifySweepShare: 0.25,
      webhook: "https://alerts.example/hook",
      tiles: "off",
      // One value holding both witnesses: the action splits it (parseWitnessList) and checks each key at start.
      witness: ["https://w1.example w1+00000000+BA==\nhttps://w2.example w2+00000000+BA=="],
      witnessQuorum: 1,
      witnessInterval: 60,
      witnessMaxLag: 900,
      witnessStreams: "agents.*",
      logLevel: "warn",
    });
  });

  it("lets a flag win over the variable, and refuses a variable that does not parse", async () => {
    expect(await startOptions(["--port", "7000"], { AUDITSINK_PORT: "9090" })).toMatchObject({ port: 7000 });
    await expect(startOptions([], { AUDITSINK_PORT: "eighty" })).rejects.toThrow(/--port must be an integer/);
    await expect(startOptions([], { AUDITSINK_VERIFY_SWEEP_SHARE: "2" })).rejects.toThrow(
      /--verify-sweep-share must be a number in \(0, 1\]/,
    );
    await expect(startOptions([], { AUDITSINK_CHECKPOINT_KEY: "rsa" })).rejects.toThrow(
      /Allowed choices are ed25519, ecdsa-p256/,
    );
    await expect(startOptions([], { AUDITSINK_TILES: "maybe" })).rejects.toThrow(
      /Allowed choices are on, off/,
    );
  });

  it("keeps keys out of the working tree: the data directory defaults to the user's XDG data home", async () => {
    process.env.XDG_DATA_HOME = "/home/someone/.data";
    expect(defaultDataDir()).toBe("/home/someone/.data/auditsink");
    delete process.env.XDG_DATA_HOME;
    expect(defaultDataDir()).toBe(join(homedir(), ".local/share/auditsink"));
  });

  it("gives every option an AUDITSINK_* variable (the log level: LOG_LEVEL, as loggers conventionally read), and docs/OPERATIONS.md's table names each", async () => {
    const doc = await readFile(join(import.meta.dirname, "../../docs/OPERATIONS.md"), "utf8");
    const options = startCommand().options.filter(visible);
    expect(Object.fromEntries(options.map((o) => [o.long, o.envVar]))).toEqual({
      "--data-dir": "AUDITSINK_DATA_DIR",
      "--host": "AUDITSINK_HOST",
      "--port": "AUDITSINK_PORT",
      "--deployment": "AUDITSINK_DEPLOYMENT",
      "--checkpoint-key": "AUDITSINK_CHECKPOINT_KEY",
      "--verify-interval": "AUDITSINK_VERIFY_INTERVAL",
      "--full-verify-interval": "AUDITSINK_FULL_VERIFY_INTERVAL",
      "--verify-sweep-share": "AUDITSINK_VERIFY_SWEEP_SHARE",
      "--tiles": "AUDITSINK_TILES",
      "--webhook": "AUDITSINK_WEBHOOK_URL",
      "--witness": "AUDITSINK_WITNESSES",
      "--witness-quorum": "AUDITSINK_WITNESS_QUORUM",
      "--witness-interval": "AUDITSINK_WITNESS_INTERVAL",
      "--witness-max-lag": "AUDITSINK_WITNESS_MAX_LAG",
      "--witness-streams": "AUDITSINK_WITNESS_STREAMS",
      "--log-level": "LOG_LEVEL",
    });
    for (const o of options) expect(doc).toContain(`| \`${o.flags}\` | \`${o.envVar}\` |`);
  });
});

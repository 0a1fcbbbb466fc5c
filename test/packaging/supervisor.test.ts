/**
 * The sink under a supervisor: however it is started (`npm start` in the repository, the `auditsink` bin), a
 * SIGTERM or SIGINT stops it cleanly — a message, exit status 0, the data directory's lock released — and a
 * verification in progress is aborted rather than awaited.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { startEmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../embedded/helpers.ts";
import { logLines, startSink, stopWith } from "./processes.ts";

const repo = join(import.meta.dirname, "../..");
let data: Awaited<ReturnType<typeof tempDir>>;

beforeAll(async () => {
  data = await tempDir("auditsink-supervisor-");
});
afterAll(async () => {
  await data.remove();
});

describe("npm start", () => {
  it("stops on SIGTERM sent to npm: clean message, exit 0, and the lock is released for the next start", async () => {
    // Prepare: the documented command, configured through the environment as a unit file would.
    const sink = await startSink("npm", ["start"], {
      cwd: repo,
      env: { AUDITSINK_DATA_DIR: data.dir, AUDITSINK_PORT: "0", AUDITSINK_VERIFY_INTERVAL: "0" },
    });
    expect((await fetch(`${sink.url}/healthz`)).status).toBe(200);
    // Act
    const code = await stopWith(sink, "SIGTERM");
    // Assess
    expect(code).toBe(0);
    expect(logLines(sink.err())).toContainEqual(
      expect.objectContaining({ msg: "auditsink stopping", signal: "SIGTERM" }),
    );
    expect(logLines(sink.err())).toContainEqual(
      expect.objectContaining({ msg: "auditsink stopped", signal: "SIGTERM" }),
    );
    await expect(fetch(`${sink.url}/healthz`)).rejects.toThrow();
    // The same directory opens again: a lock still held would make this start fail.
    const again = await startSink(process.execPath, [join(repo, "packages/cli/src/main.ts"), "start"], {
      cwd: repo,
      env: { NODE_OPTIONS: "--import tsx", AUDITSINK_DATA_DIR: data.dir, AUDITSINK_PORT: "0" },
    });
    expect(await stopWith(again, "SIGINT"), again.err()).toBe(0);
    expect(logLines(again.err())).toContainEqual(
      expect.objectContaining({ msg: "auditsink stopped", signal: "SIGINT" }),
    );
  }, 60_000); // Two starts through npm and tsx (each compiles the CLI on the fly) on a shared 2-core machine.
});

describe("stopping the embedded sink", () => {
  it("aborts a verification in progress instead of waiting for it, and raises no alert for it", async () => {
    // Prepare
    const dir = await tempDir("auditsink-abort-");
    const sink = await startEmbeddedSink({
      dataDir: dir.dir,
      port: 0,
      verifyIntervalSeconds: 0,
      print: () => undefined,
      log: () => undefined,
    });
    try {
      // Act: a full run starts, then the sink is closed while it runs (close() stops the verifier).
      const run = sink.verifier.runOnce({ full: true });
      const stopped = sink.verifier.stop();
      await sink.close();
      await stopped;
      // Assess: the run ended without a report (a completed run resolves with one and sets `last`).
      await expect(run).rejects.toThrow("the verifier is stopping");
      expect(sink.verifier.last).toBeUndefined();
      const alerts = await readFile(join(dir.dir, "alerts.jsonl"), "utf8").catch(() => "");
      expect(alerts).not.toMatch(/verifier-error/);
    } finally {
      await dir.remove();
    }
  });
});

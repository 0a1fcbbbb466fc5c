import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "@auditsink/cli";
import { type EmbeddedSink, startEmbeddedSink } from "@auditsink/local";

export async function tempDir(prefix = "auditsink-cli-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Starts the real embedded sink on a free port over a fresh data directory, quietly. */
export async function startSink(dataDir: string): Promise<EmbeddedSink> {
  return startEmbeddedSink({
    dataDir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: () => {},
    log: () => {},
  });
}

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs the auditsink CLI in-process with captured output. */
export async function cli(args: string[], options: { isTTY?: boolean } = {}): Promise<CliRun> {
  let out = "";
  let err = "";
  const code = await run(args, {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    isTTY: options.isTTY ?? false,
    setExitCode: () => {},
  });
  return { code, out, err };
}

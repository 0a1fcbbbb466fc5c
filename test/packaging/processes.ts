/** Runs `auditsink start` the ways users and supervisors do, and watches its output. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

/**
 * This process's environment without npm's `npm_*` variables: under `npm test` they carry the repository's
 * npm configuration (its local prefix, its script settings) into every npm the tests start, which must behave
 * as a user's npm in its own directory.
 */
export function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return { ...env, ...extra };
}

export interface Started {
  child: ChildProcess;
  url: string;
  /** Everything written to stdout and stderr so far. */
  out: () => string;
  err: () => string;
}

/**
 * Spawns `command args` and resolves once the sink logs `auditsink started` (its URL is taken from that line);
 * rejects with the output so far if the process exits first.
 */
export async function startSink(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<Started> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: userEnv({ NO_COLOR: "1", ...options.env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d) => {
      err += d;
      const started = logLines(err).find((l) => l.msg === "auditsink started");
      if (typeof started?.url === "string") resolve(started.url);
    });
    child.once("exit", (code, signal) =>
      reject(
        new Error(`${command} ${args.join(" ")} exited (${code ?? signal}) before starting:\n${out}${err}`),
      ),
    );
  });
  return { child, url, out: () => out, err: () => err };
}

/** The JSON log lines in `text` (the sink's stderr); other lines are skipped. */
export function logLines(text: string): Record<string, unknown>[] {
  return text.split("\n").flatMap((line) => {
    try {
      const parsed: unknown = JSON.parse(line);
      return parsed !== null && typeof parsed === "object" ? [parsed as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** Sends `signal` and resolves with the exit code (or the signal that ended it) once the process has exited. */
export async function stopWith(started: Started, signal: NodeJS.Signals): Promise<number | string> {
  const exited = once(started.child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  started.child.kill(signal);
  const [code, killedBy] = await exited;
  return code ?? `killed by ${killedBy}`;
}

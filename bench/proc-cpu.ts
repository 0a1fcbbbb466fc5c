/**
 * CPU time of processes and threads from Linux /proc, for benchmarks that report what each process spent
 * (bench:embedded, bench:mcp). Clock ticks of 1/100 s (USER_HZ).
 */
import { readdirSync, readFileSync } from "node:fs";

/** User + system CPU seconds of a process or thread so far, from its `stat` file. */
export function cpuOf(statPath: string): { user: number; system: number } {
  const fields = readFileSync(statPath, "utf8").split(") ")[1]!.split(" ");
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** The main thread's CPU seconds (its thread id is the process id). */
export const mainThreadCpu = (pid: number) => {
  const { user, system } = cpuOf(`/proc/${pid}/task/${pid}/stat`);
  return user + system;
};

/**
 * CPU seconds of a process's threads so far, by thread name (Linux comm): the main thread (thread id = process id)
 * as `main`; on Node 20 the threadpool and worker threads are all named `node`, V8's profiler thread
 * `v8:ProfEvntProc`.
 */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const { user, system } = cpuOf(`/proc/${pid}/task/${tid}/stat`);
      const key = tid === String(pid) ? "main" : name;
      out.set(key, (out.get(key) ?? 0) + user + system);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

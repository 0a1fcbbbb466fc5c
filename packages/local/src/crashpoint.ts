/**
 * Deterministic crash points for the fault-injection tests: `AUDITSINK_CRASH_AT=<name>[#<n>]` makes the process
 * SIGKILL itself the n-th time (default 1st) it reaches the point called <name>. Unset (always, outside the
 * tests), a crash point costs one map lookup. Points are placed between the durable steps of first start and of
 * producer registration/revocation, so a test can kill at every step and check that a restart repairs it.
 */
const wanted = parse(process.env.AUDITSINK_CRASH_AT);
let hits = 0;

function parse(spec: string | undefined): { name: string; nth: number } | undefined {
  if (!spec) return undefined;
  const [name, nth] = spec.split("#");
  return { name: name!, nth: nth ? Number(nth) : 1 };
}

export function crashPoint(name: string): void {
  if (wanted === undefined || wanted.name !== name) return;
  hits++;
  if (hits === wanted.nth) process.kill(process.pid, "SIGKILL");
}

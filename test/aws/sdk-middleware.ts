/**
 * SDK middleware for tests and the cost bench: inject faults into a client's calls, and count its calls.
 * Faults are injected at the `deserialize` step, inside the SDK's retry middleware, so the client's own retry
 * policy handles them exactly as it would a real throttle, 5xx or timeout; `crash` faults go at `initialize`,
 * outside retries, and stand for a Lambda that dies mid-commit.
 */
export type FaultKind = "throttle" | "server-error" | "timeout" | "crash";

export interface FaultPlan {
  kind: FaultKind;
  /** Only calls of this command (e.g. "PutObjectCommand"); all commands when absent. */
  command?: string;
  /** Inject into call number n (1-based, counting matching calls) when this says so. */
  when: (n: number) => boolean;
  /** "before": the request never reaches the service. "after": it took effect, but the response is lost. */
  phase?: "before" | "after";
}

function faultError(kind: FaultKind): Error {
  const make = (name: string, status: number, extra: Record<string, unknown> = {}) =>
    Object.assign(new Error(`injected ${kind}`), { name, $metadata: { httpStatusCode: status }, ...extra });
  switch (kind) {
    case "throttle":
      return make("ThrottlingException", 400, { $retryable: { throttling: true } });
    case "server-error":
      return make("InternalServerError", 500, { $fault: "server" });
    case "timeout":
      return make("TimeoutError", 0);
    case "crash":
      return make("InjectedCrash", 0);
  }
}

/** Every SDK v3 client (and lib-dynamodb's document client, which shares its client's stack) has this. */
type AnyClient = { middlewareStack: { add: (middleware: never, options: never) => void } };

/** Adds a fault plan to a client; returns a function reporting how many faults were injected. */
export function injectFaults(client: object, plan: FaultPlan): () => number {
  let calls = 0;
  let injected = 0;
  const step = plan.kind === "crash" ? "initialize" : "deserialize";
  (client as AnyClient).middlewareStack.add(
    ((next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) =>
      async (args: unknown) => {
        if (plan.command && context.commandName !== plan.command) return next(args);
        calls++;
        if (!plan.when(calls)) return next(args);
        injected++;
        if (plan.phase === "after") {
          await next(args);
        }
        throw faultError(plan.kind);
      }) as never,
    { step, name: `fault-${plan.kind}-${Math.random()}`, priority: "low" } as never,
  );
  return () => injected;
}

/** Counts every API call a client sends (one per attempt, as AWS bills them), by command name. */
export function countCalls(client: object, counts: Map<string, number>, prefix: string): void {
  (client as AnyClient).middlewareStack.add(
    ((next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) =>
      async (args: unknown) => {
        const key = `${prefix}:${context.commandName ?? "unknown"}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
        return next(args);
      }) as never,
    { step: "deserialize", name: `count-${prefix}-${Math.random()}`, priority: "low" } as never,
  );
}

/**
 * Makes create-only writes (`PutObject` with `If-None-Match: *`) on one key atomic across the given clients, as
 * S3 guarantees and moto does not: moto checks and then writes on a threaded server, so two racing creates of
 * one key can both succeed (docs/AWS.md, "What moto does not emulate"). Tests of racing writers use this so
 * that they test the sink against S3's semantics, not moto's race.
 */
export function atomicCreates(client: object, inFlight: Map<string, Promise<unknown>>): void {
  (client as AnyClient).middlewareStack.add(
    ((next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) =>
      async (args: unknown) => {
        const input = (args as { input?: { Bucket?: string; Key?: string; IfNoneMatch?: string } }).input;
        if (context.commandName !== "PutObjectCommand" || input?.IfNoneMatch !== "*") return next(args);
        const key = `${input.Bucket}/${input.Key}`;
        const before = inFlight.get(key) ?? Promise.resolve();
        const mine = before.catch(() => undefined).then(() => next(args));
        inFlight.set(key, mine);
        try {
          return await mine;
        } finally {
          if (inFlight.get(key) === mine) inFlight.delete(key);
        }
      }) as never,
    { step: "initialize", name: `atomic-creates-${Math.random()}`, priority: "high" } as never,
  );
}

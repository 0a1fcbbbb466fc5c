/**
 * The sequencer's wake-up in-process, for tests and the load benchmark: the `SequencerWake` port answering at once
 * (as Lambda's asynchronous invoke does once it has queued the event) and running the real sequencer handler
 * in a pool of "containers" (one handler each, reused when idle, a new one when all are busy, as Lambda scales).
 * `startInvokeEndpoint` serves the same through Lambda's Invoke HTTP API, for code that builds its own
 * LambdaClient (the handler modules in functions/, pointed at it with AWS_ENDPOINT_URL_LAMBDA).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { SequenceRun, SequencerWake } from "@auditsink/aws";
import { lambdaContext } from "./fixtures.ts";

export type SequencerHandler = (event: unknown, context: unknown) => Promise<unknown>;

export class InProcessWake implements SequencerWake {
  /** Wake-ups received, and what each run returned (or threw). */
  readonly wakes: string[] = [];
  readonly runs: (SequenceRun | { woken: string[] })[] = [];
  readonly errors: unknown[] = [];
  private readonly idle: SequencerHandler[] = [];
  private readonly running = new Set<Promise<void>>();
  /** Set after construction: the handlers' runtimes need this port. */
  container: (() => SequencerHandler) | undefined;

  constructor(private readonly options: { latencyMs?: number; remainingMs?: number } = {}) {}

  async wake(stream: string): Promise<void> {
    this.wakes.push(stream);
    if (this.options.latencyMs) await new Promise((r) => setTimeout(r, this.options.latencyMs));
    this.invoke({ stream });
  }

  /** Invokes the handler with any event (a wake-up, the scheduled sweep), without waiting. */
  invoke(event: unknown): void {
    const handler = this.idle.pop() ?? this.container!();
    const run = (async () => {
      try {
        this.runs.push(
          (await handler(event, lambdaContext(this.options.remainingMs))) as
            | SequenceRun
            | { woken: string[] },
        );
      } catch (e) {
        this.errors.push(e);
      } finally {
        this.idle.push(handler);
      }
    })();
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  /** Resolves once no sequencer runs (runs started meanwhile included). */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }
}

/** Lambda's Invoke API (POST /2015-03-31/functions/{name}/invocations) answering 202 and waking in-process. */
export async function startInvokeEndpoint(
  wake: InProcessWake,
): Promise<{ url: string; stop(): Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const event = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as { stream?: unknown };
      if (req.headers["x-amz-invocation-type"] !== "Event" || typeof event.stream !== "string") {
        res.writeHead(400, { "content-type": "application/json" }).end('{"message":"unexpected invoke"}');
        return;
      }
      void wake.wake(event.stream);
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

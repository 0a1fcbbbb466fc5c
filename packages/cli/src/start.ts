/**
 * `auditsink start`: the embedded sink (packages/local startEmbeddedSink) until SIGINT or SIGTERM. A signal
 * stops it cleanly — the HTTP server stops accepting and lets in-flight requests finish, a verification in
 * progress is aborted, the data directory's lock is released — and the process exits 0, as a supervisor
 * (systemd, a container runtime) expects.
 */
import { type EmbeddedSink, type EmbeddedSinkOptions, startEmbeddedSink } from "@auditsink/local";

export async function start(options: EmbeddedSinkOptions): Promise<EmbeddedSink> {
  const sink = await startEmbeddedSink(options);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second signal while stopping changes nothing: the first one's shutdown is already under way.
    if (stopping) return;
    stopping = true;
    log(JSON.stringify({ level: "info", msg: "auditsink stopping", signal }));
    sink.close().then(
      () => {
        log(JSON.stringify({ level: "info", msg: "auditsink stopped", signal, dataDir: sink.local.dataDir }));
        process.exit(0);
      },
      (e: unknown) => {
        log(JSON.stringify({ level: "error", msg: "auditsink stop failed", error: (e as Error).message }));
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return sink;
}

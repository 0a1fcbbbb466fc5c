/**
 * `auditsink start`: the embedded sink (packages/local startEmbeddedSink) until SIGINT or SIGTERM. A signal
 * stops it cleanly — the HTTP server stops accepting and lets in-flight requests finish, a verification in
 * progress is aborted, the data directory's lock is released — and the process exits 0, as a supervisor
 * (systemd, a container runtime) expects. A signal that arrives while the sink is still starting stops it as
 * soon as it has started.
 */
import {
  createLogger,
  type EmbeddedSink,
  type EmbeddedSinkOptions,
  startEmbeddedSink,
} from "@auditsink/local";

export async function start(options: EmbeddedSinkOptions): Promise<EmbeddedSink> {
  // One logger for the sink and its shutdown messages (a signal may arrive before the sink exists).
  const log =
    options.logger ??
    createLogger({
      ...(options.logLevel ? { level: options.logLevel } : {}),
      ...(options.log ? { write: options.log } : {}),
    });
  let sink: EmbeddedSink | undefined;
  let signal: NodeJS.Signals | undefined;
  const shutdown = (running: EmbeddedSink, by: NodeJS.Signals) =>
    running.close().then(
      () => {
        log.info({ signal: by, dataDir: running.local.dataDir }, "auditsink stopped");
        process.exit(0);
      },
      (e: unknown) => {
        log.error({ error: (e as Error).message }, "auditsink stop failed");
        process.exit(1);
      },
    );
  const stop = (received: NodeJS.Signals) => {
    // A second signal while stopping changes nothing: the first one's shutdown is already under way.
    if (signal) return;
    signal = received;
    log.info({ signal }, "auditsink stopping");
    if (sink) void shutdown(sink, signal);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    sink = await startEmbeddedSink({ ...options, logger: log });
  } catch (e) {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    throw e;
  }
  if (signal) void shutdown(sink, signal);
  return sink;
}

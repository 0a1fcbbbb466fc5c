/**
 * A minimal entry point for the embedded sink without the CLI: `tsx packages/local/src/serve.ts <dataDir> [port]`.
 * Environment: AUDITSINK_VERIFY_INTERVAL (seconds), AUDITSINK_VERIFY_SWEEP_SLICE_MS and AUDITSINK_VERIFY_SWEEP_SHARE
 * (the sweep's slices, docs/EMBEDDED.md §5), AUDITSINK_WEBHOOK_URL, AUDITSINK_TILES (`off`: no tlog-tiles tiles
 * stored, as `auditsink start --tiles off`; what bench:embedded compares), AUDITSINK_CHECKPOINT_KEY (`ed25519` or
 * `ecdsa-p256`, when the key is first created), AUDITSINK_WITNESSES (one `<url> <verifier key>` per line) and
 * AUDITSINK_WITNESS_INTERVAL (seconds), as `auditsink start` reads them, LOG_LEVEL (default info),
 * AUDITSINK_QUIET (no log, no start-up text). The crash-safety test and the
 * benchmark run the sink through it; operators use `auditsink start`.
 */
import type { KeyAlgorithm } from "@auditsink/core";
import { parseLogLevel } from "./logger.ts";
import { startEmbeddedSink } from "./startEmbeddedSink.ts";
import { parseWitnessList } from "./witnesses.ts";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir) {
  process.stderr.write("usage: serve.ts <dataDir> [port]\n");
  process.exit(64);
}
const sink = await startEmbeddedSink({
  dataDir,
  port: port ? Number(port) : 8787,
  verifyIntervalSeconds: Number(process.env.AUDITSINK_VERIFY_INTERVAL ?? 60),
  ...(process.env.AUDITSINK_VERIFY_SWEEP_SLICE_MS
    ? { verifySweepSliceMs: Number(process.env.AUDITSINK_VERIFY_SWEEP_SLICE_MS) }
    : {}),
  ...(process.env.AUDITSINK_VERIFY_SWEEP_SHARE
    ? { verifySweepShare: Number(process.env.AUDITSINK_VERIFY_SWEEP_SHARE) }
    : {}),
  ...(process.env.AUDITSINK_WEBHOOK_URL ? { webhookUrl: process.env.AUDITSINK_WEBHOOK_URL } : {}),
  ...(process.env.AUDITSINK_TILES === "off" ? { tiles: false } : {}),
  ...(process.env.AUDITSINK_CHECKPOINT_KEY
    ? { checkpointKey: process.env.AUDITSINK_CHECKPOINT_KEY as KeyAlgorithm }
    : {}),
  ...(process.env.AUDITSINK_WITNESSES
    ? {
        witnesses: {
          witnesses: parseWitnessList(process.env.AUDITSINK_WITNESSES),
          ...(process.env.AUDITSINK_WITNESS_INTERVAL
            ? { intervalSeconds: Number(process.env.AUDITSINK_WITNESS_INTERVAL) }
            : {}),
        },
      }
    : {}),
  logLevel: process.env.AUDITSINK_QUIET ? "silent" : parseLogLevel(process.env.LOG_LEVEL ?? "info"),
  ...(process.env.AUDITSINK_QUIET ? { print: () => undefined } : {}),
});
process.stdout.write(`listening ${sink.url}\n`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void sink.close().then(() => process.exit(0));
  });
}

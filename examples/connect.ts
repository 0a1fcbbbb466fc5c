/**
 * Shared by the examples: an AuditClient configured from the environment.
 *
 *   AUDITSINK_URL        the sink (default http://127.0.0.1:8787, what `npm start` serves)
 *   AUDITSINK_KEY        the producer's private key file (from `auditsink producer create`)
 *   AUDITSINK_SINK_KEY   the sink's verifier key string (default: read from keys/verifier-key.txt of
 *                        AUDITSINK_DATA_DIR or `auditsink start`'s default data directory) — receipts are checked with it
 *   AUDITSINK_STATE      optional witness state file (the newest checkpoint seen, across restarts)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { defaultDataDir } from "@auditsink/cli";
import { AuditClient, loadProducerKey } from "@auditsink/client";

export async function connect(stream: string, source: string): Promise<AuditClient> {
  const sinkKey =
    process.env.AUDITSINK_SINK_KEY ??
    readFileSync(
      join(process.env.AUDITSINK_DATA_DIR ?? defaultDataDir(), "keys/verifier-key.txt"),
      "utf8",
    ).trim();
  return AuditClient.create({
    endpoint: process.env.AUDITSINK_URL ?? "http://127.0.0.1:8787",
    producerKey: await loadProducerKey(process.env.AUDITSINK_KEY ?? "my-agent.key.pem"),
    sinkKey,
    stream,
    source,
    ...(process.env.AUDITSINK_STATE ? { stateFile: process.env.AUDITSINK_STATE } : {}),
  });
}

/** True when the file is run directly (`npx tsx examples/<file>.ts`), not imported by a test. */
export const isMain = (url: string) =>
  process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;

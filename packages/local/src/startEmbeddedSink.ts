/**
 * The whole audit sink on one machine: the data directory (openLocalSink), the one Hono app served by
 * @hono/node-server, and the scheduled verifier with its alert sinks. `auditsink start` calls this.
 */
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { bearerTokenAuthorizer, createApp } from "@auditsink/api";
import { systemProducerKey } from "@auditsink/core";
import { serve } from "@hono/node-server";
import { FanOutAlertSink, JsonLinesAlertSink, LogAlertSink, WebhookAlertSink } from "./alerts.ts";
import {
  dataPaths,
  type LocalSink,
  type LocalSinkOptions,
  openLocalSink,
  storedStreams,
} from "./openLocalSink.ts";
import { ScheduledVerifier } from "./ScheduledVerifier.ts";

export interface EmbeddedSinkOptions extends LocalSinkOptions {
  /** Interface to listen on (default 127.0.0.1: the sink is not exposed beyond this machine). */
  host?: string;
  /** Port (default 8787; 0 picks a free one). */
  port?: number;
  /** Seconds between scheduled verifications (default 60; 0 turns the schedule off). */
  verifyIntervalSeconds?: number;
  /** A full verification every this many runs (default 10). */
  fullVerifyEvery?: number;
  /** Alerts are also POSTed here as `{ "alerts": [...] }`. */
  webhookUrl?: string;
  /** Structured JSON log lines (default: stderr). */
  log?: (line: string) => void;
  /** The startup text (default: stdout). Pass `() => {}` to stay quiet. */
  print?: (text: string) => void;
}

export interface EmbeddedSink {
  /** `http://<host>:<port>` */
  url: string;
  port: number;
  local: LocalSink;
  verifier: ScheduledVerifier;
  /** Stops accepting requests, lets in-flight commits finish, stops the verifier, releases the data directory. */
  close(): Promise<void>;
}

/**
 * @example
 *   const sink = await startEmbeddedSink({ dataDir: "./auditsink-data", port: 8787 });
 *   process.on("SIGTERM", () => void sink.close());
 */
export async function startEmbeddedSink(options: EmbeddedSinkOptions): Promise<EmbeddedSink> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const print = options.print ?? ((text: string) => process.stdout.write(text));
  const local = await openLocalSink({ purpose: "auditsink start", ...options });
  const paths = dataPaths(local.dataDir);
  const systemKey = systemProducerKey(local.signingKey.signer);
  const alerts = new FanOutAlertSink(
    [
      new LogAlertSink(log),
      new JsonLinesAlertSink(paths.alerts),
      ...(options.webhookUrl ? [new WebhookAlertSink(options.webhookUrl)] : []),
    ],
    (e) => log(JSON.stringify({ level: "error", msg: "alert delivery failed", error: (e as Error).message })),
  );
  const verifier = new ScheduledVerifier({
    objects: local.objects,
    heads: local.heads,
    deployment: local.deployment,
    trusted: [local.signingKey.signer.key],
    producerKeys: () => new Map([...local.registry.publicKeys(), [systemKey.keyId, systemKey.publicKey]]),
    streams: () => storedStreams(paths.objects),
    producers: () => local.registry.list(),
    lastSeen: async () => {
      await local.events.sync();
      return local.events.lastSeen();
    },
    alerts,
    statePath: paths.verifierState,
    tmpDir: paths.tmp,
    intervalMs: (options.verifyIntervalSeconds ?? 60) * 1000,
    ...(options.fullVerifyEvery ? { fullEvery: options.fullVerifyEvery } : {}),
  });
  const app = createApp({
    sink: local.sink,
    producers: local.producers,
    events: local.events,
    keys: {
      deployment: local.deployment,
      keys: [{ verifierKey: local.signingKey.verifierKey, publicKeyPem: local.signingKey.publicKeyPem }],
    },
    authorizeAdmin: bearerTokenAuthorizer(local.adminToken),
    health: () => ({
      verifier: verifier.last
        ? {
            lastRun: verifier.last.at,
            full: verifier.last.full,
            failures: verifier.last.failures.length,
            durationMs: verifier.last.durationMs,
          }
        : { lastRun: null },
    }),
    alerts,
    logError: (error, request) =>
      log(
        JSON.stringify({
          level: "error",
          msg: "request failed",
          ...request,
          error: (error as Error)?.message,
          cause: ((error as Error)?.cause as Error | undefined)?.message,
        }),
      ),
  });

  const host = options.host ?? "127.0.0.1";
  let server: ReturnType<typeof serve>;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server = serve({ fetch: app.fetch, hostname: host, port: options.port ?? 8787 }, (info: AddressInfo) =>
        resolve(info.port),
      );
      server.once("error", reject);
    });
  } catch (e) {
    await local.close();
    throw e;
  }
  await verifier.start();
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  print(banner(url, local));
  log(
    JSON.stringify({
      level: "info",
      msg: "auditsink started",
      url,
      dataDir: local.dataDir,
      deployment: local.deployment,
    }),
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    local,
    verifier,
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await verifier.stop();
        await local.close();
      })();
      return closing;
    },
  };
}

function banner(url: string, local: LocalSink): string {
  const token = join(local.dataDir, "admin-token");
  return `auditsink is running

  URL             ${url}   (OpenAPI: ${url}/openapi.json)
  data directory  ${local.dataDir}
  deployment      ${local.deployment}
  signing key     ECDSA P-256, SHA-256 fingerprint ${local.signingKey.fingerprint}${local.signingKey.created ? " (created now)" : ""}
  verifier key    ${local.signingKey.verifierKey}
                  (also in ${join(local.dataDir, "keys", "verifier-key.txt")}: pin it to verify checkpoints and receipts)
  admin token     ${token}

Send a first event:
  1. register a producer (creates its key pair):
       npm run auditsink -- producer create --url ${url} --admin-token "$(cat ${token})" --id my-agent --streams 'agents.*'
  2. send an event and get its signed receipt:
       npm run auditsink -- send --url ${url} --key my-agent.key.pem --sink-key "$(cat ${join(local.dataDir, "keys", "verifier-key.txt")})" \\
         --stream agents.demo --type ai.agent.tool_call --data '{"gen_ai.tool.name":"search"}'
  or register over HTTP: curl -X POST ${url}/v1/producers -H "authorization: Bearer $(cat ${token})" \\
       -H 'content-type: application/json' -d '{"id":"my-agent","publicKey":"<base64 DER SPKI>","streams":["agents.*"]}'
  (docs/EMBEDDED.md walks through it.)

`;
}

/**
 * The whole audit sink on one machine: the data directory (openLocalSink), the one Hono app served by
 * @hono/node-server, and the scheduled verifier with its alert sinks. `auditsink start` calls this.
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type { AddressInfo, Socket } from "node:net";
import { dirname, join } from "node:path";
import {
  bearerTokenAuthorizer,
  clientErrorResponse,
  createApp,
  MAX_HEADER_BYTES,
  type RequestRecord,
} from "@auditsink/api";
import {
  type Alert,
  type AlertSink,
  admit,
  SYSTEM_PRODUCER,
  SYSTEM_STREAM,
  signSystemEvent,
  systemProducerKey,
  type WitnessCosigner,
} from "@auditsink/core";
import { type Http2Bindings, type HttpBindings, serve } from "@hono/node-server";
import {
  FanOutAlertSink,
  JsonLinesAlertSink,
  LogAlertSink,
  OutboxWebhookAlertSink,
  WebhookAlertSink,
} from "./alerts.ts";
import { storedStreams } from "./LocalObjectStore.ts";
import { createLogger, type Logger, type LogLevel, requestLevel } from "./logger.ts";
import {
  dataPaths,
  type LocalSink,
  type LocalSinkOptions,
  openLocalSink,
  systemRecords,
} from "./openLocalSink.ts";
import { ScheduledVerifier } from "./ScheduledVerifier.ts";
import { SinkMetrics } from "./SinkMetrics.ts";
import { VerifierThread } from "./VerifierThread.ts";
import {
  assertWitnessableKey,
  createCosigner,
  type WitnessOptions,
  witnessEndpoints,
  witnessHealth,
} from "./witnesses.ts";

export interface EmbeddedSinkOptions extends Omit<LocalSinkOptions, "log" | "observer"> {
  /** Interface to listen on (default 127.0.0.1: the sink is not exposed beyond this machine). */
  host?: string;
  /** Port (default 8787; 0 picks a free one). */
  port?: number;
  /** Seconds between scheduled verifications (default 60; 0 turns the schedule off). */
  verifyIntervalSeconds?: number;
  /** A sweep of the whole archive starts after this many incremental runs without one (default 10). */
  fullVerifyEvery?: number;
  /**
   * A sweep of the whole archive (every object from record 0, in slices) starts at the latest this many seconds
   * after the last completed one started (default 300). docs/EMBEDDED.md §5 states the resulting bound.
   */
  fullVerifyIntervalSeconds?: number;
  /** Share of the sink's time a sweep may take, in (0, 1] (default 0.1). */
  verifySweepShare?: number;
  /** Length of one slice of a sweep, in milliseconds (default 250). */
  verifySweepSliceMs?: number;
  /** Alerts are also POSTed here as `{ "alerts": [...] }`. */
  webhookUrl?: string;
  /** Receives each JSON log line (default: stderr). docs/OPERATIONS.md §Logs. */
  log?: (line: string) => void;
  /** The logger to write through, instead of one made from `log` and `logLevel` (e.g. the CLI's, shared). */
  logger?: Logger;
  /** Lowest level logged (default `info`; `auditsink start` reads `--log-level` or LOG_LEVEL). */
  logLevel?: LogLevel;
  /** The human start-up text (default: stdout when it is a terminal, else nothing: the log has it all). */
  print?: (text: string) => void;
  /**
   * Witnesses asked to cosign each stream's newest checkpoint after commits (docs/TRANSPARENCY.md §3). Needs an
   * Ed25519 checkpoint key: an ECDSA one is a start-up error.
   */
  witnesses?: WitnessOptions;
}

export interface EmbeddedSink {
  /** `http://<host>:<port>` */
  url: string;
  port: number;
  local: LocalSink;
  verifier: ScheduledVerifier;
  /** The logger every part of the running sink writes through. */
  logger: Logger;
  /** The Prometheus registry behind `GET /metrics`. */
  metrics: SinkMetrics;
  /** Submits checkpoints to the configured witnesses (absent without witnesses). */
  cosigner?: WitnessCosigner;
  /** Writes alerts the alerts file could not take yet and retries due webhook deliveries (also done every 5 s). */
  flushAlerts(): Promise<void>;
  /** Stops accepting requests, lets in-flight commits finish, stops the verifier, releases the data directory. */
  close(): Promise<void>;
}

/**
 * @example
 *   const sink = await startEmbeddedSink({ dataDir: "/var/lib/auditsink", port: 8787 });
 *   process.on("SIGTERM", () => void sink.close());
 */
export async function startEmbeddedSink(options: EmbeddedSinkOptions): Promise<EmbeddedSink> {
  const log =
    options.logger ??
    createLogger({
      ...(options.logLevel ? { level: options.logLevel } : {}),
      ...(options.log ? { write: options.log } : {}),
    });
  const print =
    options.print ?? ((text: string) => void (process.stdout.isTTY ? process.stdout.write(text) : undefined));
  const metrics = new SinkMetrics();
  // Witness settings are checked before the data directory opens: a bad key or quorum changes nothing.
  if (options.witnesses) witnessEndpoints(options.witnesses);
  // Commits tell the cosigner (made once the sink is open) that a stream has a new checkpoint.
  let onCommitted: ((stream: string) => void) | undefined;
  // The sink may alert while it opens (a stored head it refuses during crash repair), before the alert sinks
  // exist (they write through the file system openLocalSink monitors): such alerts wait here until they do.
  const early: Alert[] = [];
  let deliver: AlertSink | undefined;
  const local = await openLocalSink({
    purpose: "auditsink start",
    alerts: { send: async (batch) => void (deliver ? await deliver.send(batch) : early.push(...batch)) },
    ...options,
    log,
    observer: {
      ...metrics.observer,
      committed: (stream, records, seconds) => {
        metrics.observer.committed?.(stream, records, seconds);
        onCommitted?.(stream);
      },
    },
  });
  let cosigner: WitnessCosigner | undefined;
  if (options.witnesses) {
    try {
      assertWitnessableKey(local.signingKey.signer.key, local.signingKey.privateKeyPath);
    } catch (e) {
      await local.close();
      throw e;
    }
    const made = createCosigner(local.sink, options.witnesses, {
      observer: metrics.witnessObserver,
      onFailure: (f) => log.warn({ ...f }, "witness did not cosign"),
      onError: (stream, e) => log.error({ stream, ...errorFields(e) }, "witness submission round failed"),
    });
    cosigner = made.cosigner;
    const running = cosigner;
    onCommitted = (stream) => {
      if (made.wanted(stream)) running.notify(stream);
    };
    metrics.watchWitnesses(() => running.status());
    // Checkpoints signed before this start (or while no witness answered) are submitted now, not at the next commit.
    for (const stream of await storedStreams(dataPaths(local.dataDir).objects))
      if (made.wanted(stream)) running.notify(stream);
  }
  const paths = dataPaths(local.dataDir);
  const systemKey = systemProducerKey(local.signingKey.signer);
  const alertsFile = new JsonLinesAlertSink(paths.alerts, local.fs);
  const webhook = options.webhookUrl
    ? new OutboxWebhookAlertSink(new WebhookAlertSink(options.webhookUrl), paths.alertOutbox, paths.tmp, {
        fs: local.fs,
        log,
        onAttempt: (delivered, retry) => metrics.delivery(delivered, retry),
      })
    : undefined;
  await webhook?.start();
  const fanOut = new FanOutAlertSink(
    [new LogAlertSink(log), alertsFile, ...(webhook ? [webhook] : [])],
    (e) => log.error(errorFields(e), "alert delivery failed"),
  );
  const alerts: AlertSink = {
    send: (batch) => {
      metrics.alerts(batch);
      return fanOut.send(batch);
    },
  };
  deliver = alerts;
  if (early.length > 0) await alerts.send(early.splice(0));
  // Alerts the file could not take are written as soon as it can (they already went to the log and webhook).
  const alertsRetry = setInterval(() => {
    if (alertsFile.backlog > 0) void alertsFile.retry().catch(() => undefined);
  }, 5_000);
  alertsRetry.unref();
  const verifierThread = new VerifierThread({
    dataDir: local.dataDir,
    deployment: local.deployment,
    trusted: [local.signingKey.signer.key],
    ...(options.witnesses ? { witnesses: options.witnesses } : {}),
  });
  const verifier = new ScheduledVerifier({
    runner: verifierThread.run,
    producerKeys: () => new Map([...local.registry.publicKeys(), [systemKey.keyId, systemKey.publicKey]]),
    producers: () => local.registry.list(),
    lastSeen: async () => local.index.lastSeen(),
    alerts,
    statePath: paths.verifierState,
    findingsPath: paths.findings,
    tmpDir: paths.tmp,
    fs: local.fs,
    intervalMs: (options.verifyIntervalSeconds ?? 60) * 1000,
    ...(options.fullVerifyEvery ? { fullEvery: options.fullVerifyEvery } : {}),
    ...(options.fullVerifyIntervalSeconds !== undefined
      ? { fullIntervalMs: options.fullVerifyIntervalSeconds * 1000 }
      : {}),
    ...(options.verifySweepShare !== undefined ? { sweepShare: options.verifySweepShare } : {}),
    ...(options.verifySweepSliceMs !== undefined ? { sweepSliceMs: options.verifySweepSliceMs } : {}),
    onRun: (run) => metrics.verifierRun(run),
    onRecords: (mode, records) => metrics.verifiedRecords(mode, records),
    record: async (type, data) => {
      const event = await signSystemEvent(local.signingKey.signer, type, data);
      const [receipt] = await local.sink.commit(SYSTEM_STREAM, [admit(event, SYSTEM_PRODUCER)]);
      return { index: receipt!.index };
    },
  });
  // Acknowledgements recorded in `_system` that findings.json missed (a kill between the two writes).
  await verifier.load();
  const systemSize = (await local.heads.get(SYSTEM_STREAM))?.size ?? 0;
  const from = verifier.findings.systemSize <= systemSize ? verifier.findings.systemSize : 0;
  if (from < systemSize) {
    verifier.findings.reconcile(
      await systemRecords(local.objects, local.signingKey, from, systemSize, log),
      systemSize,
    );
    await verifier.findings.save().catch(() => undefined);
  }
  const app = createApp({
    sink: local.sink,
    producers: local.producers,
    events: local.events,
    keys: {
      deployment: local.deployment,
      keys: [{ verifierKey: local.signingKey.verifierKey, publicKeyPem: local.signingKey.publicKeyPem }],
    },
    authorizeAdmin: bearerTokenAuthorizer(local.adminToken),
    apiReference: swaggerUiFiles(),
    health: async () => {
      const storage = await local.storage.probe(paths.tmp, local.fs);
      const open = verifier.findings.open;
      // A witness's outage (witness-policy-unmet) is reported under `witnesses`, never as a 503: a load balancer
      // would take the node out and stop ingest for a remote service's failure.
      const degrading = open.filter((f) => f.code !== "witness-policy-unmet");
      const reasons = [
        ...(storage.writable ? [] : ["storage-unwritable"]),
        ...(degrading.length > 0 ? ["unacknowledged-findings"] : []),
      ];
      return {
        status: reasons.length > 0 ? "degraded" : "ok",
        ...(reasons.length > 0 ? { reasons } : {}),
        storage,
        findings: {
          open: open.length,
          codes: [...new Set(open.map((f) => f.code))].sort(),
        },
        alerts: { fileBacklog: alertsFile.backlog, webhookBacklog: webhook?.backlog ?? 0 },
        verifier: verifier.last
          ? {
              lastRun: verifier.last.at,
              full: verifier.last.full,
              // Standing findings, not just this run's: an incremental run never reads "0" over an open one.
              failures: verifier.last.open.length,
              foundThisRun: verifier.last.failures.length,
              durationMs: verifier.last.durationMs,
            }
          : { lastRun: null },
        lastFullRun: verifier.findings.lastFullRun ?? null,
        ...(cosigner ? { witnesses: witnessHealth(cosigner) } : {}),
      };
    },
    findings: {
      list: async () => ({
        open: [...verifier.findings.open],
        acknowledged: [...verifier.findings.acknowledged],
      }),
      acknowledge: (ids, by, note) => verifier.acknowledge(ids, by, note),
    },
    alerts,
    // One line per request, written once the response is sent or the client hung up (see fetch below).
    onRequest: (record, request) => answered.get(request)?.(record),
    metrics: () => metrics.text(),
    ...(cosigner ? { cosigned: (stream: string) => cosigner.newestCosigned(stream) } : {}),
  });
  metrics.watch({
    openFindings: () => verifier.findings.open.length,
    lastFullRun: () => verifier.findings.lastFullRun,
    backlog: () => ({ webhook: webhook?.backlog ?? 0, file: alertsFile.backlog }),
  });
  const answered = new WeakMap<Request, (record: RequestRecord) => void>();
  const logRequest = (record: RequestRecord, aborted: boolean, durationMs: number) => {
    const r = { ...record, durationMs: Math.round(durationMs * 1000) / 1000 };
    // A failure caused by the client hanging up (its body stopped arriving) is not the sink's: status 499
    // ("client closed request", as nginx logs it), no problem code. An answer made before it hung up (a commit
    // that completed) keeps its status: those events are committed, and a retry replays them.
    if (aborted && r.status >= 500) {
      r.status = CLIENT_CLOSED_REQUEST;
      delete r.problem;
    }
    metrics.request(r);
    const { producerKeyIds, error, ...fields } = r;
    log[requestLevel(r.route, r.status, aborted)](
      {
        ...fields,
        ...(producerKeyIds?.length
          ? { producer: producerKeyIds.length === 1 ? producerKeyIds[0] : producerKeyIds }
          : {}),
        ...(aborted ? { aborted: true } : {}),
        ...(error !== undefined && r.status >= 500 ? errorFields(error) : {}),
      },
      aborted ? "request aborted by the client" : "request",
    );
  };
  // Node tells whether the response reached the client only when the connection's response closes: the line
  // waits for both that and the app's record (a client may hang up while its commit is still running).
  const fetch = (request: Request, env: HttpBindings | Http2Bindings) => {
    const started = performance.now();
    let record: RequestRecord | undefined;
    let aborted: boolean | undefined;
    const done = () => {
      if (record && aborted !== undefined) logRequest(record, aborted, performance.now() - started);
    };
    answered.set(request, (r) => {
      record = r;
      done();
    });
    env.outgoing.once("close", () => {
      aborted = !env.outgoing.writableFinished;
      done();
    });
    return app.fetch(request, env);
  };

  const host = options.host ?? "127.0.0.1";
  let server: ReturnType<typeof serve>;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server = serve(
        {
          fetch,
          hostname: host,
          port: options.port ?? 8787,
          serverOptions: { maxHeaderSize: MAX_HEADER_BYTES },
        },
        (info: AddressInfo) => resolve(info.port),
      );
      server.once("error", reject);
      // A request the HTTP parser refuses (request line and headers over MAX_HEADER_BYTES, not HTTP) gets a problem
      // like any refusal, unless part of an answer is already on the connection.
      server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
        const answer = clientErrorResponse(error.code);
        const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
        if (answer && socket.writable && !inFlight?.headersSent) socket.end(answer);
        else socket.destroy();
      });
    });
  } catch (e) {
    clearInterval(alertsRetry);
    await webhook?.stop();
    await cosigner?.close();
    await local.close();
    throw e;
  }
  await verifier.start();
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  print(banner(url, local));
  log.info(
    {
      url,
      dataDir: local.dataDir,
      deployment: local.deployment,
      verifierKey: local.signingKey.verifierKey,
      keyAlgorithm: local.signingKey.algorithm,
      fingerprint: local.signingKey.fingerprint,
    },
    "auditsink started",
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    local,
    verifier,
    logger: log,
    metrics,
    ...(cosigner ? { cosigner } : {}),
    flushAlerts: async () => {
      await alertsFile.retry();
      await webhook?.deliver();
    },
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await verifier.stop();
        await verifierThread.close();
        clearInterval(alertsRetry);
        await webhook?.stop();
        await cosigner?.close();
        await local.close();
      })();
      return closing;
    },
  };
}

const ALGORITHM_NAMES = { ed25519: "Ed25519", "ecdsa-p256": "ECDSA P-256" } as const;

function banner(url: string, local: LocalSink): string {
  const token = join(local.dataDir, "admin-token");
  return `auditsink is running

  URL             ${url}   (OpenAPI: ${url}/openapi.json)
  data directory  ${local.dataDir}
  deployment      ${local.deployment}
  signing key     ${ALGORITHM_NAMES[local.signingKey.algorithm]}, SHA-256 fingerprint ${local.signingKey.fingerprint}${local.signingKey.created ? " (created now)" : ""}
  verifier key    ${local.signingKey.verifierKey}
                  (also in ${join(local.dataDir, "keys", "verifier-key.txt")}: pin it to verify checkpoints and receipts)
  admin token     ${token}

Send a first event:
  1. register a producer (creates its key pair):
       AUDITSINK_ADMIN_TOKEN="$(cat ${token})" npx auditsink producer create --url ${url} --id my-agent --streams 'agents.*'
  2. send an event and get its signed receipt:
       npx auditsink send --url ${url} --key my-agent.key.pem --sink-key "$(cat ${join(local.dataDir, "keys", "verifier-key.txt")})" \\
         --stream agents.demo --type ai.agent.tool_call --data '{"gen_ai.tool.name":"search"}'
  or register over HTTP: curl -X POST ${url}/v1/producers -H "authorization: Bearer $(cat ${token})" \\
       -H 'content-type: application/json' -d '{"id":"my-agent","publicKey":"<base64 DER SPKI>","streams":["agents.*"]}'
  (docs/EMBEDDED.md walks through it.)

`;
}

/** The status logged for a request whose client hung up before the sink could answer it. */
export const CLIENT_CLOSED_REQUEST = 499;

/** An error's message and cause for a log line (never its stack: a line per failure, not a trace). */
function errorFields(e: unknown): { error: string; cause?: string } {
  const cause = (e as Error | undefined)?.cause as Error | undefined;
  return { error: (e as Error)?.message ?? String(e), ...(cause?.message ? { cause: cause.message } : {}) };
}

/** The rendered API reference's files, from the installed swagger-ui-dist package (no CDN: works offline). */
function swaggerUiFiles(): NonNullable<Parameters<typeof createApp>[0]["apiReference"]> {
  const dir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  return { read: (name) => readFile(join(dir, name)) };
}

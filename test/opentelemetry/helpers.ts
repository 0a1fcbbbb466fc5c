/** Shared by the OpenTelemetry bridge tests: a real embedded sink with a registered producer, and clients. */
import { join } from "node:path";
import { AuditClient, type AuditClientOptions } from "@auditsink/client";
import type { KeyAlgorithm, SealedRecord } from "@auditsink/core";
import { type EmbeddedSink, startEmbeddedSink } from "@auditsink/local";
import { type DiagLogger, DiagLogLevel, diag } from "@opentelemetry/api";
import { registerProducer } from "../cli/helpers.ts";
import { tempDir, testProducer } from "../embedded/helpers.ts";

export interface TestSink {
  sink: EmbeddedSink;
  dataDir: string;
  producer: ReturnType<typeof testProducer>;
  /** A client of the registered producer; retries kept short so an outage fails within a test. */
  client(options?: Partial<AuditClientOptions>): Promise<AuditClient>;
  /** Every record of a stream, oldest first. */
  records(stream: string): Promise<SealedRecord[]>;
  /** Starts the sink again over the same data directory and port (after `sink.close()`). */
  restart(): Promise<void>;
  remove(): Promise<void>;
}

const quiet = { verifyIntervalSeconds: 0, print: () => {}, log: () => {} };

export async function startTestSink(alg: KeyAlgorithm = "ed25519"): Promise<TestSink> {
  const dir = await tempDir("auditsink-otel-");
  const dataDir = join(dir.dir, "data");
  const producer = testProducer("otel-agent", alg);
  const t: TestSink = {
    sink: await startEmbeddedSink({ dataDir, port: 0, ...quiet }),
    dataDir,
    producer,
    client: (options = {}) =>
      AuditClient.create({
        endpoint: t.sink.url,
        producerKey: producer.privateKey,
        sinkKey: t.sink.local.signingKey.verifierKey,
        deployment: t.sink.local.deployment,
        stream: "agents.support-bot",
        source: "agent://support-bot",
        retry: { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 50 },
        timeoutMs: 2_000,
        ...options,
      }),
    records: async (stream) => {
      const reader = t.sink.local.sink.reader(stream);
      await reader.sync();
      return reader.records(0, reader.size);
    },
    restart: async () => {
      t.sink = await startEmbeddedSink({ dataDir, port: t.sink.port, ...quiet });
    },
    remove: async () => {
      await t.sink.close();
      await dir.remove();
    },
  };
  await registerProducer(t.sink, producer.id, producer.publicKey);
  return t;
}

/** Captures what OpenTelemetry's diag logger is told, from WARN up. */
export function captureDiag(): { lines: { level: string; message: string }[]; restore(): void } {
  const lines: { level: string; message: string }[] = [];
  const at =
    (level: string) =>
    (message: string, ..._args: unknown[]) => {
      lines.push({ level, message });
    };
  const logger: DiagLogger = {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    verbose: at("verbose"),
  };
  diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  return { lines, restore: () => diag.disable() };
}

import type { KeyObject } from "node:crypto";
import { chmod, cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type VerifyResult } from "@auditsink/cli";
import { AuditClient, type AuditClientOptions } from "@auditsink/client";
import { spkiDer } from "@auditsink/core";
import { type EmbeddedSink, startEmbeddedSink } from "@auditsink/local";
import { afterAll, expect } from "vitest";

/** Directories tempDir made in this test file: removed after its last test (and after its own afterAll hooks). */
const made: string[] = [];
afterAll(async () => {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A fresh directory under the system temp directory, removed when the test file is done. */
export async function tempDir(prefix = "auditsink-cli-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Starts the real embedded sink on a free port over a fresh data directory, quietly. */
export async function startSink(dataDir: string): Promise<EmbeddedSink> {
  return startEmbeddedSink({
    dataDir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: () => {},
    log: () => {},
  });
}

/**
 * An AuditClient signing with `producerKey`, pinned to a running sink's verifier key and deployment; `options` add
 * the stream, source, batching or anything else.
 */
export function clientOf(
  sink: EmbeddedSink,
  producerKey: KeyObject,
  options: Partial<AuditClientOptions> = {},
): Promise<AuditClient> {
  return AuditClient.create({
    endpoint: sink.url,
    producerKey,
    sinkKey: sink.local.signingKey.verifierKey,
    deployment: sink.local.deployment,
    ...options,
  });
}

/**
 * Registers a producer key on a running sink through its admin API (`POST /v1/producers`), for streams
 * `agents.*` unless others are given; fails the test unless the sink answers 201.
 */
export async function registerProducer(
  sink: EmbeddedSink,
  id: string,
  publicKey: KeyObject,
  streams: string[] = ["agents.*"],
): Promise<void> {
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${sink.local.adminToken}` },
    body: JSON.stringify({ id, publicKey: spkiDer(publicKey).toString("base64"), streams }),
  });
  expect(res.status, await res.clone().text()).toBe(201);
}

/**
 * A running sink over `<work>/data` with one producer registered through the CLI (`producer create`, streams
 * `agents.*`), its private key in `<work>/agent.key.pem`.
 */
export async function sinkWithProducer(work: string, producerId: string) {
  const dataDir = join(work, "data");
  const sink = await startSink(dataDir);
  const keyFile = join(work, "agent.key.pem");
  const created = await cli([
    "producer",
    "create",
    "--url",
    sink.url,
    "--admin-token",
    sink.local.adminToken,
    "--id",
    producerId,
    "--streams",
    "agents.*",
    "--key-file",
    keyFile,
  ]);
  expect(created.code, created.err).toBe(0);
  const { fingerprint, verifierKey } = sink.local.signingKey;
  return { sink, dataDir, keyFile, fingerprint, verifierKey };
}

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs the auditsink CLI in-process with captured output. */
export async function cli(args: string[], options: { isTTY?: boolean } = {}): Promise<CliRun> {
  let out = "";
  let err = "";
  const code = await run(args, {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    isTTY: options.isTTY ?? false,
    setExitCode: () => {},
  });
  return { code, out, err };
}

/** A copy of a read-only source (a data directory or bundle) whose files a test may change. */
export async function writableCopy(dir: string): Promise<string> {
  const copy = join(await tempDir(), "copy");
  await cp(dir, copy, { recursive: true });
  await chmod(copy, 0o755);
  for (const entry of await readdir(copy, { recursive: true, withFileTypes: true }))
    await chmod(join(entry.parentPath, entry.name), entry.isDirectory() ? 0o755 : 0o644);
  return copy;
}

/** `auditsink verify <source> --fingerprint <fp> --json`, its report parsed. */
export async function verifyReport(source: string, fingerprint: string, ...extra: string[]) {
  const r = await cli(["verify", source, "--fingerprint", fingerprint, "--json", ...extra]);
  return { code: r.code, err: r.err, report: JSON.parse(r.out || "{}") as VerifyResult };
}

/** `auditsink send` of one tool-call event with this id, as a producer sinkWithProducer registered; must succeed. */
export async function sendToolCall(
  producer: { sink: EmbeddedSink; keyFile: string; verifierKey: string },
  stream: string,
  source: string,
  id: string,
): Promise<void> {
  const sent = await cli([
    "send",
    "--url",
    producer.sink.url,
    "--key",
    producer.keyFile,
    "--stream",
    stream,
    "--sink-key",
    producer.verifierKey,
    "--source",
    source,
    "--type",
    "ai.agent.tool_call",
    "--id",
    id,
  ]);
  expect(sent.code, sent.err).toBe(0);
}

/** `auditsink prove inclusion <source> --stream <stream> --index <index> --fingerprint <fp>`. */
export function proveInclusion(source: string, stream: string, index: number, fingerprint: string) {
  return cli([
    "prove",
    "inclusion",
    source,
    "--stream",
    stream,
    "--index",
    String(index),
    "--fingerprint",
    fingerprint,
  ]);
}

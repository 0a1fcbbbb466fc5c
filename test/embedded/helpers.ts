/** Shared helpers of the embedded tests: temp data directories, producer keys and signed agent events. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair, type KeyAlgorithm, type SignedEvent, signEvent, spkiDer } from "@auditsink/core";
import { DirectoryObjects, type EmbeddedSinkOptions, startEmbeddedSink } from "@auditsink/local";
import { afterEach } from "vitest";

export async function tempDir(prefix = "auditsink-test-"): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** The file holding store key `key` in a data directory (fanned layout, docs/EMBEDDED.md §2). */
export const objectFile = (dataDir: string, key: string): string =>
  new DirectoryObjects(join(dataDir, "objects"), "fanned").pathOf(key);

/** The files of a data directory's keys under `prefix`, in key order. */
export async function objectFiles(dataDir: string, prefix: string): Promise<string[]> {
  const keys = await new DirectoryObjects(join(dataDir, "objects"), "fanned").list(prefix);
  return keys.map((k) => objectFile(dataDir, k));
}

/**
 * What a test file's sinks and directories need after each test: closing and removing, newest first. Call once at
 * the top of a test file; `fresh` and `start` register their own cleanups.
 */
export function testSinks(prefix: string) {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    /** Runs `cleanup` after the test (before the cleanups registered earlier). */
    after(cleanup: () => Promise<void>): void {
      cleanups.push(cleanup);
    },
    /** A new temp data directory, removed after the test. */
    async fresh(): Promise<string> {
      const t = await tempDir(prefix);
      cleanups.push(t.remove);
      return t.dir;
    },
    /** The embedded sink on a free port, no verification schedule, nothing printed; closed (once) after the test. */
    async start(dataDir: string, extra: Partial<EmbeddedSinkOptions> = {}) {
      const logged: string[] = [];
      const sink = await startEmbeddedSink({
        dataDir,
        port: 0,
        verifyIntervalSeconds: 0,
        print: () => undefined,
        log: (line) => logged.push(line),
        ...extra,
      });
      let closed = false;
      const close = async () => {
        if (closed) return;
        closed = true;
        await sink.close();
      };
      cleanups.push(close);
      return { sink, logged, close };
    },
  };
}

let counter = 0;

/** A producer key pair and a maker of signed AI-agent tool-call events (OpenTelemetry GenAI attribute names). */
export function testProducer(id: string, alg: KeyAlgorithm = "ed25519") {
  const { privateKey, publicKey } = generateKeyPair(alg);
  return {
    id,
    privateKey,
    publicKey,
    publicKeySpki: spkiDer(publicKey).toString("base64"),
    event(
      overrides: Partial<{
        id: string;
        type: string;
        time: string;
        agent: string;
        run: string;
        pad: number;
      }> = {},
    ): SignedEvent {
      counter++;
      return signEvent(
        {
          specversion: "1.0",
          id: overrides.id ?? `${id}-${process.pid}-${counter}-${Math.random().toString(36).slice(2)}`,
          source: `agent://${id}`,
          type: overrides.type ?? "ai.agent.tool_call",
          time: overrides.time ?? new Date().toISOString(),
          data: {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "web_search",
            "gen_ai.agent.id": overrides.agent ?? id,
            "gen_ai.conversation.id": overrides.run ?? "run-1",
            ...(overrides.pad ? { padding: "x".repeat(overrides.pad) } : {}),
          },
        },
        privateKey,
      );
    },
  };
}

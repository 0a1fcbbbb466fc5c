/** Shared helpers of the embedded tests: temp data directories, producer keys and signed agent events. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair, type KeyAlgorithm, type SignedEvent, signEvent, spkiDer } from "@auditsink/core";

export async function tempDir(prefix = "auditsink-test-"): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
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

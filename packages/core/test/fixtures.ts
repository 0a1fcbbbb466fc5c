import { type SignedEvent, signEvent } from "../src/event.ts";
import { generateKeyPair, type KeyAlgorithm, keyFingerprint } from "../src/keys.ts";
import {
  KeyObjectSigner,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
} from "../src/memory.ts";
import type { ObjectStore } from "../src/ports.ts";
import { Sink } from "../src/sink.ts";

export const DEPLOYMENT = "auditsink.test/unit";

export function memoryPorts(signerAlg: KeyAlgorithm = "ecdsa-p256") {
  const { privateKey, publicKey } = generateKeyPair(signerAlg);
  return {
    objects: new MemoryObjectStore(),
    heads: new MemoryHeadStore(),
    dedup: new MemoryDedupStore(),
    producers: new MemoryProducerRegistry(),
    signer: new KeyObjectSigner(DEPLOYMENT, privateKey, publicKey),
  };
}

export type Ports = ReturnType<typeof memoryPorts>;

export function newSink(ports: Ports): Sink {
  return new Sink({ deployment: DEPLOYMENT, ...ports });
}

export function producer(ports: Ports, name: string, alg: KeyAlgorithm = "ed25519", streams = ["*"]) {
  const { privateKey, publicKey } = generateKeyPair(alg);
  ports.producers.add({
    keyId: keyFingerprint(publicKey),
    publicKey,
    producer: name,
    streams,
    revoked: false,
  });
  return {
    privateKey,
    publicKey,
    event(
      id: string,
      data: unknown = { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search" },
    ): SignedEvent {
      return signEvent(
        {
          specversion: "1.0",
          id,
          source: `agent://${name}`,
          type: "ai.agent.tool_call",
          time: "2026-11-24T12:00:00.000Z",
          data: data as never,
        },
        privateKey,
      );
    },
  };
}

/** A view of `store` that records in `read` the key of every object read (`get`), for tests of what a run reads. */
export function recordingReads(store: ObjectStore, read: string[]): ObjectStore {
  return {
    putIfAbsent: (k, b) => store.putIfAbsent(k, b),
    get: (k) => {
      read.push(k);
      return store.get(k);
    },
    list: (p, o) => store.list(p, o),
  };
}

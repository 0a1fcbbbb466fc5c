/** The app's test fixtures: an app over in-memory ports, producers that sign agent events, request helpers. */
import {
  AuditedProducerAdmin,
  formatVerifierKey,
  generateKeyPair,
  KeyObjectSigner,
  keyAlgorithm,
  keyFingerprint,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  type ProducerAdmin,
  type ProducerInfo,
  type ProducerStore,
  ScanningEventIndex,
  type SignedEvent,
  Sink,
  StoreError,
  signEvent,
  spkiDer,
} from "@auditsink/core";
import { expect } from "vitest";
import { type AppDeps, bearerTokenAuthorizer, createApp } from "../src/index.ts";

export const DEPLOYMENT = "auditsink.test/api";
export const TOKEN = "admin-token-for-tests";

/** A ProducerAdmin in memory, enough for the app's tests (the local and AWS adapters have their own). */
export class MemoryProducerAdmin extends MemoryProducerRegistry implements ProducerStore {
  private readonly infos = new Map<string, ProducerInfo>();
  async register(input: Parameters<ProducerAdmin["register"]>[0]): Promise<ProducerInfo> {
    const keyId = keyFingerprint(input.publicKey);
    if (this.keys.has(keyId)) throw new StoreError("conflict", "key taken");
    const info = this.infos.get(input.id) ?? {
      id: input.id,
      streams: input.streams,
      keys: [],
      createdAt: "t",
    };
    info.streams = input.streams;
    info.keys.push({
      keyId,
      publicKey: spkiDer(input.publicKey).toString("base64"),
      algorithm: keyAlgorithm(input.publicKey),
      createdAt: "t",
    });
    this.infos.set(input.id, info);
    this.add({
      keyId,
      publicKey: input.publicKey,
      producer: input.id,
      streams: input.streams,
      revoked: false,
    });
    return structuredClone(info);
  }
  async revoke(id: string, keyId?: string): Promise<ProducerInfo> {
    const info = this.infos.get(id);
    if (!info) throw new StoreError("conflict", `no producer ${id}`);
    for (const k of info.keys) {
      if (keyId === undefined || k.keyId === keyId) {
        k.revokedAt = "t";
        this.keys.get(k.keyId)!.revoked = true;
      }
    }
    return structuredClone(info);
  }
  async list(): Promise<ProducerInfo[]> {
    return [...this.infos.values()];
  }
  async revokeKeys(id: string, keyId: string | undefined, at: string): Promise<string[]> {
    const info = this.infos.get(id);
    if (!info) throw new StoreError("conflict", `no producer ${id}`);
    const fresh = info.keys.filter((k) => (keyId === undefined || k.keyId === keyId) && !k.revokedAt);
    for (const k of fresh) {
      k.revokedAt = at;
      this.keys.get(k.keyId)!.revoked = true;
    }
    return fresh.map((k) => k.keyId);
  }
  async unregister(id: string, keyId: string): Promise<void> {
    const info = this.infos.get(id);
    if (info) info.keys = info.keys.filter((k) => k.keyId !== keyId);
    this.keys.delete(keyId);
  }
}

/** `wrap` sees every port before the sink and the app do (a test makes them fail with it). */
export function setup(extra: Partial<AppDeps> = {}, wrap: <T extends object>(port: T) => T = (p) => p) {
  const signerKeys = generateKeyPair("ecdsa-p256");
  const signer = new KeyObjectSigner(DEPLOYMENT, signerKeys.privateKey, signerKeys.publicKey);
  const objects = wrap(new MemoryObjectStore());
  const heads = wrap(new MemoryHeadStore());
  const registry = wrap(new MemoryProducerAdmin());
  const sink = new Sink({
    deployment: DEPLOYMENT,
    objects,
    heads,
    dedup: wrap(new MemoryDedupStore()),
    producers: registry,
    signer,
  });
  const producers = new AuditedProducerAdmin(registry, sink);
  const app = createApp({
    sink,
    producers,
    events: wrap(new ScanningEventIndex(objects, () => heads.streams())),
    keys: { deployment: DEPLOYMENT, keys: [{ verifierKey: formatVerifierKey(signer.key) }] },
    authorizeAdmin: bearerTokenAuthorizer(TOKEN),
    ...extra,
  });
  return { app, signer, sink, objects, heads };
}

export type Setup = ReturnType<typeof setup>;

export function agent(id: string) {
  const { privateKey, publicKey } = generateKeyPair("ed25519");
  let n = 0;
  return {
    id,
    privateKey,
    publicKey,
    event(extra: Record<string, unknown> = {}): SignedEvent {
      n++;
      return signEvent(
        {
          specversion: "1.0",
          id: `${id}-${n}`,
          source: `agent://${id}`,
          type: "ai.agent.tool_call",
          time: `2026-11-24T12:00:${String(n % 60).padStart(2, "0")}.000Z`,
          data: {
            "gen_ai.agent.id": id,
            "gen_ai.conversation.id": "run-7",
            "gen_ai.tool.name": "search",
            ...extra,
          } as never,
        },
        privateKey,
      );
    },
  };
}

export const admin = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

export async function register(s: Setup, a: ReturnType<typeof agent>, streams = ["agents.*"]) {
  const res = await s.app.request("/v1/producers", {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ id: a.id, publicKey: spkiDer(a.publicKey).toString("base64"), streams }),
  });
  expect(res.status).toBe(201);
}

export async function post(s: Setup, stream: string, body: unknown, type = "application/json") {
  return s.app.request(`/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": type },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export async function problemOf(res: Response) {
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  return (await res.json()) as { status: number; code: string; field?: string; detail: string };
}

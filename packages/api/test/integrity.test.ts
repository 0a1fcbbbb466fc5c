/**
 * Where an error came from decides its status (issue 10, item 7d): stored data that fails a check on a read
 * route, and a commit refused by an integrity check, are a logged 500 and an alert — never blamed on the client
 * as a 400, never a silent 503. Client input stays a 4xx naming the field.
 */
import {
  type Alert,
  checkpointKey,
  formatVerifierKey,
  generateKeyPair,
  KeyObjectSigner,
  keyFingerprint,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  ScanningEventIndex,
  Sink,
  segmentKey,
  signCheckpoint,
  signEvent,
} from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { bearerTokenAuthorizer, createApp } from "../src/index.ts";

const DEPLOYMENT = "auditsink.test/integrity";
const STREAM = "agents.dev";

/** One store, and a function that starts a fresh sink and app on it (as a restarted process would). */
function world() {
  const signerKeys = generateKeyPair("ecdsa-p256");
  const signer = new KeyObjectSigner(DEPLOYMENT, signerKeys.privateKey, signerKeys.publicKey);
  const objects = new MemoryObjectStore();
  const heads = new MemoryHeadStore();
  const registry = new MemoryProducerRegistry();
  const agentKeys = generateKeyPair("ed25519");
  registry.add({
    keyId: keyFingerprint(agentKeys.publicKey),
    publicKey: agentKeys.publicKey,
    producer: "coder",
    streams: ["agents.*"],
    revoked: false,
  });
  let n = 0;
  const event = () =>
    signEvent(
      {
        specversion: "1.0",
        id: `e-${++n}`,
        source: "agent://coder",
        type: "ai.agent.tool_call",
        time: "2026-11-24T12:00:00.000Z",
        data: { n },
      },
      agentKeys.privateKey,
    );
  const start = () => {
    const logged: unknown[] = [];
    const alerts: Alert[] = [];
    const sink = new Sink({
      deployment: DEPLOYMENT,
      objects,
      heads,
      dedup: new MemoryDedupStore(),
      producers: registry,
      signer,
    });
    const app = createApp({
      sink,
      producers: { list: async () => [] } as never,
      events: new ScanningEventIndex(objects, () => heads.streams()),
      keys: { deployment: DEPLOYMENT, keys: [{ verifierKey: formatVerifierKey(signer.key) }] },
      authorizeAdmin: bearerTokenAuthorizer("t"),
      logError: (e) => logged.push(e),
      alerts: { send: async (a) => void alerts.push(...a) },
    });
    return { app, logged, alerts };
  };
  const post = (app: ReturnType<typeof start>["app"], count = 2) =>
    app.request(`/v1/streams/${STREAM}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(Array.from({ length: count }, event)),
    });
  return { objects, signer, start, post };
}

async function problemOf(res: Response) {
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  return (await res.json()) as { status: number; code: string; field?: string; detail: string };
}

describe("a corrupt stored segment on the read API", () => {
  it("answers a logged 500 and raises an alert naming the segment, not 400 invalid-request", async () => {
    // Prepare: two committed records, then their segment's bytes changed in the store.
    const w = world();
    expect((await w.post(w.start().app)).status).toBe(200);
    const key = segmentKey(STREAM, 0);
    w.objects.objects.set(key, new TextEncoder().encode("{not a record\n"));
    const { app, logged, alerts } = w.start();
    // Act
    const res = await app.request(`/v1/streams/${STREAM}/records?from=0&to=2`);
    // Assess
    const p = await problemOf(res);
    expect({ status: res.status, code: p.code }).toEqual({ status: 500, code: "stored-object-corrupt" });
    expect(logged).toHaveLength(1);
    expect(alerts).toEqual([
      expect.objectContaining({ code: "stored-object-corrupt", stream: STREAM, at: key }),
    ]);
  });

  it("answers the same for the proof routes and the event search, which read the same segments", async () => {
    const w = world();
    expect((await w.post(w.start().app)).status).toBe(200);
    w.objects.objects.set(segmentKey(STREAM, 0), new TextEncoder().encode("garbage without newline"));
    for (const path of [
      `/v1/streams/${STREAM}/proofs/inclusion?index=0&size=2`,
      `/v1/streams/${STREAM}/proofs/consistency?from=1&to=2`,
      "/v1/events?agent=coder",
    ]) {
      const { app, alerts } = w.start();
      const res = await app.request(path);
      expect({ path, status: res.status, code: (await problemOf(res)).code }).toEqual({
        path,
        status: 500,
        code: "stored-object-corrupt",
      });
      expect(alerts.map((a) => a.code)).toEqual(["stored-object-corrupt"]);
    }
  });

  it("still answers a client's own mistake with a 400 naming the field and no alert", async () => {
    const w = world();
    const { app, alerts, logged } = w.start();
    expect((await w.post(app)).status).toBe(200);
    const res = await app.request(`/v1/streams/${STREAM}/records?from=0&to=9`);
    const p = await problemOf(res);
    expect({ status: res.status, code: p.code, field: p.field }).toEqual({
      status: 400,
      code: "invalid-request",
      field: "to",
    });
    expect(alerts).toEqual([]);
    expect(logged).toEqual([]);
  });
});

describe("an integrity failure during a commit", () => {
  it("is a logged 500 with a checkpoint-conflict alert, not a silent 503", async () => {
    // Prepare: a signed checkpoint of size 2 with another root already stored (a fork waiting to happen).
    const w = world();
    const forged = await signCheckpoint(
      {
        origin: `${DEPLOYMENT}/${STREAM}`,
        size: 2,
        root: Buffer.alloc(32, 7),
        head: Buffer.alloc(32, 9),
        time: "2026-11-24T12:00:00.000Z",
      },
      w.signer,
    );
    await w.objects.putIfAbsent(checkpointKey(STREAM, 2), new TextEncoder().encode(forged));
    const { app, logged, alerts } = w.start();
    // Act
    const res = await w.post(app, 2);
    // Assess
    const p = await problemOf(res);
    expect({ status: res.status, code: p.code }).toEqual({ status: 500, code: "checkpoint-conflict" });
    expect(logged).toHaveLength(1);
    expect(alerts).toEqual([
      expect.objectContaining({ code: "checkpoint-conflict", stream: STREAM, at: checkpointKey(STREAM, 2) }),
    ]);
  });
});

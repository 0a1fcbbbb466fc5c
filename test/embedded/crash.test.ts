/**
 * Crash safety: the sink runs as a child process under concurrent load and is SIGKILLed at random moments,
 * then restarted on the same data directory, again and again. Afterwards every acknowledged event is in the log
 * with its receipt verifying, replays return the original receipts, every stream verifies with zero failures
 * from the stored objects alone, and the scheduled verifier (running every second throughout) raised no alert.
 * Nothing is repaired by hand: restarts use the directory as the kill left it.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  eventKey,
  parseVerifierKey,
  type Receipt,
  type SignedEvent,
  systemProducerKey,
  verifyReceipt,
  verifyStoredStream,
} from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { openLocalSink } from "../../packages/local/src/index.ts";
import { startChild } from "./faults.ts";
import { tempDir, testProducer } from "./helpers.ts";

/** The sink as a child process with the scheduled verifier running every second. */
async function start(dataDir: string) {
  const p = await startChild(dataDir, { AUDITSINK_VERIFY_INTERVAL: "1" });
  if (!p) throw new Error("the sink died before listening");
  return p;
}

const KILLS = 22;
const WORKERS = 6;
const STREAMS = ["agents.alpha", "agents.beta"];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("crash safety under SIGKILL", () => {
  it(`keeps every acknowledged event through ${KILLS} kills at random moments`, {
    timeout: 240_000,
  }, async () => {
    // Prepare
    const t = await tempDir("auditsink-crash-");
    const dataDir = t.dir;
    const producers = [testProducer("agent-alpha"), testProducer("agent-beta", "ecdsa-p256")];
    const setup = await openLocalSink({ dataDir });
    for (const p of producers)
      await setup.producers.register({ id: p.id, publicKey: p.publicKey, streams: ["agents.*"] });
    await setup.close();
    const acked = new Map<string, { event: SignedEvent; receipt: Receipt }>();
    const sent: { stream: string; event: SignedEvent }[] = [];
    const replayMismatches: string[] = [];
    let kills = 0;

    // Act
    for (let round = 0; round < KILLS; round++) {
      const { child, url } = await start(dataDir);
      let stop = false;
      let firstAck!: () => void;
      const acknowledged = new Promise<void>((r) => {
        firstAck = r;
      });
      const worker = async (w: number) => {
        while (!stop) {
          const stream = STREAMS[w % STREAMS.length]!;
          const p = producers[w % producers.length]!;
          const size = 1 + Math.floor(Math.random() * 20);
          const batch: SignedEvent[] = [];
          for (let i = 0; i < size; i++) {
            const earlier = sent.filter((s) => s.stream === stream);
            if (earlier.length > 0 && Math.random() < 0.1)
              batch.push(earlier[Math.floor(Math.random() * earlier.length)]!.event);
            else {
              const event = p.event({ pad: 200 });
              sent.push({ stream, event });
              batch.push(event);
            }
          }
          const unique = [...new Map(batch.map((e) => [eventKey(e), e])).values()];
          try {
            const res = await fetch(`${url}/v1/streams/${stream}/events`, {
              method: "POST",
              headers: { "content-type": "application/cloudevents-batch+json" },
              body: JSON.stringify(unique),
            });
            if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
            const { receipts } = (await res.json()) as { receipts: Receipt[] };
            firstAck();
            for (const [i, r] of receipts.entries()) {
              const key = eventKey(unique[i]!);
              const before = acked.get(key);
              if (
                before &&
                (before.receipt.index !== r.index || before.receipt.recordHash !== r.recordHash)
              ) {
                replayMismatches.push(key);
              }
              if (!before) acked.set(key, { event: unique[i]!, receipt: r });
            }
          } catch {
            if (stop) return;
            await sleep(5);
          }
        }
      };
      const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
      // The kill falls at a random moment of the load, once this round acknowledged something (a fixed delay
      // after start would, on a loaded machine, often kill before the first commit and test nothing).
      await Promise.race([acknowledged, sleep(15_000)]);
      await sleep(Math.random() * 400);
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
      kills++;
      stop = true;
      await Promise.all(workers);
    }

    const { child, url } = await start(dataDir);
    const replays: Receipt[] = [];
    try {
      for (const stream of STREAMS) {
        const mine = [...acked.values()].filter((a) => a.receipt.stream === stream);
        for (let i = 0; i < mine.length; i += 500) {
          const res = await fetch(`${url}/v1/streams/${stream}/events`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ events: mine.slice(i, i + 500).map((a) => a.event) }),
          });
          expect(res.status).toBe(200);
          replays.push(...((await res.json()) as { receipts: Receipt[] }).receipts);
        }
      }
    } finally {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }

    // Assess
    expect(kills).toBeGreaterThanOrEqual(20);
    expect(acked.size).toBeGreaterThan(KILLS * 10);
    expect(replayMismatches).toEqual([]);
    const trusted = [
      parseVerifierKey((await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim()),
    ];
    for (const { receipt } of acked.values()) {
      expect(verifyReceipt(receipt, { trusted, deployment: "auditsink.local/embedded" })).toMatchObject({
        ok: true,
      });
    }
    for (const r of replays) {
      const original = acked.get(eventKey(r))!;
      expect([r.index, r.recordHash]).toEqual([original.receipt.index, original.receipt.recordHash]);
    }
    const local = await openLocalSink({ dataDir });
    try {
      const producerKeys = new Map([
        ...local.registry.publicKeys(),
        [systemProducerKey(local.signingKey.signer).keyId, local.signingKey.signer.key.publicKey],
      ]);
      for (const stream of [...STREAMS, "_system"]) {
        const head = await local.heads.get(stream);
        const report = await verifyStoredStream(local.objects, stream, {
          trusted,
          deployment: local.deployment,
          producerKeys,
          receipts: [...acked.values()].filter((a) => a.receipt.stream === stream).map((a) => a.receipt),
          ...(head ? { head } : {}),
        });
        expect(report.failures).toEqual([]);
        expect(report.warnings).toEqual([]);
      }
      const distinctAcked = new Set([...acked.values()].map((a) => `${a.receipt.stream}/${a.receipt.index}`));
      expect(distinctAcked.size).toBe(acked.size);
    } finally {
      await local.close();
    }
    const alerts = await readFile(join(dataDir, "alerts.jsonl"), "utf8").catch(() => "");
    expect(alerts).toBe("");
    await t.remove();
  });
});

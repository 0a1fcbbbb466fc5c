/**
 * The SDK and a client nobody here wrote, against the real embedded sink (packages/local startEmbeddedSink).
 */
import { join } from "node:path";
import type { AuditClientOptions } from "@auditsink/client";
import {
  checkpointKey,
  generateKeyPair,
  openCheckpoint,
  parseVerifierKey,
  type Receipt,
  signEvent,
  type UnsignedEvent,
  verifyConsistency,
  verifyReceipt,
  verifyStoredStream,
} from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { CloudEvent, HTTP } from "cloudevents";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientOf, registerProducer, startSink, tempDir } from "../cli/helpers.ts";

let sink: EmbeddedSink;
const producer = generateKeyPair("ed25519");

beforeAll(async () => {
  sink = await startSink(join(await tempDir("auditsink-client-e2e-"), "data"));
  await registerProducer(sink, "support-bot", producer.publicKey);
});

afterAll(async () => {
  await sink.close();
});

/** An AuditClient of the registered producer, pinned to this file's sink, sending to `stream`. */
const clientFor = (stream: string, options: Partial<AuditClientOptions>) =>
  clientOf(sink, producer.privateKey, { stream, source: "agent://support-bot", ...options });

describe("the official cloudevents SDK", () => {
  it("emits a signed structured-mode CloudEvent over HTTP that the sink accepts and receipts", async () => {
    // Prepare: the SDK builds the event; its attributes are signed and added as two extension attributes.
    const unsigned = new CloudEvent({
      type: "ai.agent.tool_call",
      source: "agent://support-bot",
      subject: "session-42",
      data: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search" },
    });
    const signed = signEvent(unsigned.toJSON() as unknown as UnsignedEvent, producer.privateKey);
    const event = unsigned.cloneWith({ sigkeyid: signed.sigkeyid, signature: signed.signature });
    const message = HTTP.structured(event);
    // Act
    const res = await fetch(`${sink.url}/v1/streams/agents.sdk/events`, {
      method: "POST",
      headers: message.headers as Record<string, string>,
      body: message.body as string,
    });
    // Assess
    expect(message.headers["content-type"]).toMatch(/^application\/cloudevents\+json/);
    expect(res.status).toBe(200);
    const { receipts } = (await res.json()) as { receipts: Receipt[] };
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({ source: "agent://support-bot", id: event.id, index: 0 });
    const trusted = [parseVerifierKey(sink.local.signingKey.verifierKey)];
    expect(verifyReceipt(receipts[0]!, { trusted, deployment: sink.local.deployment }).ok).toBe(true);
  });
});

describe("AuditClient against the embedded sink", () => {
  it("sends batches, verifies every receipt and witnesses the stream's growth", async () => {
    // Prepare
    const client = await clientFor("agents.actions", {
      batch: { maxEvents: 4, lingerMs: 5 },
    });
    // Act
    const receipts = await Promise.all(
      Array.from({ length: 10 }, (_, n) =>
        client.send({ type: "ai.agent.tool_call", data: { "gen_ai.tool.name": "search", n } }),
      ),
    );
    const checkpoint = await client.checkLog("agents.actions");
    await client.close();
    // Assess
    expect(receipts.map((r) => r.index).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(checkpoint).toContain("agents.actions\n10\n");
    const report = await verifyStoredStream(sink.local.objects, "agents.actions", {
      trusted: [sink.local.signingKey.signer.key],
      receipts,
    });
    expect(report.failures).toEqual([]);
  });

  it("witnesses with the consistency proofs carried in the ingest responses, never calling the read API", async () => {
    // Prepare: count the client's requests.
    const paths: string[] = [];
    const client = await clientFor("agents.witness", {
      batch: { maxEvents: 3, lingerMs: 1 },
      fetch: (input, init) => {
        paths.push(new URL(String(input)).pathname + new URL(String(input)).search);
        return fetch(input, init);
      },
    });
    // Act: four batches, one after another, each extending the checkpoint the client saw before.
    for (let b = 0; b < 4; b++) {
      await Promise.all(
        Array.from({ length: 3 }, (_, n) => client.send({ type: "ai.agent.tool_call", data: { b, n } })),
      );
    }
    await client.close();
    // Assess
    expect(paths.filter((p) => !p.startsWith("/v1/streams/agents.witness/events"))).toEqual([]);
    expect(paths.filter((p) => p.includes("consistencyFrom="))).toHaveLength(3);
    // Each batch's receipts came in compact form (FORMAT.md §9b) and were verified expanded.
    expect(paths.filter((p) => new URL(p, sink.url).searchParams.get("receipts") === "compact")).toHaveLength(
      4,
    );
    const res = await fetch(`${sink.url}/v1/streams/agents.witness/events?consistencyFrom=3`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([
        signEvent(
          {
            specversion: "1.0",
            id: "w-1",
            source: "agent://support-bot",
            type: "t",
            time: new Date().toISOString(),
          },
          producer.privateKey,
        ),
      ]),
    });
    const body = (await res.json()) as {
      receipts: Receipt[];
      consistency: { from: number; to: number; proof: string[] };
    };
    expect(body.consistency).toMatchObject({ from: 3, to: 13 });
    // The proof links the stored checkpoint of size 3 to the receipts' checkpoint of size 13.
    const key = parseVerifierKey(sink.local.signingKey.verifierKey);
    const stored = await sink.local.objects.get(checkpointKey("agents.witness", 3));
    const older = openCheckpoint(Buffer.from(stored!).toString("utf8"), [key]);
    const newer = openCheckpoint(body.receipts[0]!.checkpoint, [key]);
    if (!older.ok || !newer.ok) throw new Error("checkpoints must verify");
    expect(
      verifyConsistency(
        3,
        13,
        older.checkpoint.root,
        newer.checkpoint.root,
        body.consistency.proof.map((h) => Buffer.from(h, "hex")),
      ),
    ).toBe(true);
  });

  it("verifies every receipt of a compact answer with its shared path: a tampered shared hash fails each one", async () => {
    // Prepare: a client whose transport flips one hash of the shared proof path in the sink's answer.
    const client = await clientFor("agents.compact", {
      batch: { maxEvents: 4, lingerMs: 1 },
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (init?.method !== "POST") return res;
        const body = (await res.json()) as { sharedProof: string[] };
        body.sharedProof = body.sharedProof.map((h) =>
          h.startsWith("0") ? `1${h.slice(1)}` : `0${h.slice(1)}`,
        );
        return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
      },
    });
    // Act: a stream of 4 records, then a batch of 4 whose proofs all end with MTH(D[0:4]).
    const first = await Promise.allSettled(
      Array.from({ length: 4 }, (_, n) => client.send({ type: "ai.agent.tool_call", data: { n } })),
    );
    const second = await Promise.allSettled(
      Array.from({ length: 4 }, (_, n) => client.send({ type: "ai.agent.tool_call", data: { n: 4 + n } })),
    );
    await client.close();
    // Assess: the first batch shares nothing but its checkpoint (records 0…3 of a tree of 4), so it verifies;
    // every receipt of the second fails its inclusion check.
    expect(first.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "fulfilled"]);
    for (const s of second) {
      expect(s).toMatchObject({
        status: "rejected",
        reason: { name: "ReceiptError", code: "receipt-inclusion-invalid" },
      });
    }
  });
});

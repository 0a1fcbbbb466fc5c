/**
 * Compact receipts on a running sink (docs/FORMAT.md §9b): `POST …/events?receipts=compact` writes a batch's
 * checkpoint and shared proof path once; expanded, its receipts are the full receipts of the same records, and
 * `auditsink verify --receipts` checks them against the data directory; both answers are what the sink's OpenAPI
 * document declares (Ajv, JSON Schema 2020-12). A form the API does not know is refused and writes nothing.
 */

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type CompactReceipts, expandReceipts, type Receipt } from "@auditsink/core";
import Ajv2020 from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { registerProducer, verifyReport } from "../cli/helpers.ts";
import { testProducer, testSinks } from "./helpers.ts";

const sinks = testSinks("auditsink-compact-receipts-");

describe("compact receipts from a running sink", () => {
  it("expand to the full receipts of the same records, which verify against the data directory", async () => {
    // Prepare: 1,024 records, so the next batch's proofs all end with MTH(D[0:1024]).
    const dataDir = await sinks.fresh();
    const { sink, close } = await sinks.start(dataDir);
    const p = testProducer("bot");
    await registerProducer(sink, p.id, p.publicKey);
    const post = (query: string, events: unknown[]) =>
      fetch(`${sink.url}/v1/streams/agents.compact/events${query}`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents-batch+json" },
        body: JSON.stringify(events),
      });
    for (let b = 0; b < 8; b++) {
      const res = await post(
        "",
        Array.from({ length: 128 }, () => p.event()),
      );
      expect(res.status).toBe(200);
    }
    const batch = Array.from({ length: 100 }, () => p.event());

    // Act: the batch with compact receipts and a consistency proof, then the same events again (replays of the
    // same records against the same checkpoint) with full receipts.
    const compactRes = await post("?receipts=compact&consistencyFrom=512", batch);
    const compact = (await compactRes.json()) as CompactReceipts & {
      consistency: { from: number; to: number };
    };
    const fullRes = await post("?receipts=full", batch);
    const full = (await fullRes.json()) as { receipts: Receipt[] };
    const refused = await post("?receipts=short", [p.event()]);
    const problem = (await refused.json()) as { code: string; detail: string };
    const after = await fetch(`${sink.url}/v1/streams/agents.compact/checkpoint`);
    const document = (await (await fetch(`${sink.url}/openapi.json`)).json()) as Record<string, unknown>;
    await close();

    // Assess
    expect(compactRes.status).toBe(200);
    expect(Object.keys(compact).sort()).toEqual([
      "checkpoint",
      "consistency",
      "receipts",
      "sharedProof",
      "stream",
    ]);
    expect(compact.consistency).toMatchObject({ from: 512, to: 1124 });
    expect(compact.sharedProof).toHaveLength(1);
    expect(compact.receipts.map((r) => r.index)).toEqual(Array.from({ length: 100 }, (_, i) => 1024 + i));
    const expanded = expandReceipts(compact);
    expect(full.receipts).toEqual(expanded);
    expect(refused.status).toBe(400);
    expect(problem.code).toBe("invalid-request");
    expect(problem.detail).toMatch(/receipts/);
    expect(((await after.json()) as { size: number }).size).toBe(1124);
    // The document's schema of this answer (anyOf the full and the compact form) takes both, and not a compact
    // receipt that lost its proof.
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema(document, "openapi.json");
    const answer = ajv.compile({
      $ref: "openapi.json#/paths/~1v1~1streams~1{stream}~1events/post/responses/200/content/application~1json/schema",
    });
    expect([answer(compact), answer(full)], JSON.stringify(answer.errors)).toEqual([true, true]);
    const { inclusionProof: _dropped, ...lost } = compact.receipts[0]!;
    expect(answer({ ...compact, receipts: [lost] })).toBe(false);

    const file = join(dataDir, "..", "compact-receipts.jsonl");
    await writeFile(file, `${expanded.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const fingerprint = sink.local.signingKey.fingerprint;
    const { code, report } = await verifyReport(dataDir, fingerprint, "--receipts", file);
    expect(report.receipts).toMatchObject({ given: 100, checked: 100, notChecked: 0, failures: [] });
    expect(code).toBe(0);
  });
});

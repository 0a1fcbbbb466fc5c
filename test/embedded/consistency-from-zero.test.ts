/**
 * Consistency from size 0 (c2sp.org/tlog-witness `old 0`; docs/FORMAT.md §6): a running sink answers
 * `GET …/proofs/consistency?from=0` and `POST …/events?consistencyFrom=0` with an empty proof that core verifies
 * against the empty tree, and `auditsink prove consistency --from 0` prints it.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  checkConsistency,
  EMPTY_ROOT,
  openCheckpoint,
  parseVerifierKey,
  type Receipt,
} from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { cli } from "../cli/helpers.ts";
import { testProducer, testSinks } from "./helpers.ts";

const sinks = testSinks("auditsink-consistency-zero-");

describe("consistency from size 0", () => {
  it("the API, the receipts' consistencyFrom and the CLI give the empty proof, which verifies from the empty tree", async () => {
    // Prepare
    const dataDir = await sinks.fresh();
    const { sink } = await sinks.start(dataDir);
    const p = testProducer("bot");
    const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
    const reg = await fetch(`${sink.url}/v1/producers`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
    });
    expect(reg.status).toBe(201);
    const key = parseVerifierKey(sink.local.signingKey.verifierKey);

    // Act
    const submitted = await fetch(`${sink.url}/v1/streams/agents.zero/events?consistencyFrom=0`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents-batch+json" },
      body: JSON.stringify([p.event(), p.event(), p.event()]),
    });
    const body = (await submitted.json()) as {
      receipts: Receipt[];
      consistency: { from: number; to: number; proof: string[] };
    };
    const read = await fetch(`${sink.url}/v1/streams/agents.zero/proofs/consistency?from=0&to=3`);
    const proof = (await read.json()) as { from: number; to: number; proof: string[]; root: string };
    const backwards = await fetch(`${sink.url}/v1/streams/agents.zero/proofs/consistency?from=3&to=0`);
    await sink.close();
    const printed = await cli([
      "prove",
      "consistency",
      dataDir,
      "--stream",
      "agents.zero",
      "--from",
      "0",
      "--to",
      "3",
      "--verifier-key",
      sink.local.signingKey.verifierKey,
    ]);

    // Assess
    expect(submitted.status).toBe(200);
    expect(body.consistency).toEqual({ from: 0, to: 3, proof: [] });
    expect(read.status).toBe(200);
    expect(proof).toMatchObject({ from: 0, to: 3, proof: [] });
    expect(backwards.status).toBe(400);
    expect(((await backwards.json()) as { detail: string }).detail).toBe("from: must be 0 … to");
    const opened = openCheckpoint(body.receipts[0]!.checkpoint, [key]);
    expect(opened.ok).toBe(true);
    if (!opened.ok) return;
    expect(opened.checkpoint.root.toString("hex")).toBe(proof.root);
    const empty = { ...opened.checkpoint, size: 0, root: EMPTY_ROOT };
    expect(checkConsistency(empty, opened.checkpoint, proof.proof)).toMatchObject({ ok: true });
    expect(checkConsistency(empty, opened.checkpoint, [proof.root])).toMatchObject({
      ok: false,
      code: "receipt-inconsistent",
    });
    expect(printed.code, printed.err).toBe(0);
    const out = JSON.parse(printed.out) as { from: number; to: number; proof: string[]; older?: string };
    expect(out).toMatchObject({ from: 0, to: 3, proof: [] });
    expect(out.older).toBeUndefined();
  });
});

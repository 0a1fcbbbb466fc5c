import { describe, expect, it } from "vitest";
import { inclusionProofLength } from "../src/merkle.ts";
import {
  compactReceipts,
  expandReceipts,
  type Receipt,
  receiptsOfAnswer,
  verifyReceipt,
} from "../src/receipt.ts";
import { DEPLOYMENT, memoryPorts, newSink, producer } from "./fixtures.ts";

/** A sink whose stream holds `before` records, then one batch of `batch` events: that batch's receipts. */
async function batchReceipts(before: number, batch: number) {
  const ports = memoryPorts();
  const sink = newSink(ports);
  const agent = producer(ports, "agent");
  for (let at = 0; at < before; at += 50) {
    const n = Math.min(50, before - at);
    await sink.submit(
      "s",
      Array.from({ length: n }, (_, i) => agent.event(`old-${at + i}`)),
    );
  }
  const events = Array.from({ length: batch }, (_, i) => agent.event(`new-${i}`));
  const receipts = await sink.submit("s", events);
  const check = { trusted: [ports.signer.key], deployment: DEPLOYMENT };
  return { sink, agent, receipts, check, verify: (r: unknown) => verifyReceipt(r as Receipt, check) };
}

describe("compact receipts (FORMAT.md §9b)", () => {
  it("write the shared checkpoint and proof path once, and expand to exactly the receipts the sink gave", async () => {
    // Records 4224…4323 of a tree of 4324: every one lies in the subtree [4224, 4324), so every proof ends with
    // the same two hashes, MTH(D[4096:4224]) and MTH(D[0:4096]) (RFC 9162 §2.1.3.1).
    const { receipts, verify } = await batchReceipts(4_224, 100);
    const compact = compactReceipts(receipts);
    expect(expandReceipts(compact)).toEqual(receipts);
    expect(compact.sharedProof).toHaveLength(2);
    for (const r of compact.receipts) {
      const full = inclusionProofLength(r.index, 4_324);
      expect(r.inclusionProof.length).toBe(full - compact.sharedProof.length);
      expect(Object.keys(r).sort()).toEqual(["id", "inclusionProof", "index", "recordHash", "source"]);
    }
    for (const r of expandReceipts(compact)) expect(verify(r).ok).toBe(true);
    // The signed checkpoint, the longest member of a receipt, is written once instead of 100 times.
    const times = (text: string) => text.split(JSON.stringify(receipts[0]!.checkpoint)).length - 1;
    expect(times(JSON.stringify({ receipts }))).toBe(100);
    expect(times(JSON.stringify(compact))).toBe(1);
  });

  it("of one event carry the whole proof as the shared part", async () => {
    const { receipts, verify } = await batchReceipts(37, 1);
    const compact = compactReceipts(receipts);
    expect(compact.receipts[0]!.inclusionProof).toEqual([]);
    expect(compact.sharedProof).toEqual(receipts[0]!.inclusionProof);
    expect(verify(expandReceipts(compact)[0]).ok).toBe(true);
  });

  it("keep a replay's proof whole when it lies outside the new records' subtree", async () => {
    const { sink, agent, check } = await batchReceipts(300, 10);
    const receipts = await sink.submit("s", [
      agent.event("old-3"),
      agent.event("fresh-1"),
      agent.event("fresh-2"),
    ]);
    expect(receipts.map((r) => r.index)).toEqual([3, 310, 311]);
    const compact = compactReceipts(receipts);
    expect(expandReceipts(compact)).toEqual(receipts);
    for (const r of expandReceipts(compact)) expect(verifyReceipt(r, check).ok).toBe(true);
  });

  it("are refused for receipts that share no checkpoint (the sink never answers so)", async () => {
    const one = await batchReceipts(5, 2);
    const other = await batchReceipts(6, 1);
    expect(() => compactReceipts([...one.receipts, ...other.receipts])).toThrow(/share/);
    expect(() => compactReceipts([])).toThrow(/no receipts/);
  });

  it("are read from an answer in either form, and a tampered shared path fails every receipt's inclusion check", async () => {
    const { receipts, verify } = await batchReceipts(1_024, 20);
    const compact = compactReceipts(receipts);
    const wire = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

    expect(receiptsOfAnswer(wire({ receipts }))).toEqual({ ok: true, receipts });
    expect(receiptsOfAnswer(wire(compact))).toEqual({ ok: true, receipts });

    const tampered = wire(compact) as typeof compact;
    expect(tampered.sharedProof).toHaveLength(1); // MTH(D[0:1024])
    const last = tampered.sharedProof.length - 1;
    tampered.sharedProof[last] = tampered.sharedProof[last]!.replace(/^./, (c) => (c === "0" ? "1" : "0"));
    const read = receiptsOfAnswer(tampered);
    if (!read.ok) throw new Error(read.detail);
    for (const r of read.receipts)
      expect(verify(r)).toMatchObject({ ok: false, code: "receipt-inclusion-invalid" });
  });

  it("give a clear error for an answer that is not receipts, and never take members from the prototype", () => {
    const compact = (over: Record<string, unknown>) => ({
      stream: "s",
      checkpoint: "note",
      sharedProof: [],
      receipts: [{ index: 0, recordHash: "a".repeat(64), source: "x", id: "1", inclusionProof: [] }],
      ...over,
    });
    expect(receiptsOfAnswer(null)).toEqual({ ok: false, detail: "the answer has no receipts array" });
    expect(receiptsOfAnswer({ receipts: "all" })).toMatchObject({ ok: false });
    expect(receiptsOfAnswer(compact({ sharedProof: ["A".repeat(64)] }))).toEqual({
      ok: false,
      detail: "compact receipts: sharedProof.0: must be 64 lowercase hex digits",
    });
    expect(receiptsOfAnswer(compact({ stream: 7 }))).toMatchObject({
      ok: false,
      detail: /^compact receipts: stream/,
    });
    expect(
      receiptsOfAnswer(
        compact({ receipts: [{ index: -1, recordHash: "a".repeat(64), source: "x", id: "1" }] }),
      ),
    ).toMatchObject({ ok: false, detail: /^compact receipts: receipts\.0\.index/ });

    // A `__proto__` member is an own member after JSON.parse: it neither marks the compact form nor is copied.
    const hostile = JSON.parse(
      '{"__proto__":{"checkpoint":"x","polluted":true},"receipts":[],"stream":"s","sharedProof":[]}',
    ) as unknown;
    expect(receiptsOfAnswer(hostile)).toEqual({ ok: true, receipts: [] });
    const inReceipt = JSON.parse(
      `{"stream":"s","checkpoint":"note","sharedProof":[],"receipts":[{"__proto__":{"polluted":true},"index":0,"recordHash":"${"a".repeat(64)}","source":"x","id":"1","inclusionProof":[]}]}`,
    ) as unknown;
    const read = receiptsOfAnswer(inReceipt);
    if (!read.ok) throw new Error(read.detail);
    expect(read.receipts[0]).toEqual({
      stream: "s",
      index: 0,
      recordHash: "a".repeat(64),
      source: "x",
      id: "1",
      checkpoint: "note",
      inclusionProof: [],
    });
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});

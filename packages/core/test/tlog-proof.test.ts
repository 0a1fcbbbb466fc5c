/**
 * Receipts as c2sp.org/tlog-proof (docs/FORMAT.md §9a): the C2SP document's own example parses, a sink's receipt
 * round-trips and verifies, witness cosignature lines are ignored, and every malformed or tampered proof is a
 * clear `receipt-malformed` (or the receipt check that fails), never an exception.
 */
import { describe, expect, it } from "vitest";
import { formatNote, parseNote } from "../src/note.ts";
import type { Receipt } from "../src/receipt.ts";
import {
  formatTlogProof,
  parseTlogProof,
  receiptTlogProof,
  TLOG_PROOF_HEADER,
  tlogProofReceipt,
  verifyTlogProof,
} from "../src/tlog-proof.ts";
import { DEPLOYMENT, memoryPorts, newSink, producer } from "./fixtures.ts";

// c2sp.org/tlog-proof, the example of its "Transparency Log Proofs" section (C2SP/C2SP tlog-proof.md), verbatim;
// its signatures are elided ("[...]") there, so only the proof's own lines are checked against it.
const C2SP_EXAMPLE = `c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

— example.com/fancylog hI2DJw[...]1roloI=
— witness1.example mJirIklj[...]qY9v2B/5bg==
`;

async function receipts(n: number, alg: "ed25519" | "ecdsa-p256" = "ecdsa-p256") {
  const ports = memoryPorts(alg);
  const sink = newSink(ports);
  const agent = producer(ports, "agent-1");
  const rs = await sink.submit(
    "agents.tlog",
    Array.from({ length: n }, (_, i) => agent.event(`e-${i}`)),
  );
  return { rs, key: ports.signer.key };
}

describe("c2sp.org/tlog-proof", () => {
  it("parses the C2SP document's example: extra bytes, index, five hashes, the checkpoint verbatim", () => {
    const p = parseTlogProof(C2SP_EXAMPLE);
    expect(p.index).toBe(73894);
    expect(p.proof).toHaveLength(5);
    expect(p.proof[0]!.toString("base64")).toBe("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=");
    expect(p.extra).toEqual(Buffer.from("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ", "base64"));
    expect(p.checkpoint.startsWith("example.com/fancylog\n109482\n")).toBe(true);
    expect(formatTlogProof(p)).toBe(C2SP_EXAMPLE);
    // Not auditsink's: its extra data is not the JSON auditsink writes there
    expect(tlogProofReceipt(C2SP_EXAMPLE)).toMatchObject({
      ok: false,
      detail: /extra data is not strict JSON/,
    });
  });

  it.each(["ecdsa-p256", "ed25519"] as const)(
    "carries a %s sink's receipt exactly, and verifies with the deployment key",
    async (alg) => {
      // Prepare
      const { rs, key } = await receipts(5, alg);
      const r = rs[3]!;
      // Act
      const text = receiptTlogProof(r);
      const back = tlogProofReceipt(text);
      const verdict = verifyTlogProof(text, {
        trusted: [key],
        deployment: DEPLOYMENT,
        recordHash: r.recordHash,
      });
      // Assess
      expect(text.startsWith(`${TLOG_PROOF_HEADER}\nextra `)).toBe(true);
      expect(text.split("\n")[2]).toBe("index 3");
      expect(text.endsWith(r.checkpoint)).toBe(true);
      expect(back).toEqual({ ok: true, receipt: r });
      expect(verdict).toMatchObject({ ok: true, checkpoint: { size: 5 } });
      const extra = JSON.parse(Buffer.from(text.split("\n")[1]!.slice(6), "base64").toString("utf8"));
      expect(extra).toEqual({
        id: "e-3",
        recordHash: r.recordHash,
        source: "agent://agent-1",
        stream: "agents.tlog",
      });
    },
  );

  it("ignores cosignature lines of keys it does not trust (a witnessed checkpoint)", async () => {
    const { rs, key } = await receipts(2);
    const note = parseNote(rs[0]!.checkpoint);
    const cosigned = formatNote({
      text: note.text,
      signatures: [
        ...note.signatures,
        { name: "witness.example/w1", keyId: Buffer.alloc(4, 7), signature: Buffer.alloc(72, 1) },
      ],
    });
    const text = receiptTlogProof({ ...rs[0]!, checkpoint: cosigned });
    expect(verifyTlogProof(text, { trusted: [key] })).toMatchObject({ ok: true });
  });

  it("reports a record, inclusion, signature or origin that does not match, in the receipt checks' order", async () => {
    const { rs, key } = await receipts(4);
    const r = rs[1]!;
    const text = receiptTlogProof(r);
    const other = receiptTlogProof({ ...r, index: 2 });
    const wrongStream = receiptTlogProof({ ...r, stream: "agents.other" });
    // Another key ID in the log's signature line: no trusted key signed
    const forged = text.replace(/ (\S+)\n$/, " AAAA$1\n");
    expect(verifyTlogProof(text, { trusted: [key], recordHash: rs[0]!.recordHash })).toMatchObject({
      ok: false,
      code: "receipt-record-mismatch",
    });
    expect(verifyTlogProof(other, { trusted: [key] })).toMatchObject({
      ok: false,
      code: "receipt-inclusion-invalid",
    });
    expect(verifyTlogProof(wrongStream, { trusted: [key] })).toMatchObject({
      ok: false,
      code: "receipt-origin-mismatch",
    });
    expect(verifyTlogProof(forged, { trusted: [key] })).toMatchObject({
      ok: false,
      code: "receipt-checkpoint-invalid",
    });
  });

  it("refuses malformed proofs with a clear receipt-malformed, never by throwing", async () => {
    const { rs, key } = await receipts(3);
    const good = receiptTlogProof(rs[0]!);
    const [header, extra, index, ...rest] = good.split("\n");
    const join = (...lines: string[]) => lines.join("\n");
    const cases: [string, unknown, RegExp][] = [
      ["not text", 42, /is not text/],
      ["no header", good.slice(header!.length + 1), /first line must be c2sp.org\/tlog-proof@v1/],
      ["another version", good.replace("@v1", "@v2"), /first line/],
      ["index with a leading zero", good.replace(index!, "index 00"), /index <decimal/],
      ["negative index", good.replace(index!, "index -1"), /index <decimal/],
      ["index beyond 2^53", good.replace(index!, "index 99999999999999999"), /index <decimal/],
      ["no index", join(header!, extra!, ...rest), /index <decimal/],
      ["extra not base64", good.replace(extra!, "extra ***"), /extra line is not base64/],
      [
        "extra with non-zero pad bits",
        good.replace(extra!, `${extra!.slice(0, -2)}B=`),
        /canonical base64|not base64/,
      ],
      ["a short hash", good.replace(rest[0]!, "AAAA"), /not a 32-byte hash/],
      ["no empty line", good.replace("\n\n", "\n"), /empty line|index|base64/],
      ["no checkpoint", `${join(header!, extra!, index!, rest[0]!)}\n\n`, /checkpoint is missing/],
      [
        "extra with a duplicate member",
        good.replace(
          extra!,
          `extra ${Buffer.from('{"id":"a","id":"b","recordHash":"00","source":"s","stream":"x"}').toString("base64")}`,
        ),
        /not strict JSON/,
      ],
      [
        "extra with __proto__ and no stream",
        good.replace(
          extra!,
          `extra ${Buffer.from(`{"__proto__":{"stream":"agents.tlog"},"id":"a","recordHash":"${rs[0]!.recordHash}","source":"s"}`).toString("base64")}`,
        ),
        /extra: stream/,
      ],
      ["too long", good + "x".repeat(70_000), /longer than/],
    ];
    for (const [name, text, detail] of cases) {
      const verdict = verifyTlogProof(text, { trusted: [key] });
      expect(verdict, name).toMatchObject({ ok: false, code: "receipt-malformed" });
      expect((verdict as { detail: string }).detail, name).toMatch(detail);
    }
    // A proof without extra is a valid tlog-proof, but not auditsink's: the stream and record hash are missing.
    const bare = good.replace(`${extra}\n`, "");
    expect(parseTlogProof(bare).extra).toBeUndefined();
    expect(verifyTlogProof(bare, { trusted: [key] })).toMatchObject({
      code: "receipt-malformed",
      detail: /no extra line/,
    });
  });

  it("carries a receipt whose checkpoint covers the record with an empty proof (a tree of one)", async () => {
    const { rs, key } = await receipts(1);
    const text = receiptTlogProof(rs[0]! as Receipt);
    expect(text.split("\n").slice(2, 4)).toEqual(["index 0", ""]);
    expect(verifyTlogProof(text, { trusted: [key] })).toMatchObject({ ok: true });
  });
});

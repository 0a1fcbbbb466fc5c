/**
 * docs/FORMAT.md's worked example is real: recompute every hash it shows and verify every signature it shows,
 * using only the values printed in the document.
 */
import { createHash, createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openCheckpoint } from "../src/checkpoint.ts";
import { eventSigningBytes, type SignedEvent, verifyEventSignature } from "../src/event.ts";
import { canonicalBytes } from "../src/hash.ts";
import { publicKeyFromSpki, spkiDer } from "../src/keys.ts";
import { parseVerifierKey } from "../src/note.ts";
import { type Receipt, verifyReceipt } from "../src/receipt.ts";
import { verifyTlogProof } from "../src/tlog-proof.ts";

const doc = readFileSync(join(import.meta.dirname, "../../../docs/FORMAT.md"), "utf8");

function example(name: string): string {
  const m = new RegExp(`<!-- example:${name} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\\n\`\`\``).exec(doc);
  if (!m) throw new Error(`docs/FORMAT.md has no example ${name}`);
  return m[1]!;
}

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest();

describe("docs/FORMAT.md worked example", () => {
  const event = JSON.parse(example("event")) as SignedEvent;
  const producerKey = publicKeyFromSpki(example("producer-spki"));
  const sinkKey = parseVerifierKey(example("sink-vkey"));
  const segmentLines = example("segment").split("\n");
  const hashes = example("hashes").split("\n");

  it("the producer key id is SHA-256 of its SPKI", () => {
    expect(sha(Buffer.from(example("producer-spki"), "base64")).toString("hex")).toBe(
      example("producer-keyid"),
    );
    expect(event.sigkeyid).toBe(example("producer-keyid"));
  });

  it("the signing bytes are the context line and the canonical event without its signature, and the signature verifies", () => {
    expect(eventSigningBytes(event).toString("utf8")).toBe(example("signing-bytes"));
    expect(
      verify(
        null,
        Buffer.from(example("signing-bytes")),
        producerKey,
        Buffer.from(event.signature, "base64"),
      ),
    ).toBe(true);
    expect(verifyEventSignature(event, producerKey)).toBe(true);
  });

  it("each segment line is the canonical record holding the event, and the hashes are as shown", () => {
    const records = segmentLines.map((l) => JSON.parse(l));
    expect(canonicalBytes(records[0]).toString("utf8")).toBe(segmentLines[0]);
    expect(records[0].event).toEqual(event);
    expect(records[0].prev).toBe("0".repeat(64));
    const recordHashes = segmentLines.map((l) => sha(Buffer.from(l, "utf8")));
    expect(records[1].prev).toBe(recordHashes[0]!.toString("hex"));
    const leaves = recordHashes.map((h) => sha(Buffer.concat([Buffer.of(0), h])));
    recordHashes.forEach((h, i) => {
      expect(hashes[i]).toBe(`record ${i}  hash ${h.toString("hex")}  leaf ${leaves[i]!.toString("hex")}`);
    });
    const root = sha(Buffer.concat([Buffer.of(1), leaves[0]!, leaves[1]!]));
    expect(hashes[2]).toBe(`root of size 2  ${root.toString("hex")}`);
    expect(example("checkpoint").split("\n")[2]).toBe(root.toString("base64"));
  });

  it("the checkpoint verifies with the pinned verifier key, and its ECDSA signature by hand", () => {
    const note = `${example("checkpoint")}\n`;
    expect(openCheckpoint(note, [sinkKey])).toMatchObject({ ok: true, checkpoint: { size: 2 } });
    const [body, sigLine] = note.split("\n\n") as [string, string];
    const blob = Buffer.from(sigLine.trim().split(" ")[2]!, "base64");
    const der = Buffer.from(example("sink-vkey").split("+").slice(2).join("+"), "base64").subarray(1);
    expect(blob.subarray(0, 4)).toEqual(sha(der).subarray(0, 4));
    const key = createPublicKey({ key: der, format: "der", type: "spki" });
    expect(verify("sha256", Buffer.from(`${body}\n`), key, blob.subarray(4))).toBe(true);
  });

  it("the checkpoint is signed under the origin's name, and the stream's verifier key is the same key under it", () => {
    const note = `${example("checkpoint")}\n`;
    const streamKey = parseVerifierKey(example("stream-vkey"));
    expect(note.split("\n\n")[1]!.split(" ")[1]).toBe("auditsink.example/prod/support-agent");
    expect(streamKey.name).toBe("auditsink.example/prod/support-agent");
    expect(spkiDer(streamKey.publicKey)).toEqual(spkiDer(sinkKey.publicKey));
    expect(openCheckpoint(note, [streamKey])).toMatchObject({
      ok: true,
      deployment: "auditsink.example/prod",
    });
  });

  it("the tlog-proof holds the receipt: its extra JSON, index, proof and checkpoint, and verifies", () => {
    const receipt = JSON.parse(example("receipt")) as Receipt;
    const text = `${example("tlog-proof")}\n`;
    const [header, extra, index, ...rest] = text.split("\n");
    expect(header).toBe("c2sp.org/tlog-proof@v1");
    expect(JSON.parse(Buffer.from(extra!.slice("extra ".length), "base64").toString("utf8"))).toEqual({
      id: receipt.id,
      recordHash: receipt.recordHash,
      source: receipt.source,
      stream: receipt.stream,
    });
    expect(index).toBe(`index ${receipt.index}`);
    expect(rest.slice(0, receipt.inclusionProof.length)).toEqual(
      receipt.inclusionProof.map((h) => Buffer.from(h, "hex").toString("base64")),
    );
    expect(text.endsWith(`\n\n${receipt.checkpoint}`)).toBe(true);
    expect(verifyTlogProof(text, { trusted: [sinkKey], deployment: "auditsink.example/prod" })).toMatchObject(
      {
        ok: true,
      },
    );
  });

  it("the receipt verifies offline with the pinned key", () => {
    const receipt = JSON.parse(example("receipt")) as Receipt;
    expect(
      verifyReceipt(receipt, { trusted: [sinkKey], deployment: "auditsink.example/prod" }),
    ).toMatchObject({ ok: true });
    expect(receipt.recordHash).toBe(sha(Buffer.from(segmentLines[0]!, "utf8")).toString("hex"));
  });
});

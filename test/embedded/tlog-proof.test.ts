/**
 * Receipts as c2sp.org/tlog-proof from a running sink (docs/FORMAT.md §9a): `GET /v1/receipts?format=tlog-proof`,
 * the SDK's receiptProof, `auditsink prove inclusion --format tlog-proof`, `auditsink verify-proof` offline
 * against the record and the pinned key, and `auditsink verify --receipts` with tlog-proof files. Go's x/mod note and tlog (test/go/ckpt) verify the same file with the
 * stream's verifier key: key name = origin, leaf = RecordHash(record hash).
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AuditClient } from "@auditsink/client";
import {
  canonicalBytes,
  formatNote,
  formatVerifierKey,
  generateKeyPair,
  type KeyAlgorithm,
  makeNoteKey,
  parseNote,
  parseVerifierKey,
  type Receipt,
  receiptTlogProof,
  sha256,
  toHex,
  verifyTlogProof,
} from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { cli, registerProducer } from "../cli/helpers.ts";
import { goVerify } from "./go-ckpt.ts";
import { testProducer, testSinks } from "./helpers.ts";

const sinks = testSinks("auditsink-tlog-proof-");
const STREAM = "agents.proofs";

describe.each<KeyAlgorithm>(["ed25519", "ecdsa-p256"])(
  "tlog-proof receipts from a running sink (%s key)",
  (alg) => {
    it("the API, the SDK and the CLI give the same proof; auditsink and Go verify it; a wrong record or key does not", async () => {
      // Prepare: five events, the third looked up again
      const dataDir = await sinks.fresh();
      const work = await sinks.fresh();
      const { sink } = await sinks.start(dataDir, { checkpointKey: alg, deployment: "proofs.example/log" });
      const p = testProducer("bot");
      await registerProducer(sink, p.id, p.publicKey);
      const events = Array.from({ length: 5 }, () => p.event());
      const sent = await fetch(`${sink.url}/v1/streams/${STREAM}/events`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents-batch+json" },
        body: JSON.stringify(events),
      });
      expect(sent.status).toBe(200);
      const target = events[2]!;
      const query = new URLSearchParams({ source: target.source, id: target.id });
      const vkey = sink.local.signingKey.verifierKey;

      // Act
      const json = (await (await fetch(`${sink.url}/v1/receipts?${query}`)).json()) as Receipt;
      const res = await fetch(`${sink.url}/v1/receipts?${query}&format=tlog-proof`);
      const text = await res.text();
      const client = await AuditClient.create({
        endpoint: sink.url,
        producerKey: p.privateKey,
        sinkKey: vkey,
        deployment: "proofs.example/log",
      });
      sinks.after(() => client.close());
      const fromSdk = await client.receiptProof(target.source, target.id);
      const records = (await (
        await fetch(`${sink.url}/v1/streams/${STREAM}/records?from=2&to=4`)
      ).json()) as { records: { record: { index: number } }[] };
      const streamKey = (
        (await (await fetch(`${sink.url}/v1/keys?stream=${STREAM}`)).json()) as {
          keys: { streamVerifierKey: string }[];
        }
      ).keys[0]!.streamVerifierKey;
      await sink.close();
      const proofFile = join(work, "event.tlog-proof");
      const recordFile = join(work, "record.json");
      const otherRecord = join(work, "other.json");
      await writeFile(proofFile, text);
      await writeFile(recordFile, JSON.stringify(records.records[0], null, 2)); // the API's {index, recordHash, record}
      await writeFile(otherRecord, JSON.stringify(records.records[1]!.record));
      const good = await cli(["verify-proof", proofFile, "--record", recordFile, "--verifier-key", vkey]);
      const wrongRecord = await cli([
        "verify-proof",
        proofFile,
        "--record",
        otherRecord,
        "--verifier-key",
        vkey,
        "--json",
      ]);
      const noRecord = await cli(["verify-proof", proofFile, "--verifier-key", vkey]);
      const otherKey = await cli(["verify-proof", proofFile, "--verifier-key", otherSinkKey(), "--json"]);
      const noKey = await cli(["verify-proof", proofFile]);
      const proved = await cli([
        "prove",
        "inclusion",
        dataDir,
        "--stream",
        STREAM,
        "--index",
        "2",
        "--format",
        "tlog-proof",
        "--verifier-key",
        vkey,
      ]);
      // A witness's cosignature line on the checkpoint: a key nobody here pins, ignored by every verifier
      const note = parseNote(json.checkpoint);
      const cosigned = receiptTlogProof({
        ...json,
        checkpoint: formatNote({
          text: note.text,
          signatures: [
            ...note.signatures,
            { name: "witness.example/w", keyId: Buffer.alloc(4, 9), signature: Buffer.alloc(72, 3) },
          ],
        }),
      });
      const cosignedFile = join(work, "cosigned.tlog-proof");
      await writeFile(cosignedFile, cosigned);
      const cosignedCli = await cli([
        "verify-proof",
        cosignedFile,
        "--record",
        recordFile,
        "--verifier-key",
        vkey,
      ]);
      // auditsink verify checks receipts given as tlog-proof files beside JSON ones; a forged one is a finding
      const jsonFile = join(work, "receipts.jsonl");
      await writeFile(jsonFile, `${JSON.stringify(json)}\n`);
      const forgedFile = join(work, "forged.tlog-proof");
      await writeFile(
        forgedFile,
        receiptTlogProof({ ...json, inclusionProof: ["00".repeat(32), ...json.inclusionProof.slice(1)] }),
      );
      const verifyReceipts = (...files: string[]) =>
        cli([
          "verify",
          dataDir,
          "--verifier-key",
          vkey,
          ...files.flatMap((f) => ["--receipts", f]),
          "--no-progress",
          "--json",
        ]);
      const both = await verifyReceipts(proofFile, jsonFile);
      const forged = await verifyReceipts(proofFile, forgedFile);
      const go = await goVerify({
        proofs: [
          { proof: text, vkey: streamKey, recordHash: json.recordHash },
          { proof: cosigned, vkey: streamKey, recordHash: json.recordHash },
          { proof: text, vkey: streamKey, recordHash: await hashOf(otherRecord) },
          { proof: text, vkey, recordHash: json.recordHash },
        ],
      });

      // Assess: one proof, whichever way it is asked for
      expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
      expect(text).toBe(receiptTlogProof(json));
      expect(fromSdk).toBe(text);
      expect(proved.code, proved.err).toBe(0);
      expect(verifyTlogProof(proved.out, { trusted: [parseVerifierKey(vkey)] })).toMatchObject({ ok: true });
      // auditsink verify-proof
      expect(good.code, good.out).toBe(0);
      expect(good.out).toContain(`verified: record #2 of ${STREAM}`);
      expect(good.out).toContain("record: checked");
      expect(noRecord.code).toBe(0);
      expect(noRecord.out).toContain("record: not given");
      expect(wrongRecord.code).toBe(1);
      expect(JSON.parse(wrongRecord.out)).toMatchObject({
        ok: false,
        failure: { code: "receipt-record-mismatch" },
        record: "checked",
      });
      expect(otherKey.code).toBe(1);
      expect(JSON.parse(otherKey.out)).toMatchObject({ failure: { code: "receipt-checkpoint-invalid" } });
      expect(noKey.code).toBe(2);
      expect(noKey.err).toMatch(/pin the sink's checkpoint key/);
      expect(cosignedCli.code, cosignedCli.out).toBe(0);
      // auditsink verify --receipts
      expect(both.code, both.out + both.err).toBe(0);
      expect(JSON.parse(both.out).receipts).toMatchObject({ given: 2, checked: 2 });
      expect(forged.code, forged.out).toBe(1);
      expect(JSON.parse(forged.out).receipts).toMatchObject({ given: 2, checked: 2 });
      expect(forged.out).toContain("receipt-inclusion-invalid");
      // Go: the stream's key (named after the origin) opens it and x/mod tlog checks the inclusion; the record
      // hash is the tlog entry, and auditsink's extra JSON is there for any reader
      expect(go.proofs[0]).toMatchObject({ ok: true, origin: `proofs.example/log/${STREAM}`, size: 5 });
      expect(JSON.parse(go.proofs[0]!.extra!)).toEqual({
        id: target.id,
        recordHash: json.recordHash,
        source: target.source,
        stream: STREAM,
      });
      expect(go.proofs[1]).toMatchObject({ ok: true });
      expect(go.proofs[2]).toMatchObject({ ok: false, error: expect.stringMatching(/^inclusion/) });
      expect(go.proofs[3]).toMatchObject({ ok: false });
    });
  },
);

/** The verifier key string of a key of the same name that never signed anything here. */
function otherSinkKey(): string {
  return formatVerifierKey(makeNoteKey("proofs.example/log", generateKeyPair("ed25519").publicKey));
}

async function hashOf(file: string): Promise<string> {
  return toHex(sha256(canonicalBytes(JSON.parse(await readFile(file, "utf8")))));
}

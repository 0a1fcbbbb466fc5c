/**
 * Writes the worked example of docs/FORMAT.md from the real code: keys, a signed event, the records of a
 * two-event batch, its segment, the signed checkpoint and a receipt. packages/core/test/format-doc.test.ts
 * re-checks every value in the document independently.
 *
 *   npx tsx scripts/format-example.ts     (rewrites the part of docs/FORMAT.md between the markers)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  checkpointKeyFor,
  eventSigningBytes,
  formatVerifierKey,
  generateKeyPair,
  KeyObjectSigner,
  keyFingerprint,
  leafHash,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  receiptTlogProof,
  rootOf,
  Sink,
  signEvent,
  spkiDer,
} from "@auditsink/core";

const DEPLOYMENT = "auditsink.example/prod";
const STREAM = "support-agent";
const sinkKey = generateKeyPair("ecdsa-p256");
const producerKey = generateKeyPair("ed25519");
const signer = new KeyObjectSigner(DEPLOYMENT, sinkKey.privateKey, sinkKey.publicKey);
const objects = new MemoryObjectStore();
const producers = new MemoryProducerRegistry();
producers.add({
  keyId: keyFingerprint(producerKey.publicKey),
  publicKey: producerKey.publicKey,
  producer: "support-agent",
  streams: [STREAM],
  revoked: false,
});
const sink = new Sink({
  deployment: DEPLOYMENT,
  objects,
  heads: new MemoryHeadStore(),
  dedup: new MemoryDedupStore(),
  producers,
  signer,
  clock: { now: () => new Date("2026-11-24T10:15:30.250Z") },
});

const events = [
  signEvent(
    {
      specversion: "1.0",
      id: "01JDQ8Z6W6K3V7N2",
      source: "agent://support-agent/prod",
      type: "ai.agent.tool_call",
      time: "2026-11-24T10:15:30.120Z",
      subject: "conversation/conv-4711",
      datacontenttype: "application/json",
      data: {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.agent.id": "support-agent",
        "gen_ai.conversation.id": "conv-4711",
        "gen_ai.tool.name": "refund_order",
        "gen_ai.tool.call.id": "call_9",
        arguments: { order: "A-1001", amount: 25 },
      },
    },
    producerKey.privateKey,
  ),
  signEvent(
    {
      specversion: "1.0",
      id: "01JDQ8Z6W6K3V7N3",
      source: "agent://support-agent/prod",
      type: "ai.agent.policy_decision",
      time: "2026-11-24T10:15:30.180Z",
      data: {
        "gen_ai.agent.id": "support-agent",
        "gen_ai.tool.name": "refund_order",
        decision: "allow",
        policy: "refunds-under-50",
      },
    },
    producerKey.privateKey,
  ),
];

const receipts = await sink.submit(STREAM, events);
// The stream's own objects (the sink also records the stream's creation in `_system`).
const segmentKeyName = [...objects.objects.keys()].find((k) => k.startsWith(`streams/${STREAM}/segments/`))!;
const checkpointKeyName = [...objects.objects.keys()].find((k) =>
  k.startsWith(`streams/${STREAM}/checkpoints/`),
)!;
const segment = Buffer.from(objects.objects.get(segmentKeyName)!).toString("utf8");
const checkpoint = Buffer.from(objects.objects.get(checkpointKeyName)!).toString("utf8");

const block = (name: string, lang: string, body: string) =>
  `<!-- example:${name} -->\n\`\`\`${lang}\n${body.replace(/\n$/, "")}\n\`\`\`\n`;
const out = [
  "The values below were produced by `scripts/format-example.ts` with fresh keys and are re-checked by",
  "`packages/core/test/format-doc.test.ts` (every hash recomputed, every signature verified).",
  "",
  "**Keys.** The producer's Ed25519 public key (base64 DER SPKI) and its key id (`sigkeyid`):",
  "",
  block("producer-spki", "text", spkiDer(producerKey.publicKey).toString("base64")),
  block("producer-keyid", "text", keyFingerprint(producerKey.publicKey)),
  "The sink's ECDSA P-256 checkpoint key as a verifier key string (what an auditor pins; it vouches for every stream):",
  "",
  block("sink-vkey", "text", formatVerifierKey(signer.key)),
  `The same key under the stream's origin \`${DEPLOYMENT}/${STREAM}\`, the name its checkpoints are signed with (what a witness or Go's \`sumdb/note\` pins for this one stream, §2):`,
  "",
  block("stream-vkey", "text", formatVerifierKey(checkpointKeyFor(signer.key, `${DEPLOYMENT}/${STREAM}`))),
  "**Event.** The first event as the producer submits it:",
  "",
  block("event", "json", JSON.stringify(events[0], null, 2)),
  "The exact bytes the producer signed (`auditsink-event-v1` context line, then RFC 8785 of the event without `signature`):",
  "",
  block("signing-bytes", "text", eventSigningBytes(events[0]!).toString("utf8")),
  `**Segment.** The batch became one segment object at \`${segmentKeyName}\`. Its bytes (each line is one record's RFC 8785 form, followed by a newline):`,
  "",
  block("segment", "text", segment),
  "Record hashes (SHA-256 of each line), Merkle leaf hashes (SHA-256 of 0x00 || record hash) and the root of the tree of size 2 (SHA-256 of 0x01 || leaf 0 || leaf 1):",
  "",
  block(
    "hashes",
    "text",
    [
      ...receipts.map(
        (r) =>
          `record ${r.index}  hash ${r.recordHash}  leaf ${leafHash(Buffer.from(r.recordHash, "hex")).toString("hex")}`,
      ),
      `root of size ${receipts.length}  ${rootOf(receipts.map((r) => leafHash(Buffer.from(r.recordHash, "hex")))).toString("hex")}`,
    ].join("\n"),
  ),
  `**Checkpoint.** The signed checkpoint stored at \`${checkpointKeyName}\`:`,
  "",
  block("checkpoint", "text", checkpoint),
  "**Receipt.** The receipt returned for the first event:",
  "",
  block("receipt", "json", JSON.stringify(receipts[0], null, 2)),
  "**tlog-proof.** The same receipt as a c2sp.org/tlog-proof (§9a), as `GET /v1/receipts?format=tlog-proof` serves it:",
  "",
  block("tlog-proof", "text", receiptTlogProof(receipts[0]!)),
].join("\n");

const docPath = join(import.meta.dirname, "..", "docs", "FORMAT.md");
const doc = readFileSync(docPath, "utf8");
const begin = "<!-- BEGIN GENERATED EXAMPLE -->";
const end = "<!-- END GENERATED EXAMPLE -->";
const a = doc.indexOf(begin);
const b = doc.indexOf(end);
if (a < 0 || b < a) throw new Error("docs/FORMAT.md lacks the example markers");
writeFileSync(docPath, `${doc.slice(0, a + begin.length)}\n${out}\n${doc.slice(b)}`);
console.log(`rewrote the worked example in ${docPath}`);

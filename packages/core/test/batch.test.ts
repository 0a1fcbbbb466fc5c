/**
 * Batch-signed envelopes (docs/FORMAT.md §3b): one producer signature per batch, each event proving its own
 * membership. Every tampering with any event of a batch is refused; so is every second text of one membership.
 */
import { createHash, verify as nodeVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BatchSignatureCache,
  batchCommitments,
  batchEntryBytes,
  batchSignatureCache,
  batchSigningBytes,
  MAX_SIGNED_BATCH_EVENTS,
  parseSigbatch,
  signBatch,
} from "../src/batch.ts";
import {
  batchEntryFromCanonical,
  canonicalEvent,
  parseSignedEvent,
  type SignedEvent,
  signEvent,
  verifyEventSignature,
  verifyEventSignatureAsync,
} from "../src/event.ts";
import { canonicalBytes, sha256 } from "../src/hash.ts";
import { generateKeyPair, keyFingerprint, publicKeyFromSpki, signBytes } from "../src/keys.ts";
import { inclusionProofLength, leafHash, MerkleTree } from "../src/merkle.ts";
import { Sink } from "../src/sink.ts";
import { verifyStream } from "../src/verify.ts";
import { DEPLOYMENT, memoryPorts } from "./fixtures.ts";

const unsigned = (i: number, data: unknown = { step: i }) => ({
  specversion: "1.0" as const,
  id: `evt-${i}`,
  source: "agent://billing-agent",
  type: "ai.agent.tool_call",
  time: "2026-11-24T12:00:00.000Z",
  data: data as never,
});
const batchOf = (n: number) => Array.from({ length: n }, (_, i) => unsigned(i));

describe("signBatch", () => {
  it.each(["ed25519", "ecdsa-p256"] as const)(
    "gives every event of the batch one signature and its own membership (%s)",
    (alg) => {
      // Prepare
      const { privateKey, publicKey } = generateKeyPair(alg);
      // Act
      const signed = signBatch(batchOf(7), privateKey);
      // Assess
      expect(new Set(signed.map((e) => e.signature)).size).toBe(1);
      for (const [i, event] of signed.entries()) {
        expect(parseSignedEvent(event)).toBe(event);
        expect(event.sigkeyid).toBe(keyFingerprint(publicKey));
        expect(parseSigbatch(event.sigbatch)).toMatchObject({ position: i, size: 7 });
        expect(verifyEventSignature(event, publicKey, new BatchSignatureCache())).toBe(true);
      }
      expect(verifyEventSignature(signed[0]!, generateKeyPair(alg).publicKey)).toBe(false);
    },
  );

  it("signs the context line, key id, size and Merkle root of the entry hashes, byte for byte", () => {
    const { privateKey, publicKey } = generateKeyPair("ed25519");
    const signed = signBatch(batchOf(3), privateKey);
    const tree = MerkleTree.empty();
    for (const e of signed) tree.append(leafHash(sha256(batchEntryBytes(e))));
    const message = batchSigningBytes(signed[0]!.sigkeyid, 3, tree.root());
    expect(message.toString("utf8")).toBe(
      `auditsink-batch-v1\n${keyFingerprint(publicKey)}\n3\n${tree.root().toString("hex")}\n`,
    );
    expect(signBytes(privateKey, message).toString("base64")).toBe(signed[0]!.signature);
    // The entry is the event without `signature` and `sigbatch` (sigkeyid stays: it is bound twice).
    expect(batchEntryBytes(signed[1]!).toString("utf8")).toBe(
      canonicalBytes({ ...unsigned(1), sigkeyid: keyFingerprint(publicKey) }).toString("utf8"),
    );
  });

  it("refuses an empty batch, one too large, and one naming an event twice", () => {
    const { privateKey } = generateKeyPair("ed25519");
    expect(() => signBatch([], privateKey)).toThrow(expect.objectContaining({ code: "bad-batch" }));
    expect(() => signBatch([unsigned(1), unsigned(2), unsigned(1, { other: true })], privateKey)).toThrow(
      expect.objectContaining({ code: "bad-batch" }),
    );
    const tooMany = Array.from({ length: MAX_SIGNED_BATCH_EVENTS + 1 }, () => unsigned(0));
    expect(() => signBatch(tooMany, privateKey)).toThrow(expect.objectContaining({ code: "bad-batch" }));
  });

  it("derives the entry from the canonical bytes exactly as from the event", () => {
    const { privateKey } = generateKeyPair("ed25519");
    const nested = unsigned(0, { sigbatch: "0.2.x", signature: "AA==", deeper: { sigbatch: 1 } });
    for (const event of signBatch([nested, unsigned(1)], privateKey)) {
      expect(batchEntryFromCanonical(event, canonicalEvent(event)).equals(batchEntryBytes(event))).toBe(true);
    }
  });
});

describe("sigbatch has one text per membership", () => {
  const { privateKey } = generateKeyPair("ed25519");
  const [event] = signBatch(batchOf(5), privateKey);
  const [position, size, path] = event!.sigbatch!.split(".") as [string, string, string];
  it.each([
    ["a leading zero in the position", `0${position}.${size}.${path}`],
    ["a leading zero in the size", `${position}.0${size}.${path}`],
    ["upper-case hex", `${position}.${size}.${path.toUpperCase()}`],
    ["a path one hash short", `${position}.${size}.${path.slice(64)}`],
    ["a path one hash long", `${position}.${size}.${path}${path.slice(0, 64)}`],
    ["a position outside the batch", `5.${size}.${path}`],
    ["a size above the limit", `0.65537.${path}`],
    ["a sign", `+${position}.${size}.${path}`],
    ["separators in the path", `${position}.${size}.${path.slice(0, 64)}.${path.slice(64)}`],
    ["a number instead of a string", 0],
  ])("refuses %s as invalid-event naming sigbatch", (_, value) => {
    expect(() => parseSignedEvent({ ...event, sigbatch: value }, "events[4]")).toThrow(
      expect.objectContaining({ code: "invalid-event", field: "events[4].sigbatch" }),
    );
  });

  it("knows the RFC 9162 path length of every position", () => {
    for (let size = 1; size <= 70; size++) {
      const tree = MerkleTree.empty();
      for (let i = 0; i < size; i++) tree.append(leafHash(sha256(Buffer.of(i))));
      for (let i = 0; i < size; i++)
        expect(inclusionProofLength(i, size)).toBe(tree.inclusionProof(i).length);
    }
  });
});

/** Every way of changing one event of a signed batch, or of moving it to another position. */
type Tamper =
  | { kind: "data"; value: unknown }
  | { kind: "attribute"; name: "id" | "source" | "type" | "time" | "subject"; value: string }
  | { kind: "extension"; value: string }
  | { kind: "drop"; name: "sigbatch" | "data" }
  | { kind: "sigbatch-from"; other: number }
  | { kind: "path-hash"; at: number; hex: string }
  | { kind: "signature-byte"; at: number }
  | { kind: "sigkeyid" };

const tamper = fc.oneof(
  fc.jsonValue().map((value) => ({ kind: "data", value }) as Tamper),
  fc
    .record({
      name: fc.constantFrom("id", "source", "type", "time", "subject"),
      value: fc.string({ minLength: 1, maxLength: 8 }),
    })
    .map((t) => ({ kind: "attribute", ...t }) as Tamper),
  fc.string({ maxLength: 8 }).map((value) => ({ kind: "extension", value }) as Tamper),
  fc.constantFrom("sigbatch", "data").map((name) => ({ kind: "drop", name }) as Tamper),
  fc.nat(40).map((other) => ({ kind: "sigbatch-from", other }) as Tamper),
  fc
    .record({ at: fc.nat(15), hex: fc.stringMatching(/^[0-9a-f]{64}$/) })
    .map((t) => ({ kind: "path-hash", ...t }) as Tamper),
  fc.nat(63).map((at) => ({ kind: "signature-byte", at }) as Tamper),
  fc.constant({ kind: "sigkeyid" } as Tamper),
);

function apply(t: Tamper, batch: readonly SignedEvent[], i: number): SignedEvent {
  const e = { ...batch[i]! } as Record<string, unknown>;
  switch (t.kind) {
    case "data":
      e.data = t.value;
      break;
    case "attribute":
      e[t.name] = t.value;
      break;
    case "extension":
      e.ext = t.value;
      break;
    case "drop":
      delete e[t.name];
      break;
    case "sigbatch-from":
      e.sigbatch = batch[t.other % batch.length]!.sigbatch;
      break;
    case "path-hash": {
      const m = parseSigbatch(e.sigbatch)!;
      if (m.path.length > 0) m.path[t.at % m.path.length] = Buffer.from(t.hex, "hex");
      e.sigbatch = `${m.position}.${m.size}.${m.path.map((h) => h.toString("hex")).join("")}`;
      break;
    }
    case "signature-byte": {
      const sig = Buffer.from(String(e.signature), "base64");
      sig[t.at % sig.length]! ^= 0x01;
      e.signature = sig.toString("base64");
      break;
    }
    case "sigkeyid":
      e.sigkeyid = keyFingerprint(generateKeyPair("ed25519").publicKey);
      break;
  }
  return e as SignedEvent;
}

describe("tampering with any field of any event of a batch", () => {
  const signer = generateKeyPair("ed25519");
  const batches = new Map<number, SignedEvent[]>();
  const batch = (n: number) => {
    let b = batches.get(n);
    if (!b) {
      b = signBatch(batchOf(n), signer.privateKey);
      batches.set(n, b);
    }
    return b;
  };

  it("is refused, with the batch's verdict already cached (1,000 runs)", async () => {
    const cache = new BatchSignatureCache();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.nat(), tamper, async (n, pick, t) => {
        const events = batch(n);
        const i = pick % n;
        // The genuine event verifies (and warms the cache with this batch's verdict).
        expect(verifyEventSignature(events[i]!, signer.publicKey, cache)).toBe(true);
        const forged = apply(t, events, i);
        const same = canonicalBytes(forged).equals(canonicalBytes(events[i]!));
        fc.pre(!same);
        expect(verifyEventSignature(forged, signer.publicKey, cache)).toBe(false);
        let canonical: Buffer;
        try {
          canonical = canonicalBytes(forged);
        } catch {
          return;
        }
        expect(await verifyEventSignatureAsync(forged, canonical, signer.publicKey, cache)).toBe(false);
      }),
      { numRuns: 1000 },
    );
  }, 60_000);

  it("keeps the cache bounded however many batches it sees", () => {
    const cache = new BatchSignatureCache(3);
    for (let n = 1; n <= 10; n++)
      for (const e of batch(n)) expect(verifyEventSignature(e, signer.publicKey, cache)).toBe(true);
    expect(cache.size).toBe(3);
  });

  it("checks one signature for a batch's events arriving together", async () => {
    const cache = new BatchSignatureCache();
    const events = signBatch(batchOf(50), signer.privateKey);
    const verdicts = await Promise.all(
      events.map((e) => verifyEventSignatureAsync(e, canonicalEvent(e), signer.publicKey, cache)),
    );
    expect(verdicts.every(Boolean)).toBe(true);
    expect(cache.size).toBe(1);
  });

  it("never takes a per-event signature for a batch signature or the reverse", () => {
    const [event] = signBatch(batchOf(2), signer.privateKey);
    const single = signEvent(unsigned(0), signer.privateKey);
    expect(verifyEventSignature({ ...single, sigbatch: event!.sigbatch! }, signer.publicKey)).toBe(false);
    const { sigbatch: _, ...withoutMembership } = event!;
    expect(verifyEventSignature(withoutMembership as SignedEvent, signer.publicKey)).toBe(false);
  });
});

describe("batchCommitments (one tree per batch sent or stored whole)", () => {
  const signer = generateKeyPair("ed25519");
  const other = generateKeyPair("ed25519");
  const keys = new Map([
    [keyFingerprint(signer.publicKey), signer.publicKey],
    [keyFingerprint(other.publicKey), other.publicKey],
  ]);
  const keyOf = (e: SignedEvent) => keys.get(String(e.sigkeyid));
  /** The per-event check (its own path), or "throws". */
  const perEvent = (e: SignedEvent): boolean | "throws" => {
    try {
      return verifyEventSignature(e, keyOf(e) ?? other.publicKey, new BatchSignatureCache());
    } catch {
      return "throws";
    }
  };

  it("finds every event of whole batches, in any order, and their signatures are checked once a batch", () => {
    const a = signBatch(batchOf(37), signer.privateKey);
    const b = signBatch(batchOf(1), other.privateKey);
    const events = [...b, ...a].reverse();
    const commitments = batchCommitments(events);
    expect(commitments.size).toBe(38);
    const cache = new BatchSignatureCache();
    events.forEach((e, i) => {
      expect(verifyEventSignature(e, keyOf(e)!, cache, commitments.get(i))).toBe(true);
    });
    expect(cache.size).toBe(2);
  });

  it("leaves an incomplete batch to each event's own path", () => {
    const events = signBatch(batchOf(5), signer.privateKey).slice(1);
    expect(batchCommitments(events).size).toBe(0);
  });

  it("gives exactly the per-event verdict, however the batch was changed (1,000 runs)", async () => {
    const batches = new Map<number, SignedEvent[]>();
    const batch = (n: number) => {
      const b = batches.get(n) ?? signBatch(batchOf(n), signer.privateKey);
      batches.set(n, b);
      return b;
    };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.tuple(fc.nat(), tamper), { maxLength: 3 }),
        fc.array(fc.nat(), { maxLength: 2 }),
        fc.array(fc.nat(), { maxLength: 2 }),
        fc.boolean(),
        async (n, tampers, dropped, doubled, withSingle) => {
          const events = [...batch(n)];
          for (const [pick, t] of tampers) events[pick % n] = apply(t, batch(n), pick % n);
          for (const d of dropped) events.splice(d % events.length, 1);
          for (const d of doubled) if (events.length > 0) events.push(events[d % events.length]!);
          if (withSingle) events.push(signEvent(unsigned(99), other.privateKey));
          const commitments = batchCommitments(events);
          for (const [i, commitment] of commitments) {
            const e = events[i]!;
            const key = keyOf(e) ?? other.publicKey;
            const verdict = verifyEventSignature(e, key, new BatchSignatureCache(), commitment);
            expect(verdict).toBe(perEvent(e));
            const canonical = canonicalBytes(e);
            const fresh = new BatchSignatureCache();
            expect(await verifyEventSignatureAsync(e, canonical, key, fresh, commitment)).toBe(
              await verifyEventSignatureAsync(e, canonical, key, new BatchSignatureCache()),
            );
          }
          if (tampers.length + dropped.length + doubled.length === 0) expect(commitments.size).toBe(n);
        },
      ),
      { numRuns: 1000 },
    );
  }, 60_000);
});

describe("a sink and a verifier with batch-signed events", () => {
  const STREAM = "agent-actions";

  function setup() {
    const ports = memoryPorts();
    const agent = generateKeyPair("ecdsa-p256");
    const keyId = keyFingerprint(agent.publicKey);
    ports.producers.add({
      keyId,
      publicKey: agent.publicKey,
      producer: "agent",
      streams: ["*"],
      revoked: false,
    });
    const sink = new Sink({ deployment: DEPLOYMENT, ...ports });
    const verify = () =>
      verifyStream(
        STREAM,
        new Map([...ports.objects.objects].filter(([k]) => k.startsWith(`streams/${STREAM}/`))),
        { trusted: [ports.signer.key], producerKeys: new Map([[keyId, agent.publicKey]]) },
      );
    return { ports, agent, sink, verify };
  }

  it("accepts a batch with one signature check and verifies every record offline", async () => {
    const { sink, agent, verify } = setup();
    const events = signBatch(batchOf(30), agent.privateKey);
    const before = batchSignatureCache.size;
    const receipts = await sink.submit(STREAM, events);
    expect(receipts.map((r) => r.index)).toEqual(events.map((_, i) => i));
    expect(batchSignatureCache.size - before).toBe(1);
    const report = verify();
    expect(report.records).toBe(30);
    expect(report.failures).toEqual([]);
  });

  it("replays an event taken out of its batch, alone or among others, as the same record", async () => {
    const { sink, agent, verify } = setup();
    const events = signBatch(batchOf(4), agent.privateKey);
    const original = await sink.submit(STREAM, events);
    const alone = await sink.submit(STREAM, [events[2]!]);
    expect(alone).toEqual([expect.objectContaining({ index: 2, recordHash: original[2]!.recordHash })]);
    const others = signBatch([unsigned(10), unsigned(11)], agent.privateKey);
    const mixed = await sink.submit(STREAM, [others[0]!, events[1]!, others[1]!]);
    expect(mixed.map((r) => r.index)).toEqual([4, 1, 5]);
    expect(verify().records).toBe(6);
  });

  it("refuses the same id in another envelope or another batch as id-conflict, storing nothing", async () => {
    const { sink, agent, ports } = setup();
    const events = signBatch(batchOf(3), agent.privateKey);
    await sink.submit(STREAM, events);
    const stored = ports.objects.objects.size;
    const perEvent = signEvent(unsigned(1), agent.privateKey);
    const rebatched = signBatch([unsigned(1), unsigned(7)], agent.privateKey);
    for (const attempt of [[perEvent], rebatched]) {
      await expect(sink.submit(STREAM, attempt)).rejects.toMatchObject({ code: "id-conflict" });
    }
    expect(ports.objects.objects.size).toBe(stored);
  });

  it("refuses a batch holding one forged event as bad-signature, storing nothing", async () => {
    const { sink, agent, ports } = setup();
    const events = signBatch(batchOf(5), agent.privateKey);
    const forged = [...events];
    forged[3] = { ...events[3]!, data: { step: 300 } };
    await expect(sink.submit(STREAM, forged)).rejects.toMatchObject({
      code: "bad-signature",
      field: "events[3].signature",
    });
    expect([...ports.objects.objects.keys()].filter((k) => k.startsWith(`streams/${STREAM}/`))).toEqual([]);
  });

  it("refuses a high-S ECDSA batch signature at ingest but verifies it when stored", async () => {
    const { sink, agent } = setup();
    const events = signBatch(batchOf(2), agent.privateKey);
    const { p256 } = await import("@noble/curves/nist.js");
    const low = p256.Signature.fromBytes(Buffer.from(events[0]!.signature, "base64"), "der");
    const high = new p256.Signature(low.r, p256.Point.CURVE().n - low.s).toBytes("der");
    const twin = events.map((e) => ({ ...e, signature: Buffer.from(high).toString("base64") }));
    expect(verifyEventSignature(twin[0]!, agent.publicKey)).toBe(true);
    await expect(sink.submit(STREAM, twin)).rejects.toMatchObject({ code: "bad-signature" });
  });

  it("reports a stored batch-signed event whose content changed as producer-signature-invalid", async () => {
    const { sink, agent, ports, verify } = setup();
    await sink.submit(STREAM, signBatch(batchOf(3), agent.privateKey));
    const key = `streams/${STREAM}/segments/00000000000000000000`;
    const text = Buffer.from(ports.objects.objects.get(key)!).toString("utf8");
    ports.objects.objects.set(key, Buffer.from(text.replace('"step":1', '"step":9'), "utf8"));
    const failures = verify().failures.map((f) => [f.code, f.at]);
    expect(failures).toContainEqual(["producer-signature-invalid", 1]);
  });
});

describe("docs/FORMAT.md §3b example", () => {
  const doc = readFileSync(join(import.meta.dirname, "../../../docs/FORMAT.md"), "utf8");
  const example = (name: string): string => {
    const m = new RegExp(`<!-- batch-example:${name} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\\n?\`\`\``).exec(doc);
    if (!m) throw new Error(`docs/FORMAT.md has no batch example ${name}`);
    return m[1]!;
  };
  const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest();
  const event = JSON.parse(example("event")) as SignedEvent;
  const key = publicKeyFromSpki(example("producer-spki"));
  const rows = example("hashes").split("\n");
  const hex = (row: string, label: string) => new RegExp(`${label} ([0-9a-f]{64})`).exec(row)![1]!;

  it("recomputes the entry hash and leaf of the event shown, and the root from its sigbatch path", () => {
    const { signature: _s, sigbatch, ...entry } = event;
    const entryHash = sha(canonicalBytes(entry));
    expect(entryHash.toString("hex")).toBe(hex(rows[1]!, "entry hash"));
    const leaf = sha(Buffer.concat([Buffer.of(0), entryHash]));
    expect(leaf.toString("hex")).toBe(hex(rows[1]!, "leaf"));
    const [, , path] = sigbatch!.split(".");
    expect(path).toBe(hex(rows[0]!, "leaf") + hex(rows[2]!, "leaf"));
    // RFC 9162 §2.1: position 1 of 3 — H(0x01 || H(0x01 || leaf0 || leaf1) || leaf2).
    const node = (l: Buffer, r: Buffer) => sha(Buffer.concat([Buffer.of(1), l, r]));
    const root = node(
      node(Buffer.from(hex(rows[0]!, "leaf"), "hex"), leaf),
      Buffer.from(hex(rows[2]!, "leaf"), "hex"),
    );
    expect(root.toString("hex")).toBe(/([0-9a-f]{64})$/.exec(rows[3]!)![1]);
  });

  it("the signing bytes are the four lines shown, and the signature verifies over them", () => {
    const signing = `${example("signing-bytes")}\n`;
    const [context, keyId, size, root] = signing.split("\n");
    expect([context, keyId, size]).toEqual(["auditsink-batch-v1", event.sigkeyid, "3"]);
    expect(root).toBe(/([0-9a-f]{64})$/.exec(rows[3]!)![1]);
    expect(sha(Buffer.from(example("producer-spki"), "base64")).toString("hex")).toBe(event.sigkeyid);
    expect(nodeVerify(null, Buffer.from(signing), key, Buffer.from(event.signature, "base64"))).toBe(true);
    expect(verifyEventSignature(parseSignedEvent(event), key, new BatchSignatureCache())).toBe(true);
  });
});

/**
 * A data directory laid out as the sink lays it out, written directly (no sink, no HTTP): segments of producer-
 * signed records, a signed checkpoint per segment, producers.json, sink.json and the verifier key. The verify and
 * sweep benchmarks generate their archives with it.
 */
import type { KeyObject } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  admit,
  buildRecords,
  checkpointKey,
  encodeSegment,
  Frontier,
  formatVerifierKey,
  type KeyObjectSigner,
  keyFingerprint,
  type SignedEvent,
  segmentKey,
  signBatch,
  signCheckpoint,
  spkiDer,
  toHex,
  ZERO_HASH,
} from "@auditsink/core";
import { benchEvent, benchUnsignedEvent } from "./events.ts";

export type Signing = "event" | "batch";

export interface ArchiveOptions {
  records: number;
  /** Records per segment (one checkpoint each). */
  segment: number;
  stream: string;
  deployment: string;
  signer: KeyObjectSigner;
  producer: { privateKey: KeyObject; publicKey: KeyObject };
  /** One signature per event, or one per `batch` events (batch-signed envelopes). */
  signing: Signing;
  batch: number;
  /** Padding of per-event-signed events (`note`). */
  filler: string;
}

/** Events first … first+n−1, signed per event or in batches (aligned to index 0). */
function signedEvents(o: ArchiveOptions, first: number, n: number): SignedEvent[] {
  if (o.signing === "event")
    return Array.from({ length: n }, (_, i) => benchEvent(first + i, o.producer.privateKey, o.filler));
  const events: SignedEvent[] = [];
  for (let at = first; at < first + n; at += o.batch) {
    const size = Math.min(o.batch, first + n - at);
    const unsigned = Array.from({ length: size }, (_, i) => benchUnsignedEvent(at + i, ""));
    events.push(...signBatch(unsigned, o.producer.privateKey));
  }
  return events;
}

function write(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/**
 * Writes the archive into `data`; returns its segments' bytes and the stream's end (size, head hash, Merkle
 * frontier: a verifier state that has checked everything).
 */
export async function writeArchive(
  data: string,
  o: ArchiveOptions,
): Promise<{
  bytes: number;
  end: { size: number; headHash: string; frontier: string[]; checkpointSize: number };
}> {
  const frontier = new Frontier();
  let prev = ZERO_HASH;
  let bytes = 0;
  for (let first = 0; first < o.records; first += o.segment) {
    const n = Math.min(o.segment, o.records - first);
    const received = new Date(Date.UTC(2026, 10, 24, 12, 0, 0, first / 100)).toISOString();
    const events = signedEvents(o, first, n).map((e) => admit(e, "bench-agent"));
    const records = buildRecords(o.stream, first, prev, received, events);
    const segment = encodeSegment(records);
    bytes += segment.length;
    write(join(data, "objects", segmentKey(o.stream, first)), segment);
    for (const r of records) frontier.append(r.leaf);
    prev = records[records.length - 1]!.hash;
    const cp = {
      origin: `${o.deployment}/${o.stream}`,
      size: frontier.size,
      root: frontier.root(),
      head: prev,
      time: received,
    };
    write(join(data, "objects", checkpointKey(o.stream, frontier.size)), await signCheckpoint(cp, o.signer));
    if (first % 100_000 === 0) process.stderr.write(`  generated ${first + n} records\n`);
  }
  write(join(data, "sink.json"), JSON.stringify({ deployment: o.deployment }));
  write(join(data, "keys", "verifier-key.txt"), `${formatVerifierKey(o.signer.key)}\n`);
  const now = new Date().toISOString();
  write(
    join(data, "producers.json"),
    JSON.stringify({
      producers: [
        {
          id: "bench-agent",
          streams: [o.stream],
          createdAt: now,
          keys: [
            {
              keyId: keyFingerprint(o.producer.publicKey),
              publicKey: spkiDer(o.producer.publicKey).toString("base64"),
              algorithm: "ed25519",
              createdAt: now,
            },
          ],
        },
      ],
    }),
  );
  return {
    bytes,
    end: {
      size: frontier.size,
      headHash: toHex(prev),
      frontier: frontier.hashes.map(toHex),
      checkpointSize: frontier.size,
    },
  };
}

/**
 * Tamper-evidence as properties: every way of altering a stored log is reported with its failure code,
 * and an untouched log verifies with zero failures. fast-check, 1,000 runs per property over a fixed log; 300 for
 * the property that builds a whole signed log per run. These are correctness checks, not timings: the limit below
 * only keeps a loaded CI machine (every test file running at once on two cores) from failing them.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../src/keys.ts";
import { KeyObjectSigner } from "../src/memory.ts";
import type { Clock } from "../src/ports.ts";
import { parseStoreKey, segmentKey } from "../src/record.ts";
import { Sink } from "../src/sink.ts";
import { type StreamReport, verifyStream } from "../src/verify.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer } from "./fixtures.ts";

const STREAM = "agent-actions";
const RUNS = { numRuns: 1000 };
const PROPERTY_TIMEOUT_MS = 180_000;
const fixedClock: Clock = { now: () => new Date("2026-11-24T12:00:00.000Z") };

interface Log {
  ports: Ports;
  objects: Map<string, Uint8Array>;
  batches: number[];
}

async function buildLog(
  batches: number[],
  ports = memoryPorts(),
  alter?: { batch: number; item: number },
): Promise<Log> {
  const agent = producer(ports, "agent-1");
  const sink = new Sink({ deployment: DEPLOYMENT, ...ports, clock: fixedClock });
  let n = 0;
  for (const [b, size] of batches.entries()) {
    const events = Array.from({ length: size }, (_, i) => {
      const data = alter && alter.batch === b && alter.item === i ? { forged: true } : { step: n + i };
      return agent.event(`e-${n + i}`, data);
    });
    n += size;
    await sink.submit(STREAM, events);
  }
  // Only the stream's own objects: the store also holds `_system`, where the sink records the stream's creation.
  const objects = new Map([...ports.objects.objects].filter(([k]) => k.startsWith(`streams/${STREAM}/`)));
  return { ports, objects, batches };
}

function verify(objects: Map<string, Uint8Array>, ports: Ports): StreamReport {
  return verifyStream(STREAM, objects, { trusted: [ports.signer.key], deployment: DEPLOYMENT });
}

const codes = (r: StreamReport) => new Set(r.failures.map((f) => f.code));

/** The stored log as record lines grouped by segment (first index → lines). */
function segmentsOf(objects: Map<string, Uint8Array>): { first: number; lines: Buffer[] }[] {
  return [...objects.keys()]
    .filter((k) => parseStoreKey(k)?.kind === "segments")
    .sort()
    .map((k) => {
      const text = Buffer.from(objects.get(k)!);
      const lines: Buffer[] = [];
      let start = 0;
      for (let nl = text.indexOf(10); nl >= 0; nl = text.indexOf(10, start)) {
        lines.push(text.subarray(start, nl));
        start = nl + 1;
      }
      return { first: parseStoreKey(k)!.n, lines };
    });
}

/** Rewrites the log from a flat list of lines, keeping each segment's key and (where possible) its length. */
function rewrite(log: Log, edit: (lines: Buffer[]) => Buffer[]): Map<string, Uint8Array> {
  const segs = segmentsOf(log.objects);
  const lines = edit(segs.flatMap((s) => s.lines));
  const out = new Map([...log.objects].filter(([k]) => parseStoreKey(k)?.kind !== "segments"));
  let at = 0;
  segs.forEach((s, i) => {
    const take = i === segs.length - 1 ? lines.length - at : Math.min(s.lines.length, lines.length - at);
    const chunk = lines.slice(at, at + take);
    at += take;
    if (chunk.length > 0)
      out.set(segmentKey(STREAM, s.first), Buffer.concat(chunk.flatMap((l) => [l, Buffer.from("\n")])));
  });
  return out;
}

describe("verifier properties", { timeout: PROPERTY_TIMEOUT_MS }, () => {
  const SHAPE = [3, 1, 4, 1, 5, 2, 6];
  const TOTAL = SHAPE.reduce((a, b) => a + b, 0);
  let honest: Log;
  beforeAll(async () => {
    honest = await buildLog(SHAPE);
  });

  it("an untouched log of any shape verifies with zero failures", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 6 }),
        async (shape) => {
          const log = await buildLog(shape);
          const report = verify(log.objects, log.ports);
          expect(report.failures).toEqual([]);
          expect(report.warnings).toEqual([]);
          expect(report.records).toBe(shape.reduce((a, b) => a + b, 0));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("any single byte flipped in a segment breaks a signed root, or makes its line malformed", () => {
    const keys = [...honest.objects.keys()].filter((k) => parseStoreKey(k)?.kind === "segments");
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (k, pos, mask) => {
        const key = keys[k % keys.length]!;
        const bytes = Buffer.from(honest.objects.get(key)!);
        bytes[pos % bytes.length]! ^= mask;
        const report = verify(new Map(honest.objects).set(key, bytes), honest.ports);
        // A flipped newline merges two lines into one malformed line, after which the next record is ahead of
        // its position: a gap, where the tree stops (FORMAT.md §11 step 6) — the malformed line is the finding.
        const found = codes(report);
        expect(
          found.has("checkpoint-root-mismatch") ||
            found.has("checkpoint-beyond-log") ||
            found.has("record-malformed"),
        ).toBe(true);
      }),
      RUNS,
    );
  });

  it("any single byte flipped in a checkpoint is reported against that checkpoint", () => {
    const keys = [...honest.objects.keys()].filter((k) => parseStoreKey(k)?.kind === "checkpoints");
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (k, pos, mask) => {
        const key = keys[k % keys.length]!;
        const bytes = Buffer.from(honest.objects.get(key)!);
        bytes[pos % bytes.length]! ^= mask;
        const report = verify(new Map(honest.objects).set(key, bytes), honest.ports);
        expect(
          report.failures.some(
            (f) => f.code.startsWith("checkpoint-") && (f.at === key || f.at === Number(key.slice(-20))),
          ),
        ).toBe(true);
      }),
      RUNS,
    );
  });

  it("any record deleted is reported as a gap at its index (or a checkpoint beyond the log for the last one)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: TOTAL - 1 }), (i) => {
        const report = verify(
          rewrite(honest, (lines) => lines.filter((_, j) => j !== i)),
          honest.ports,
        );
        if (i === TOTAL - 1) expect(codes(report).has("checkpoint-beyond-log")).toBe(true);
        else expect(report.failures[0]).toMatchObject({ code: "record-gap", at: i });
      }),
      RUNS,
    );
  });

  it("any record duplicated is reported as an index mismatch", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: TOTAL - 1 }), (i) => {
        const report = verify(
          rewrite(honest, (lines) => lines.flatMap((l, j) => (j === i ? [l, l] : [l]))),
          honest.ports,
        );
        expect(codes(report).has("record-index-mismatch")).toBe(true);
      }),
      RUNS,
    );
  });

  it("any two records swapped are reported as records out of place and a broken chain", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: TOTAL - 1 }), fc.integer({ min: 0, max: TOTAL - 1 }), (i, j) => {
        fc.pre(i !== j);
        const report = verify(
          rewrite(honest, (lines) => {
            const copy = [...lines];
            [copy[i], copy[j]] = [copy[j]!, copy[i]!];
            return copy;
          }),
          honest.ports,
        );
        // The record found at the first swapped position is ahead of it and does not link: to the walk that is
        // a gap (records missing there), until the missing record turns up out of place later.
        const found = codes(report);
        expect(found.has("record-index-mismatch") || found.has("record-gap")).toBe(true);
        expect(found.has("chain-broken")).toBe(true);
      }),
      RUNS,
    );
  });

  it("any truncation of the tail is reported as a checkpoint beyond the log", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: TOTAL }), (cut) => {
        const report = verify(
          rewrite(honest, (lines) => lines.slice(0, TOTAL - cut)),
          honest.ports,
        );
        expect(codes(report).has("checkpoint-beyond-log")).toBe(true);
      }),
      RUNS,
    );
  });

  it("a segment deleted from the middle is reported as a gap", () => {
    const segs = segmentsOf(honest.objects);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: segs.length - 2 }), (s) => {
        const objects = new Map(honest.objects);
        objects.delete(segmentKey(STREAM, segs[s]!.first));
        expect(codes(verify(objects, honest.ports)).has("segment-gap")).toBe(true);
      }),
      RUNS,
    );
  });

  it("any segment replaced by a forgery re-signed under another key is reported as an untrusted checkpoint", async () => {
    // The space is small (one forged record per position of SHAPE), so every position is tried, each under a
    // fresh forger key: exhaustive, and a thousandth of the work of sampling it 1,000 times.
    const positions = SHAPE.flatMap((size, batch) =>
      Array.from({ length: size }, (_, item) => ({ batch, item })),
    );
    expect(positions).toHaveLength(TOTAL);
    for (const alter of positions) {
      // The forger controls the whole store: same deployment name, their own key, every object rewritten.
      const { privateKey, publicKey } = generateKeyPair("ecdsa-p256");
      const forgerPorts = {
        ...memoryPorts(),
        signer: new KeyObjectSigner(DEPLOYMENT, privateKey, publicKey),
      };
      const forged = await buildLog(SHAPE, forgerPorts, alter);
      const report = verify(forged.objects, honest.ports);
      expect(report.failures.filter((f) => f.code === "checkpoint-unknown-key")).toHaveLength(SHAPE.length);
    }
  });
});

describe("the verifier reports, never throws, on any stored bytes (issue 10 item 7a)", {
  timeout: PROPERTY_TIMEOUT_MS,
}, () => {
  let honest: Log;
  let producerKeys: Map<string, import("node:crypto").KeyObject>;
  beforeAll(async () => {
    honest = await buildLog([3, 1, 4, 2]);
    producerKeys = new Map([...honest.ports.producers.keys.values()].map((k) => [k.keyId, k.publicKey]));
  });

  /** Text an attacker might splice in: numbers JSON can hold but doubles cannot, lone surrogates, structure. */
  const hostile = fc.oneof(
    fc.constantFrom(
      "1e400",
      "-1e400",
      "\\ud800",
      "\\udfff",
      '"\\ud83d"',
      "\n",
      '"',
      "{",
      "}",
      "[",
      ",",
      "\\",
      "\u0000",
    ),
    fc.string({ unit: "binary", maxLength: 12 }),
    fc.string({ maxLength: 12 }),
  );
  const edit = fc.oneof(
    fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: hostile }),
    fc.record({
      kind: fc.constant("replace" as const),
      at: fc.nat(),
      length: fc.integer({ min: 1, max: 8 }),
      text: hostile,
    }),
    fc.record({
      kind: fc.constant("delete" as const),
      at: fc.nat(),
      length: fc.integer({ min: 1, max: 64 }),
    }),
  );

  it("random edits of segments and checkpoints are reported as failures; verification never throws", () => {
    const keys = [...honest.objects.keys()].sort();
    fc.assert(
      fc.property(fc.nat(), fc.array(edit, { minLength: 1, maxLength: 3 }), (k, edits) => {
        // Prepare
        const key = keys[k % keys.length]!;
        let bytes = Buffer.from(honest.objects.get(key)!);
        for (const e of edits) {
          const at = e.at % (bytes.length + 1);
          if (e.kind === "flip") {
            if (bytes.length > 0) bytes[at % bytes.length]! ^= e.mask;
          } else if (e.kind === "insert") {
            bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(e.text), bytes.subarray(at)]);
          } else if (e.kind === "replace") {
            bytes = Buffer.concat([
              bytes.subarray(0, at),
              Buffer.from(e.text),
              bytes.subarray(at + e.length),
            ]);
          } else {
            bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + e.length)]);
          }
        }
        fc.pre(!bytes.equals(honest.objects.get(key)!));
        // Act
        const report = verifyStream(STREAM, new Map(honest.objects).set(key, bytes), {
          trusted: [honest.ports.signer.key],
          deployment: DEPLOYMENT,
          producerKeys,
        });
        // Assess
        expect(report.failures.length).toBeGreaterThan(0);
      }),
      RUNS,
    );
  });
});

/**
 * RFC 8785 implementations on 1 KB audit events (the embedded benchmark's event shape), one core:
 *
 *   npm run bench:jcs        → prints a table and writes bench/results/jcs.json
 *
 * Two inputs: events as a producer sends them (members in the order its code wrote them) and the same events
 * parsed from their canonical text (members already in JCS order: every record a sink stored, read back by a
 * writer's catch-up, a reader or `verify`). Each candidate is also run over the RFC 8785 test vectors in
 * ../shared/vectors/jcs and over a lone surrogate and a non-finite number, which RFC 8785 cannot represent: a
 * candidate that gets a vector wrong or serializes either is not a candidate, whatever its speed. Rounds are
 * interleaved and the median CPU time kept, since the machine may be shared.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { canonicalBytes, generateKeyPair, type SignedEvent, signEvent } from "@auditsink/core";
// @ts-expect-error its typings are not reachable through its package.json "exports" (TS7016)
import { canonify } from "@truestamp/canonify";
import canonicalize from "canonicalize";
import { canonicalize as jsonCanonicalize } from "json-canonicalize";
import { toolCallEvent } from "./events.ts";

// Each gives the UTF-8 bytes the sink hashes and stores.
const utf8 = (text: string | undefined) => Buffer.from(text!, "utf8");
const candidates: Record<string, (value: unknown) => Buffer> = {
  "canonicalize@4.0.0": (v) => utf8(canonicalize(v)),
  "json-canonicalize@3.0.1": (v) => utf8(jsonCanonicalize(v)),
  "@truestamp/canonify@2.1.0": (v) => utf8(canonify(v)),
  "core canonicalBytes (JSON.stringify when in JCS order, else canonicalize@4.0.0)": canonicalBytes,
};

const { privateKey } = generateKeyPair("ed25519");
function auditEvent(i: number): SignedEvent {
  return signEvent(toolCallEvent(`jcs-${i}`, i, "x".repeat(592)), privateKey);
}
// Parsed from JSON text, as the sink sees them.
const producerOrder = Array.from({ length: 1000 }, (_, i) => JSON.parse(JSON.stringify(auditEvent(i))));
const jcsOrder = producerOrder.map((e) => JSON.parse(canonicalize(e)!));
const eventBytes = Buffer.byteLength(canonicalize(producerOrder[0])!);

const JCS = join(dirname(new URL(import.meta.url).pathname), "../../shared/vectors/jcs");
const vectors = readdirSync(join(JCS, "input"))
  .filter((n) => n.endsWith(".json"))
  .map((n) => ({
    input: JSON.parse(readFileSync(join(JCS, "input", n), "utf8")),
    hex: readFileSync(join(JCS, "outhex", n.replace(/\.json$/, ".txt")), "utf8").replace(/\s+/g, ""),
  }));

function conformance(f: (value: unknown) => Buffer) {
  const vectorsPassed = vectors.filter(({ input, hex }) => {
    try {
      return f(input).toString("hex") === hex;
    } catch {
      return false;
    }
  }).length;
  const refuses = (v: unknown) => {
    try {
      f(v);
      return false;
    } catch {
      return true;
    }
  };
  return {
    vectorsPassed,
    vectors: vectors.length,
    refusesLoneSurrogate: refuses({ a: "\ud800" }),
    refusesInfinity: refuses({ a: Number.POSITIVE_INFINITY }),
  };
}

/** CPU time (user + system) per event: less disturbed than wall time by other work on the machine. */
function timeOnce(f: (value: unknown) => Buffer, events: unknown[]): number {
  let bytes = 0;
  const before = process.cpuUsage();
  for (const e of events) bytes += f(e).length;
  const { user, system } = process.cpuUsage(before);
  if (bytes === 0) throw new Error("no output");
  return (user + system) / events.length;
}

const ROUNDS = Number(process.env.ROUNDS ?? 25);
const loadBefore = loadavg()[0]!;
const samples = new Map<string, { producer: number[]; jcs: number[] }>(
  Object.keys(candidates).map((name) => [name, { producer: [], jcs: [] }]),
);
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, f] of Object.entries(candidates)) {
    samples.get(name)!.producer.push(timeOnce(f, producerOrder));
    samples.get(name)!.jcs.push(timeOnce(f, jcsOrder));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = Object.entries(candidates).map(([name, f]) => ({
  implementation: name,
  usPerEventProducerOrder: Number(median(samples.get(name)!.producer).toFixed(2)),
  usPerEventJcsOrder: Number(median(samples.get(name)!.jcs).toFixed(2)),
  ...conformance(f),
}));
const result = {
  benchmark: "jcs",
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? "unknown",
  eventBytes,
  rounds: ROUNDS,
  // The machine may be shared: medians of interleaved rounds, and the load around them.
  loadAverage: { before: loadBefore, after: loadavg()[0] },
  results,
};
console.table(results);
const out = join(dirname(new URL(import.meta.url).pathname), "results", "jcs.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${out}`);

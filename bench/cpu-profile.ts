/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, the .cpuprofile JSON) of the sink's main thread by what the
 * time was spent on. Each sample is charged to the innermost frame that says what the work is: V8 builtins
 * (JSON.parse, Array.prototype.sort, …, which have no script URL) and generic Node plumbing (events, streams,
 * task queues, buffers) are looked through to their caller, so `JSON.stringify` called by the canonicalizer
 * counts as canonicalization and `Buffer.concat` called by the record sealer as "other".
 *
 * Source frames count by package and file, compiled (dist/*.js) or not (src/*.ts).
 *
 * Only samples inside [fromUs, toUs] (CLOCK_MONOTONIC microseconds, the clock of `process.hrtime` and of the
 * profile's own timestamps on Linux) count, so start-up and shut-down stay out of the summary.
 */
import { readFileSync } from "node:fs";

export const CATEGORIES = [
  "canonicalization",
  "signatureVerification",
  "hashing",
  "parsingValidation",
  "http",
  "fileIo",
  "eventIndex",
  "gc",
  "other",
] as const;
export type Category = (typeof CATEGORIES)[number];

interface CallFrame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Main-thread time sampled in the window, busy or idle. */
  sampledMs: number;
  /** Share of the sampled time the main thread had nothing to do (waiting on I/O, the threadpool, the network). */
  idleShare: number;
  /** Share of the busy (non-idle) main-thread time per category; sums to 1. */
  busyShare: Record<Category, number>;
  /** The functions with the most self time (busy share), to see what a category is made of. */
  top: { function: string; where: string; category: Category; share: number }[];
}

/** The `n` largest categories of a per-event (or per-record) split, as "category µs" text, largest first. */
export const largestCosts = (us: Record<Category, number>, n = 4): string =>
  Object.entries(us)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([c, v]) => `${c} ${v} µs`)
    .join(", ");

/** Frames that only carry work for someone else: the caller decides what the work is. */
const TRANSPARENT =
  /^node:(events|buffer|internal\/(streams|process|async_hooks|timers|buffer|util|errors|validators|event_target|webstreams|abort_controller|blob|url|encoding|worker\/js_transferable|deps\/undici))/;

const RULES: [RegExp, Category | ((fn: string) => Category)][] = [
  [/node_modules\/(canonicalize|json-canonicalize)\//, "canonicalization"],
  // The embedded sink's index.db: SQLite through libsql, called synchronously in the commit step.
  [/node_modules\/libsql\//, "eventIndex"],
  [/packages\/core\/(?:src|dist)\/jcs\.[jt]s/, "canonicalization"],
  [
    /packages\/core\/(?:src|dist)\/hash\.[jt]s/,
    (fn) =>
      fn === "sha256"
        ? "hashing"
        : fn === "canonicalBytes"
          ? "canonicalization"
          : fn === "fromBase64"
            ? "parsingValidation"
            : "other",
  ],
  [
    /packages\/core\/(?:src|dist)\/event\.[jt]s/,
    (fn) =>
      fn === "canonicalEvent"
        ? "canonicalization"
        : /signature|signing|verify/i.test(fn)
          ? "signatureVerification"
          : "parsingValidation",
  ],
  [/packages\/core\/(?:src|dist)\/keys\.[jt]s|node:internal\/crypto\/(sig|keys)/, "signatureVerification"],
  [/packages\/core\/(?:src|dist)\/merkle\.[jt]s|node:internal\/crypto\/hash/, "hashing"],
  [
    /packages\/core\/(?:src|dist)\/json\.[jt]s|node_modules\/(zod|jsonc-parser)\/|packages\/api\/(?:src|dist)\/(schemas|binary-mode)\.[jt]s/,
    "parsingValidation",
  ],
  [
    /node_modules\/(hono|@hono)\/|packages\/api\/(?:src|dist)\/|node:(_http_|net|internal\/(http|stream_base|net))/,
    "http",
  ],
  [
    /node:(fs|internal\/fs)|packages\/local\/(?:src|dist)\/(Local\w+Store|LocalIndex|fsutil|FindingsLedger)\.[jt]s/,
    "fileIo",
  ],
];

function classify(frame: CallFrame): Category | "idle" | undefined {
  const { functionName: fn, url } = frame;
  if (url === "") {
    if (fn === "(garbage collector)") return "gc";
    if (fn === "(idle)") return "idle";
    if (fn === "(program)" || fn === "(root)") return "other";
    return undefined; // a builtin: its caller says what it is for
  }
  if (TRANSPARENT.test(url)) return undefined;
  for (const [pattern, category] of RULES)
    if (pattern.test(url)) return typeof category === "function" ? category(fn) : category;
  return "other";
}

export function summarizeProfile(path: string, fromUs: number, toUs: number): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const categoryOf = new Map<number, Category | "idle">();
  const resolve = (id: number): Category | "idle" => {
    const known = categoryOf.get(id);
    if (known) return known;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const category = classify(node.callFrame) ?? (up === undefined ? "other" : resolve(up));
    categoryOf.set(id, category);
    return category;
  };
  const busy = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  const self = new Map<number, number>();
  let idle = 0;
  let sampled = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    // A sample stands for the time until the next one.
    const weight = profile.timeDeltas[i + 1] ?? 0;
    if (t < fromUs || t > toUs || weight <= 0) continue;
    const id = profile.samples[i]!;
    const category = resolve(id);
    sampled += weight;
    if (category === "idle") {
      idle += weight;
      continue;
    }
    busy[category] += weight;
    self.set(id, (self.get(id) ?? 0) + weight);
  }
  const busyTotal = sampled - idle || 1;
  const round = (x: number) => Number(x.toFixed(3));
  // Self time by function (nodes of one function in different call paths added up).
  const byFunction = new Map<string, { function: string; where: string; category: Category; time: number }>();
  for (const [id, time] of self) {
    const { functionName, url } = byId.get(id)!.callFrame;
    const where = url.replace(/^.*\/(node_modules|packages)\//, "$1/");
    const key = `${functionName}@${where}`;
    const entry = byFunction.get(key) ?? {
      function: functionName || "(anonymous)",
      where,
      category: resolve(id) as Category,
      time: 0,
    };
    entry.time += time;
    byFunction.set(key, entry);
  }
  return {
    sampledMs: Math.round(sampled / 1000),
    idleShare: round(idle / (sampled || 1)),
    busyShare: Object.fromEntries(CATEGORIES.map((c) => [c, round(busy[c] / busyTotal)])) as Record<
      Category,
      number
    >,
    top: [...byFunction.values()]
      .sort((a, b) => b.time - a.time)
      .slice(0, 12)
      .map(({ time, ...f }) => ({ ...f, share: round(time / busyTotal) })),
  };
}

/**
 * The one verification run (run.ts) and the StreamVerifier rules it relies on: the set of streams, the head
 * store, gaps reported as gaps, order independence, never throwing on stored bytes, trust in the report.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { signCheckpoint } from "../src/checkpoint.ts";
import type { SignedEvent } from "../src/event.ts";
import { SYSTEM_STREAM } from "../src/event.ts";
import { sha256 } from "../src/hash.ts";
import { keyFingerprint } from "../src/keys.ts";
import { Frontier, leafHash, nodeHash } from "../src/merkle.ts";
import type { Clock } from "../src/ports.ts";
import type { Receipt } from "../src/receipt.ts";
import { checkpointKey, parseStoreKey, sealRecord, segmentKey } from "../src/record.ts";
import { allFailures, runVerification, type VerificationTrust } from "../src/run.ts";
import { Sink } from "../src/sink.ts";
import { STREAM_CREATED } from "../src/stream-set.ts";
import { StreamVerifier, VerifierUsageError, verifyStream } from "../src/verify.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer } from "./fixtures.ts";

const clock: Clock = { now: () => new Date("2026-11-24T12:00:00.000Z") };

interface World {
  ports: Ports;
  sink: Sink;
  trust: VerificationTrust;
  producerKeys: Map<string, import("node:crypto").KeyObject>;
}

/** Two streams of three batches each (sizes 2, 2, 2), written through the real Sink. */
async function world(): Promise<World> {
  const ports = memoryPorts();
  const agent = producer(ports, "agent-1");
  const sink = new Sink({ deployment: DEPLOYMENT, ...ports, clock });
  for (const stream of ["alpha", "beta"]) {
    for (let b = 0; b < 3; b++) {
      await sink.submit(stream, [agent.event(`${stream}-${b}-0`), agent.event(`${stream}-${b}-1`)]);
    }
  }
  const producerKeys = new Map([
    [keyFingerprint(agent.publicKey), agent.publicKey],
    [keyFingerprint(ports.signer.key.publicKey), ports.signer.key.publicKey],
  ]);
  return {
    ports,
    sink,
    trust: { keys: [ports.signer.key], basis: "pinned", detail: "test key" },
    producerKeys,
  };
}

const run = (w: World, extra: Partial<Parameters<typeof runVerification>[2]> = {}) =>
  runVerification({ objects: w.ports.objects, deployment: DEPLOYMENT, heads: w.ports.heads }, w.trust, {
    mode: "full",
    producerKeys: w.producerKeys,
    settle: { tries: 1, delayMs: 0 },
    ...extra,
  });

const codes = (report: Awaited<ReturnType<typeof run>>) => allFailures(report).map((f) => f.code);

function deleteStreamObjects(w: World, stream: string): void {
  for (const key of [...w.ports.objects.objects.keys()])
    if (key.startsWith(`streams/${stream}/`)) w.ports.objects.objects.delete(key);
}

describe("the sink commits to the set of streams", () => {
  it("records each stream's creation in _system, once, before the stream's first segment", async () => {
    const w = await world();
    const system = [...w.ports.objects.objects.entries()]
      .filter(([k]) => parseStoreKey(k)?.kind === "segments" && parseStoreKey(k)?.stream === SYSTEM_STREAM)
      .flatMap(([, v]) => Buffer.from(v).toString("utf8").trim().split("\n"))
      .map((l) => JSON.parse(l) as { event: { type: string; data: { stream: string } } });
    expect(system.filter((r) => r.event.type === STREAM_CREATED).map((r) => r.event.data.stream)).toEqual([
      "alpha",
      "beta",
    ]);
  });
});

describe("the stream's creation record survives a crash before the first segment", () => {
  it("records it once although the first attempt failed after recording, and the archive verifies", async () => {
    // Prepare: the store fails the stream's first segment once (a crash between recording and step 3).
    const ports = memoryPorts();
    const agent = producer(ports, "agent-1");
    const put = ports.objects.putIfAbsent.bind(ports.objects);
    let failed = false;
    ports.objects.putIfAbsent = async (key, bytes) => {
      if (key === segmentKey("alpha", 0) && !failed) {
        failed = true;
        throw new Error("crash");
      }
      return put(key, bytes);
    };
    await expect(
      new Sink({ deployment: DEPLOYMENT, ...ports, clock }).submit("alpha", [agent.event("a")]),
    ).rejects.toThrow("crash");
    // Act: a fresh sink (a restarted process) takes the retry.
    await new Sink({ deployment: DEPLOYMENT, ...ports, clock }).submit("alpha", [agent.event("a")]);
    // Assess
    const created = [...ports.objects.objects.entries()]
      .filter(([k]) => k.startsWith(`streams/${SYSTEM_STREAM}/segments/`))
      .flatMap(([, v]) => Buffer.from(v).toString("utf8").trim().split("\n"))
      .filter((l) => l.includes(STREAM_CREATED));
    expect(created).toHaveLength(1);
    const report = await runVerification(
      { objects: ports.objects, deployment: DEPLOYMENT, heads: ports.heads },
      { keys: [ports.signer.key], basis: "pinned", detail: "test key" },
      { mode: "full" },
    );
    expect(allFailures(report)).toEqual([]);
  });
});

describe("runVerification", () => {
  let w: World;
  beforeEach(async () => {
    w = await world();
  });

  it("reports nothing on an untouched archive, and says how its keys were chosen", async () => {
    const report = await run(w);
    expect(allFailures(report)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.streams.map((s) => s.stream)).toEqual([SYSTEM_STREAM, "alpha", "beta"]);
    expect(report.trust).toEqual({
      basis: "pinned",
      detail: "test key",
      fingerprints: [keyFingerprint(w.ports.signer.key.publicKey)],
    });
  });

  it("reports a stream whose objects were deleted while its head remains", async () => {
    deleteStreamObjects(w, "beta");
    expect(codes(await run(w))).toEqual(["stream-missing"]);
  });

  it("reports a whole stream deleted with its head, from the _system record of its creation", async () => {
    deleteStreamObjects(w, "beta");
    w.ports.heads.heads.delete("beta");
    const report = await run(w);
    expect(allFailures(report).map((f) => [f.code, f.stream])).toEqual([["stream-missing", "beta"]]);
  });

  it("reports a deleted stream also when only its receipts name it", async () => {
    const [receipt] = await w.sink.submit("gamma", [producer(w.ports, "agent-2").event("g-1")]);
    deleteStreamObjects(w, "gamma");
    w.ports.heads.heads.delete("gamma");
    const report = await run(w, { receipts: [receipt!] });
    expect(codes(report).sort()).toEqual(["receipt-not-in-log", "stream-missing"]);
  });

  for (const [what, edit, expected] of [
    ["relabelled with it (its checkpoint is alpha's)", (r: Receipt) => r, "receipt-origin-mismatch"],
    [
      "relabelled with it, its proof broken too",
      (r: Receipt) => ({ ...r, inclusionProof: ["00".repeat(32)] }),
      "receipt-origin-mismatch",
    ],
    ["with no checkpoint", (r: Receipt) => ({ ...r, checkpoint: undefined }), "receipt-malformed"],
  ] as const) {
    it(`gives a receipt of a stream with no objects, ${what}, the first FORMAT.md §9 check it fails`, async () => {
      // Prepare: an alpha receipt that names a stream the store holds nothing of.
      const [receipt] = await w.sink.submit("alpha", [producer(w.ports, "agent-2").event("a-x")]);
      const relabelled = edit({ ...receipt!, stream: "nosuch" }) as Receipt;
      // Act
      const report = await run(w, { receipts: [relabelled] });
      // Assess: the stream is missing; the receipt is reported for what is wrong with it, not as absent.
      expect(report.archive.map((f) => [f.code, f.stream, f.at])).toEqual([
        ["stream-missing", "nosuch", undefined],
        [expected, "nosuch", receipt!.index],
      ]);
    });
  }

  it("reports a stream the system stream never recorded (planted, or _system rewritten)", async () => {
    const planted = new Map(w.ports.objects.objects);
    for (const [k, v] of w.ports.objects.objects)
      if (k.startsWith("streams/alpha/")) planted.set(k.replace("streams/alpha/", "streams/delta/"), v);
    w.ports.objects.objects.clear();
    for (const [k, v] of planted) w.ports.objects.objects.set(k, v);
    const report = await run(w, { producerKeys: undefined });
    expect(report.archive.map((f) => [f.code, f.stream])).toEqual([["stream-unrecorded", "delta"]]);
  });

  it("reports files outside streams/ in a full run", async () => {
    w.ports.objects.objects.set("notes.txt", Buffer.from("x"));
    w.ports.objects.objects.set("keys/readme", Buffer.from("x"));
    w.ports.objects.objects.set("streams/alpha/extra", Buffer.from("x"));
    const report = await run(w);
    expect(allFailures(report).map((f) => [f.code, f.at])).toEqual([
      ["unexpected-object", "keys/readme"],
      ["unexpected-object", "notes.txt"],
      ["unexpected-object", "streams/alpha/extra"],
    ]);
  });

  it("takes the keys of a stream created after the streams were listed as the layout's, and still reports a stray one there", async () => {
    // gamma's first commit lands between the listing of the streams and the listing of every key (a sweep's first
    // slice, which checks only the layout, while a sink takes a new stream's first events).
    await w.sink.submit("gamma", [producer(w.ports, "agent-2").event("gamma-0")]);
    w.ports.objects.objects.set("streams/gamma/extra", Buffer.from("x"));
    const report = await runVerification(
      {
        objects: w.ports.objects,
        deployment: DEPLOYMENT,
        listStreams: async () => [SYSTEM_STREAM, "alpha", "beta"],
      },
      w.trust,
      { mode: "full", layout: true, sweep: { pause: () => true } },
    );
    expect(allFailures(report).map((f) => [f.code, f.at])).toEqual([
      ["unexpected-object", "streams/gamma/extra"],
    ]);
  });

  it("reports a head whose frontier was corrupted", async () => {
    const head = w.ports.heads.heads.get("alpha")!;
    head.frontier[0] = "00".repeat(32);
    expect(codes(await run(w))).toEqual(["head-mismatch"]);
  });

  it("reports a forked checkpoint kept in the head store", async () => {
    const head = w.ports.heads.heads.get("alpha")!;
    head.checkpoint = await signCheckpoint(
      {
        origin: `${DEPLOYMENT}/alpha`,
        size: head.size,
        root: sha256("another root"),
        head: Buffer.from(head.headHash, "hex"),
        time: "2026-11-24T12:00:00.000Z",
      },
      w.ports.signer,
    );
    expect(codes(await run(w))).toEqual(["checkpoint-fork"]);
  });

  it("reports a head store value that is not a head", async () => {
    const heads = {
      get: async (s: string) => (s === "alpha" ? "{not json" : w.ports.heads.get(s)),
      streams: () => w.ports.heads.streams(),
    };
    const report = await runVerification(
      { objects: w.ports.objects, deployment: DEPLOYMENT, heads },
      w.trust,
      {
        mode: "full",
      },
    );
    expect(codes(report)).toEqual(["head-malformed"]);
  });

  /** alpha's head as at size 2 for its first `stale` reads, then as stored; a run over it that records its pauses. */
  async function withStaleHead(stale: number, tries: number) {
    const real = w.ports.heads.heads.get("alpha")!;
    let reads = 0;
    const heads = {
      get: async (s: string) =>
        s === "alpha" && reads++ < stale ? { ...real, size: 2, frontier: [] } : w.ports.heads.get(s),
      streams: () => w.ports.heads.streams(),
    };
    const slept: number[] = [];
    const walked: string[] = [];
    const report = await runVerification(
      { objects: w.ports.objects, deployment: DEPLOYMENT, heads },
      w.trust,
      {
        mode: "full",
        settle: { tries, delayMs: 5 },
        sleep: async (ms) => {
          slept.push(ms);
        },
        progress: { onStream: (stream) => void walked.push(stream) },
      },
    );
    return { report, slept, reads, walked };
  }

  it("re-reads a head that looks rolled back before reporting it (a writer between checkpoint and head), without walking the stream again", async () => {
    const { report, slept, reads, walked } = await withStaleHead(1, 2);
    expect(allFailures(report)).toEqual([]);
    expect(slept).toEqual([5]);
    expect(reads).toBe(2);
    expect(walked.filter((s) => s === "alpha")).toHaveLength(1);
  });

  it("reports a head that stays behind the newest checkpoint after every re-read", async () => {
    const { report, slept, reads } = await withStaleHead(Number.POSITIVE_INFINITY, 3);
    expect(allFailures(report).map((f) => `${f.code} ${f.stream} ${f.at}`)).toEqual([
      "head-rollback alpha 2",
    ]);
    expect(slept).toEqual([5, 10, 20]);
    expect(reads).toBe(4);
  });

  it("resumes incrementally and still knows the set of streams from the saved _system state", async () => {
    const first = await run(w);
    deleteStreamObjects(w, "alpha");
    w.ports.heads.heads.delete("alpha");
    const second = await run(w, { mode: "incremental", states: first.states });
    expect(allFailures(second).map((f) => [f.code, f.stream])).toEqual([["stream-missing", "alpha"]]);
  });
});

describe("StreamVerifier continuation after a gap (FORMAT.md §11)", () => {
  it("reports a segment deleted mid-log as a gap only, not as truncation", async () => {
    const w = await world();
    w.ports.objects.objects.delete(segmentKey("alpha", 2));
    const report = await run(w);
    expect(allFailures(report).map((f) => [f.code, f.at])).toEqual([["segment-gap", 2]]);
    expect(report.streams.find((s) => s.stream === "alpha")!.warnings).toEqual([]);
  });

  it("reports a record deleted inside a segment as a gap at its index", async () => {
    const w = await world();
    const key = segmentKey("alpha", 2);
    const lines = Buffer.from(w.ports.objects.objects.get(key)!).toString("utf8").split("\n");
    w.ports.objects.objects.set(key, Buffer.from(`${lines[1]}\n`));
    const report = await run(w);
    expect(allFailures(report).map((f) => [f.code, f.at])).toEqual([["record-gap", 2]]);
  });
});

describe("StreamVerifier order", () => {
  it("refuses a checkpoint fed after the walk passed its size instead of letting a wrong root pass", async () => {
    const w = await world();
    const objects = w.ports.objects.objects;
    const v = new StreamVerifier("alpha", { trusted: [w.ports.signer.key], deployment: DEPLOYMENT });
    for (const key of [...objects.keys()].filter((k) => parseStoreKey(k)?.kind === "segments").sort())
      if (parseStoreKey(key)?.stream === "alpha") v.addSegment(key, objects.get(key)!);
    const wrong = await signCheckpoint(
      {
        origin: `${DEPLOYMENT}/alpha`,
        size: 4,
        root: sha256("x"),
        head: sha256("y"),
        time: "2026-11-24T12:00:00.000Z",
      },
      w.ports.signer,
    );
    expect(() => v.addCheckpoint(checkpointKey("alpha", 4), wrong)).toThrow(VerifierUsageError);
  });

  it("checks a checkpoint fed after the segments when the walk has not passed its size yet", async () => {
    const w = await world();
    const objects = w.ports.objects.objects;
    const v = new StreamVerifier("alpha", { trusted: [w.ports.signer.key], deployment: DEPLOYMENT });
    v.addSegment(segmentKey("alpha", 0), objects.get(segmentKey("alpha", 0))!);
    const wrong = await signCheckpoint(
      {
        origin: `${DEPLOYMENT}/alpha`,
        size: 4,
        root: sha256("x"),
        head: sha256("y"),
        time: "2026-11-24T12:00:00.000Z",
      },
      w.ports.signer,
    );
    v.addCheckpoint(checkpointKey("alpha", 4), wrong);
    v.addSegment(segmentKey("alpha", 2), objects.get(segmentKey("alpha", 2))!);
    expect(v.finish().failures.map((f) => f.code)).toEqual([
      "checkpoint-root-mismatch",
      "checkpoint-head-mismatch",
    ]);
  });
});

describe("the verifier reports, never throws, on stored bytes", () => {
  for (const [what, value] of [
    ["a number beyond double range", "1e400"],
    ["a lone surrogate", '"\\ud800"'],
  ] as const) {
    it(`reports a record whose data holds ${what} (producer keys given)`, async () => {
      const w = await world();
      const key = segmentKey("alpha", 0);
      const text = Buffer.from(w.ports.objects.objects.get(key)!).toString("utf8");
      const edited = text.replace(/"data":\{[^}]*\}/, `"data":{"x":${value}}`);
      expect(edited).not.toBe(text);
      const objects = new Map(
        [...w.ports.objects.objects].filter(([k]) => k.startsWith("streams/alpha/")),
      ).set(key, Buffer.from(edited));
      const report = verifyStream("alpha", objects, {
        trusted: [w.ports.signer.key],
        deployment: DEPLOYMENT,
        producerKeys: w.producerKeys,
      });
      expect(report.failures.map((f) => f.code)).toContain("record-malformed");
    });
  }
});

describe("Frontier beyond 32 bits (issue 10 item 7e)", () => {
  it("merges every trailing subtree when the size is 2^33 − 1", () => {
    const size = 2 ** 33 - 1;
    const nodes = Array.from({ length: 33 }, (_, i) => sha256(`node ${i}`));
    const f = new Frontier(size, [...nodes]);
    const leaf = sha256("leaf");
    f.append(leaf);
    let expected = leaf;
    for (let i = nodes.length - 1; i >= 0; i--) expected = nodeHash(nodes[i]!, expected);
    expect(f.size).toBe(2 ** 33);
    expect(f.hashes).toEqual([expected]);
  });

  it("refuses to grow past 2^53 − 1 leaves", () => {
    const f = new Frontier(
      Number.MAX_SAFE_INTEGER,
      Array.from({ length: 53 }, (_, i) => sha256(`n${i}`)),
    );
    expect(() => f.append(sha256("leaf"))).toThrow(RangeError);
  });
});

/**
 * A stream of one record whose stored line is `edit` applied to the sink's own line for `event`, under a checkpoint
 * the sink's key signed over the edited line's bytes: everything but the line itself is consistent, as a sink that
 * wrote it would make it.
 */
async function oneLineStream(
  w: World,
  event: SignedEvent,
  edit: (line: string) => string | Buffer,
): Promise<{ objects: Map<string, Uint8Array>; edited: boolean }> {
  const sealed = sealRecord({
    v: 1,
    stream: "alpha",
    index: 0,
    prev: "0".repeat(64),
    received: "2026-11-24T12:00:00.000Z",
    producer: "agent-1",
    event,
  });
  const edited = edit(sealed.bytes.toString("utf8"));
  const line = typeof edited === "string" ? Buffer.from(edited) : edited;
  const hash = sha256(line);
  const checkpoint = await signCheckpoint(
    // The root of a tree of one leaf is that leaf (RFC 9162 §2.1.1).
    {
      origin: `${DEPLOYMENT}/alpha`,
      size: 1,
      root: leafHash(hash),
      head: hash,
      time: "2026-11-24T12:00:00.000Z",
    },
    w.ports.signer,
  );
  const objects = new Map<string, Uint8Array>([
    [segmentKey("alpha", 0), Buffer.concat([line, Buffer.from("\n")])],
    [checkpointKey("alpha", 1), Buffer.from(checkpoint)],
  ]);
  return { objects, edited: !line.equals(sealed.bytes) };
}

describe("a stored record line is JSON under the rules the sink accepted its event by (FORMAT.md §3, §5)", () => {
  /** An event of a producer whose key the verifier is given with producer keys. */
  const agentEvent = (w: World, data?: unknown) => {
    const agent = producer(w.ports, "agent-1");
    w.producerKeys.set(keyFingerprint(agent.publicKey), agent.publicKey);
    return agent.event("e-1", data);
  };
  const verify = (w: World, objects: Map<string, Uint8Array>, withKeys: boolean) =>
    verifyStream("alpha", objects, {
      trusted: [w.ports.signer.key],
      deployment: DEPLOYMENT,
      ...(withKeys ? { producerKeys: w.producerKeys } : {}),
    }).failures.map((f) => [f.code, f.at]);

  it("verifies the line as the sink wrote it (the fixture is consistent)", async () => {
    const w = await world();
    const { objects } = await oneLineStream(w, agentEvent(w), (line) => line);
    expect(verify(w, objects, false)).toEqual([]);
    expect(verify(w, objects, true)).toEqual([]);
  });

  for (const [what, data, edit] of [
    ["a record member written twice", undefined, (l: string) => l.replace('"v":1}', '"v":1,"v":1}')],
    [
      "an event member written twice, the last one the signed one",
      undefined,
      (l: string) => l.replace('"event":{', '"event":{"id":"forged",'),
    ],
    [
      "two `constructor` members in event data",
      { constructor: "signed" },
      (l: string) => l.replace('"data":{"constructor":', '"data":{"constructor":"forged","constructor":'),
    ],
    ["a lone surrogate escape", undefined, (l: string) => l.replace('"search"', '"\\ud800"')],
    [
      "a lone surrogate escape in a member name",
      undefined,
      (l: string) => l.replace('"gen_ai.tool.name"', '"\\udfff"'),
    ],
    ["a number beyond double range", undefined, (l: string) => l.replace('"search"', "1e400")],
    [
      "bytes that are not UTF-8",
      undefined,
      (l: string) => {
        const bytes = Buffer.from(l.replace('"search"', '"s#arch"'));
        bytes[bytes.indexOf("#")] = 0xff;
        return bytes;
      },
    ],
  ] as const) {
    it(`reports a line holding ${what} as record-malformed, with and without producer keys`, async () => {
      // Prepare: a sink that signs a checkpoint over the line it stored, so only the line can be reported.
      const w = await world();
      const { objects, edited } = await oneLineStream(w, agentEvent(w, data), edit);
      expect(edited).toBe(true);
      // Act
      const without = verify(w, objects, false);
      const withKeys = verify(w, objects, true);
      // Assess: one finding, the line itself — never a record read two ways (JSON.parse keeps the last member).
      expect(without).toEqual([["record-malformed", 0]]);
      expect(withKeys).toEqual([["record-malformed", 0]]);
    });
  }
});

describe("FORMAT.md rules an independent verifier relies on (issue 10 item 18)", () => {
  it("a record with a member §5 does not define is malformed", async () => {
    const w = await world();
    const key = segmentKey("alpha", 0);
    const text = Buffer.from(w.ports.objects.objects.get(key)!).toString("utf8");
    const objects = new Map([...w.ports.objects.objects].filter(([k]) => k.startsWith("streams/alpha/"))).set(
      key,
      Buffer.from(text.replace('"v":1}', '"v":1,"zz":0}')),
    );
    const report = verifyStream("alpha", objects, { trusted: [w.ports.signer.key] });
    expect(report.failures.map((f) => [f.code, f.at])).toContainEqual(["record-malformed", 0]);
  });

  for (const [what, edit] of [
    ["extension lines in another order", (t: string) => t.replace(/(head \S+)\n(time \S+)\n/, "$2\n$1\n")],
    ["a duplicated time line", (t: string) => t.replace(/(time \S+\n)/, "$1$1")],
    ["a time without Z", (t: string) => t.replace(/Z\n$/, "+00:00\n")],
  ] as const) {
    it(`a checkpoint with ${what} is malformed`, async () => {
      const w = await world();
      const key = checkpointKey("alpha", 2);
      const text = Buffer.from(w.ports.objects.objects.get(key)!).toString("utf8");
      const [body] = text.split("\n\n");
      const cp = await import("../src/checkpoint.ts");
      expect(() => cp.parseCheckpointText(edit(`${body}\n`))).toThrow(/extension|time/);
    });
  }

  it("a checkpoint of size 0 is written without a head line, even when given the empty head's zero hash", async () => {
    const w = await world();
    const cp = await import("../src/checkpoint.ts");
    const signed = await cp.signCheckpoint(
      {
        origin: `${DEPLOYMENT}/alpha`,
        size: 0,
        root: sha256(""),
        head: Buffer.alloc(32),
        time: "2026-11-24T12:00:00.000Z",
      },
      w.ports.signer,
    );
    expect(cp.openCheckpoint(signed, [w.ports.signer.key]).ok).toBe(true);
  });

  it("without a deployment name, the origin must be the signing key's name and the stream", async () => {
    const w = await world();
    const objects = new Map([...w.ports.objects.objects].filter(([k]) => k.startsWith("streams/alpha/")));
    const renamed = new Map([...objects].map(([k, v]) => [k.replace("/alpha/", "/beta/"), v]));
    const report = verifyStream("beta", renamed, { trusted: [w.ports.signer.key] });
    expect(new Set(report.failures.map((f) => f.code))).toContain("checkpoint-origin-mismatch");
  });
});

describe("a run can be stopped", () => {
  it("rejects with the signal's reason at the next segment instead of walking the rest of the archive", async () => {
    // Prepare: abort as soon as the first segment has been verified.
    const w = await world();
    const controller = new AbortController();
    let segments = 0;
    // Act
    const result = run(w, {
      signal: controller.signal,
      progress: {
        onSegment: () => {
          segments++;
          controller.abort(new Error("stopping"));
        },
      },
    });
    // Assess: a complete run would read the 3 segments of each stream (and _system's).
    await expect(result).rejects.toThrow("stopping");
    expect(segments).toBe(1);
  });

  it("does not start when the signal is already aborted", async () => {
    const w = await world();
    await expect(run(w, { signal: AbortSignal.abort(new Error("stopped")) })).rejects.toThrow("stopped");
  });
});

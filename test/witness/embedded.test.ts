/**
 * A running embedded sink cosigned by real witnesses (litewitness v0.6.1, test/witness/litewitness.ts): the sink
 * submits each stream's newest checkpoint after commits, stores and serves the cosigned note; `auditsink verify`
 * checks a witness policy that is met and one that is not; a witness that is down changes nothing for ingest and
 * is reported by /healthz, /metrics and the scheduled verifier; a witness refuses a forked checkpoint signed with
 * the sink's own key; and witnesses with an ECDSA checkpoint key are a clear start-up error.
 */
import { generateKeyPairSync } from "node:crypto";
import { readFile } from "node:fs/promises";
import { AuditClient, type AuditClientOptions, WitnessPolicyError } from "@auditsink/client";
import {
  addCheckpointRequest,
  checkpointKeyFor,
  checkWitnessPolicy,
  cosignedKey,
  formatVerifierKey,
  leafHash,
  makeNoteKey,
  makeWitnessKey,
  originFor,
  parseAddCheckpointResponse,
  parseNote,
  type Receipt,
  signCheckpoint,
  witnessPolicy,
} from "@auditsink/core";
import { parseWitnessList, type WitnessOptions } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../cli/helpers.ts";
import { objectFile, testProducer, testSinks } from "../embedded/helpers.ts";
import { freePort } from "../emulators/harness.ts";
import { LITEWITNESS_BUILD_TIMEOUT_MS, type Litewitness, startLitewitness } from "./litewitness.ts";

const sinks = testSinks("auditsink-witness-");
const STREAM = "agents.alpha";
let sinkCount = 0;

/** A sink of its own deployment (so its stream is a log no witness has seen), Ed25519-keyed, with witnesses. */
async function startWitnessed(witnesses: WitnessOptions) {
  const dataDir = await sinks.fresh();
  const deployment = `sink.test/witnessed-${++sinkCount}`;
  const origin = originFor(deployment, STREAM);
  const started = await sinks.start(dataDir, {
    deployment,
    checkpointKey: "ed25519",
    witnesses: { intervalSeconds: 0, streams: ["agents.*"], ...witnesses },
  });
  const p = testProducer("bot");
  const res = await fetch(`${started.sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${started.sink.local.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
  const send = async (n: number): Promise<Receipt[]> => {
    const r = await fetch(`${started.sink.url}/v1/streams/${STREAM}/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents-batch+json" },
      body: JSON.stringify(Array.from({ length: n }, () => p.event())),
    });
    expect(r.status).toBe(200);
    return ((await r.json()) as { receipts: Receipt[] }).receipts;
  };
  // The per-origin verifier key a witness pins for this stream (the deployment key named after the origin).
  const logKey = formatVerifierKey(checkpointKeyFor(started.sink.local.signingKey.signer.key, origin));
  return { ...started, dataDir, send, logKey, origin, producer: p };
}

/** A log's (type 0x01) verifier key: not a witness key. */
const logKeyOf = () => formatVerifierKey(makeNoteKey("log.test/a", generateKeyPairSync("ed25519").publicKey));

type CheckpointJson = { size: number; checkpoint: string; cosigned?: { size: number; checkpoint: string } };

/** Polls the checkpoint route until its cosigned checkpoint reaches `size`. */
async function cosignedAt(url: string, size: number): Promise<CheckpointJson> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const body = (await (await fetch(`${url}/v1/streams/${STREAM}/checkpoint`)).json()) as CheckpointJson;
    if ((body.cosigned?.size ?? 0) >= size) return body;
    if (Date.now() > deadline)
      throw new Error(`no cosigned checkpoint of size ${size}: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const metric = (text: string, line: string) =>
  Number(
    text
      .split("\n")
      .find((l) => l.startsWith(`${line} `))
      ?.split(" ")[1] ?? Number.NaN,
  );

describe("an embedded sink cosigned by litewitness", () => {
  let w1: Litewitness;
  let w2: Litewitness;
  beforeAll(async () => {
    [w1, w2] = await Promise.all([
      startLitewitness("witness.test/one"),
      startLitewitness("witness.test/two"),
    ]);
  }, LITEWITNESS_BUILD_TIMEOUT_MS);
  afterAll(async () => {
    await Promise.all([w1?.close(), w2?.close()]);
  });

  it("stores and serves checkpoints cosigned by two witnesses; verify checks a quorum that is met and one that is not", async () => {
    // Prepare
    const {
      sink,
      send,
      logKey,
      dataDir,
      close,
      origin: ORIGIN,
    } = await startWitnessed({
      witnesses: [
        { url: w1.url, verifierKey: w1.verifierKey },
        { url: w2.url, verifierKey: w2.verifierKey },
      ],
    });
    await w1.addLog(ORIGIN, logKey);
    await w2.addLog(ORIGIN, logKey);

    // Act: two commits; the second is submitted with a consistency proof from the first.
    await send(3);
    const first = await cosignedAt(sink.url, 3);
    await send(2);
    const second = await cosignedAt(sink.url, 5);

    // Assess: the cosigned note is the sink's checkpoint with both witnesses' cosignatures, stored write-once.
    expect(first.cosigned!.size).toBe(3);
    const note = parseNote(second.cosigned!.checkpoint);
    expect(note.signatures.map((s) => s.name)).toEqual([ORIGIN, "witness.test/one", "witness.test/two"]);
    expect(note.text).toBe(parseNote(second.checkpoint).text);
    const policy = witnessPolicy([w1.verifierKey, w2.verifierKey]);
    expect(checkWitnessPolicy(note, policy)).toMatchObject({ met: true, missing: [] });
    const stored = await readFile(objectFile(dataDir, cosignedKey(STREAM, 5)), "utf8");
    expect(stored).toBe(second.cosigned!.checkpoint);
    expect((await w1.listLogs()).find((l) => l.origin === ORIGIN)?.size).toBe(5);
    expect((await w2.listLogs()).find((l) => l.origin === ORIGIN)?.size).toBe(5);
    const metrics = await (await fetch(`${sink.url}/metrics`)).text();
    expect(
      metric(metrics, 'auditsink_witness_submissions_total{witness="witness.test/one",outcome="cosigned"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(metric(metrics, 'auditsink_witness_up{witness="witness.test/two"}')).toBe(1);
    // The tlog-tiles checkpoint is the cosigned one: what a client with a witness policy accepts.
    const tlog = await fetch(`${sink.url}/tlog/${STREAM}/checkpoint`);
    expect(await tlog.text()).toBe(second.cosigned!.checkpoint);
    const health = (await (await fetch(`${sink.url}/healthz`)).json()) as { witnesses: { status: string } };
    expect(health.witnesses.status).toBe("ok");
    const vkey = sink.local.signingKey.verifierKey;
    await close();

    const met = await cli([
      "verify",
      dataDir,
      "--jobs",
      "1",
      "--verifier-key",
      vkey,
      "--stream",
      STREAM,
      "--witness",
      w1.verifierKey,
      "--witness",
      w2.verifierKey,
    ]);
    expect(met.code, met.out + met.err).toBe(0);
    expect(met.out).toContain("witnessed up to size 5: cosigned by witness.test/one, witness.test/two");

    // A policy naming a witness that never cosigned: 2 of (one, stranger) is not met.
    const stranger = makeWitnessKey("witness.test/stranger", Buffer.alloc(32, 7)).verifierKey;
    const unmet = await cli([
      "verify",
      dataDir,
      "--jobs",
      "1",
      "--verifier-key",
      vkey,
      "--stream",
      STREAM,
      "--witness",
      w1.verifierKey,
      "--witness",
      stranger,
      "--witness-quorum",
      "2",
      "--witness-max-lag",
      "0",
      "--json",
    ]);
    expect(unmet.code).not.toBe(0);
    const report = JSON.parse(unmet.out) as { streams: { failures: { code: string; message: string }[] }[] };
    const codes = report.streams[0]!.failures.map((f) => f.code);
    expect(codes).toEqual(["witness-policy-unmet"]);
    expect(report.streams[0]!.failures[0]!.message).toMatch(/missing witness\.test\/stranger/);
  });

  it("keeps ingesting while a witness is down, and says so in /healthz, /metrics and a verifier finding", async () => {
    // Prepare: one live witness, one that nothing answers for; both required.
    const downPort = await freePort();
    const down = makeWitnessKey("witness.test/down", Buffer.alloc(32, 9));
    const {
      sink,
      send,
      logKey,
      origin: ORIGIN,
    } = await startWitnessed({
      witnesses: [
        { url: w1.url, verifierKey: w1.verifierKey },
        { url: `http://127.0.0.1:${downPort}`, verifierKey: down.verifierKey },
      ],
      quorum: 2,
      maxLagSeconds: 1,
    });
    await w1.addLog(ORIGIN, logKey);

    // Act
    const receipts = await send(4);

    // Assess: every event acknowledged; the live witness cosigned; the down one is reported, not fatal.
    expect(receipts.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    const body = await cosignedAt(sink.url, 4);
    expect(parseNote(body.cosigned!.checkpoint).signatures.map((s) => s.name)).toEqual([
      ORIGIN,
      "witness.test/one",
    ]);
    const health = await until("the failure in /healthz", async () => {
      const r = await fetch(`${sink.url}/healthz`);
      const h = (await r.json()) as { status: string; witnesses: Record<string, unknown> };
      return h.witnesses.status === "failing" ? { status: r.status, h } : undefined;
    });
    expect(health.status).toBe(200);
    expect(health.h.status).toBe("ok");
    expect(health.h.witnesses).toMatchObject({
      reasons: ["witness-failing", "witness-quorum-missed"],
      streamsBelowQuorum: [STREAM],
      witnesses: [
        { name: "witness.test/one", up: true },
        { name: "witness.test/down", up: false, lastFailure: { outcome: "unreachable", stream: STREAM } },
      ],
    });
    const metrics = await (await fetch(`${sink.url}/metrics`)).text();
    expect(metric(metrics, 'auditsink_witness_up{witness="witness.test/down"}')).toBe(0);
    expect(
      metric(
        metrics,
        'auditsink_witness_submissions_total{witness="witness.test/down",outcome="unreachable"}',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(metric(metrics, "auditsink_witness_quorum_missed_streams")).toBe(1);

    // The checkpoint has waited longer than the allowed lag (1 s) for a quorum: the scheduled verifier says so.
    await new Promise((r) => setTimeout(r, 1_100));
    const run = await sink.verifier.runOnce();
    const finding = run.failures.find((f) => f.code === "witness-policy-unmet");
    expect(finding).toMatchObject({ stream: STREAM, at: 4 });
    // The finding stands (and alerted), but a witness's outage never turns the sink's health to 503.
    const after = await fetch(`${sink.url}/healthz`);
    expect(after.status).toBe(200);
    expect(((await after.json()) as { findings: { codes: string[] } }).findings.codes).toContain(
      "witness-policy-unmet",
    );
  });

  it("the SDK waits until a receipt is covered by a checkpoint its witness policy accepts, and reports one it does not", async () => {
    // Prepare
    const { sink, logKey, origin, producer } = await startWitnessed({
      witnesses: [{ url: w1.url, verifierKey: w1.verifierKey }],
    });
    await w1.addLog(origin, logKey);
    const client = (witnesses: AuditClientOptions["witnesses"]) =>
      AuditClient.create({
        endpoint: sink.url,
        producerKey: producer.privateKey,
        sinkKey: sink.local.signingKey.verifierKey,
        stream: STREAM,
        source: "agent://bot",
        ...(witnesses ? { witnesses } : {}),
      });
    const witnessed = await client({ verifierKeys: [w1.verifierKey] });
    const stranger = makeWitnessKey("witness.test/stranger", Buffer.alloc(32, 5)).verifierKey;
    const strict = await client({ verifierKeys: [w1.verifierKey, stranger], quorum: 2 });
    try {
      // Act
      const receipt = await witnessed.send({ type: "ai.agent.tool_call", data: { step: 1 } });
      const covered = await witnessed.waitWitnessed(receipt, { pollMs: 50, timeoutMs: 10_000 });

      // Assess
      expect(covered.size).toBeGreaterThan(receipt.index);
      expect(covered.witnesses.map((w) => w.name)).toEqual(["witness.test/one"]);
      const refused = await strict.checkWitnessed(STREAM).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(WitnessPolicyError);
      expect((refused as Error).message).toMatch(/missing witness\.test\/stranger/);
    } finally {
      await witnessed.close();
      await strict.close();
    }
  });

  it("serves the cosigned checkpoint at /tlog/{stream}/checkpoint while newer ones wait, and the tiles under it", async () => {
    // Prepare: the first round runs at once, the next not before 60 s.
    const { sink, send, logKey, origin } = await startWitnessed({
      witnesses: [{ url: w2.url, verifierKey: w2.verifierKey }],
      intervalSeconds: 60,
    });
    await w2.addLog(origin, logKey);
    const first = await send(3);
    await cosignedAt(sink.url, 3);
    await send(2);

    // Act
    const checkpoint = await (await fetch(`${sink.url}/tlog/${STREAM}/checkpoint`)).text();
    const tile = await fetch(`${sink.url}/tlog/${STREAM}/tile/0/000.p/3`);

    // Assess: a tlog client sees size 3, cosigned, and the level-0 tile of width 3 holds its three leaves.
    const note = parseNote(checkpoint);
    expect(note.text.split("\n")[1]).toBe("3");
    expect(note.signatures.map((s) => s.name)).toEqual([origin, "witness.test/two"]);
    expect(tile.status).toBe(200);
    const leaves = first.map((r) => leafHash(Buffer.from(r.recordHash, "hex")));
    expect(Buffer.from(await tile.arrayBuffer())).toEqual(Buffer.concat(leaves));
    const json = (await (
      await fetch(`${sink.url}/v1/streams/${STREAM}/checkpoint`)
    ).json()) as CheckpointJson;
    expect(json).toMatchObject({ size: 5, cosigned: { size: 3 } });
  });

  it("a witness refuses a forked checkpoint signed with the sink's own key", async () => {
    // Prepare: a sink cosigned by w2 up to size 6.
    const {
      sink,
      send,
      logKey,
      origin: ORIGIN,
    } = await startWitnessed({
      witnesses: [{ url: w2.url, verifierKey: w2.verifierKey }],
    });
    await w2.addLog(ORIGIN, logKey);
    await send(6);
    await cosignedAt(sink.url, 6);

    // Act: the same key signs another history (a split view): another root at size 6, and a larger tree whose
    // "consistency proof" cannot link to what the witness saw.
    const signer = sink.local.signingKey.signer;
    const fork = (size: number, fill: number) =>
      signCheckpoint(
        {
          origin: ORIGIN,
          size,
          root: Buffer.alloc(32, fill),
          head: Buffer.alloc(32, fill),
          time: new Date().toISOString(),
        },
        signer,
      );
    const submit = async (old: number, proof: Buffer[], signed: string) => {
      const r = await fetch(`${w2.url}/add-checkpoint`, {
        method: "POST",
        body: addCheckpointRequest(old, proof, signed),
      });
      return parseAddCheckpointResponse(r.status, r.headers.get("content-type"), await r.text());
    };
    const sameSize = await submit(6, [], await fork(6, 1));
    const larger = await submit(6, [Buffer.alloc(32, 2), Buffer.alloc(32, 3)], await fork(9, 4));

    // Assess: both refused (litewitness answers 422 for each), nothing cosigned; the witness still holds size 6.
    expect(sameSize).toMatchObject({ kind: "refused", code: "witness-bad-proof" });
    expect(larger).toMatchObject({ kind: "refused", code: "witness-bad-proof" });
    expect((await w2.listLogs()).find((l) => l.origin === ORIGIN)?.size).toBe(6);
  });

  it("refuses to start with witnesses and an ECDSA checkpoint key, changing nothing", async () => {
    const dataDir = await sinks.fresh();
    await expect(
      sinks.start(dataDir, { witnesses: { witnesses: [{ url: w1.url, verifierKey: w1.verifierKey }] } }),
    ).rejects.toThrow(/witnesses need an Ed25519 checkpoint key/);
    await expect(
      sinks.start(dataDir, { witnesses: { witnesses: [{ url: "nope", verifierKey: w1.verifierKey }] } }),
    ).rejects.toThrow(/Invalid URL/);
    // What --witness and AUDITSINK_WITNESSES give: "<URL> <vkey>" entries, one per line or comma-separated.
    expect(parseWitnessList(`${w1.url} ${w1.verifierKey}\n# a comment\n${w2.verifierKey} ${w2.url}`)).toEqual(
      [
        { url: w1.url, verifierKey: w1.verifierKey },
        { url: w2.url, verifierKey: w2.verifierKey },
      ],
    );
    expect(() => parseWitnessList(w1.verifierKey)).toThrow(/must be "<http\(s\) URL> <verifier key>"/);
    expect(() => parseWitnessList(`${w1.url} ${logKeyOf()}`)).toThrow(/not a cosignature\/v1 key/);
  });
});

/**
 * The AWS runtime with a KMS Ed25519 checkpoint key and witnesses, on the emulators (moto with the tests' Ed25519
 * extension, DynamoDB Local) and two real litewitness processes (filippo.io/torchwood v0.6.1): the Lambda handlers
 * commit, Go's x/mod note verifies their checkpoints, the sequencer gets them cosigned and stores the cosigned
 * note, the query function serves it, and the AWS verifier's witness policy is met, or reports
 * `witness-policy-unmet` when it is not.
 */
import {
  AwsRuntime,
  AwsVerifier,
  createClients,
  createSequencerHandler,
  settingsFromEnv,
  submitToWitnesses,
} from "@auditsink/aws";
import {
  cosignedKey,
  parseNote,
  parseVerifierKey,
  parseWitnessKey,
  type Receipt,
  verifyReceipt,
} from "@auditsink/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { goVerify } from "../embedded/go-ckpt.ts";
import { type Emulators, startEmulators } from "../emulators/harness.ts";
import { LITEWITNESS_BUILD_TIMEOUT_MS, type Litewitness, startLitewitness } from "../witness/litewitness.ts";
import {
  httpEvent,
  lambdaContext,
  ORIGIN,
  type Provisioned,
  provision,
  registerProducer,
  useEmulators,
} from "./fixtures.ts";
import { InProcessWake, type SequencerHandler, startInvokeEndpoint } from "./sequencer-wake.ts";

type HttpHandler = (e: APIGatewayProxyEventV2, c: unknown) => Promise<APIGatewayProxyResult>;

let emulators: Emulators;
let p: Provisioned;
let w1: Litewitness;
let w2: Litewitness;
let ingestHttp: HttpHandler;
let query: HttpHandler;
const lambda = new InProcessWake();
let invokeEndpoint: { url: string; stop(): Promise<void> } | undefined;

beforeAll(async () => {
  [emulators, w1, w2] = await Promise.all([
    startEmulators(),
    startLitewitness("witness.test/aws-one"),
    startLitewitness("witness.test/aws-two"),
  ]);
  useEmulators(emulators);
  p = await provision({ keySpec: "ECC_NIST_EDWARDS25519" });
  invokeEndpoint = await startInvokeEndpoint(lambda);
  Object.assign(process.env, p.env, {
    AWS_ENDPOINT_URL_LAMBDA: invokeEndpoint.url,
    WITNESSES: `${w1.url} ${w1.verifierKey}\n${w2.url} ${w2.verifierKey}`,
    WITNESS_QUORUM: "2",
    // Every run submits (the rate limit is the interval; 0 keeps the test deterministic).
    WITNESS_INTERVAL_SECONDS: "0",
    WITNESS_MAX_LAG_SECONDS: "60",
    WITNESS_STREAMS: "agents.*",
  });
  ingestHttp = (await import("../../functions/ingest-http.ts")).handler as HttpHandler;
  query = (await import("../../functions/query.ts")).handler as HttpHandler;
  const sequencer = (await import("../../functions/sequencer.ts")).handler as unknown as SequencerHandler;
  lambda.container = () => sequencer;
}, LITEWITNESS_BUILD_TIMEOUT_MS);
afterAll(async () => {
  await invokeEndpoint?.stop();
  await Promise.all([w1?.close(), w2?.close(), emulators?.stop()]);
});

const json = (r: APIGatewayProxyResult) => JSON.parse(r.body) as Record<string, unknown>;

/** Posts events to `stream` through the ingest function and waits for the sequencer (and its witness round). */
async function commit(stream: string, ids: string[]) {
  const producer = await registerProducer(p.runtime(), `producer-${stream}`, [stream]);
  const r = await ingestHttp(
    httpEvent(
      "POST",
      `/v1/streams/${stream}/events`,
      ids.map((id) => producer.event(id)),
    ),
    lambdaContext(),
  );
  await lambda.settled();
  expect(r.statusCode).toBe(200);
  return json(r).receipts as Receipt[];
}

/** The stream's verifier key (key name = origin), as `GET /v1/keys?stream=` gives it to a witness. */
async function streamKey(stream: string): Promise<string> {
  const r = await query(
    httpEvent("GET", "/v1/keys", undefined, { query: `stream=${stream}` }),
    lambdaContext(),
  );
  return (json(r).keys as { streamVerifierKey: string }[])[0]!.streamVerifierKey;
}

/** A runtime as a new Lambda container has it: nothing in memory about the witnesses. */
const freshContainer = () => new AwsRuntime(settingsFromEnv(), createClients());

/** A verifier whose clock is `secondsLater` ahead (for the witness lag). */
function verifier(secondsLater = 0) {
  return new AwsVerifier(freshContainer(), () => new Date(Date.now() + secondsLater * 1000));
}

describe("an ECC_NIST_EDWARDS25519 KMS checkpoint key", () => {
  it("signs the handlers' checkpoints as Ed25519 notes that Go's x/mod note verifies with the stream's key", async () => {
    // Act
    const receipts = await commit("plain.ed25519", ["e-1", "e-2"]);
    const keys = json(await query(httpEvent("GET", "/v1/keys"), lambdaContext())).keys as {
      verifierKey: string;
    }[];
    const vkey = await streamKey("plain.ed25519");
    const go = await goVerify({ checkpoints: [{ signed: receipts[1]!.checkpoint, vkey }] });
    // Assess
    expect(receipts.map((r) => r.index)).toEqual([0, 1]);
    const trusted = keys.map((k) => parseVerifierKey(k.verifierKey));
    expect(trusted[0]!.type).toBe(0x01);
    for (const r of receipts) expect(verifyReceipt(r, { trusted }).ok).toBe(true);
    expect(vkey.startsWith(`${ORIGIN}/plain.ed25519+`)).toBe(true);
    expect(go.checkpoints[0]).toMatchObject({ ok: true, origin: `${ORIGIN}/plain.ed25519`, size: 2 });
  }, 60_000); // the first wake-ups cold-start the sequencer (KMS key, heads) on emulators shared by the suite
});

describe("witnesses on AWS", () => {
  it("gets a commit cosigned by both witnesses, stores it write-once, serves it, and meets the verifier's policy", async () => {
    // Prepare
    const stream = "agents.support";
    const vkey = await streamKey(stream);
    await Promise.all([w1.addLog(`${ORIGIN}/${stream}`, vkey), w2.addLog(`${ORIGIN}/${stream}`, vkey)]);
    // Act
    await commit(stream, ["s-1", "s-2", "s-3"]);
    await commit(stream, ["s-4"]);
    const stored = await p.runtime().objects.get(cosignedKey(stream, 4));
    const checkpoint = json(
      await query(httpEvent("GET", `/v1/streams/${stream}/checkpoint`), lambdaContext()),
    );
    const tlog = await query(httpEvent("GET", `/tlog/${stream}/checkpoint`), lambdaContext());
    const run = await verifier(120).run({ remainingMs: () => 300_000 });
    // Assess
    expect(stored).toBeDefined();
    const note = Buffer.from(stored!).toString("utf8");
    const witnessKeys = [w1, w2].map((w) => parseWitnessKey(w.verifierKey));
    const lines = parseNote(note).signatures.map((s) => s.name);
    expect(lines).toEqual(expect.arrayContaining([`${ORIGIN}/${stream}`, ...witnessKeys.map((k) => k.name)]));
    expect(checkpoint.cosigned).toEqual({ size: 4, checkpoint: note });
    expect(tlog.body).toBe(note);
    expect((await w1.listLogs()).find((l) => l.origin === `${ORIGIN}/${stream}`)?.size).toBe(4);
    expect(run.witnessed?.[stream]).toEqual({
      size: 4,
      witnesses: expect.arrayContaining(["witness.test/aws-one", "witness.test/aws-two"]),
    });
    expect(run.alerts.filter((a) => a.stream === stream)).toEqual([]);
  }, 60_000);

  it("reports witness-policy-unmet when a quorum never cosigns and the lag has passed, and commits meanwhile", async () => {
    // Prepare: only one of the two witnesses knows this stream's log, the quorum is two.
    const stream = "agents.billing";
    await w1.addLog(`${ORIGIN}/${stream}`, await streamKey(stream));
    // Act
    const receipts = await commit(stream, ["b-1", "b-2"]);
    const soon = await verifier(0).run({ remainingMs: () => 300_000 });
    const late = await verifier(3600).run({ remainingMs: () => 300_000 });
    const stored = await p.runtime().objects.get(cosignedKey(stream, 2));
    // Assess
    expect(receipts.map((r) => r.index)).toEqual([0, 1]);
    expect(soon.alerts.filter((a) => a.stream === stream && a.code === "witness-policy-unmet")).toEqual([]);
    const unmet = late.alerts.filter((a) => a.stream === stream && a.code === "witness-policy-unmet");
    expect(unmet).toHaveLength(1);
    expect(unmet[0]!.message).toMatch(/2/);
    // What one witness cosigned is stored all the same (it meets a policy of one).
    const lines = parseNote(Buffer.from(stored!).toString("utf8")).signatures.map((s) => s.name);
    expect(lines).toEqual([`${ORIGIN}/${stream}`, "witness.test/aws-one"]);
  }, 60_000);

  it("recovers a witness's size in a new container from its 409 (old 0, then again from its size)", async () => {
    // Prepare: agents.support is cosigned at size 4 by both witnesses (the test above).
    const stream = "agents.support";
    // Act
    const round = await submitToWitnesses(freshContainer(), stream, Date.now() + 60_000);
    // Assess
    expect(round).toMatchObject({ stream, size: 4, failures: [], quorumMet: true });
    expect(round!.cosigned.sort()).toEqual(["witness.test/aws-one", "witness.test/aws-two"]);
  }, 30_000);

  it("submits on the scheduled run a checkpoint no witness cosigned at commit time", async () => {
    // Prepare: committed before the witnesses know the log, so the sequencer's round was refused.
    const stream = "agents.late";
    await commit(stream, ["l-1", "l-2", "l-3"]);
    const before = await p.runtime().objects.get(cosignedKey(stream, 3));
    const vkey = await streamKey(stream);
    await Promise.all([w1.addLog(`${ORIGIN}/${stream}`, vkey), w2.addLog(`${ORIGIN}/${stream}`, vkey)]);
    // Act
    const swept = (await createSequencerHandler(freshContainer())(
      { "detail-type": "Scheduled Event", source: "aws.events" },
      lambdaContext() as never,
    )) as { woken: string[]; submittedToWitnesses?: string[] };
    const after = await p.runtime().objects.get(cosignedKey(stream, 3));
    // Assess
    expect(before).toBeUndefined();
    expect(swept.submittedToWitnesses).toContain(stream);
    expect(after).toBeDefined();
    expect(parseNote(Buffer.from(after!).toString("utf8")).signatures).toHaveLength(3);
  }, 30_000);
});

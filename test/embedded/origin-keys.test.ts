/**
 * Key name = origin (docs/FORMAT.md §2, §8): a running sink signs each stream's checkpoints under the note key
 * name `<deployment>/<stream>`; a key pinned under the deployment name vouches for every stream, one pinned under
 * the origin's name for that stream only; and data directories written before the change (checkpoints signed
 * under the deployment name, test/fixtures/pre-origin-names) still verify — alone and continued by this version —
 * with the core checks, the CLI, the SDK's witness and the embedded scheduled verifier.
 */

import { createPrivateKey } from "node:crypto";
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AuditClient } from "@auditsink/client";
import {
  checkpointKey,
  formatVerifierKey,
  makeNoteKey,
  openCheckpoint,
  parseNote,
  parseVerifierKey,
  type Receipt,
  verifyReceipt,
} from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { cli } from "../cli/helpers.ts";
import { testProducer, testSinks } from "./helpers.ts";

const sinks = testSinks("auditsink-origin-keys-");
const FIXTURES = join(import.meta.dirname, "../fixtures/pre-origin-names");

async function register(url: string, dataDir: string, p: ReturnType<typeof testProducer>) {
  const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const res = await fetch(`${url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
}

async function send(url: string, stream: string, events: unknown[]): Promise<Receipt[]> {
  const res = await fetch(`${url}/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { receipts: Receipt[] }).receipts;
}

const signatureNames = (signed: string) => parseNote(signed).signatures.map((s) => s.name);

describe("checkpoints signed under the origin's name", () => {
  it("a running sink signs each stream under <deployment>/<stream>; the deployment key and /v1/keys?stream= verify them", async () => {
    // Prepare
    const dataDir = await sinks.fresh();
    const { sink } = await sinks.start(dataDir, { deployment: "sink.example/test" });
    const p = testProducer("bot");
    await register(sink.url, dataDir, p);
    const deploymentKey = parseVerifierKey(sink.local.signingKey.verifierKey);

    // Act
    const [a] = await send(sink.url, "agents.a", [p.event()]);
    const [b] = await send(sink.url, "agents.b", [p.event()]);
    const keysA = (await (await fetch(`${sink.url}/v1/keys?stream=agents.a`)).json()) as {
      stream: string;
      keys: { verifierKey: string; streamVerifierKey: string }[];
    };
    const bad = await fetch(`${sink.url}/v1/keys?stream=Not%20a%20stream`);

    // Assess: the signature line names the origin
    expect(signatureNames(a!.checkpoint)).toEqual(["sink.example/test/agents.a"]);
    expect(signatureNames(b!.checkpoint)).toEqual(["sink.example/test/agents.b"]);
    // the deployment's key vouches for both streams, and receipts verify with it
    for (const r of [a!, b!]) {
      expect(verifyReceipt(r, { trusted: [deploymentKey] })).toMatchObject({ ok: true });
      expect(verifyReceipt(r, { trusted: [deploymentKey], deployment: "sink.example/test" })).toMatchObject({
        ok: true,
      });
    }
    // the per-stream key string is the same public key under the origin's name, and vouches for that stream only
    expect(keysA.stream).toBe("agents.a");
    expect(keysA.keys[0]!.verifierKey).toBe(sink.local.signingKey.verifierKey);
    const streamKey = parseVerifierKey(keysA.keys[0]!.streamVerifierKey);
    expect(streamKey.name).toBe("sink.example/test/agents.a");
    expect(openCheckpoint(a!.checkpoint, [streamKey])).toMatchObject({
      ok: true,
      deployment: "sink.example/test",
    });
    expect(verifyReceipt(a!, { trusted: [streamKey] })).toMatchObject({ ok: true });
    expect(openCheckpoint(b!.checkpoint, [streamKey])).toMatchObject({
      ok: false,
      code: "checkpoint-unknown-key",
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { detail: string }).detail).toMatch(/stream/);
    // the scheduled verifier (the sink's own key) and the CLI (pinned deployment key) find nothing wrong
    expect((await sink.verifier.runOnce({ full: true })).failures).toEqual([]);
    const verified = await cli([
      "verify",
      dataDir,
      "--verifier-key",
      sink.local.signingKey.verifierKey,
      "--json",
    ]);
    expect(verified.code, verified.out).toBe(0);
  });

  it("a signature line renamed to another stream's origin does not make a checkpoint that stream's", async () => {
    // Prepare: the note says origin agents.a; its signature line is renamed to agents.b's origin. Signed notes do
    // not sign the key name, and an ECDSA key ID does not depend on it, so only the origin check can refuse it.
    const dataDir = await sinks.fresh();
    const { sink } = await sinks.start(dataDir, { deployment: "sink.example/test" });
    const p = testProducer("bot");
    await register(sink.url, dataDir, p);
    const [a] = await send(sink.url, "agents.a", [p.event()]);
    const deploymentKey = parseVerifierKey(sink.local.signingKey.verifierKey);
    const keyB = makeNoteKey("sink.example/test/agents.b", deploymentKey.publicKey);
    const renamed = {
      ...a!,
      checkpoint: a!.checkpoint.replace("— sink.example/test/agents.a ", "— sink.example/test/agents.b "),
    };

    // Act
    const withDeploymentKey = openCheckpoint(renamed.checkpoint, [deploymentKey]);
    const withKeyB = verifyReceipt(renamed, { trusted: [keyB] });
    const asStreamB = verifyReceipt({ ...renamed, stream: "agents.b" }, { trusted: [keyB] });

    // Assess: the deployment key derives only the origin's own name; agents.b's key speaks for agents.b only
    expect(withDeploymentKey).toMatchObject({ ok: false, code: "checkpoint-unknown-key" });
    expect(withKeyB).toMatchObject({ ok: false, code: "receipt-origin-mismatch" });
    expect(asStreamB).toMatchObject({ ok: false, code: "receipt-origin-mismatch" });
  });
});

describe.each(["ecdsa-p256", "ed25519"])(
  "a data directory written before key name = origin (%s key)",
  (alg) => {
    async function oldDataDir() {
      const dataDir = await sinks.fresh();
      await cp(join(FIXTURES, alg), dataDir, { recursive: true });
      const vkey = (await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim();
      const receipts = JSON.parse(
        await readFile(join(FIXTURES, `${alg}-receipts.json`), "utf8"),
      ) as Receipt[];
      return { dataDir, vkey, receipts };
    }

    it("verifies as stored: its checkpoints and receipts are signed under the deployment name", async () => {
      // Prepare
      const { dataDir, vkey, receipts } = await oldDataDir();
      const key = parseVerifierKey(vkey);
      const stored = await readFile(join(dataDir, "objects", checkpointKey("agents.old", 5)), "utf8");

      // Act
      const verified = await cli(["verify", dataDir, "--verifier-key", vkey, "--json"]);

      // Assess
      expect(signatureNames(stored)).toEqual(["old.example/embedded"]);
      expect(openCheckpoint(stored, [key])).toMatchObject({ ok: true, deployment: "old.example/embedded" });
      for (const r of receipts) expect(verifyReceipt(r, { trusted: [key] })).toMatchObject({ ok: true });
      expect(verified.code, verified.out).toBe(0);
      expect(JSON.parse(verified.out)).toMatchObject({ ok: true, failures: 0 });
    });

    it("continued by this version: old and new checkpoints, old and new receipts, all verify with the one pinned key", async () => {
      // Prepare: the old producer's key, the old receipts, and a witness state holding an old checkpoint
      const { dataDir, vkey, receipts } = await oldDataDir();
      const { sink } = await sinks.start(dataDir);
      const producerKey = createPrivateKey(await readFile(join(FIXTURES, `${alg}-producer.pem`), "utf8"));
      const stateFile = join(dataDir, "..", `${alg}-witness.json`);
      await writeFile(
        stateFile,
        JSON.stringify({ version: 1, checkpoints: { "agents.old": receipts.at(-1)!.checkpoint } }),
      );
      const client = await AuditClient.create({
        endpoint: sink.url,
        producerKey,
        sinkKey: vkey,
        deployment: "old.example/embedded",
        stream: "agents.old",
        source: "agent://old-bot",
        stateFile,
      });
      sinks.after(() => client.close());

      // Act: the SDK sends (and checks consistency from the old checkpoint to the new), then everything is verified
      const fresh = await client.send({ type: "gen_ai.tool.call", data: { "gen_ai.tool.name": "search" } });
      const run = await sink.verifier.runOnce({ full: true });
      await sink.close();
      const receiptsFile = join(dataDir, "..", `${alg}-receipts.jsonl`);
      await writeFile(receiptsFile, [...receipts, fresh].map((r) => JSON.stringify(r)).join("\n"));
      const verified = await cli([
        "verify",
        dataDir,
        "--verifier-key",
        vkey,
        "--receipts",
        receiptsFile,
        "--json",
      ]);
      const listed = await cli([
        "trust",
        dataDir,
        "--verifier-key",
        vkey,
        "--stream",
        "agents.old",
        "--json",
      ]);
      const offered = await cli(["trust", dataDir]);

      // Assess
      expect(fresh.index).toBe(5);
      expect(signatureNames(fresh.checkpoint)).toEqual(["old.example/embedded/agents.old"]);
      expect(signatureNames(receipts[0]!.checkpoint)).toEqual(["old.example/embedded"]);
      expect(run.failures).toEqual([]);
      expect(verified.code, verified.out).toBe(0);
      expect(JSON.parse(verified.out)).toMatchObject({
        ok: true,
        receipts: { given: receipts.length + 1, checked: receipts.length + 1 },
      });
      // `auditsink trust`: the pinned key, and the same key under agents.old's origin, which alone verifies the
      // new checkpoint under the name it was signed with (as Go's sumdb/note pins it: test/go/ckpt)
      expect(listed.code, listed.err).toBe(0);
      const [listedKey] = JSON.parse(listed.out).keys as {
        verifierKey: string;
        streams: { stream: string; origin: string; verifierKey: string }[];
      }[];
      expect(listedKey!.verifierKey).toBe(vkey);
      expect(listedKey!.streams).toHaveLength(1);
      const streamKey = parseVerifierKey(listedKey!.streams[0]!.verifierKey);
      expect(streamKey.name).toBe("old.example/embedded/agents.old");
      expect(streamKey.keyId.equals(parseVerifierKey(vkey).keyId)).toBe(alg === "ecdsa-p256");
      expect(openCheckpoint(fresh.checkpoint, [streamKey])).toMatchObject({ ok: true });
      expect(openCheckpoint(receipts[0]!.checkpoint, [streamKey])).toMatchObject({
        ok: false,
        code: "checkpoint-unknown-key",
      });
      const systemKey = makeNoteKey("old.example/embedded/_system", streamKey.publicKey);
      expect(offered.out).toContain("NOT trusted");
      expect(offered.out).toContain(`_system: ${formatVerifierKey(systemKey)}`);
    });
  },
);

/**
 * The embedded sink's checkpoint key (`--checkpoint-key ed25519|ecdsa-p256`, AUDITSINK_CHECKPOINT_KEY) and its
 * checkpoints as Go's transparency-log packages read them: test/go/ckpt (golang.org/x/mod/sumdb/note and tlog,
 * filippo.io/torchwood) opens a running sink's checkpoints with the per-stream verifier key `/v1/keys?stream=`
 * gives, as Go tooling pins a log (key name = origin).
 */
import { cp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type KeyAlgorithm, parseVerifierKey, type Receipt } from "@auditsink/core";
import { describe, expect, it } from "vitest";
import { goVerify } from "./go-ckpt.ts";
import { testProducer, testSinks } from "./helpers.ts";

const sinks = testSinks("auditsink-checkpoint-key-");
const repo = join(import.meta.dirname, "..", "..");
async function registerAndSend(url: string, dataDir: string, stream: string, n: number): Promise<Receipt[]> {
  const p = testProducer(`bot-${stream}`);
  const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const reg = await fetch(`${url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: p.id, publicKey: p.publicKeySpki, streams: [stream] }),
  });
  expect(reg.status).toBe(201);
  const res = await fetch(`${url}/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(Array.from({ length: n }, () => p.event())),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { receipts: Receipt[] }).receipts;
}

async function streamKey(url: string, stream: string): Promise<string> {
  const body = (await (await fetch(`${url}/v1/keys?stream=${stream}`)).json()) as {
    keys: { streamVerifierKey: string }[];
  };
  return body.keys[0]!.streamVerifierKey;
}

describe.each<[KeyAlgorithm, string, number]>([
  ["ed25519", "Ed25519", 0x01],
  ["ecdsa-p256", "ECDSA P-256", 0x02],
])("--checkpoint-key %s", (algorithm, named, type) => {
  it("creates the key, names its algorithm in the banner, and Go opens every stream's checkpoint with that stream's key only", async () => {
    // Prepare
    const dataDir = await sinks.fresh();
    let printed = "";
    const { sink } = await sinks.start(dataDir, {
      checkpointKey: algorithm,
      deployment: "go.example/log",
      print: (t) => {
        printed += t;
      },
    });

    // Act
    const a = await registerAndSend(sink.url, dataDir, "agents.a", 3);
    const b = await registerAndSend(sink.url, dataDir, "agents.b", 1);
    const keyA = await streamKey(sink.url, "agents.a");
    const keyB = await streamKey(sink.url, "agents.b");
    const deploymentKey = sink.local.signingKey.verifierKey;
    const go = await goVerify({
      checkpoints: [
        { signed: a[2]!.checkpoint, vkey: keyA },
        { signed: b[0]!.checkpoint, vkey: keyB },
        { signed: a[2]!.checkpoint, vkey: keyB },
        { signed: a[2]!.checkpoint, vkey: deploymentKey },
      ],
    });

    // Assess: the key is of the algorithm asked for, and the banner says so
    expect(sink.local.signingKey.algorithm).toBe(algorithm);
    expect(parseVerifierKey(deploymentKey).type).toBe(type);
    expect(printed).toContain(`signing key     ${named}, SHA-256 fingerprint`);
    // Go: each stream's checkpoint opens with its own origin's key, never with another stream's or the deployment's
    expect(go.checkpoints[0]).toMatchObject({ ok: true, origin: "go.example/log/agents.a", size: 3 });
    expect(go.checkpoints[1]).toMatchObject({ ok: true, origin: "go.example/log/agents.b", size: 1 });
    expect(go.checkpoints[2]).toMatchObject({ ok: false, error: "note has no verifiable signatures" });
    expect(go.checkpoints[3]).toMatchObject({ ok: false, error: "note has no verifiable signatures" });
  });

  it("keeps the existing key on restart, and refuses the other algorithm with a clear message", async () => {
    // Prepare
    const dataDir = await sinks.fresh();
    const first = await sinks.start(dataDir, { checkpointKey: algorithm });
    const fingerprint = first.sink.local.signingKey.fingerprint;
    await first.close();
    const other: KeyAlgorithm = algorithm === "ed25519" ? "ecdsa-p256" : "ed25519";

    // Act
    const refused = await sinks.start(dataDir, { checkpointKey: other }).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    const again = await sinks.start(dataDir); // no option: whatever the directory holds
    const kept = again.sink.local.signingKey;

    // Assess
    expect(refused?.code).toBe("config-mismatch");
    expect(refused?.message).toMatch(
      new RegExp(
        `checkpoint key .*checkpoint-key.pem is ${algorithm}, not ${other}: an existing key is never replaced`,
      ),
    );
    expect(kept.fingerprint).toBe(fingerprint);
    expect(kept.algorithm).toBe(algorithm);
  });
});

describe("checkpoints signed before key name = origin, as Go reads them", () => {
  it("Go refuses the old checkpoints (key name ≠ origin) and opens the ones this version adds with the stream's key", async () => {
    // Prepare: the Ed25519 data directory of test/fixtures/pre-origin-names, continued by this version
    const dataDir = await sinks.fresh();
    await cp(join(repo, "test/fixtures/pre-origin-names/ed25519"), dataDir, { recursive: true });
    const old = JSON.parse(
      await readFile(join(repo, "test/fixtures/pre-origin-names/ed25519-receipts.json"), "utf8"),
    ) as Receipt[];
    const { sink } = await sinks.start(dataDir, { checkpointKey: "ed25519" });
    const fresh = await registerAndSend(sink.url, dataDir, "agents.old", 1);
    const key = await streamKey(sink.url, "agents.old");

    // Act
    const go = await goVerify({
      checkpoints: [
        { signed: old.at(-1)!.checkpoint, vkey: sink.local.signingKey.verifierKey },
        { signed: old.at(-1)!.checkpoint, vkey: key },
        { signed: fresh[0]!.checkpoint, vkey: key },
      ],
    });

    // Assess
    expect(go.checkpoints[0]).toMatchObject({ ok: false });
    expect(go.checkpoints[0]!.error).toMatch(
      /origin "old.example\/embedded\/agents.old" is not the key name/,
    );
    expect(go.checkpoints[1]).toMatchObject({ ok: false, error: "note has no verifiable signatures" });
    expect(go.checkpoints[2]).toMatchObject({ ok: true, origin: "old.example/embedded/agents.old", size: 6 });
  });
});

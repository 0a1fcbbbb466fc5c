/**
 * The witness client (core witness.ts, witness-cosigner.ts) against real witness software: litewitness from
 * filippo.io/torchwood v0.6.1 (test/witness/litewitness.ts). The log here is a plain Merkle tree signed by an
 * Ed25519 note key named after its origin — what litewitness requires of any log — so each tlog-witness rule is
 * shown in isolation: first cosignature from size 0, consistency proofs, the 409 recovery, and the refusals a
 * forked, unknown or badly signed checkpoint gets.
 */
import { generateKeyPairSync } from "node:crypto";
import {
  addCheckpointRequest,
  checkWitnessPolicy,
  formatNote,
  formatVerifierKey,
  KeyObjectSigner,
  leafHash,
  MemoryObjectStore,
  MerkleTree,
  parseAddCheckpointResponse,
  parseNote,
  sha256,
  WitnessCosigner,
  witnessPolicy,
} from "@auditsink/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LITEWITNESS_BUILD_TIMEOUT_MS, type Litewitness, startLitewitness } from "./litewitness.ts";

/** A log of `n` leaves under `origin`, signed by `signer` (name = origin). */
class TestLog {
  readonly tree = MerkleTree.empty();
  constructor(
    readonly origin: string,
    readonly signer: KeyObjectSigner,
    private readonly salt = "",
  ) {}
  grow(to: number): this {
    while (this.tree.size < to)
      this.tree.append(leafHash(sha256(Buffer.from(`${this.salt}${this.tree.size}`))));
    return this;
  }
  async checkpoint(size = this.tree.size, signer = this.signer): Promise<string> {
    const text = `${this.origin}\n${size}\n${this.tree.root(size).toString("base64")}\n`;
    const signature = Buffer.from(await signer.sign(Buffer.from(text)));
    return formatNote({ text, signatures: [{ name: signer.key.name, keyId: signer.key.keyId, signature }] });
  }
}

const ed25519Signer = (name: string) => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return new KeyObjectSigner(name, privateKey, publicKey);
};

async function post(witness: Litewitness, body: string) {
  const r = await fetch(`${witness.url}/add-checkpoint`, { method: "POST", body });
  return parseAddCheckpointResponse(r.status, r.headers.get("content-type"), await r.text());
}

describe("tlog-witness with litewitness", () => {
  let witness: Litewitness;
  const origin = "log.test/protocol";
  const log = new TestLog(origin, ed25519Signer(origin));

  beforeAll(async () => {
    witness = await startLitewitness("witness.test/w1");
    await witness.addLog(origin, formatVerifierKey(log.signer.key));
  }, LITEWITNESS_BUILD_TIMEOUT_MS);
  afterAll(async () => {
    await witness?.close();
  });

  it("cosigns from size 0 with an empty proof, then each larger checkpoint with a consistency proof", async () => {
    const policy = witnessPolicy([witness.verifierKey]);
    const first = await log.grow(5).checkpoint();
    const a = await post(witness, addCheckpointRequest(0, [], first));
    expect(a.kind).toBe("cosigned");
    const verdict = checkWitnessPolicy(
      { text: parseNote(first).text, signatures: a.kind === "cosigned" ? a.signatures : [] },
      policy,
    );
    expect(verdict.met).toBe(true);
    expect(verdict.signed.map((s) => s.name)).toEqual(["witness.test/w1"]);
    expect(Math.abs(verdict.signed[0]!.time - Date.now() / 1000)).toBeLessThan(60);

    const second = await log.grow(12).checkpoint();
    const b = await post(witness, addCheckpointRequest(5, log.tree.consistencyProof(5, 12), second));
    expect(b.kind).toBe("cosigned");
    expect((await witness.listLogs()).find((l) => l.origin === origin)?.size).toBe(12);
  });

  it("answers 409 with its size to a wrong old size, and the cosigner submits again from it", async () => {
    const next = await log.grow(20).checkpoint();
    expect(await post(witness, addCheckpointRequest(0, [], next))).toEqual({
      kind: "conflict",
      knownSize: 12,
    });

    // A cosigner that starts with no memory of the witness's size (as after a restart) learns it from the 409.
    const objects = new MemoryObjectStore();
    const outcomes: string[] = [];
    const cosigner = new WitnessCosigner({
      witnesses: [{ url: witness.url, key: witnessPolicy([witness.verifierKey]).witnesses[0]! }],
      quorum: 1,
      objects,
      checkpoint: async () => next,
      consistencyProof: async (_s, from, to) => log.tree.consistencyProof(from, to),
      intervalMs: 0,
      observer: { submitted: (_w, outcome) => outcomes.push(outcome) },
    });
    const round = await cosigner.cosign("protocol");
    expect(outcomes).toEqual(["conflict", "cosigned"]);
    expect(round).toMatchObject({ size: 20, cosigned: ["witness.test/w1"], failures: [], quorumMet: true });
    const stored = Buffer.from(
      (await objects.get("streams/protocol/cosigned/00000000000000000020"))!,
    ).toString();
    expect(stored).toBe(round!.note);
    expect(parseNote(stored).signatures.map((s) => s.name)).toEqual([origin, "witness.test/w1"]);
    expect(checkWitnessPolicy(parseNote(stored), witnessPolicy([witness.verifierKey])).met).toBe(true);
    expect(cosigner.status().witnesses[0]).toMatchObject({ up: true, consecutiveFailures: 0 });
  });

  it("refuses a forked checkpoint: another root at its size, an inconsistent larger tree", async () => {
    // The same signing key, other leaves: what a log showing a split view would sign.
    const fork = new TestLog(origin, log.signer, "fork-").grow(30);
    const sameSize = await fork.checkpoint(20);
    const same = await post(witness, addCheckpointRequest(20, [], sameSize));
    // tlog-witness says 409 for this case; litewitness v0.6.1 checks it as an empty proof and answers 422. Both are
    // refusals (parseAddCheckpointResponse: witness-conflict, witness-bad-proof), and nothing is cosigned.
    expect(same).toMatchObject({ kind: "refused", code: "witness-bad-proof", status: 422 });

    const larger = await fork.checkpoint(30);
    const proofFromForeignTree = fork.tree.consistencyProof(20, 30);
    const bigger = await post(witness, addCheckpointRequest(20, proofFromForeignTree, larger));
    expect(bigger).toMatchObject({ kind: "refused", code: "witness-bad-proof", status: 422 });
    // The witness still holds the honest log's size 20.
    expect((await witness.listLogs()).find((l) => l.origin === origin)?.size).toBe(20);
  });

  it("refuses an unknown origin and a checkpoint signed by another key", async () => {
    const stranger = new TestLog("log.test/unknown", ed25519Signer("log.test/unknown")).grow(3);
    const unknown = await post(witness, addCheckpointRequest(0, [], await stranger.checkpoint()));
    expect(unknown).toMatchObject({ kind: "refused", code: "witness-unknown-log" });

    const impostor = ed25519Signer(origin);
    const forged = await log.grow(25).checkpoint(25, impostor);
    const refused = await post(witness, addCheckpointRequest(20, log.tree.consistencyProof(20, 25), forged));
    expect(refused).toMatchObject({ kind: "refused", code: "witness-bad-signature", status: 403 });
  });

  it("submits each stream at most once per interval, folding the commits in between into the next round", async () => {
    const key = witnessPolicy([witness.verifierKey]).witnesses[0]!;
    const rounds: number[] = [];
    const cosigner = new WitnessCosigner({
      witnesses: [{ url: witness.url, key }],
      quorum: 1,
      objects: new MemoryObjectStore(),
      checkpoint: () => {
        rounds.push(Date.now());
        return log.grow(log.tree.size + 1).checkpoint();
      },
      consistencyProof: async (_s, from, to) => log.tree.consistencyProof(from, to),
      intervalMs: 400,
    });
    // Act: a burst of commits, then another burst while the interval runs.
    for (let i = 0; i < 5; i++) cosigner.notify("protocol");
    await new Promise((r) => setTimeout(r, 150));
    for (let i = 0; i < 5; i++) cosigner.notify("protocol");
    await new Promise((r) => setTimeout(r, 700));
    await cosigner.close();
    // Assess: two rounds, the second one interval after the first.
    expect(rounds).toHaveLength(2);
    expect(rounds[1]! - rounds[0]!).toBeGreaterThanOrEqual(395);
    expect(cosigner.status().witnesses[0]).toMatchObject({ up: true });
  });

  it("reports a witness that is down as unreachable, and up again once it answers", async () => {
    const key = witnessPolicy([witness.verifierKey]).witnesses[0]!;
    const failures: string[] = [];
    const target = log.tree.size + 1;
    const cosigner = new WitnessCosigner({
      witnesses: [{ url: witness.url, key }],
      quorum: 1,
      objects: new MemoryObjectStore(),
      checkpoint: () => log.grow(target).checkpoint(),
      consistencyProof: async (_s, from, to) => log.tree.consistencyProof(from, to),
      intervalMs: 0,
      timeoutMs: 2_000,
      onFailure: (f) => failures.push(f.outcome),
    });
    await witness.stop();
    try {
      const down = await cosigner.cosign("protocol");
      expect(down).toMatchObject({ cosigned: [], quorumMet: false });
      expect(failures).toEqual(["unreachable"]);
      expect(cosigner.status()).toMatchObject({
        witnesses: [{ up: false, consecutiveFailures: 1 }],
        quorumMissed: ["protocol"],
      });
    } finally {
      await witness.restart();
    }
    const back = await cosigner.cosign("protocol");
    expect(back).toMatchObject({ size: target, cosigned: ["witness.test/w1"], quorumMet: true });
    expect(cosigner.status()).toMatchObject({ witnesses: [{ up: true }], quorumMissed: [] });
  });
});

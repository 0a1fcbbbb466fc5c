/**
 * Go tooling reading auditsink: a running embedded sink with an Ed25519 checkpoint key serves a stream as a
 * tlog-tiles log (`/tlog/<stream>/…`, docs/TRANSPARENCY.md §1), and the Go reader (test/go/reader: x/mod
 * sumdb/note verifies the checkpoint, sumdb/tlog's TileHashReader, ProveRecord/CheckRecord and
 * ProveTree/CheckTree check the tiles) proves the records' hashes included and two checkpoints consistent.
 * Core's TlogReader reads the same URLs.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HttpTlogSource } from "@auditsink/client";
import {
  formatVerifierKey,
  makeNoteKey,
  parseVerifierKey,
  type Receipt,
  SIG_ED25519,
  TlogReader,
} from "@auditsink/core";
import { signingKeyPaths } from "@auditsink/local";
import { beforeAll, describe, expect, it } from "vitest";
import { testProducer, testSinks } from "../embedded/helpers.ts";
import { type GoTools, goTools, runTool } from "./helpers.ts";

const sinks = testSinks("auditsink-go-reader-");
const STREAM = "agents.tiles";

let tools: GoTools;
// Building the Go tools from a cold module and build cache takes about a minute on a loaded 2-core machine.
beforeAll(async () => {
  tools = await goTools();
}, 300_000);

/**
 * The embedded sink signs with the key it finds at keys/checkpoint-key.pem (LocalSigner.ts): an Ed25519 key
 * placed there before the first start is used as is, and x/mod's note package verifies Ed25519 only.
 */
async function ed25519Sink() {
  const dataDir = await sinks.fresh();
  const paths = signingKeyPaths(dataDir);
  await mkdir(paths.dir, { recursive: true });
  const { privateKey } = generateKeyPairSync("ed25519");
  await writeFile(paths.privateKey, privateKey.export({ type: "pkcs8", format: "pem" }) as string, {
    mode: 0o600,
  });
  const { sink } = await sinks.start(dataDir);
  expect(parseVerifierKey(sink.local.signingKey.verifierKey).type).toBe(SIG_ED25519);
  const producer = testProducer("tiler");
  const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: producer.id, publicKey: producer.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
  const send = async (count: number): Promise<Receipt[]> => {
    const r = await fetch(`${sink.url}/v1/streams/${STREAM}/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents-batch+json" },
      body: JSON.stringify(Array.from({ length: count }, () => producer.event())),
    });
    expect(r.status).toBe(200);
    return ((await r.json()) as { receipts: Receipt[] }).receipts;
  };
  const prefix = `${sink.url}/tlog/${STREAM}/`;
  const origin = `${sink.local.deployment}/${STREAM}`;
  /**
   * The verifier key a tool pins for this stream: the sink's public key under the name its checkpoints are
   * signed with — the deployment, or the origin once each stream's key is named after it (docs/TRANSPARENCY.md
   * §2). For Ed25519 the key ID depends on the name, so x/mod needs the exact one.
   */
  const vkey = async (): Promise<string> => {
    const signed = await (await fetch(`${prefix}checkpoint`)).text();
    const name = /\n\u2014 (\S+) /u.exec(signed)?.[1];
    expect([sink.local.deployment, origin]).toContain(name);
    return formatVerifierKey(makeNoteKey(name!, sink.local.signingKey.signer.key.publicKey));
  };
  return { sink, dataDir, send, prefix, origin, vkey };
}

describe("the Go reader on a running sink's tiles", () => {
  it("verifies the checkpoint with x/mod note, proves records included and two checkpoints consistent", async () => {
    const { send, prefix, dataDir, origin, vkey: verifierKey } = await ed25519Sink();
    const receipts: Receipt[] = [];
    for (let i = 0; i < 3; i++) receipts.push(...(await send(100)));
    const older = await (await fetch(`${prefix}checkpoint`)).text();
    for (let i = 0; i < 3; i++) receipts.push(...(await send(100)));
    expect(receipts.map((r) => r.index)).toEqual(receipts.map((_, i) => i));

    const vkey = await verifierKey();
    const olderFile = join(dataDir, "older-checkpoint");
    await writeFile(olderFile, older);
    const picks = [0, 1, 255, 256, 299, 300, 511, 512, 599];
    const out = await runTool(tools.reader, [
      ...["-url", prefix, "-origin", origin, "-vkey", vkey, "-old", olderFile],
      ...picks.flatMap((i) => ["-entry", `${i}=${receipts[i]!.recordHash}`]),
    ]);
    const result = JSON.parse(out);
    expect(result).toMatchObject({ origin, size: 600, consistency: { from: 300, to: 600 } });
    expect(result.entries.map((e: { index: number }) => e.index)).toEqual(picks);
    expect(result.entries.every((e: { entryBytes: number }) => e.entryBytes === 32)).toBe(true);

    // The reader is not vacuous: another record's hash at an index fails.
    await expect(
      runTool(tools.reader, [
        ...["-url", prefix, "-origin", origin, "-vkey", vkey],
        ...["-entry", `5=${receipts[6]!.recordHash}`],
      ]),
    ).rejects.toThrow(/entry 5 in the bundle/);
  });

  it("core's TlogReader reads the same stream over HTTP: entries are the record hashes", async () => {
    const { send, prefix, origin, vkey } = await ed25519Sink();
    const first = await send(40);
    const reader = new TlogReader(new HttpTlogSource(prefix), {
      origin,
      verifiers: [parseVerifierKey(await vkey())],
    });
    const older = await reader.checkpoint();
    const rest = [...(await send(100)), ...(await send(100)), ...(await send(60))];
    const cp = await reader.checkpoint();
    expect([older.size, cp.size]).toEqual([40, 300]);
    // auditsink's checkpoints are plain checkpoints plus its head and time extension lines.
    expect(cp.extensions.map((l) => l.split(" ")[0])).toEqual(["head", "time"]);
    for (const r of [...first, ...rest].filter((_, i) => i % 37 === 0 || i === 299)) {
      expect(Buffer.from(await reader.entry(r.index, cp)).toString("hex")).toBe(r.recordHash);
    }
    expect((await reader.proveConsistency(older, cp)).length).toBeGreaterThan(0);
    // The older checkpoint's partial tiles are served as prefixes of today's tiles (docs/TRANSPARENCY.md §1).
    expect(Buffer.from(await reader.entry(39, older)).toString("hex")).toBe(first[39]!.recordHash);
  });
});

/**
 * The tamper suite (issue 10, "How it is shown"): one real data directory written by the embedded sink, and for
 * each way of tampering with a copy of it, BOTH verifiers — `auditsink verify` (the real CLI, pinned key) and the
 * embedded ScheduledVerifier (wired as `auditsink start` wires it) — must report exactly the expected failure
 * codes, at the expected places, and agree with each other. A clean copy reports nothing.
 *
 * Adding a case: append a row to CASES (data-directory tampering, both verifiers). Evidence-bundle cases (which
 * only `auditsink verify` reads) go in BUNDLE_CASES: each row exports a bundle from the clean data directory,
 * tampers with it, and lists the codes `auditsink verify <bundle>` must report.
 */
import { chmod, cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { VerifyResult } from "@auditsink/cli";
import {
  generateKeyPair,
  type Head,
  KeyObjectSigner,
  MemoryAlertSink,
  publicKeyDocument,
  publicKeyDocumentKey,
  type SignedEvent,
  sha256,
  signBatch,
  signCheckpoint,
  systemProducerKey,
} from "@auditsink/core";
import {
  dataPaths,
  LocalProducerAdmin,
  loadOrCreateSigningKey,
  ScheduledVerifier,
  VerifierThread,
} from "@auditsink/local";
import { beforeAll, describe, expect, it } from "vitest";
import { cli, startSink, tempDir } from "../cli/helpers.ts";
import { objectFile, testProducer } from "../embedded/helpers.ts";

const DEMO = "agents.demo";
const OTHER = "agents.other";
/** Four batch-signed events (docs/FORMAT.md §3b) in one segment, checkpoint 4. */
const BATCH = "agents.batch";
const pad = (n: number) => String(n).padStart(20, "0");
const seg = (stream: string, n: number) => `streams/${stream}/segments/${pad(n)}`;
const cpk = (stream: string, n: number) => `streams/${stream}/checkpoints/${pad(n)}`;

let clean: string;
let deployment: string;
let verifierKey: string;
/** The head of agents.demo after its first batch (size 3): what a rolled-back head looks like. */
let earlyHead: string;

/** Writes a file of the copy, which the sink left read-only. */
async function overwrite(path: string, bytes: Uint8Array | string): Promise<void> {
  await chmod(path, 0o644).catch(() => undefined);
  await writeFile(path, bytes);
}

const obj = objectFile;
const readObj = async (dir: string, key: string) => readFile(obj(dir, key));
const lines = async (dir: string, key: string) =>
  (await readObj(dir, key)).toString("utf8").split("\n").slice(0, -1);
const writeLines = (dir: string, key: string, ls: string[]) =>
  overwrite(obj(dir, key), ls.map((l) => `${l}\n`).join(""));
const headPath = (dir: string, stream: string) => join(dir, "heads", `${stream}.json`);
const readHead = async (dir: string, stream: string) =>
  JSON.parse(await readFile(headPath(dir, stream), "utf8")) as Head;
const writeHead = (dir: string, stream: string, head: Head) =>
  overwrite(headPath(dir, stream), JSON.stringify(head));

async function sinkSigner(dir: string) {
  return (await loadOrCreateSigningKey(dir, deployment, dataPaths(dir).tmp)).signer;
}

/** A checkpoint like the stored one of `size`, with another root (or signed by `signer`), as note text. */
async function forgedCheckpoint(
  dir: string,
  size: number,
  options: { signer?: KeyObjectSigner; root?: Buffer } = {},
): Promise<string> {
  const text = (await readObj(dir, cpk(DEMO, size))).toString("utf8");
  const [origin, , root, headLine, timeLine] = text.split("\n");
  return signCheckpoint(
    {
      origin: origin!,
      size,
      root: options.root ?? Buffer.from(root!, "base64"),
      head: Buffer.from(headLine!.slice(5), "hex"),
      time: timeLine!.slice(5),
    },
    options.signer ?? (await sinkSigner(dir)),
  );
}

/** A checkpoint at a size the sink never signed (5, inside segment 3…5), with the right head hash but a wrong root. */
async function checkpointBeside(dir: string): Promise<string> {
  const record4 = (await lines(dir, seg(DEMO, 3)))[1]!;
  const text = (await readObj(dir, cpk(DEMO, 6))).toString("utf8");
  return signCheckpoint(
    {
      origin: text.split("\n")[0]!,
      size: 5,
      root: sha256("a root of another log"),
      head: sha256(record4),
      time: "2026-11-24T12:00:00.000Z",
    },
    await sinkSigner(dir),
  );
}

interface TamperCase {
  name: string;
  tamper(dir: string): Promise<void>;
  /** `<code> <stream> <at>` of every failure, in any order ("-" for no stream or no location). */
  expected: string[];
}

const CASES: TamperCase[] = [
  { name: "clean copy", tamper: async () => {}, expected: [] },
  {
    name: "byte flip in a record (one bit of the tool name in record 4)",
    tamper: async (dir) => {
      const ls = await lines(dir, seg(DEMO, 3));
      const at = ls[1]!.indexOf("web_search");
      const bytes = Buffer.from(`${ls.join("\n")}\n`);
      const offset = Buffer.byteLength(`${ls[0]}\n`) + Buffer.byteLength(ls[1]!.slice(0, at));
      bytes[offset] = bytes[offset]! ^ 0x20;
      await overwrite(obj(dir, seg(DEMO, 3)), bytes);
    },
    expected: [
      `producer-signature-invalid ${DEMO} 4`,
      `chain-broken ${DEMO} 5`,
      `checkpoint-root-mismatch ${DEMO} 6`,
      `checkpoint-root-mismatch ${DEMO} 9`,
      `head-mismatch ${DEMO} 9`,
    ],
  },
  {
    name: "record deleted (record 4, inside segment 3)",
    tamper: async (dir) => {
      const ls = await lines(dir, seg(DEMO, 3));
      await writeLines(dir, seg(DEMO, 3), [ls[0]!, ls[2]!]);
    },
    expected: [`record-gap ${DEMO} 4`],
  },
  {
    name: "segment deleted (segment 3)",
    tamper: async (dir) => {
      await rm(obj(dir, seg(DEMO, 3)), { force: true });
    },
    expected: [`segment-gap ${DEMO} 3`],
  },
  {
    // Segment 0 now starts with record 3, which does not link record −1: to the walk, records 0…2 are missing
    // there (record-gap). Segment 3 then starts below where the walk is (overlap) and holds records 0…2 out of place.
    name: "segments swapped (contents of segments 0 and 3)",
    tamper: async (dir) => {
      const a = await readObj(dir, seg(DEMO, 0));
      const b = await readObj(dir, seg(DEMO, 3));
      await overwrite(obj(dir, seg(DEMO, 0)), b);
      await overwrite(obj(dir, seg(DEMO, 3)), a);
    },
    expected: [
      `record-gap ${DEMO} 0`,
      `segment-overlap ${DEMO} ${seg(DEMO, 3)}`,
      ...[3, 4, 5].map((i) => `record-index-mismatch ${DEMO} ${i}`),
      `chain-broken ${DEMO} 3`,
      `chain-broken ${DEMO} 6`,
    ],
  },
  {
    name: "truncation mid-line (the last record cut in half)",
    tamper: async (dir) => {
      const bytes = await readObj(dir, seg(DEMO, 6));
      await overwrite(obj(dir, seg(DEMO, 6)), bytes.subarray(0, bytes.length - 100));
    },
    expected: [
      `segment-truncated ${DEMO} ${seg(DEMO, 6)}`,
      `record-malformed ${DEMO} 8`,
      `checkpoint-root-mismatch ${DEMO} 9`,
      `checkpoint-head-mismatch ${DEMO} 9`,
      `head-mismatch ${DEMO} 9`,
    ],
  },
  {
    name: "truncation at a record boundary (the last record removed)",
    tamper: async (dir) => {
      const ls = await lines(dir, seg(DEMO, 6));
      await writeLines(dir, seg(DEMO, 6), ls.slice(0, 2));
    },
    expected: [`checkpoint-beyond-log ${DEMO} 9`, `head-ahead ${DEMO} 9`],
  },
  {
    name: "head rolled back (to size 3)",
    tamper: async (dir) => {
      await overwrite(headPath(dir, DEMO), earlyHead);
    },
    expected: [`head-rollback ${DEMO} 3`],
  },
  {
    name: "head ahead of the store (size 12)",
    tamper: async (dir) => {
      const head = await readHead(dir, DEMO);
      await writeHead(dir, DEMO, { ...head, size: 12, checkpoint: undefined as never });
    },
    expected: [`head-ahead ${DEMO} 12`],
  },
  {
    name: "head frontier corrupted",
    tamper: async (dir) => {
      const head = await readHead(dir, DEMO);
      head.frontier[0] = "00".repeat(32);
      await writeHead(dir, DEMO, head);
    },
    expected: [`head-mismatch ${DEMO} 9`],
  },
  {
    name: "head-store fork (a signed checkpoint of size 9 with another root kept in the head)",
    tamper: async (dir) => {
      const head = await readHead(dir, DEMO);
      head.checkpoint = await forgedCheckpoint(dir, 9, { root: sha256("forked") });
      await writeHead(dir, DEMO, head);
    },
    expected: [`checkpoint-fork ${DEMO} 9`],
  },
  {
    name: "stored fork beside a checkpoint (a signed checkpoint of size 5 with another root)",
    tamper: async (dir) => {
      await writeFile(obj(dir, cpk(DEMO, 5)), await checkpointBeside(dir));
    },
    expected: [`checkpoint-root-mismatch ${DEMO} 5`],
  },
  {
    name: "checkpoint re-signed under another key",
    tamper: async (dir) => {
      const { privateKey, publicKey } = generateKeyPair("ecdsa-p256");
      const forger = new KeyObjectSigner(deployment, privateKey, publicKey);
      await overwrite(obj(dir, cpk(DEMO, 6)), await forgedCheckpoint(dir, 6, { signer: forger }));
    },
    expected: [`checkpoint-unknown-key ${DEMO} ${cpk(DEMO, 6)}`],
  },
  {
    name: "checkpoint re-signed under another key, with that key's document injected in objects/keys/",
    tamper: async (dir) => {
      const { privateKey, publicKey } = generateKeyPair("ecdsa-p256");
      const forger = new KeyObjectSigner(deployment, privateKey, publicKey);
      await overwrite(obj(dir, cpk(DEMO, 6)), await forgedCheckpoint(dir, 6, { signer: forger }));
      await mkdir(join(dir, "objects", "keys"), { recursive: true });
      await writeFile(
        obj(dir, publicKeyDocumentKey(forger.key)),
        JSON.stringify(publicKeyDocument(forger.key)),
      );
    },
    expected: [`checkpoint-unknown-key ${DEMO} ${cpk(DEMO, 6)}`],
  },
  {
    name: "extra file inside streams/",
    tamper: async (dir) => {
      await writeFile(obj(dir, `streams/${DEMO}/notes.txt`), "x");
    },
    expected: [`unexpected-object ${DEMO} streams/${DEMO}/notes.txt`],
  },
  {
    name: "extra file outside streams/",
    tamper: async (dir) => {
      await writeFile(obj(dir, "README.txt"), "x");
    },
    expected: ["unexpected-object - README.txt"],
  },
  {
    name: "stream objects deleted, its head left",
    tamper: async (dir) => {
      await rm(join(dir, "objects", "streams", OTHER), { recursive: true, force: true });
    },
    expected: [`stream-missing ${OTHER} -`],
  },
  {
    name: "whole stream deleted with its head",
    tamper: async (dir) => {
      await rm(join(dir, "objects", "streams", OTHER), { recursive: true, force: true });
      await rm(headPath(dir, OTHER), { force: true });
    },
    expected: [`stream-missing ${OTHER} -`],
  },
  {
    name: "producer signature changed (record 1, chain left as it was)",
    tamper: async (dir) => {
      const ls = await lines(dir, seg(DEMO, 0));
      const record = JSON.parse(ls[1]!) as { event: SignedEvent };
      const sig = Buffer.from(record.event.signature, "base64");
      sig[0] = sig[0]! ^ 0x01;
      ls[1] = ls[1]!.replace(record.event.signature, sig.toString("base64"));
      await writeLines(dir, seg(DEMO, 0), ls);
    },
    expected: [
      `producer-signature-invalid ${DEMO} 1`,
      `chain-broken ${DEMO} 2`,
      `checkpoint-root-mismatch ${DEMO} 3`,
      `checkpoint-root-mismatch ${DEMO} 6`,
      `checkpoint-root-mismatch ${DEMO} 9`,
      `head-mismatch ${DEMO} 9`,
    ],
  },
  {
    name: "batch-signed event changed (record 1 of a signed batch, chain left as it was)",
    tamper: async (dir) => {
      const ls = await lines(dir, seg(BATCH, 0));
      ls[1] = ls[1]!.replace('"web_search"', '"rm_rf"');
      await writeLines(dir, seg(BATCH, 0), ls);
    },
    expected: [
      `producer-signature-invalid ${BATCH} 1`,
      `chain-broken ${BATCH} 2`,
      `checkpoint-root-mismatch ${BATCH} 4`,
      `head-mismatch ${BATCH} 4`,
    ],
  },
  {
    name: "batch-signed event moved (record 1 given record 2's position and path)",
    tamper: async (dir) => {
      const ls = await lines(dir, seg(BATCH, 0));
      const membership = (line: string) => (JSON.parse(line) as { event: SignedEvent }).event.sigbatch!;
      ls[1] = ls[1]!.replace(membership(ls[1]!), membership(ls[2]!));
      await writeLines(dir, seg(BATCH, 0), ls);
    },
    expected: [
      `producer-signature-invalid ${BATCH} 1`,
      `chain-broken ${BATCH} 2`,
      `checkpoint-root-mismatch ${BATCH} 4`,
      `head-mismatch ${BATCH} 4`,
    ],
  },
];

/**
 * Evidence-bundle cases, run through `auditsink verify <bundle>` only (the scheduled verifier reads data
 * directories). Each row gets a fresh bundle of agents.demo exported from the clean data directory.
 */
interface BundleCase {
  name: string;
  tamper(bundleDir: string): Promise<void>;
  expected: string[];
}
const BUNDLE_CASES: BundleCase[] = [
  { name: "clean bundle", tamper: async () => {}, expected: [] },
  {
    name: "extra file inside the bundle's objects",
    tamper: async (bundle) => {
      await writeFile(join(bundle, "objects", "streams", DEMO, "segments", "extra"), "x");
      await writeFile(join(bundle, "objects", "stray.json"), "{}");
    },
    expected: [`unexpected-object ${DEMO} streams/${DEMO}/segments/extra`, "unexpected-object - stray.json"],
  },
  {
    name: "key document inside the bundle's objects",
    tamper: async (bundle) => {
      await mkdir(join(bundle, "objects", "keys"), { recursive: true });
      await writeFile(join(bundle, "objects", "keys", "0badc0de.json"), "{}");
    },
    expected: [`bundle-object-unexpected ${DEMO} keys/0badc0de.json`],
  },
  {
    name: "manifest start size changed",
    tamper: (bundle) =>
      editJson(join(bundle, "manifest.json"), (m) => {
        (m.start as { size: number }).size = 2;
      }),
    expected: [
      `bundle-manifest-invalid ${DEMO} manifest.json#/start/frontier`,
      `bundle-manifest-invalid ${DEMO} manifest.json#/start/size`,
    ],
  },
  {
    name: "manifest not JSON",
    tamper: (bundle) => writeFile(join(bundle, "manifest.json"), "{"),
    expected: [`bundle-manifest-invalid ${DEMO} manifest.json`],
  },
  {
    name: "proofs/inclusion.json missing",
    tamper: (bundle) => rm(join(bundle, "proofs", "inclusion.json")),
    expected: [
      `bundle-proof-missing ${DEMO} proofs/inclusion.json`,
      `bundle-proof-missing ${DEMO} 0`,
      `bundle-proof-missing ${DEMO} 8`,
    ],
  },
  {
    name: "a receipt in proofs/inclusion.json without its checkpoint",
    tamper: (bundle) =>
      editJson(join(bundle, "proofs", "inclusion.json"), (f) => {
        delete (f.receipts as { checkpoint?: string }[])[0]!.checkpoint;
      }),
    expected: [`receipt-malformed ${DEMO} proofs/inclusion.json#0`, `bundle-proof-missing ${DEMO} 0`],
  },
  {
    name: "consistency proofs emptied",
    tamper: (bundle) => writeFile(join(bundle, "proofs", "consistency.json"), '{"proofs": []}'),
    expected: [`bundle-proof-missing ${DEMO} 3..6`, `bundle-proof-missing ${DEMO} 6..9`],
  },
  {
    name: "consistency proof hashes emptied",
    tamper: (bundle) =>
      editJson(join(bundle, "proofs", "consistency.json"), (f) => {
        for (const p of f.proofs as { proof: string[] }[]) p.proof = [];
      }),
    expected: [`bundle-proof-invalid ${DEMO} 3..6`, `bundle-proof-invalid ${DEMO} 6..9`],
  },
];

async function editJson(path: string, edit: (value: Record<string, unknown>) => void): Promise<void> {
  const value = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  edit(value);
  await writeFile(path, JSON.stringify(value));
}

const describeFinding = (f: { code: string; stream?: string; at?: number | string }) =>
  `${f.code} ${f.stream || "-"} ${f.at ?? "-"}`;

async function verifyWithCli(dir: string): Promise<{ code: number; found: string[]; report: VerifyResult }> {
  const r = await cli(["verify", dir, "--verifier-key", verifierKey, "--threads", "1", "--json"]);
  const report = JSON.parse(r.out) as VerifyResult;
  const found = [
    ...report.archive,
    ...report.streams.flatMap((s) => s.failures),
    ...report.receipts.failures,
  ].map(describeFinding);
  return { code: r.code, found, report };
}

/** The embedded scheduled verifier over the copy, wired as startEmbeddedSink wires it. */
async function verifyWithScheduled(dir: string): Promise<{ found: string[]; alerts: string[] }> {
  const paths = dataPaths(dir);
  const signer = await sinkSigner(dir);
  const registry = await LocalProducerAdmin.open(paths.producers, paths.tmp);
  const systemKey = systemProducerKey(signer);
  const alerts = new MemoryAlertSink();
  // The sink's own verifier thread: every finding below crosses from it as the sink's would.
  const thread = new VerifierThread({ dataDir: dir, deployment, trusted: [signer.key] });
  const verifier = new ScheduledVerifier({
    runner: thread.run,
    producerKeys: () => new Map([...registry.publicKeys(), [systemKey.keyId, systemKey.publicKey]]),
    producers: async () => [],
    lastSeen: async () => new Map(),
    alerts,
    tmpDir: paths.tmp,
    intervalMs: 0,
    settleMs: 1,
  });
  const run = await verifier.runOnce({ full: true }).finally(() => thread.close());
  return { found: run.failures.map(describeFinding), alerts: run.alerts.map((a) => a.code) };
}

beforeAll(async () => {
  const work = await tempDir("auditsink-tamper-");
  clean = join(work, "data");
  const sink = await startSink(clean);
  try {
    deployment = sink.local.deployment;
    verifierKey = sink.local.signingKey.verifierKey;
    const agent = testProducer("tamper-agent");
    await sink.local.producers.register({ id: agent.id, publicKey: agent.publicKey, streams: ["agents.*"] });
    // agents.demo: three batches of three (segments 0, 3, 6; checkpoints 3, 6, 9); agents.other: one batch.
    for (let b = 0; b < 3; b++) {
      await sink.local.sink.submit(DEMO, [agent.event(), agent.event(), agent.event()]);
      if (b === 0) earlyHead = await readFile(headPath(clean, DEMO), "utf8");
    }
    await sink.local.sink.submit(OTHER, [agent.event()]);
    const unsigned = [0, 1, 2, 3].map((i) => {
      const { signature: _, sigkeyid: __, ...event } = agent.event({ id: `batch-${i}` });
      return event;
    });
    await sink.local.sink.submit(BATCH, signBatch(unsigned, agent.privateKey));
  } finally {
    await sink.close();
  }
});

describe("the tamper suite: auditsink verify and the embedded scheduled verifier", () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.expected.length === 0 ? "nothing reported" : c.expected.map((e) => e.split(" ")[0]).join(", ")}`, async () => {
      // Prepare
      const dir = join(await tempDir("auditsink-tamper-case-"), "data");
      await cp(clean, dir, { recursive: true });
      await c.tamper(dir);
      // Act
      const fromCli = await verifyWithCli(dir);
      const fromScheduled = await verifyWithScheduled(dir);
      // Assess
      expect(fromCli.found.sort()).toEqual([...c.expected].sort());
      expect(fromScheduled.found.sort()).toEqual([...c.expected].sort());
      expect(fromCli.code).toBe(c.expected.length === 0 ? 0 : 1);
      expect(new Set(fromScheduled.alerts)).toEqual(new Set(c.expected.map((e) => e.split(" ")[0])));
      expect(fromCli.report.trust.how).toBe("pinned");
    });
  }

  for (const c of BUNDLE_CASES) {
    it(`bundle, ${c.name}: ${c.expected.length === 0 ? "nothing reported" : c.expected.map((e) => e.split(" ")[0]).join(", ")}`, async () => {
      // Prepare
      const bundle = join(await tempDir("auditsink-tamper-bundle-"), "bundle");
      expect((await cli(["export", clean, "--stream", DEMO, "--out", bundle, "--json"])).code).toBe(0);
      await c.tamper(bundle);
      // Act
      const fromCli = await verifyWithCli(bundle);
      // Assess
      expect(fromCli.found.sort()).toEqual([...c.expected].sort());
      expect(fromCli.code).toBe(c.expected.length === 0 ? 0 : 1);
    });
  }
});

describe("trust: nothing pinned never means trusting what the archive says (issue 10 item 1)", () => {
  /** Item 1's forgery: a checkpoint re-signed under a new key whose document was added to objects/keys/. */
  async function forged(): Promise<string> {
    const dir = join(await tempDir("auditsink-trust-"), "data");
    await cp(clean, dir, { recursive: true });
    await CASES.find((c) => c.name.startsWith("checkpoint re-signed under another key, with"))!.tamper(dir);
    return dir;
  }

  it("refuses to verify with no key pinned, naming the ways to pin one (exit 2)", async () => {
    const r = await cli(["verify", await forged(), "--json"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toMatch(/no trusted checkpoint key.*--trust-on-first-use/s);
  });

  it("refuses trust on first use when the archive offers more than one key", async () => {
    const state = join(await tempDir(), "tofu-keys.txt");
    const r = await cli(["verify", await forged(), "--trust-on-first-use", state, "--json"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/exactly one key offered by the source, found 2/);
    await expect(readFile(state)).rejects.toThrow();
  });

  it("trusts on first use loudly, saves the key, and on later runs trusts only the saved key", async () => {
    // Prepare
    const dir = join(await tempDir("auditsink-trust-"), "data");
    await cp(clean, dir, { recursive: true });
    const state = join(await tempDir(), "tofu-keys.txt");
    // Act
    const first = await cli(["verify", dir, "--trust-on-first-use", state, "--json"]);
    await CASES.find((c) => c.name.startsWith("checkpoint re-signed under another key, with"))!.tamper(dir);
    const later = await cli(["verify", dir, "--trust-on-first-use", state, "--json"]);
    // Assess
    expect(first.code).toBe(0);
    expect(first.err).toMatch(/TRUST ON FIRST USE: pinned [0-9a-f]{64} to .*tofu-keys\.txt/);
    const firstReport = JSON.parse(first.out) as VerifyResult;
    expect(firstReport.trust).toMatchObject({ how: "trust-on-first-use", firstUse: true });
    expect(await readFile(state, "utf8")).toContain(verifierKey);
    expect(later.code).toBe(1);
    expect(later.err).toBe("");
    const laterReport = JSON.parse(later.out) as VerifyResult;
    expect(laterReport.trust.how).toBe("trust-on-first-use");
    expect(laterReport.streams.flatMap((s) => s.failures).map((f) => f.code)).toEqual([
      "checkpoint-unknown-key",
    ]);
  });

  it("says in the text report how the keys were chosen", async () => {
    const r = await cli(["verify", clean, "--verifier-key", verifierKey]);
    expect(r.out).toMatch(/^trusted keys \(pinned: --verifier-key\): [0-9a-f]{64}$/m);
  });
});

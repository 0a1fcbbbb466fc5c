/**
 * `auditsink verify` against an independent reading of docs/FORMAT.md: stored JSON (a head, an evidence bundle's
 * manifest and proof files) is read by the §3 "JSON input" rules, so no parser reads it two ways; and a receipt
 * whose stream has no objects gets the first §9 check it fails, `receipt-not-in-log` only when it passes 1–5.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { VerifyResult } from "@auditsink/cli";
import type { Receipt } from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cli,
  proveInclusion,
  sendToolCall,
  sinkWithProducer,
  tempDir,
  verifyReport,
  writableCopy,
} from "./helpers.ts";

const STREAM = "agents.stored";
let sink: EmbeddedSink;
let dataDir: string;
let fingerprint: string;
/** A bundle of the whole stream. */
let bundle: string;

const verifyJson = (source: string, ...extra: string[]) => verifyReport(source, fingerprint, ...extra);

const findings = (report: VerifyResult) =>
  [...report.archive, ...report.streams.flatMap((s) => s.failures)].map((f) => [f.code, f.stream, f.at]);

/** Writes a second member of the name `name` right after the first one's opening, so JSON.parse keeps the original. */
async function duplicateMember(path: string, name: string, value: string): Promise<void> {
  const text = await readFile(path, "utf8");
  const at = text.indexOf(`"${name}":`);
  expect(at).toBeGreaterThanOrEqual(0);
  await writeFile(path, `${text.slice(0, at)}"${name}":${value},${text.slice(at)}`);
}

beforeAll(async () => {
  const started = await sinkWithProducer(await tempDir(), "stored-bot");
  ({ sink, dataDir, fingerprint } = started);
  for (let n = 0; n < 3; n++) await sendToolCall(started, STREAM, "agent://stored-bot", `call-${n}`);
  bundle = join(await tempDir(), "bundle");
  expect((await cli(["export", dataDir, "--stream", STREAM, "--out", bundle])).code).toBe(0);
});

afterAll(async () => {
  await sink.close();
});

describe("stored JSON is read by the FORMAT.md §3 input rules", () => {
  it("verifies the untouched data directory and bundle", async () => {
    expect((await verifyJson(dataDir)).code).toBe(0);
    expect((await verifyJson(bundle)).code).toBe(0);
  });

  it("reports a head file holding a duplicate member as head-malformed", async () => {
    const copy = await writableCopy(dataDir);
    await duplicateMember(join(copy, "heads", `${STREAM}.json`), "size", "0");
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(findings(report)).toEqual([["head-malformed", STREAM, undefined]]);
  });

  it("reports a manifest holding a duplicate member as bundle-manifest-invalid, naming where", async () => {
    const copy = await writableCopy(bundle);
    await duplicateMember(join(copy, "manifest.json"), "coveredBy", "0");
    const { code, report } = await verifyJson(copy);
    expect(code).toBe(1);
    expect(report.streams.flatMap((s) => s.failures.map((f) => [f.code, f.at, f.message]))).toEqual([
      [
        "bundle-manifest-invalid",
        "manifest.json",
        "manifest.json has a duplicate member name at $.coveredBy",
      ],
    ]);
  });

  for (const [file, name] of [
    ["proofs/inclusion.json", "receipts"],
    ["proofs/consistency.json", "proofs"],
  ] as const) {
    it(`reports ${file} holding a duplicate member as bundle-proof-invalid`, async () => {
      const copy = await writableCopy(bundle);
      await duplicateMember(join(copy, file), name, "[]");
      const { code, report } = await verifyJson(copy);
      expect(code).toBe(1);
      const invalid = report.streams.flatMap((s) =>
        s.failures.filter((f) => f.code === "bundle-proof-invalid").map((f) => [f.at, f.message]),
      );
      expect(invalid).toEqual([[file, expect.stringContaining(`has a duplicate member name at $.${name}`)]]);
    });
  }
});

describe("receipts of a stream with no objects (FORMAT.md §9 order of receipt failure codes)", () => {
  async function receiptFile(edit: (r: Receipt) => unknown): Promise<string> {
    const proved = await proveInclusion(dataDir, STREAM, 1, fingerprint);
    expect(proved.code).toBe(0);
    const file = join(await tempDir(), "receipts.json");
    await writeFile(file, JSON.stringify([edit(JSON.parse(proved.out) as Receipt)]));
    return file;
  }

  for (const [what, edit, expected] of [
    [
      "relabelled with another stream: its checkpoint's origin is the first check it fails",
      (r: Receipt) => ({ ...r, stream: "agents.nosuch" }),
      "receipt-origin-mismatch",
    ],
    [
      "relabelled, with an inclusion proof that does not verify either",
      (r: Receipt) => ({ ...r, stream: "agents.nosuch", inclusionProof: [] }),
      "receipt-origin-mismatch",
    ],
    [
      "relabelled, with a checkpoint no pinned key signed",
      (r: Receipt) => ({ ...r, stream: "agents.nosuch", checkpoint: r.checkpoint.replace(/— .*/s, "") }),
      "receipt-checkpoint-invalid",
    ],
  ] as const) {
    it(`gives a receipt ${what} its own code, and the stream stream-missing`, async () => {
      const file = await receiptFile(edit);
      const { code, report } = await verifyJson(dataDir, "--receipts", file);
      expect(code).toBe(1);
      expect(findings(report).filter(([, stream]) => stream === "agents.nosuch")).toEqual([
        ["stream-missing", "agents.nosuch", undefined],
        [expected, "agents.nosuch", 1],
      ]);
      expect(report.receipts).toMatchObject({ given: 1, checked: 1, notChecked: 0 });
    });
  }
});

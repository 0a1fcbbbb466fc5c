import { spawnSync } from "node:child_process";
import { chmod, cp, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { VerifyResult } from "@auditsink/cli";
import {
  checkConsistency,
  openCheckpoint,
  parseVerifierKey,
  type Receipt,
  verifyReceipt,
} from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI } from "../built.ts";
import { objectFile } from "../embedded/helpers.ts";
import { cli, sinkWithProducer, tempDir } from "./helpers.ts";

let sink: EmbeddedSink;
let work: string;
let dataDir: string;
let fingerprint: string;
let verifierKey: string;
let sentAt: string;

/** A copy of the data directory whose files the test may change (the store's files are read-only). */
async function copyOf(dir: string): Promise<string> {
  const copy = join(await tempDir(), "copy");
  await cp(dir, copy, { recursive: true });
  return copy;
}

async function flipByte(path: string, at: number): Promise<void> {
  await chmod(path, 0o644);
  const bytes = await readFile(path);
  bytes[at] = bytes[at]! ^ 0x01;
  await writeFile(path, bytes);
}

/** The first file under `dir`, in name order, descending into directories (a data directory's fanned layout). */
async function firstFile(dir: string): Promise<string> {
  const first = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))[0]!;
  return first.isDirectory() ? firstFile(join(dir, first.name)) : join(dir, first.name);
}

beforeAll(async () => {
  work = await tempDir();
  const started = await sinkWithProducer(work, "support-bot");
  ({ sink, dataDir, fingerprint, verifierKey } = started);
  const { keyFile } = started;
  const send = (extra: string[]) =>
    cli([
      "send",
      "--url",
      sink.url,
      "--key",
      keyFile,
      "--stream",
      "agents.demo",
      "--sink-key",
      verifierKey,
      ...extra,
    ]);
  const events = join(work, "events.jsonl");
  await writeFile(
    events,
    [1, 2, 3]
      .map((n) =>
        JSON.stringify({
          type: "ai.agent.tool_call",
          id: `call-${n}`,
          data: { "gen_ai.tool.name": "search", n },
        }),
      )
      .join("\n"),
  );
  expect(await send(["--source", "agent://support-bot", events])).toMatchObject({ code: 0 });
  await new Promise((r) => setTimeout(r, 20));
  sentAt = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 20));
  for (const n of [4, 5]) {
    const r = await send([
      "--source",
      "agent://support-bot",
      "--type",
      "ai.agent.tool_call",
      "--id",
      `call-${n}`,
    ]);
    expect(r).toMatchObject({ code: 0 });
  }
});

afterAll(async () => {
  await sink.close();
});

describe("auditsink --help", () => {
  it.each([
    [[]],
    [["verify"]],
    [["export"]],
    [["prove", "inclusion"]],
    [["producer", "create"]],
    [["send"]],
    [["tail"]],
    [["query"]],
    [["start"]],
  ])("documents %j", async (args) => {
    const r = await cli([...args, "--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: auditsink/);
  });
});

describe("auditsink send", () => {
  it("prints one verified receipt per event as JSON lines with --json", async () => {
    const keyFile = join(work, "agent.key.pem");
    const r = await cli([
      "send",
      "--url",
      sink.url,
      "--key",
      keyFile,
      "--stream",
      "agents.other",
      "--sink-key",
      verifierKey,
      "--type",
      "ai.agent.tool_call",
      "--data",
      '{"gen_ai.tool.name":"search"}',
      "--json",
    ]);
    expect(r.code).toBe(0);
    const receipt = JSON.parse(r.out) as Receipt;
    expect(verifyReceipt(receipt, { trusted: [parseVerifierKey(verifierKey)] }).ok).toBe(true);
  });
});

describe("auditsink verify <data directory>", () => {
  it("exits 0 and reports every stream as verified, producer signatures included", async () => {
    const r = await cli(["verify", dataDir, "--fingerprint", fingerprint, "--json"]);
    const report = JSON.parse(r.out) as VerifyResult;
    expect(r.code).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.producerSignatures).toBe(true);
    expect(report.streams.find((s) => s.stream === "agents.demo")).toMatchObject({
      records: 5,
      failures: [],
    });
    expect(report.streams.map((s) => s.stream)).toContain("_system");
  });

  it("exits 1 and names the code and location of every failure when a stored record was changed", async () => {
    // Prepare
    const copy = await copyOf(dataDir);
    const segment = await firstFile(join(copy, "objects/streams/agents.demo/segments"));
    await flipByte(segment, 40);
    // Act
    const r = await cli(["verify", copy, "--fingerprint", fingerprint, "--stream", "agents.demo", "--json"]);
    // Assess
    const report = JSON.parse(r.out) as VerifyResult;
    expect(r.code).toBe(1);
    expect(report.ok).toBe(false);
    const codes = report.streams[0]!.failures.map((f) => f.code);
    expect(codes).toContain("checkpoint-root-mismatch");
    for (const f of report.streams[0]!.failures) expect(f.at).toBeDefined();
  });

  it("gives the same report with worker threads (a separate process, as a user runs it) as on one thread", async () => {
    // Prepare: a copy with one changed record, so both paths have failures to agree on.
    const copy = await copyOf(dataDir);
    await flipByte(await firstFile(join(copy, "objects/streams/agents.demo/segments")), 40);
    const run = (dir: string, jobs: string) => {
      const r = spawnSync(
        process.execPath,
        [CLI, "verify", dir, "--fingerprint", fingerprint, "--jobs", jobs, "--json"],
        {
          encoding: "utf8",
        },
      );
      return { code: r.status, report: JSON.parse(r.stdout) as VerifyResult };
    };
    // Act
    const clean = run(dataDir, "2");
    const parallel = run(copy, "2");
    const serial = run(copy, "1");
    // Assess
    expect(clean.code).toBe(0);
    expect(clean.report).toMatchObject({ ok: true, jobs: 2, producerSignatures: true });
    expect(parallel.code).toBe(1);
    expect(parallel.report.jobs).toBe(2);
    expect(serial.report.jobs).toBe(1);
    expect(parallel.report.streams).toEqual(serial.report.streams);
    expect(parallel.report.failures).toBeGreaterThan(0);
  });

  it("prints a text report with FAIL lines and no progress bar when stderr is not a terminal", async () => {
    const copy = await copyOf(dataDir);
    await flipByte(await firstFile(join(copy, "objects/streams/agents.demo/checkpoints")), 5);
    const r = await cli(["verify", copy, "--fingerprint", fingerprint]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL checkpoint-/);
    expect(r.out).toMatch(/NOT VERIFIED/);
    expect(r.err).toBe("");
  });

  it("exits 2 when a pinned fingerprint matches no key of the source", async () => {
    const r = await cli(["verify", dataDir, "--fingerprint", "ab".repeat(32)]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no key offered by the source has fingerprint/);
  });

  it("resumes from a saved state: the second run verifies only what is new", async () => {
    const state = join(await tempDir(), "state.json");
    const first = JSON.parse(
      (await cli(["verify", dataDir, "--verifier-key", verifierKey, "--state", state, "--json"])).out,
    ) as VerifyResult;
    const second = JSON.parse(
      (await cli(["verify", dataDir, "--verifier-key", verifierKey, "--state", state, "--json"])).out,
    ) as VerifyResult;
    const demo = (r: VerifyResult) => r.streams.find((s) => s.stream === "agents.demo")!;
    expect(demo(first)).toMatchObject({ from: 0, records: 5 });
    expect(demo(second)).toMatchObject({ from: 5, records: 0, failures: [] });
    const full = JSON.parse(
      (await cli(["verify", dataDir, "--verifier-key", verifierKey, "--state", state, "--full", "--json"]))
        .out,
    ) as VerifyResult;
    expect(demo(full)).toMatchObject({ from: 0, records: 5 });
  });
});

describe("auditsink export and verify <bundle>", () => {
  it("writes a bundle that verifies offline with the pinned key", async () => {
    // Prepare
    const out = join(await tempDir(), "bundle");
    // Act
    const exported = await cli(["export", dataDir, "--stream", "agents.demo", "--out", out, "--json"]);
    const verified = await cli(["verify", out, "--fingerprint", fingerprint, "--json"]);
    // Assess
    expect(exported.code).toBe(0);
    const report = JSON.parse(verified.out) as VerifyResult;
    expect(verified.code).toBe(0);
    expect(report.source.kind).toBe("bundle");
    expect(report.streams[0]).toMatchObject({ stream: "agents.demo", records: 5, failures: [] });
    expect(await readFile(join(out, "README.md"), "utf8")).toContain(`--fingerprint ${fingerprint}`);
    const receipts = JSON.parse(await readFile(join(out, "proofs/inclusion.json"), "utf8"))
      .receipts as Receipt[];
    expect(receipts).toHaveLength(5);
  });

  it("exports a time window from the middle of the stream, starting from the signed frontier", async () => {
    const out = join(await tempDir(), "bundle");
    const exported = await cli([
      "export",
      dataDir,
      "--stream",
      "agents.demo",
      "--from",
      sentAt,
      "--out",
      out,
    ]);
    expect(exported.code).toBe(0);
    const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    expect(manifest.records).toEqual({ first: 3, end: 5 });
    expect(manifest.start.size).toBe(3);
    const verified = await cli(["verify", out, "--fingerprint", fingerprint, "--json"]);
    expect(verified.code).toBe(0);
    // A forged starting frontier cannot recompute the signed roots.
    manifest.start.frontier = manifest.start.frontier.map(() => "00".repeat(32));
    await writeFile(join(out, "manifest.json"), JSON.stringify(manifest));
    const forged = JSON.parse((await cli(["verify", out, "--fingerprint", fingerprint, "--json"])).out);
    expect(forged.ok).toBe(false);
    expect(forged.streams[0].failures.map((f: { code: string }) => f.code)).toContain(
      "checkpoint-root-mismatch",
    );
  });

  it("fails a bundle whose record was changed, and one stripped of its checkpoints", async () => {
    const out = join(await tempDir(), "bundle");
    await cli(["export", dataDir, "--stream", "agents.demo", "--out", out]);
    const copy = await copyOf(out);
    await flipByte(await firstFile(join(out, "objects/streams/agents.demo/segments")), 60);
    const changed = await cli(["verify", out, "--fingerprint", fingerprint, "--json"]);
    expect(changed.code).toBe(1);
    const { rm } = await import("node:fs/promises");
    await rm(join(copy, "objects/streams/agents.demo/checkpoints"), { recursive: true, force: true });
    await writeFile(join(copy, "proofs/inclusion.json"), '{"receipts": []}');
    await writeFile(join(copy, "proofs/consistency.json"), '{"proofs": []}');
    const stripped = JSON.parse((await cli(["verify", copy, "--fingerprint", fingerprint, "--json"])).out);
    expect(stripped.streams[0].failures.map((f: { code: string }) => f.code)).toContain("bundle-not-covered");
  });

  it("brings the segments up to the covering checkpoint when none ends exactly at the window", async () => {
    // Prepare: a copy whose checkpoint at size 3 is missing (as after a crash between commit and signing).
    const copy = await copyOf(dataDir);
    const { rm } = await import("node:fs/promises");
    await rm(objectFile(copy, "streams/agents.demo/checkpoints/00000000000000000003"), { force: true });
    const out = join(await tempDir(), "bundle");
    // Act
    const exported = await cli(["export", copy, "--stream", "agents.demo", "--to", sentAt, "--out", out]);
    const verified = JSON.parse((await cli(["verify", out, "--fingerprint", fingerprint, "--json"])).out);
    // Assess
    expect(exported.code).toBe(0);
    const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    expect(manifest).toMatchObject({
      records: { first: 0, end: 3 },
      segments: { first: 0, end: 4 },
      coveredBy: 4,
    });
    expect(verified.ok).toBe(true);
  });

  it("refuses to verify a bundle without a pinned key", async () => {
    const out = join(await tempDir(), "bundle");
    await cli(["export", dataDir, "--stream", "agents.demo", "--out", out]);
    const r = await cli(["verify", out]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no trusted checkpoint key/);
  });
});

describe("auditsink prove", () => {
  it("prints a receipt for an event found by source and id that verifies with core", async () => {
    const r = await cli([
      "prove",
      "inclusion",
      dataDir,
      "--stream",
      "agents.demo",
      "--event-source",
      "agent://support-bot",
      "--event-id",
      "call-2",
      "--verifier-key",
      verifierKey,
    ]);
    expect(r.code).toBe(0);
    const receipt = JSON.parse(r.out) as Receipt;
    expect(receipt).toMatchObject({ index: 1, id: "call-2" });
    expect(verifyReceipt(receipt, { trusted: [parseVerifierKey(verifierKey)] }).ok).toBe(true);
  });

  it("prints a consistency proof between two checkpoints that verifies with core", async () => {
    const r = await cli([
      "prove",
      "consistency",
      dataDir,
      "--stream",
      "agents.demo",
      "--from",
      "3",
      "--to",
      "5",
      "--verifier-key",
      verifierKey,
    ]);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.out);
    const trusted = [parseVerifierKey(verifierKey)];
    const a = openCheckpoint(p.older, trusted);
    const b = openCheckpoint(p.newer, trusted);
    expect(a.ok && b.ok && checkConsistency(a.checkpoint, b.checkpoint, p.proof).ok).toBe(true);
  });
});

describe("auditsink tail", () => {
  it("prints the last records as JSON lines", async () => {
    const r = await cli(["tail", dataDir, "--stream", "agents.demo", "--from", "-2", "--json"]);
    const lines = r.out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.index)).toEqual([3, 4]);
    expect(lines[1].record.event.id).toBe("call-5");
  });
});

describe("auditsink producer", () => {
  it("lists and revokes producers through the API", async () => {
    const token = sink.local.adminToken;
    const listed = JSON.parse((await cli(["producer", "list", "--url", sink.url, "--json"])).out);
    expect(listed.producers.map((p: { id: string }) => p.id)).toContain("support-bot");
    const keyFile = join(await tempDir(), "temp.key.pem");
    await cli([
      "producer",
      "create",
      "--url",
      sink.url,
      "--admin-token",
      token,
      "--id",
      "temp-bot",
      "--streams",
      "temp",
      "--key-file",
      keyFile,
    ]);
    const revoked = await cli([
      "producer",
      "revoke",
      "temp-bot",
      "--url",
      sink.url,
      "--admin-token",
      token,
      "--json",
    ]);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.out).keys[0].revokedAt).toBeDefined();
  });

  it("refuses to register without the admin token", async () => {
    const keyFile = join(await tempDir(), "x.key.pem");
    const r = await cli([
      "producer",
      "create",
      "--url",
      sink.url,
      "--id",
      "x",
      "--streams",
      "x",
      "--key-file",
      keyFile,
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/401/);
  });
});

describe("auditsink verify progress", () => {
  it("draws a progress bar on a terminal", async () => {
    const r = await cli(["verify", dataDir, "--fingerprint", fingerprint], { isTTY: true });
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/records/);
  });

  it("never draws one with --json, even on a terminal", async () => {
    const r = await cli(["verify", dataDir, "--fingerprint", fingerprint, "--json"], { isTTY: true });
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
  });
});

describe("auditsink producer --data", () => {
  it("registers, lists and revokes in a data directory no sink runs on, recording it in _system", async () => {
    const dir = join(await tempDir(), "data");
    const keyFile = join(await tempDir(), "offline.key.pem");
    const created = await cli([
      "producer",
      "create",
      "--data",
      dir,
      "--id",
      "batch-job",
      "--streams",
      "jobs.*",
      "--key-file",
      keyFile,
      "--json",
    ]);
    expect(created.code).toBe(0);
    const listed = JSON.parse((await cli(["producer", "list", "--data", dir, "--json"])).out);
    expect(listed.producers.map((p: { id: string }) => p.id)).toEqual(["batch-job"]);
    const revoked = await cli(["producer", "revoke", "batch-job", "--data", dir, "--json"]);
    expect(JSON.parse(revoked.out).keys[0].revokedAt).toBeDefined();
    const report = JSON.parse(
      (await cli(["verify", dir, "--trusted-keys", join(dir, "keys", "verifier-key.txt"), "--json"])).out,
    ) as VerifyResult;
    expect(report.streams.find((s) => s.stream === "_system")).toMatchObject({ records: 2, failures: [] });
  });

  it("is refused while the sink runs on the data directory", async () => {
    const keyFile = join(await tempDir(), "refused.key.pem");
    const r = await cli([
      "producer",
      "create",
      "--data",
      dataDir,
      "--id",
      "x",
      "--streams",
      "x",
      "--key-file",
      keyFile,
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/in use/);
  });
});

/**
 * `auditsink query`: the filters of GET /v1/events over a data directory (beside the running sink that writes
 * it), an evidence bundle from `auditsink export`, with --json lines a record proves from, paging by cursor and
 * usage errors. s3:// sources: test/cli/s3.test.ts.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { FoundEvent, Receipt } from "@auditsink/core";
import type { EmbeddedSink } from "@auditsink/local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, sinkWithProducer, tempDir } from "./helpers.ts";

let sink: EmbeddedSink;
let dataDir: string;
let fingerprint: string;
let bundle: string;
/** Received time between the two sends to agents.q: the bundle holds the second send's records only. */
let between: string;

interface Sent {
  stream: string;
  id: string;
  type: string;
  agent: string;
  run: string;
  time: string;
}
const sent: Sent[] = [];

/** Events spread over two agents, three runs, two types and a minute apart in producer time. */
function events(stream: string, from: number, count: number): Sent[] {
  return Array.from({ length: count }, (_, k) => {
    const n = from + k;
    return {
      stream,
      id: `q-${n}`,
      type: n % 3 === 0 ? "ai.agent.llm_call" : "ai.agent.tool_call",
      agent: n % 2 === 0 ? "agent-even" : "agent-odd",
      run: `run-${n % 3}`,
      time: new Date(Date.UTC(2026, 10, 24, 12, n)).toISOString(),
    };
  });
}

async function send(work: string, keyFile: string, verifierKey: string, batch: Sent[]): Promise<void> {
  const file = join(work, `${batch[0]!.id}.jsonl`);
  await writeFile(
    file,
    batch
      .map((e) =>
        JSON.stringify({
          type: e.type,
          id: e.id,
          time: e.time,
          data: { "gen_ai.agent.id": e.agent, "gen_ai.conversation.id": e.run },
        }),
      )
      .join("\n"),
  );
  const r = await cli([
    "send",
    file,
    "--url",
    sink.url,
    "--key",
    keyFile,
    "--stream",
    batch[0]!.stream,
    "--source",
    "agent://query-test",
    "--sink-key",
    verifierKey,
  ]);
  expect(r.code, r.err).toBe(0);
  sent.push(...batch);
}

beforeAll(async () => {
  const work = await tempDir();
  const started = await sinkWithProducer(work, "query-bot");
  ({ sink, dataDir, fingerprint } = started);
  await send(work, started.keyFile, started.verifierKey, events("agents.q", 0, 12));
  await new Promise((r) => setTimeout(r, 20));
  between = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 20));
  await send(work, started.keyFile, started.verifierKey, events("agents.q", 12, 12));
  await send(work, started.keyFile, started.verifierKey, events("agents.r", 24, 6));
  bundle = join(work, "bundle");
  const exported = await cli([
    "export",
    dataDir,
    "--stream",
    "agents.q",
    "--received-since",
    between,
    "--out",
    bundle,
  ]);
  expect(exported.code, exported.err).toBe(0);
});

afterAll(async () => {
  await sink?.close();
});

const jsonLines = (out: string) =>
  out
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as FoundEvent);
const idsOf = (found: FoundEvent[]) => found.map((e) => e.event.id);
/** The ids the filter should find, in the order the query returns them: stream, then index (= send order). */
const expected = (keep: (e: Sent) => boolean) =>
  sent
    .filter(keep)
    .sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0))
    .map((e) => e.id);

describe("auditsink query <data directory>, while the sink runs on it", () => {
  it("combines filters: agent, run, type and a producer-time window", async () => {
    // Act
    const r = await cli([
      "query",
      dataDir,
      "--agent",
      "agent-even",
      "--type",
      "ai.agent.tool_call",
      "--since",
      "2026-11-24T12:04:00Z",
      "--until",
      "2026-11-24T12:26:00Z",
      "--json",
    ]);
    const byRun = await cli(["query", dataDir, "--run", "run-1", "--producer", "query-bot", "--json"]);
    // Assess
    expect(r.code, r.err).toBe(0);
    expect(idsOf(jsonLines(r.out))).toEqual(
      expected(
        (e) =>
          e.agent === "agent-even" &&
          e.type === "ai.agent.tool_call" &&
          e.time >= "2026-11-24T12:04:00.000Z" &&
          e.time < "2026-11-24T12:26:00.000Z",
      ),
    );
    expect(idsOf(jsonLines(byRun.out))).toEqual(expected((e) => e.run === "run-1"));
    expect(r.err).toBe("");
  });

  it("prints one readable line per event, and says so when nothing matches", async () => {
    // Act
    const r = await cli(["query", dataDir, "--id", "q-7"]);
    const none = await cli(["query", dataDir, "--agent", "nobody"]);
    // Assess
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^agents\.q #7 {2}2026-11-24T12:07:00\.000Z {2}ai\.agent\.tool_call {2}agent:\/\/query-test q-7 {2}\(query-bot, received \S+\)\n$/,
    );
    expect(none).toMatchObject({ code: 0, out: "", err: "no events match\n" });
  });

  it("pages with --limit and the cursor printed on stderr, to the same events --all returns", async () => {
    // Prepare
    const args = ["query", dataDir, "--agent", "agent-odd", "--json"];
    const pages: string[][] = [];
    // Act
    let cursor: string | undefined;
    do {
      const r = await cli([...args, "--limit", "4", ...(cursor ? ["--cursor", cursor] : [])]);
      expect(r.code, r.err).toBe(0);
      pages.push(idsOf(jsonLines(r.out)));
      cursor = /^cursor (\S+)\n$/.exec(r.err)?.[1];
    } while (cursor);
    const all = await cli([...args, "--all", "--limit", "4"]);
    // Assess
    const odd = expected((e) => e.agent === "agent-odd");
    expect(pages.flat()).toEqual(odd);
    expect(pages.slice(0, -1).every((p) => p.length === 4)).toBe(true);
    expect(idsOf(jsonLines(all.out))).toEqual(odd);
    expect(all.err).toBe("");
  });

  it("returns records that prove with auditsink prove inclusion", async () => {
    // Prepare
    const [found] = jsonLines((await cli(["query", dataDir, "--run", "run-2", "--json"])).out);
    // Act
    const proved = await cli([
      "prove",
      "inclusion",
      dataDir,
      "--stream",
      found!.stream,
      "--index",
      String(found!.index),
      "--fingerprint",
      fingerprint,
    ]);
    // Assess
    expect(proved.code, proved.err).toBe(0);
    const receipt = JSON.parse(proved.out) as Receipt;
    expect(receipt).toMatchObject({
      stream: found!.stream,
      index: found!.index,
      recordHash: found!.recordHash,
      source: found!.event.source,
      id: found!.event.id,
    });
  });
});

describe("auditsink query <bundle>", () => {
  it("finds the bundle's records only, from its first segment on", async () => {
    // Act
    const r = await cli(["query", bundle, "--type", "ai.agent.llm_call", "--json"]);
    // Assess
    expect(r.code, r.err).toBe(0);
    const found = jsonLines(r.out);
    expect(idsOf(found)).toEqual(
      expected(
        (e) => e.stream === "agents.q" && e.type === "ai.agent.llm_call" && Number(e.id.slice(2)) >= 12,
      ),
    );
    expect(found.map((e) => e.index)).toEqual([12, 15, 18, 21]);
  });
});

describe("auditsink query with bad arguments", () => {
  it.each([
    [["--limit", "0"], /--limit: must be at least 1/],
    [["--limit", "1001"], /--limit: must be at most 1000/],
    [["--since", "yesterday"], /--since: must be an RFC 3339 timestamp/],
    [["--received-until", "2026-11-24"], /--received-until: must be an RFC 3339 timestamp/],
    [["--trace-id", "XYZ"], /--trace-id: must be a W3C trace id/],
    [["--cursor", "not-a-cursor"], /cursor: not a cursor this sink returned/],
    [["--no-such-flag"], /unknown option '--no-such-flag'/],
  ])("%j exits 2 with a message naming the problem", async (args, message) => {
    const r = await cli(["query", dataDir, ...args]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out).toBe("");
  });

  it("exits 2 for a source that is neither a data directory, a bundle nor s3://", async () => {
    const r = await cli(["query", join(dataDir, "no-such-dir")]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/is not a directory or s3:\/\/ URL/);
  });
});

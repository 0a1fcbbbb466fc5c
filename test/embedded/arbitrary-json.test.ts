/**
 * Any JSON a producer signs is stored byte for byte: a running embedded sink, fed arbitrary event data over HTTP
 * and through the SDK, with member names that mean something to JavaScript (`__proto__`, `constructor`,
 * `prototype`). An agent logging tool arguments verbatim must not be able to make its own record disappear.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AuditClient } from "@auditsink/client";
import { canonicalBytes, type Receipt, type SignedEvent, signEvent } from "@auditsink/core";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedSink, startEmbeddedSink } from "../../packages/local/src/index.ts";
import { tempDir, testProducer } from "./helpers.ts";

const RUNS = { numRuns: 40 };
const STREAM = "agents.json";

/** JSON text (not values: JSON.parse then makes `__proto__` an own member, as any server's parser does). */
const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom("null", "true", "false", "0", "-0", "1e3", "-12.5", "9007199254740991"),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
    fc.string({ unit: "grapheme" }).map((s) => JSON.stringify(s)),
    fc.array(tie("value"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`),
    fc
      .uniqueArray(
        fc.tuple(
          fc.oneof(
            fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty"),
            fc.string({ unit: "grapheme", maxLength: 8 }),
          ),
          tie("value"),
        ),
        { selector: ([k]) => k, maxLength: 5 },
      )
      .map((members) => `{${members.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`),
  ),
})).value;

/** Always includes the three names, at the top of `data` and one level down. */
const hostileData = fc
  .tuple(jsonText, jsonText, jsonText)
  .map(([a, b, c]) => `{"__proto__":${a},"constructor":{"prototype":${b}},"prototype":[{"__proto__":${c}}]}`);

let sink: EmbeddedSink;
let dataDir: string;
let remove: () => Promise<void>;
const agent = testProducer("json-agent");

beforeAll(async () => {
  ({ dir: dataDir, remove } = await tempDir("auditsink-json-"));
  sink = await startEmbeddedSink({
    dataDir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: () => {},
    log: () => {},
  });
  const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: agent.id, publicKey: agent.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
});
afterAll(async () => {
  await sink?.close();
  await remove?.();
});

let n = 0;

/** The stored event of a receipt, as the read API serves it, in RFC 8785 form. */
async function storedCanonical(receipt: Receipt): Promise<Buffer> {
  const res = await fetch(
    `${sink.url}/v1/streams/${STREAM}/records?from=${receipt.index}&to=${receipt.index + 1}`,
  );
  const text = await res.text();
  const { records } = JSON.parse(text) as { records: { record: { event: SignedEvent } }[] };
  return canonicalBytes(records[0]!.record.event);
}

describe("arbitrary JSON event data", () => {
  it("is accepted over HTTP and stored byte for byte, whatever its member names", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(hostileData, jsonText), async (text) => {
        // Prepare
        const event = signEvent(
          {
            specversion: "1.0",
            id: `http-${n++}`,
            source: "agent://json-agent",
            type: "ai.agent.tool_call",
            time: "2026-11-24T12:00:00Z",
            data: JSON.parse(text),
          },
          agent.privateKey,
        );
        const body = JSON.stringify(event);
        // Act
        const res = await fetch(`${sink.url}/v1/streams/${STREAM}/events`, {
          method: "POST",
          headers: { "content-type": "application/cloudevents+json" },
          body,
        });
        // Assess
        expect(res.status).toBe(200);
        const [receipt] = ((await res.json()) as { receipts: Receipt[] }).receipts;
        expect((await storedCanonical(receipt!)).equals(canonicalBytes(JSON.parse(body)))).toBe(true);
      }),
      RUNS,
    );
  });

  it("is accepted through the SDK and stored byte for byte", async () => {
    const verifierKey = (await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim();
    const client = await AuditClient.create({
      endpoint: sink.url,
      producerKey: agent.privateKey,
      sinkKey: verifierKey,
      stream: STREAM,
      source: "agent://json-agent",
      batch: { lingerMs: 0 },
    });
    await fc.assert(
      fc.asyncProperty(hostileData, async (text) => {
        const data = JSON.parse(text);
        const receipt = await client.send({ type: "ai.agent.tool_call", id: `sdk-${n++}`, data });
        const stored = await storedCanonical(receipt);
        expect(JSON.parse(stored.toString("utf8")).data).toBeDefined();
        expect(canonicalBytes(JSON.parse(stored.toString("utf8")).data).equals(canonicalBytes(data))).toBe(
          true,
        );
      }),
      RUNS,
    );
    await client.close();
  });
});

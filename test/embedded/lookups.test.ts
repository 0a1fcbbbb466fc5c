/**
 * Against a running embedded sink: a lost receipt found again by source + id (it verifies with the SDK and the
 * CLI), events found by received time and by trace id, CloudEvents binary mode from the official SDK, hostile
 * binary-mode headers refused with nothing stored, 405 with Allow, and the API reference served offline.
 */
import { writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { parseVerifierKey, type Receipt, type SignedEvent, signEvent, verifyReceipt } from "@auditsink/core";
import { CloudEvent, HTTP } from "cloudevents";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedSink, startEmbeddedSink } from "../../packages/local/src/index.ts";
import { cli, clientOf } from "../cli/helpers.ts";
import { tempDir, testProducer } from "./helpers.ts";

const STREAM = "agents.lookups";
let sink: EmbeddedSink;
let dir: { dir: string; remove(): Promise<void> };
/** Files the CLI reads or writes beside the data directory (receipts, bundles), removed with it. */
let scratch: { dir: string; remove(): Promise<void> };
const producer = testProducer("lookup-bot");
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

beforeAll(async () => {
  dir = await tempDir("auditsink-lookups-");
  scratch = await tempDir("auditsink-lookups-out-");
  sink = await startEmbeddedSink({
    dataDir: dir.dir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: () => {},
    log: () => {},
  });
  const res = await fetch(`${sink.url}/v1/producers`, {
    method: "POST",
    headers: { authorization: `Bearer ${sink.local.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ id: producer.id, publicKey: producer.publicKeySpki, streams: ["agents.*"] }),
  });
  expect(res.status).toBe(201);
});
afterAll(async () => {
  await sink?.close();
  await dir?.remove();
  await scratch?.remove();
});

async function submit(events: unknown[], stream = STREAM): Promise<Response> {
  return fetch(`${sink.url}/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  });
}

async function size(stream: string): Promise<number> {
  const res = await fetch(`${sink.url}/v1/streams`);
  const { streams } = (await res.json()) as { streams: { stream: string; size: number }[] };
  return streams.find((s) => s.stream === stream)?.size ?? 0;
}

/** A producer's event, re-signed with extra attributes (the helper's events carry none). */
function signedWith(extra: Record<string, unknown>): SignedEvent {
  const { signature: _s, sigkeyid: _k, ...unsigned } = producer.event();
  const event: Record<string, unknown> = { ...unsigned, ...extra };
  for (const [name, value] of Object.entries(event)) if (value === undefined) delete event[name];
  return signEvent(event as never, producer.privateKey);
}

describe("a lost receipt, found again by source and id", () => {
  it("is served with the original's stream, index and record hash, and verifies with the SDK and the CLI", async () => {
    const event = producer.event();
    const res = await submit([event]);
    const [original] = ((await res.json()) as { receipts: Receipt[] }).receipts;
    await submit([producer.event(), producer.event()]); // the stream grows past it

    const client = await clientOf(sink, producer.privateKey);
    const found = await client.receipt(event.source, event.id);
    expect(found).toMatchObject({
      stream: STREAM,
      index: original!.index,
      recordHash: original!.recordHash,
      source: event.source,
      id: event.id,
    });
    expect(found.checkpoint).not.toBe(original!.checkpoint); // the stream's newest checkpoint
    const trusted = [parseVerifierKey(sink.local.signingKey.verifierKey)];
    expect(verifyReceipt(found, { trusted, deployment: sink.local.deployment }).ok).toBe(true);

    const unknown = await fetch(
      `${sink.url}/v1/receipts?source=${encodeURIComponent(event.source)}&id=never-sent`,
    );
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { code: string }).code).toBe("not-found");
    await expect(client.receipt(event.source, "never-sent")).rejects.toMatchObject({ code: "rejected" });
    const missing = await fetch(`${sink.url}/v1/receipts?source=${encodeURIComponent(event.source)}`);
    expect(await missing.json()).toMatchObject({ status: 400, field: "id" });

    const receipts = join(scratch.dir, "receipts.json");
    await writeFile(receipts, JSON.stringify([found]));
    const verified = await cli([
      "verify",
      dir.dir,
      "--verifier-key",
      sink.local.signingKey.verifierKey,
      "--stream",
      STREAM,
      "--receipts",
      receipts,
      "--no-progress",
      "--json",
    ]);
    const report = JSON.parse(verified.out) as { ok: boolean; receipts: { checked: number } };
    expect({ ok: report.ok, checked: report.receipts.checked }).toEqual({ ok: true, checked: 1 });
  });

  it("is a 409 naming `producer` when two producers sent one source + id, and found with ?producer=", async () => {
    const other = testProducer("lookup-bot-2");
    const reg = await fetch(`${sink.url}/v1/producers`, {
      method: "POST",
      headers: { authorization: `Bearer ${sink.local.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ id: other.id, publicKey: other.publicKeySpki, streams: ["agents.*"] }),
    });
    expect(reg.status).toBe(201);
    const mine = producer.event({ id: "shared-id" });
    const { signature: _s, sigkeyid: _k, ...unsigned } = mine;
    const theirs = signEvent(unsigned, other.privateKey);
    expect((await submit([mine])).status).toBe(200);
    expect((await submit([theirs])).status).toBe(200);
    const query = `source=${encodeURIComponent(mine.source)}&id=shared-id`;
    const ambiguous = await fetch(`${sink.url}/v1/receipts?${query}`);
    expect(await ambiguous.json()).toMatchObject({ status: 409, code: "ambiguous", field: "producer" });
    const chosen = await fetch(`${sink.url}/v1/receipts?${query}&producer=${other.id}`);
    expect(chosen.status).toBe(200);
  });
});

describe("finding events", () => {
  it("by the sink's received time, apart from the producer's time", async () => {
    const before = new Date().toISOString();
    // The producer claims a time a year ago; the sink receives it now.
    const old = producer.event({ time: "2025-01-01T00:00:00.000Z", agent: "received-probe" });
    expect((await submit([old])).status).toBe(200);
    const after = new Date(Date.now() + 1000).toISOString();
    const page = async (q: string) =>
      (
        (await (await fetch(`${sink.url}/v1/events?agent=received-probe&${q}`)).json()) as {
          events: { received: string; index: number }[];
        }
      ).events;
    expect(await page(`receivedSince=${before}&receivedUntil=${after}`)).toHaveLength(1);
    expect(await page(`since=${before}`)).toHaveLength(0);
    expect(await page(`receivedUntil=${before}`)).toHaveLength(0);
    expect(await page("since=2024-12-31T00:00:00Z&until=2025-01-02T00:00:00Z")).toHaveLength(1);

    // `auditsink export` takes the same window over the same received time.
    const [probe] = await page(`receivedSince=${before}`);
    const out = join(scratch.dir, "bundle");
    const exported = await cli([
      "export",
      dir.dir,
      "--stream",
      STREAM,
      "--out",
      out,
      "--received-since",
      before,
      "--received-until",
      after,
      "--json",
    ]);
    expect(exported.code, exported.err).toBe(0);
    const { manifest } = JSON.parse(exported.out) as {
      manifest: { records: { first: number; end: number } };
    };
    const index = probe!.index;
    expect(manifest.records).toMatchObject({ first: index, end: index + 1 });
    const refused = await cli([
      "export",
      dir.dir,
      "--stream",
      STREAM,
      "--out",
      `${out}-2`,
      "--received-since",
      "yesterday",
    ]);
    expect(refused.err).toContain("RFC 3339");
  });

  it("by the trace id of their traceparent, and refuses a traceparent that is not W3C", async () => {
    const traced = signedWith({
      traceparent: TRACEPARENT,
      tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    });
    expect((await submit([traced])).status).toBe(200);
    const res = await fetch(`${sink.url}/v1/events?traceId=${TRACE_ID}`);
    const { events } = (await res.json()) as { events: { event: SignedEvent }[] };
    expect(events.map((e) => e.event.id)).toEqual([traced.id]);
    expect(events[0]!.event.traceparent).toBe(TRACEPARENT);

    const before = await size(STREAM);
    for (const [traceparent, field] of [
      [`00-${"0".repeat(32)}-00f067aa0ba902b7-01`, "traceparent"],
      [`00-${TRACE_ID.toUpperCase()}-00f067aa0ba902b7-01`, "traceparent"],
      [`ff-${TRACE_ID}-00f067aa0ba902b7-01`, "traceparent"],
    ] as const) {
      const bad = await submit([signedWith({ traceparent })]);
      expect(await bad.json()).toMatchObject({ status: 400, field: `events[0].${field}` });
    }
    const stateOnly = await submit([signedWith({ tracestate: "a=b" })]);
    expect(await stateOnly.json()).toMatchObject({ status: 400, field: "events[0].tracestate" });
    expect(await size(STREAM)).toBe(before);
    const badQuery = await fetch(`${sink.url}/v1/events?traceId=xyz`);
    expect(await badQuery.json()).toMatchObject({ status: 400, field: "traceId" });
  });
});

describe("CloudEvents binary mode", () => {
  it("accepts an event the official SDK emits in binary mode, and stores the event the producer signed", async () => {
    const signed = signedWith({
      datacontenttype: "application/json",
      time: new Date().toISOString(), // the SDK writes ce-time as toISOString()
      traceparent: TRACEPARENT,
    });
    const message = HTTP.binary(new CloudEvent(signed as never, false));
    expect(Object.keys(message.headers)).toContain("ce-signature");
    const res = await fetch(`${sink.url}/v1/streams/${STREAM}/events`, {
      method: "POST",
      headers: message.headers as Record<string, string>,
      body: message.body as string,
    });
    expect(res.status).toBe(200);
    const [receipt] = ((await res.json()) as { receipts: Receipt[] }).receipts;
    expect(receipt).toMatchObject({ source: signed.source, id: signed.id });
    const records = await fetch(
      `${sink.url}/v1/streams/${STREAM}/records?from=${receipt!.index}&to=${receipt!.index + 1}`,
    );
    const [{ record }] = ((await records.json()) as { records: { record: { event: unknown } }[] })
      .records as [{ record: { event: unknown } }];
    expect(record.event).toEqual(signed);
    const byTrace = await fetch(
      `${sink.url}/v1/events?traceId=${TRACE_ID}&id=${encodeURIComponent(signed.id)}`,
    );
    expect(((await byTrace.json()) as { events: unknown[] }).events).toHaveLength(1);
  });

  it("percent-decodes header values as UTF-8 and maps text and other bodies to data and data_base64", async () => {
    const subject = 'Euro € 😀 "quoted" 100%';
    const text = signedWith({ subject, datacontenttype: "text/plain; charset=utf-8", data: "héllo" });
    const bytes = signedWith({
      datacontenttype: "application/octet-stream",
      data_base64: "AAEC/w==",
      data: undefined,
    });
    for (const [event, body] of [
      [text, new TextEncoder().encode("héllo")],
      [bytes, new Uint8Array([0, 1, 2, 255])],
    ] as const) {
      const headers: Record<string, string> = { "content-type": event.datacontenttype as string };
      for (const [name, value] of Object.entries(event)) {
        if (["data", "data_base64", "datacontenttype"].includes(name) || value === undefined) continue;
        headers[`ce-${name}`] = percentEncode(String(value));
      }
      const res = await fetch(`${sink.url}/v1/streams/${STREAM}/events`, { method: "POST", headers, body });
      expect(res.status, await res.clone().text()).toBe(200);
    }
    const found = await fetch(`${sink.url}/v1/events?id=${encodeURIComponent(text.id)}`);
    const [stored] = ((await found.json()) as { events: { event: SignedEvent }[] }).events;
    expect(stored!.event.subject).toBe(subject);
    expect(stored!.event.data).toBe("héllo");
  });

  it("refuses duplicate, oversized, malformed and reserved headers with a 400 naming the header, storing nothing", async () => {
    const signed = signedWith({ datacontenttype: "application/json" });
    const base: [string, string][] = Object.entries(signed)
      .filter(([name]) => name !== "data" && name !== "datacontenttype")
      .map(([name, value]) => [`ce-${name}`, String(value)]);
    const before = await size(STREAM);
    const cases: { headers: [string, string][]; field: string; says: string }[] = [
      { headers: [...base, ["ce-id", "second-id"]], field: "ce-id", says: "more than once" },
      {
        headers: base.map(([n, v]) => [n, n === "ce-source" ? "s".repeat(5000) : v]),
        field: "ce-source",
        says: "at most 1024",
      },
      {
        headers: [...base, ["ce-__proto__", "polluted"]],
        field: "ce-__proto__",
        says: "not a CloudEvents attribute name",
      },
      {
        headers: [...base, ["ce-datacontenttype", "text/plain"]],
        field: "ce-datacontenttype",
        says: "Content-Type header",
      },
      { headers: [...base, ["ce-subject", "%C0%A0"]], field: "ce-subject", says: "not valid UTF-8" },
      { headers: [...base, ["ce-subject", "50%"]], field: "ce-subject", says: "two hex digits" },
      { headers: [...base, ["ce-subject", '"unterminated']], field: "ce-subject", says: "quoted string" },
    ];
    for (const c of cases) {
      const answer = await rawPost(
        `/v1/streams/${STREAM}/events`,
        [...c.headers, ["content-type", "application/json"]],
        JSON.stringify(signed.data),
      );
      expect({ status: answer.status, field: answer.body.field }, JSON.stringify(answer.body)).toEqual({
        status: 400,
        field: c.field,
      });
      expect(answer.body.detail).toContain(c.field);
      expect(answer.body.detail).toContain(c.says);
    }
    // A body in binary mode whose JSON is invalid names the body.
    const invalid = await rawPost(
      `/v1/streams/${STREAM}/events`,
      [...base, ["content-type", "application/json"]],
      "{",
    );
    expect({ status: invalid.status, field: invalid.body.field }).toEqual({ status: 400, field: "body" });
    expect(await size(STREAM)).toBe(before);
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });
});

describe("the HTTP surface", () => {
  it("answers an undeclared method with 405 and Allow", async () => {
    const res = await fetch(`${sink.url}/v1/streams/${STREAM}/events`, { method: "DELETE" });
    expect([res.status, res.headers.get("allow")]).toEqual([405, "POST"]);
  });

  it("serves the API reference offline: every script and style from the sink itself", async () => {
    const page = await fetch(`${sink.url}/docs`);
    const html = await page.text();
    expect(page.headers.get("content-type")).toContain("text/html");
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(sources.length).toBeGreaterThan(0);
    expect(sources.every((s) => s.startsWith("/docs/"))).toBe(true);
    for (const s of sources) {
      const asset = await fetch(`${sink.url}${s}`);
      expect(asset.status, s).toBe(200);
      expect((await asset.arrayBuffer()).byteLength, s).toBeGreaterThan(s.endsWith("init.js") ? 10 : 100_000);
    }
    const doc = (await (await fetch(`${sink.url}/openapi.json`)).json()) as { servers: { url: string }[] };
    expect(doc.servers[0]!.url).toBe(sink.url);
  });
});

/** HTTP binding §3.1.3.2: space, `"`, `%` and everything outside printable ASCII, as UTF-8 `%XX`. */
function percentEncode(value: string): string {
  return [...value]
    .map((ch) =>
      /^[\x21-\x7e]$/.test(ch) && ch !== '"' && ch !== "%"
        ? ch
        : [...new TextEncoder().encode(ch)]
            .map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`)
            .join(""),
    )
    .join("");
}

/** A POST written byte for byte (fetch would join repeated headers), answered with its status and JSON body. */
function rawPost(
  path: string,
  headers: [string, string][],
  body: string,
): Promise<{ status: number; body: { field?: string; detail: string } }> {
  const url = new URL(sink.url);
  const payload = Buffer.from(body);
  const head = [
    `POST ${path} HTTP/1.1`,
    `host: ${url.host}`,
    "connection: close",
    `content-length: ${payload.length}`,
    ...headers.map(([n, v]) => `${n}: ${v}`),
  ].join("\r\n");
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const [statusLine] = text.split("\r\n");
      const json = text.slice(text.indexOf("\r\n\r\n") + 4);
      const start = json.indexOf("{");
      resolve({
        status: Number(statusLine!.split(" ")[1]),
        body: JSON.parse(json.slice(start, json.lastIndexOf("}") + 1)),
      });
    });
    socket.write(`${head}\r\n\r\n`);
    socket.end(payload);
  });
}

/**
 * A running embedded sink answers an unauthenticated admin write before it reads the body: a client streaming a
 * 200 MB body gets its 401 after a few socket buffers, and the sink never holds the body in memory. Body limits
 * hold over the Node server whether the length is declared (Content-Length) or counted (chunked), and what the
 * Node server itself refuses (headers over its limit, bytes that are not HTTP) is a problem the document declares.
 */
import { once } from "node:events";
import { type IncomingMessage, request } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_BODY_BYTES, MAX_HEADER_BYTES } from "../../packages/api/src/index.ts";
import { type EmbeddedSink, startEmbeddedSink } from "../../packages/local/src/index.ts";
import { tempDir } from "./helpers.ts";

let sink: EmbeddedSink;
let remove: () => Promise<void>;

beforeAll(async () => {
  const t = await tempDir("auditsink-admin-body-");
  remove = t.remove;
  sink = await startEmbeddedSink({
    dataDir: t.dir,
    port: 0,
    verifyIntervalSeconds: 0,
    print: () => {},
    log: () => {},
  });
});
afterAll(async () => {
  await sink?.close();
  await remove?.();
});

describe("POST /v1/producers without the admin token", () => {
  it("is refused with 401 before its 200 MB chunked body is read", async () => {
    // Prepare
    const total = 200 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const req = request(`${sink.url}/v1/producers`, {
      method: "POST",
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
    req.on("error", () => undefined); // the sink may close the connection once it has answered
    let answered = false;
    const response = new Promise<IncomingMessage>((resolve) =>
      req.on("response", (res) => {
        answered = true;
        resolve(res);
      }),
    );
    // Act: write until the answer comes (or the whole body is written)
    let written = 0;
    while (!answered && written < total) {
      written += chunk.length;
      if (!req.write(chunk)) await Promise.race([once(req, "drain"), response]);
    }
    const res = await response;
    req.destroy();
    // Assess
    expect(res.statusCode).toBe(401);
    expect(written).toBeLessThan(32 * 1024 * 1024);
  });
});

/** Sends `body` to the events route in one piece (Content-Length) or in 64 KiB chunks; resolves status and body. */
async function postEvents(body: Buffer, mode: "content-length" | "chunked") {
  const req = request(`${sink.url}/v1/streams/agents.limits/events`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(mode === "chunked" ? { "transfer-encoding": "chunked" } : { "content-length": body.length }),
    },
  });
  req.on("error", () => undefined); // the sink may answer and close before the whole body is written
  const answer = new Promise<{ status: number; problem: { code: string; field?: string } }>((resolve) =>
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, problem: JSON.parse(Buffer.concat(chunks).toString("utf8")) }),
      );
    }),
  );
  for (let at = 0; at < body.length; at += 64 * 1024) req.write(body.subarray(at, at + 64 * 1024));
  req.end();
  return answer;
}

describe("the events route's body limit", () => {
  it.each(["content-length", "chunked"] as const)(
    "refuses a body over the limit with 413 too-large (%s)",
    async (mode) => {
      // Prepare
      const body = Buffer.from(`[${"1,".repeat(MAX_BODY_BYTES / 2)}1]`);
      // Act
      const { status, problem } = await postEvents(body, mode);
      // Assess
      expect(status).toBe(413);
      expect(problem).toMatchObject({ code: "too-large", field: "body" });
    },
  );

  it.each(["content-length", "chunked"] as const)(
    "reads a body within the limit and answers what is wrong with it (%s)",
    async (mode) => {
      const { status, problem } = await postEvents(Buffer.from("[]"), mode);
      expect(status).toBe(400);
      expect(problem).toMatchObject({ code: "invalid-request", field: "events" });
    },
  );
});

describe("what the HTTP server refuses before the app", () => {
  it("reads a request whose every query parameter is at its declared longest", async () => {
    // 1,024 three-byte characters each: 9 KiB percent-encoded, ~63 KiB for the seven text parameters.
    const longest = "€".repeat(1024);
    const query = ["agent", "run", "type", "source", "id", "producer", "cursor"]
      .map((p) => `${p}=${encodeURIComponent(longest)}`)
      .join("&");
    expect(query.length).toBeGreaterThan(60 * 1024);
    const res = await fetch(`${sink.url}/v1/events?${query}`, {
      headers: { authorization: `Bearer ${sink.local.adminToken}` },
    });
    // The app answers (the cursor is not one it gave), not the HTTP server's 431.
    expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([400, "invalid-request"]);
  });

  it("answers every declared operation whose request line and headers exceed its limit with the declared 431 problem", async () => {
    const doc = (await (await fetch(`${sink.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: object }> }>>;
    };
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ method, path, op })),
    );
    expect(operations.length).toBeGreaterThan(15);
    for (const { method, path, op } of operations) {
      expect(Object.keys(op.responses), `${method} ${path}`).toContain("431");
      const url = `${sink.url}${path.replace(/\{[^}]+\}/g, "x")}?pad=${"a".repeat(MAX_HEADER_BYTES)}`;
      const res = await fetch(url, { method: method.toUpperCase() });
      expect([`${method} ${path}`, res.status, res.headers.get("content-type")]).toEqual([
        `${method} ${path}`,
        431,
        "application/problem+json",
      ]);
      expect(await res.json()).toMatchObject({ status: 431, code: "headers-too-large" });
    }
    // Nothing was read: the sink still answers.
    expect((await fetch(`${sink.url}/healthz`)).status).toBe(200);
  });

  it("answers bytes that are not HTTP/1.1 with a 400 problem and closes the connection", async () => {
    const socket = connect(Number(new URL(sink.url).port), "127.0.0.1");
    await once(socket, "connect");
    socket.end("NOT HTTP AT ALL\r\n\r\n");
    const chunks: Buffer[] = [];
    for await (const chunk of socket) chunks.push(chunk as Buffer);
    const [head, body] = Buffer.concat(chunks).toString("utf8").split("\r\n\r\n");
    expect(head).toMatch(/^HTTP\/1\.1 400 .*\r\nContent-Type: application\/problem\+json\r\n/);
    expect(JSON.parse(body!)).toMatchObject({ status: 400, code: "invalid-request" });
  });
});

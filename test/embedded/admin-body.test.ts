/**
 * A running embedded sink answers an unauthenticated admin write before it reads the body: a client streaming a
 * 200 MB body gets its 401 after a few socket buffers, and the sink never holds the body in memory. Body limits
 * hold over the Node server whether the length is declared (Content-Length) or counted (chunked).
 */
import { once } from "node:events";
import { type IncomingMessage, request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../../packages/api/src/index.ts";
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

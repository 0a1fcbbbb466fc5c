/**
 * A running embedded sink answers an unauthenticated admin write before it reads the body: a client streaming a
 * 200 MB body gets its 401 after a few socket buffers, and the sink never holds the body in memory.
 */
import { once } from "node:events";
import { type IncomingMessage, request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

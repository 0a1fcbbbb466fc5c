import {
  canonicalBytes,
  checkConsistency,
  formatVerifierKey,
  MAX_EVENT_DEPTH,
  openCheckpoint,
  type Receipt,
  SYSTEM_STREAM,
  signEvent,
  spkiDer,
  verifyReceipt,
} from "@auditsink/core";
import { beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/index.ts";
import { MAX_SMALL_BODY_BYTES } from "../src/schemas.ts";
import { admin, agent, DEPLOYMENT, post, problemOf, register, type Setup, setup, TOKEN } from "./fixtures.ts";

describe("POST /v1/streams/{stream}/events", () => {
  let s: Setup;
  let a: ReturnType<typeof agent>;
  beforeEach(async () => {
    s = setup();
    a = agent("planner");
    await register(s, a);
  });

  it("accepts one event, a CloudEvents batch and {events}, each with a receipt that verifies offline", async () => {
    // Act
    const one = await post(s, "agents.prod", a.event(), "application/cloudevents+json");
    const batch = await post(s, "agents.prod", [a.event(), a.event()], "application/cloudevents-batch+json");
    const wrapped = await post(s, "agents.prod", { events: [a.event()] });
    // Assess
    const receipts: Receipt[] = [];
    for (const res of [one, batch, wrapped]) {
      expect(res.status).toBe(200);
      receipts.push(...((await res.json()) as { receipts: Receipt[] }).receipts);
    }
    expect(receipts.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    for (const r of receipts)
      expect(verifyReceipt(r, { trusted: [s.signer.key], deployment: DEPLOYMENT }).ok).toBe(true);
  });

  it("answers a replay with the original receipt and adds no record", async () => {
    const event = a.event();
    const first = (await (await post(s, "agents.prod", event)).json()) as { receipts: Receipt[] };
    const again = (await (await post(s, "agents.prod", event)).json()) as { receipts: Receipt[] };
    expect(again.receipts[0]!.index).toBe(first.receipts[0]!.index);
    expect(again.receipts[0]!.recordHash).toBe(first.receipts[0]!.recordHash);
    expect((await s.heads.get("agents.prod"))!.size).toBe(1);
  });

  it("refuses bad input with a problem naming the field, and writes nothing", async () => {
    const good = a.event();
    const stranger = agent("stranger");
    const cases: [Response, number, string, string?][] = [
      [await post(s, "agents.prod", "{not json"), 400, "invalid-request", "body"],
      [
        await post(s, "agents.prod", [good, { ...a.event(), time: "yesterday" }]),
        400,
        "invalid-event",
        "events[1].time",
      ],
      [
        await post(s, "agents.prod", { ...good, signature: Buffer.alloc(64).toString("base64") }),
        401,
        "bad-signature",
        "events[0].signature",
      ],
      [await post(s, "agents.prod", stranger.event()), 401, "unknown-producer", "events[0].sigkeyid"],
      [await post(s, "billing", a.event()), 403, "stream-not-allowed", "stream"],
      [await post(s, "Bad Stream", a.event()), 400, "invalid-request", "stream"],
      [await post(s, "agents.prod", a.event(), "text/plain"), 415, "unsupported-media-type"],
      [
        await post(s, "agents.prod", [a.event()], "application/cloudevents+json"),
        400,
        "invalid-request",
        "body",
      ],
      [
        await post(
          s,
          "agents.prod",
          Array.from({ length: 1001 }, () => good),
        ),
        413,
        "too-large",
        "events",
      ],
      [await post(s, "agents.prod", `[${"1,".repeat(3 * 1024 * 1024)}1]`), 413, "too-large", "body"],
    ];
    for (const [res, status, code, field] of cases) {
      const p = await problemOf(res);
      expect({ status: res.status, code: p.code, field: p.field }).toEqual({ status, code, field });
      expect(p.detail).not.toMatch(/at .*\.ts:\d+/);
    }
    expect(await s.heads.get("agents.prod")).toBeUndefined();
  });

  it("answers 409 for a reused source+id with other content, and 401 once the key is revoked", async () => {
    const event = a.event();
    await post(s, "agents.prod", event);
    const reused = signEvent({ ...event, data: { other: true } }, a.privateKey);
    expect((await problemOf(await post(s, "agents.prod", reused))).code).toBe("id-conflict");
    const revoke = await s.app.request(`/v1/producers/${a.id}/revoke`, { method: "POST", headers: admin });
    expect(revoke.status).toBe(200);
    const res = await post(s, "agents.prod", a.event());
    expect({ status: res.status, code: (await problemOf(res)).code }).toEqual({
      status: 401,
      code: "revoked-key",
    });
    const sys = (await (await s.app.request(`/v1/streams/${SYSTEM_STREAM}/records?from=0&to=3`)).json()) as {
      records: { record: { event: { type: string; data: { producer?: string; stream?: string } } } }[];
    };
    // Between the two, the sink recorded the creation of agents.prod (docs/FORMAT.md §4).
    expect(
      sys.records.map((r) => [
        r.record.event.type,
        r.record.event.data.producer ?? r.record.event.data.stream,
      ]),
    ).toEqual([
      ["dev.auditsink.producer.registered", "planner"],
      ["dev.auditsink.stream.created", "agents.prod"],
      ["dev.auditsink.producer.revoked", "planner"],
    ]);
  });
});

describe("read routes", () => {
  let s: Setup;
  let a: ReturnType<typeof agent>;
  let receipts: Receipt[];
  beforeEach(async () => {
    s = setup();
    a = agent("coder");
    await register(s, a);
    receipts = [];
    for (let i = 0; i < 3; i++) {
      const res = await post(s, "agents.dev", [a.event(), a.event({ "gen_ai.conversation.id": `run-${i}` })]);
      receipts.push(...((await res.json()) as { receipts: Receipt[] }).receipts);
    }
  });

  it("lists streams, serves the newest checkpoint and records that hash to their receipts", async () => {
    const streams = (await (await s.app.request("/v1/streams")).json()) as {
      streams: { stream: string; size: number }[];
    };
    // _system: the producer's registration and the creation of agents.dev.
    expect(streams.streams.map((x) => [x.stream, x.size])).toEqual([
      [SYSTEM_STREAM, 2],
      ["agents.dev", 6],
    ]);
    const cp = (await (await s.app.request("/v1/streams/agents.dev/checkpoint")).json()) as {
      size: number;
      checkpoint: string;
    };
    expect(cp.size).toBe(6);
    expect(openCheckpoint(cp.checkpoint, [s.signer.key]).ok).toBe(true);
    const records = (await (await s.app.request("/v1/streams/agents.dev/records?from=1&to=4")).json()) as {
      records: { index: number; recordHash: string }[];
    };
    expect(records.records.map((r) => [r.index, r.recordHash])).toEqual(
      receipts.slice(1, 4).map((r) => [r.index, r.recordHash]),
    );
  });

  it("serves inclusion and consistency proofs that verify against signed checkpoints", async () => {
    const inclusion = (await (
      await s.app.request("/v1/streams/agents.dev/proofs/inclusion?index=0&size=6")
    ).json()) as {
      proof: string[];
      recordHash: string;
      checkpoint: string;
    };
    expect(inclusion.recordHash).toBe(receipts[0]!.recordHash);
    expect(inclusion.checkpoint).toBe(receipts[5]!.checkpoint);
    const newest = receipts[5]!;
    // The served proof places record 0 in the tree the newest signed checkpoint (size 6) commits to.
    const asReceipt = { ...receipts[0]!, checkpoint: newest.checkpoint, inclusionProof: inclusion.proof };
    expect(verifyReceipt(asReceipt, { trusted: [s.signer.key], deployment: DEPLOYMENT }).ok).toBe(true);
    expect(verifyReceipt({ ...asReceipt, index: 1 }, { trusted: [s.signer.key] }).ok).toBe(false);
    const older = openCheckpoint(receipts[1]!.checkpoint, [s.signer.key]);
    const newer = openCheckpoint(newest.checkpoint, [s.signer.key]);
    if (!older.ok || !newer.ok) throw new Error("checkpoints must open");
    const consistency = (await (
      await s.app.request(
        `/v1/streams/agents.dev/proofs/consistency?from=${older.checkpoint.size}&to=${newer.checkpoint.size}`,
      )
    ).json()) as { proof: string[] };
    expect(checkConsistency(older.checkpoint, newer.checkpoint, consistency.proof).ok).toBe(true);
  });

  it("refuses proofs past the end of the stream and unknown streams", async () => {
    const past = await s.app.request("/v1/streams/agents.dev/proofs/inclusion?index=0&size=7");
    expect({ status: past.status, field: (await problemOf(past)).field }).toEqual({
      status: 400,
      field: "size",
    });
    const unknown = await s.app.request("/v1/streams/nothing/checkpoint");
    expect(unknown.status).toBe(404);
    const bad = await s.app.request("/v1/streams/agents.dev/records?from=x&to=2");
    expect({ status: bad.status, field: (await problemOf(bad)).field }).toEqual({
      status: 400,
      field: "from",
    });
  });

  it("finds events by agent, run, type and time, page by page", async () => {
    const byRun = (await (await s.app.request("/v1/events?run=run-1")).json()) as {
      events: { index: number }[];
    };
    expect(byRun.events.map((e) => e.index)).toEqual([3]);
    const first = (await (
      await s.app.request("/v1/events?agent=coder&type=ai.agent.tool_call&limit=4")
    ).json()) as {
      events: { index: number }[];
      cursor?: string;
    };
    expect(first.events.map((e) => e.index)).toEqual([0, 1, 2, 3]);
    const second = (await (
      await s.app.request(`/v1/events?agent=coder&limit=4&cursor=${first.cursor}`)
    ).json()) as {
      events: { index: number }[];
      cursor?: string;
    };
    expect(second.events.map((e) => e.index)).toEqual([4, 5]);
    expect(second.cursor).toBeUndefined();
    const window = (await (
      await s.app.request("/v1/events?since=2026-11-24T12:00:02Z&until=2026-11-24T12:00:04Z")
    ).json()) as { events: { index: number }[] };
    expect(window.events.map((e) => e.index)).toEqual([1, 2]);
  });

  it("records producer registration in the _system stream and lists producers and keys", async () => {
    const sys = (await (await s.app.request(`/v1/streams/${SYSTEM_STREAM}/records?from=0&to=1`)).json()) as {
      records: { record: { event: { type: string; data: { producer: string } } } }[];
    };
    expect(sys.records[0]!.record.event.type).toBe("dev.auditsink.producer.registered");
    expect(sys.records[0]!.record.event.data.producer).toBe("coder");
    const producers = (await (await s.app.request("/v1/producers")).json()) as {
      producers: { id: string }[];
    };
    expect(producers.producers.map((p) => p.id)).toEqual(["coder"]);
    const keys = (await (await s.app.request("/v1/keys")).json()) as { keys: { verifierKey: string }[] };
    expect(keys.keys[0]!.verifierKey).toBe(formatVerifierKey(s.signer.key));
  });
});

describe("unexpected failures", () => {
  it("answer 500 with a generic problem and report the error to the operator only", async () => {
    const s = setup();
    const logged: unknown[] = [];
    const failing = createApp({
      sink: s.sink,
      producers: {
        list: async () => {
          throw new Error("disk on fire at /var/secret/path");
        },
      } as never,
      events: { find: async () => ({ events: [] }) },
      keys: { deployment: DEPLOYMENT, keys: [] },
      authorizeAdmin: () => false,
      logError: (e) => logged.push(e),
    });
    const res = await failing.request("/v1/producers");
    const p = await problemOf(res);
    expect({ status: res.status, code: p.code }).toEqual({ status: 500, code: "internal" });
    expect(JSON.stringify(p)).not.toContain("secret");
    expect(logged).toHaveLength(1);
  });
});

describe("admin routes, health and the OpenAPI document", () => {
  it("refuses producer registration without the admin token", async () => {
    const s = setup();
    const a = agent("x");
    const body = JSON.stringify({
      id: "x",
      publicKey: spkiDer(a.publicKey).toString("base64"),
      streams: ["*"],
    });
    for (const authorization of [undefined, "Bearer wrong", `Basic ${TOKEN}`]) {
      const res = await s.app.request("/v1/producers", {
        method: "POST",
        headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
        body,
      });
      expect({ status: res.status, code: (await problemOf(res)).code }).toEqual({
        status: 401,
        code: "unauthorized",
      });
    }
    expect(await s.heads.get(SYSTEM_STREAM)).toBeUndefined();
  });

  it("answers 409 for a key registered twice and 400 for a key that is not Ed25519 or P-256", async () => {
    const s = setup();
    const a = agent("twice");
    await register(s, a);
    const again = await s.app.request("/v1/producers", {
      method: "POST",
      headers: admin,
      body: JSON.stringify({
        id: "other",
        publicKey: spkiDer(a.publicKey).toString("base64"),
        streams: ["*"],
      }),
    });
    expect(again.status).toBe(409);
    const bad = await s.app.request("/v1/producers", {
      method: "POST",
      headers: admin,
      body: JSON.stringify({ id: "other", publicKey: "AAAA", streams: ["*"] }),
    });
    expect(bad.status).toBe(400);
  });

  it("serves /healthz and an OpenAPI 3.1 document listing every v1 and tlog-tiles route", async () => {
    const s = setup();
    expect(((await (await s.app.request("/healthz")).json()) as { status: string }).status).toBe("ok");
    const doc = (await (await s.app.request("/openapi.json")).json()) as {
      openapi: string;
      paths: Record<string, object>;
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths).sort()).toEqual([
      "/healthz",
      "/openapi.json",
      "/tlog/{stream}/checkpoint",
      "/tlog/{stream}/records/{range}",
      "/tlog/{stream}/tile/{tile}",
      "/v1/events",
      "/v1/keys",
      "/v1/producers",
      "/v1/producers/{id}/revoke",
      "/v1/receipts",
      "/v1/streams",
      "/v1/streams/{stream}/checkpoint",
      "/v1/streams/{stream}/events",
      "/v1/streams/{stream}/proofs/consistency",
      "/v1/streams/{stream}/proofs/inclusion",
      "/v1/streams/{stream}/records",
    ]);
    const missing = await s.app.request("/v2/nothing");
    expect({ status: missing.status, code: (await problemOf(missing)).code }).toEqual({
      status: 404,
      code: "not-found",
    });
  });
});

describe("hostile input", () => {
  let s: Setup;
  let a: ReturnType<typeof agent>;
  beforeEach(async () => {
    s = setup();
    a = agent("planner");
    await register(s, a);
  });

  const signedWith = (attrs: Record<string, unknown>) =>
    signEvent(
      {
        specversion: "1.0",
        id: "hostile-1",
        source: "agent://planner",
        type: "ai.agent.tool_call",
        time: "2026-11-24T12:00:00Z",
        ...attrs,
      } as never,
      a.privateKey,
    );

  it("refuses impossible times, duplicate members, invalid UTF-8, lone surrogates and bidi or line separators in identifiers, naming the field", async () => {
    // Prepare
    const good = JSON.stringify(signedWith({ data: { s: "é" } }));
    const invalidUtf8 = Buffer.from(good, "utf8");
    invalidUtf8[invalidUtf8.indexOf(Buffer.from("é"))] = 0xff;
    const cases: [string | Uint8Array, number, string, string][] = [
      [JSON.stringify(signedWith({ time: "2024-13-45T00:00:00Z" })), 400, "invalid-event", "events[0].time"],
      [JSON.stringify(signedWith({ time: "2023-02-29T10:00:00Z" })), 400, "invalid-event", "events[0].time"],
      [good.replace('"data":{', '"data":{"x":1,"x":2,'), 400, "invalid-request", "events[0].data.x"],
      [good.replace('"data":{', '"data":{"x":1,"\\u0078":2,'), 400, "invalid-request", "events[0].data.x"],
      [`[${good.replace('"id":', '"id":"dup","id":')}]`, 400, "invalid-request", "events[0].id"],
      [new Uint8Array(invalidUtf8), 400, "invalid-request", "body"],
      [good.replace('"s":"é"', '"s":"\\ud800"'), 400, "invalid-event", "events[0].data.s"],
      [JSON.stringify(signedWith({ id: "approve\u202egnp.exe" })), 400, "invalid-event", "events[0].id"],
      [JSON.stringify(signedWith({ id: "a\u200bb" })), 400, "invalid-event", "events[0].id"],
      [
        JSON.stringify(signedWith({ source: "agent://a\u2028fake" })),
        400,
        "invalid-event",
        "events[0].source",
      ],
      [JSON.stringify(signedWith({ type: "tool\u2029call" })), 400, "invalid-event", "events[0].type"],
    ];
    for (const [body, status, code, field] of cases) {
      // Act
      const res = await s.app.request("/v1/streams/agents.prod/events", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      // Assess
      const p = await problemOf(res);
      expect({ status: res.status, code: p.code, field: p.field }).toEqual({ status, code, field });
    }
    expect(await s.heads.get("agents.prod")).toBeUndefined();
  });

  it("refuses nesting deeper than MAX_EVENT_DEPTH with a 400 naming the field, however deep", async () => {
    // Prepare: the event object is level 1, so data may open 63 more levels.
    const nested = (levels: number) => JSON.parse(`${"[".repeat(levels)}${"]".repeat(levels)}`);
    const fakeSignature = Buffer.alloc(64).toString("base64");
    const unsigned = (data: string) =>
      `{"specversion":"1.0","id":"deep","source":"agent://planner","type":"t","time":"2026-11-24T12:00:00Z","sigkeyid":"${"0".repeat(64)}","signature":"${fakeSignature}","data":${data}}`;
    // Act
    const deepest = await post(s, "agents.prod", signedWith({ data: nested(MAX_EVENT_DEPTH - 1) }));
    const tooDeep = await post(s, "agents.prod", signedWith({ data: nested(MAX_EVENT_DEPTH) }));
    const reported = await post(s, "agents.prod", unsigned(`${"[".repeat(1700)}${"]".repeat(1700)}`));
    const huge = await post(
      s,
      "agents.prod",
      [unsigned(`${'{"a":'.repeat(200_000)}1${"}".repeat(200_000)}`)].join(),
    );
    // Assess
    expect(deepest.status).toBe(200);
    for (const res of [tooDeep, reported, huge]) {
      const p = await problemOf(res);
      expect(res.status).toBe(400);
      expect(p.field).toMatch(/^events\[0\]\.data/);
      expect(p.detail).toContain(`deeper than ${MAX_EVENT_DEPTH}`);
    }
  });

  it("stores members named __proto__, constructor and prototype byte for byte", async () => {
    // Prepare: JSON.parse makes own members of them, as a server parsing the producer's JSON does.
    const data = JSON.parse(
      '{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"x":1}},"prototype":[{"__proto__":null}]}',
    );
    const event = signedWith({ data });
    const text = JSON.stringify(event);
    expect(text).toContain('"__proto__":{"isAdmin":true}');
    // Act
    const res = await post(s, "agents.prod", text);
    // Assess
    expect(res.status).toBe(200);
    const [record] = await s.sink.reader("agents.prod").records(0, 1);
    expect(canonicalBytes(record!.record.event).equals(canonicalBytes(JSON.parse(text)))).toBe(true);
    expect(JSON.stringify(record!.record.event)).toContain('"__proto__":{"isAdmin":true}');
  });
});

describe("request bodies", () => {
  it("refuses an unauthenticated admin write without reading its body", async () => {
    // Prepare: a 200 MB body that counts what is read of it.
    const s = setup();
    let pulled = 0;
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= 200 * chunk.length) return controller.close();
        pulled += chunk.length;
        controller.enqueue(chunk);
      },
    });
    // Act
    const res = await s.app.request("/v1/producers", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    // Assess
    expect(res.status).toBe(401);
    expect(pulled).toBeLessThanOrEqual(2 * chunk.length);
  });

  it("limits the body of every route, admin writes included", async () => {
    // Prepare
    const s = setup();
    const big = JSON.stringify({ id: "x", publicKey: "A".repeat(MAX_SMALL_BODY_BYTES), streams: ["a"] });
    // Act
    const register = await s.app.request("/v1/producers", { method: "POST", headers: admin, body: big });
    const revoke = await s.app.request("/v1/producers/x/revoke", {
      method: "POST",
      headers: admin,
      body: big,
    });
    // Assess
    for (const res of [register, revoke]) {
      expect(res.status).toBe(413);
      expect((await problemOf(res)).code).toBe("too-large");
    }
  });
});

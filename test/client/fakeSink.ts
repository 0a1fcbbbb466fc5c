/**
 * A throwaway HTTP front for core's Sink over memory ports, speaking the sink's routes for events, checkpoints
 * and consistency proofs, with knobs to fail requests. It lets the SDK's tests run without the embedded sink;
 * the end-to-end tests in test/client/e2e.test.ts use the real one.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  generateKeyPair,
  IngestError,
  KeyObjectSigner,
  keyFingerprint,
  MemoryDedupStore,
  MemoryHeadStore,
  MemoryObjectStore,
  MemoryProducerRegistry,
  Sink,
  toHex,
} from "@auditsink/core";

export const DEPLOYMENT = "auditsink.test/client";

export function memorySink(signer: KeyObjectSigner, producerKey: ReturnType<typeof generateKeyPair>) {
  const producers = new MemoryProducerRegistry();
  producers.add({
    keyId: keyFingerprint(producerKey.publicKey),
    publicKey: producerKey.publicKey,
    producer: "agent-1",
    streams: ["*"],
    revoked: false,
  });
  const objects = new MemoryObjectStore();
  const sink = new Sink({
    deployment: DEPLOYMENT,
    objects,
    heads: new MemoryHeadStore(),
    dedup: new MemoryDedupStore(),
    producers,
    signer,
  });
  return { sink, objects };
}

export interface FakeSink {
  url: string;
  signer: KeyObjectSigner;
  producerKey: ReturnType<typeof generateKeyPair>;
  current: ReturnType<typeof memorySink>;
  /** Requests seen, in order: method, path, and the event ids and body of a POST. */
  requests: { method: string; path: string; ids: string[]; body?: string }[];
  /** Answers the next requests with these statuses (0 = drop the connection) before serving normally. */
  failNext: number[];
  /** Rewrites each receipt before it is returned. */
  tamper?: (receipt: Record<string, unknown>) => void;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: ServerResponse, status: number, value: unknown, type = "application/json"): void {
  res.writeHead(status, { "content-type": type });
  res.end(typeof value === "string" ? value : JSON.stringify(value));
}

export async function startFakeSink(): Promise<FakeSink> {
  const { privateKey, publicKey } = generateKeyPair("ecdsa-p256");
  const signer = new KeyObjectSigner(DEPLOYMENT, privateKey, publicKey);
  const producerKey = generateKeyPair("ed25519");
  const state: FakeSink = {
    url: "",
    signer,
    producerKey,
    current: memorySink(signer, producerKey),
    requests: [],
    failNext: [],
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const text = await body(req);
    const ids = req.method === "POST" ? (JSON.parse(text).events as { id: string }[]).map((e) => e.id) : [];
    state.requests.push({
      method: req.method ?? "",
      path: url.pathname,
      ids,
      ...(req.method === "POST" ? { body: text } : {}),
    });
    const fail = state.failNext.shift();
    if (fail === 0) {
      req.socket.destroy();
      return;
    }
    if (fail !== undefined) {
      res.setHeader("retry-after", "0");
      send(res, fail, { type: "about:blank", title: "failing on purpose", status: fail, detail: "injected" });
      return;
    }
    const m = /^\/v1\/streams\/([^/]+)\/(events|checkpoint|proofs\/consistency)$/.exec(url.pathname);
    const { sink } = state.current;
    try {
      if (m?.[2] === "events" && req.method === "POST") {
        const receipts = await sink.submit(m[1]!, JSON.parse(text).events);
        for (const r of receipts) state.tamper?.(r as unknown as Record<string, unknown>);
        send(res, 200, { receipts });
      } else if (m?.[2] === "checkpoint") {
        const head = await sink.head(m[1]!);
        if (!head?.checkpoint) send(res, 404, { title: "no checkpoint", status: 404 });
        else send(res, 200, head.checkpoint, "text/plain; charset=utf-8");
      } else if (m?.[2] === "proofs/consistency") {
        const from = Number(url.searchParams.get("from"));
        const to = Number(url.searchParams.get("to"));
        const reader = sink.reader(m[1]!);
        await reader.sync();
        if (!(from > 0 && from <= to && to <= reader.size)) {
          send(res, 400, {
            title: "bad range",
            status: 400,
            detail: `the stream has ${reader.size} records`,
          });
        } else send(res, 200, { from, to, proof: reader.consistencyProof(from, to).map(toHex) });
      } else send(res, 404, { title: "not found", status: 404 });
    } catch (e) {
      if (e instanceof IngestError) send(res, 400, { title: e.code, status: 400, detail: e.message });
      else send(res, 500, { title: "internal", status: 500 });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { appendFile, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  generateKeyPair,
  type Receipt,
  SIGNATURE_MEMBERS_BYTES,
  type SignedEvent,
  signBatch,
  signEvent,
  type UnsignedEvent,
} from "@auditsink/core";
import { afterEach, describe, expect, it } from "vitest";
import { GatewayError, Spool } from "../src/index.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const { privateKey } = generateKeyPair("ed25519");
const event = (n: number): UnsignedEvent => ({
  specversion: "1.0",
  id: `e${n}`,
  source: "mcp-proxy://t",
  type: "t",
  time: new Date().toISOString(),
});
/** Spools event n as the recorder does: unsigned. */
const put = (spool: Spool, n: number) => spool.append("agents.mcp", event(n));
const fakeReceipt = (n: number) => ({ index: n }) as unknown as Receipt;

async function dir() {
  const d = await mkdtemp(join(tmpdir(), "auditsink-spool-"));
  dirs.push(d);
  return d;
}

describe("Spool", () => {
  it("reads back what was appended and not delivered, in order, after a reopen", async () => {
    // Prepare
    const d = await dir();
    const spool = await Spool.open(d, { segmentBytes: 600 });
    const appended = await Promise.all([1, 2, 3, 4, 5].map((n) => put(spool, n)));
    await spool.markDelivered(2, [fakeReceipt(0), fakeReceipt(1)]);
    await spool.close();

    // Act
    const again = await Spool.open(d);
    const pending = again.pending().map((e) => [e.seq, e.event.id, e.bytes]);
    const next = await put(again, 6);
    await again.close();

    // Assess
    expect(appended.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(pending).toEqual(appended.slice(2).map((e) => [e.seq, e.event.id, e.bytes]));
    expect(pending.map(([, id]) => id)).toEqual(["e3", "e4", "e5"]);
    expect(next.seq).toBe(5);
    expect((await readFile(join(d, "receipts.jsonl"), "utf8")).trim().split("\n")).toHaveLength(2);
  });

  it("removes segments once every event in them is delivered", async () => {
    const d = await dir();
    const spool = await Spool.open(d, { segmentBytes: 400 });
    for (let n = 0; n < 6; n++) await put(spool, n);
    const before = (await readdir(join(d, "segments"))).length;
    await spool.markDelivered(5, [0, 1, 2, 3, 4].map(fakeReceipt));
    const after = await readdir(join(d, "segments"));
    await spool.close();
    expect(before).toBeGreaterThan(2);
    expect(after.length).toBeLessThan(before);
    expect(
      (await Spool.open(d).then(async (s) => [s.pending().map((e) => e.seq), await s.close()]))[0],
    ).toEqual([5]);
  });

  it("drops a torn last line (never acknowledged) and refuses a second process", async () => {
    const d = await dir();
    const spool = await Spool.open(d);
    await put(spool, 1);
    await expect(Spool.open(d)).rejects.toMatchObject({ code: "spool-locked" });
    await spool.close();
    const [segment] = await readdir(join(d, "segments"));
    await appendFile(join(d, "segments", segment!), '{"seq":1,"stream":"agents.mcp","ev');
    const again = await Spool.open(d);
    const next = await put(again, 2);
    await again.close();
    const reread = await Spool.open(d);
    expect(reread.pending().map((e) => e.event.id)).toEqual(["e1", "e2"]);
    expect(next.seq).toBe(1);
    await reread.close();
  });

  it("refuses a spool whose lines are not its own", async () => {
    const d = await dir();
    const spool = await Spool.open(d);
    await put(spool, 1);
    await spool.close();
    const [segment] = await readdir(join(d, "segments"));
    await appendFile(join(d, "segments", segment!), "not json\n");
    const opened = await Spool.open(d).catch((e: unknown) => e);
    expect(opened).toBeInstanceOf(GatewayError);
    expect((opened as GatewayError).code).toBe("spool-corrupt");
  });

  it("has the line in the segment file when append returns, and durable() waits for its fdatasync", async () => {
    // Prepare
    const d = await dir();
    const spool = await Spool.open(d);

    // Act: nothing is awaited between the append and the read
    const entry = put(spool, 7);
    const segment = readdirSync(join(d, "segments"))[0]!;
    const text = readFileSync(join(d, "segments", segment), "utf8");
    await spool.durable();
    await spool.close();

    // Assess
    const { bytes, ...line } = entry;
    expect(JSON.parse(text)).toEqual(line);
    expect(Buffer.byteLength(text) + SIGNATURE_MEMBERS_BYTES).toBe(bytes);
    expect(JSON.parse(text).event.id).toBe("e7");
  });

  it("loses nothing appended when the process is killed right after append returns (SIGKILL, no sync awaited)", async () => {
    // Prepare: a child process appends 50 events and is killed the moment it says so
    const d = await dir();
    const spoolModule = join(import.meta.dirname, "../dist/index.js");
    const script = `
      const { Spool } = await import(${JSON.stringify(spoolModule)});
      const spool = await Spool.open(${JSON.stringify(d)});
      for (let n = 0; n < 50; n++)
        spool.append("agents.mcp", { specversion: "1.0", id: "k" + n, source: "mcp-proxy://t", type: "t", time: new Date().toISOString() });
      process.stdout.write("appended\\n");
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });

    // Act
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("appended")) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.on("exit", (code, signal) => signal !== "SIGKILL" && reject(new Error(`child exited ${code}`)));
    });
    await new Promise((r) => child.on("close", r));
    const again = await Spool.open(d);
    const pending = again.pending().map((e) => e.event.id);
    await again.close();

    // Assess
    expect(pending).toEqual(Array.from({ length: 50 }, (_, n) => `k${n}`));
  });
  it("keeps a batch's signature, synced, gives it back to its events after a reopen, and empties it once they are delivered", async () => {
    // Prepare: five events spooled, the first three signed as one batch; the signatures file emptied at any size
    const d = await dir();
    const spool = await Spool.open(d, { signatureFileBytes: 1 });
    const spooled = [1, 2, 3, 4, 5].map((n) => put(spool, n));
    const signed = signBatch(
      spooled.slice(0, 3).map((e) => e.event),
      privateKey,
    );
    const batch = {
      first: 0,
      sigkeyid: signed[0]!.sigkeyid,
      signature: signed[0]!.signature,
      sigbatch: signed.map((e) => e.sigbatch!),
    };

    // Act
    await expect(spool.addSignature({ ...batch, first: 1 })).rejects.toThrow(RangeError);
    await spool.addSignature(batch);
    const live = spool.pending().map((e) => e.event);
    await spool.close();
    const again = await Spool.open(d, { signatureFileBytes: 1 });
    const reread = again.pending().map((e) => e.event);
    const lines = (await readFile(join(d, "signatures.jsonl"), "utf8")).trim().split("\n");
    await again.markDelivered(2, [fakeReceipt(0), fakeReceipt(1)]);
    const whileOneIsPending = await readFile(join(d, "signatures.jsonl"), "utf8");
    await again.markDelivered(1, [fakeReceipt(2)]);
    const afterAll = await readFile(join(d, "signatures.jsonl"), "utf8");
    await again.close();

    // Assess: the signed events are exactly signBatch's, in memory and read back; the rest still unsigned
    expect(live.slice(0, 3)).toEqual(signed);
    expect(reread.slice(0, 3)).toEqual(signed);
    expect(reread.slice(3).map((e) => e.signature)).toEqual([undefined, undefined]);
    expect(again.pending()).toHaveLength(2);
    expect(lines.map((l) => JSON.parse(l))).toEqual([batch]);
    expect(whileOneIsPending).not.toBe("");
    expect(afterAll).toBe("");
  });

  it("signs again after a torn signature line, keeps events spooled signed, and refuses a bad signature line", async () => {
    // Prepare: an event spooled signed on its own (as gateways once spooled them), then an unsigned one
    const d = await dir();
    const spool = await Spool.open(d);
    await spool.close();
    const signedAlone: SignedEvent = signEvent(event(0), privateKey);
    await appendFile(
      join(d, "segments", `${"0".repeat(20)}.jsonl`),
      `${JSON.stringify({ seq: 0, stream: "agents.mcp", event: signedAlone })}\n`,
    );
    const reopened = await Spool.open(d);
    put(reopened, 1);
    await reopened.close();
    await appendFile(join(d, "signatures.jsonl"), '{"first":1,"sigkeyid":"ab');

    // Act
    const again = await Spool.open(d);
    const events = again.pending().map((e) => e.event);
    const refusedFirst = await again
      .addSignature({ first: 0, sigkeyid: "0".repeat(64), signature: "AA==", sigbatch: ["0.1."] })
      .catch((e: unknown) => e);
    await again.close();
    const torn = await readFile(join(d, "signatures.jsonl"), "utf8");
    await appendFile(
      join(d, "signatures.jsonl"),
      '{"first":1,"sigkeyid":"not hex","signature":"AA==","sigbatch":["0.1."]}\n',
    );
    const bad = await Spool.open(d).catch((e: unknown) => e);

    // Assess
    expect(events[0]).toEqual(signedAlone);
    expect(events[1]!.signature).toBeUndefined();
    expect(refusedFirst).toBeInstanceOf(RangeError);
    expect(torn).toBe("");
    expect(bad).toBeInstanceOf(GatewayError);
    expect((bad as GatewayError).code).toBe("spool-corrupt");
  });
});

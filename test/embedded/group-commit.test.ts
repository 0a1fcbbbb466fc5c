/**
 * Group commit in the embedded sink: requests that arrive while a commit of their stream is in flight wait, and
 * the next commit takes them all — one segment, one checkpoint, one index transaction, one chain of syncs — while each
 * request keeps its own receipts and its own errors. Run against the real data directory, with a file-system port
 * that holds the first commit's segment link until the others are queued, and counts the syncs.
 */
import {
  type Admitted,
  checkpointPrefix,
  type IngestError,
  type Receipt,
  segmentPrefix,
  verifyReceipt,
  verifyStoredStream,
} from "@auditsink/core";
import { describe, expect, it } from "vitest";
import {
  type FileSystem,
  nodeFileSystem,
  openLocalSink,
  type WritableFile,
} from "../../packages/local/src/index.ts";
import { Acked, assertConsistent } from "./faults.ts";
import { testProducer, testSinks } from "./helpers.ts";

const { fresh } = testSinks("auditsink-group-");
const STREAM = "agents.group";

/** Passes every call to node:fs; holds the next segment link of STREAM while armed, and counts file syncs. */
class GatedFileSystem implements FileSystem {
  syncs = 0;
  private gate: { reached: () => void; released: Promise<void> } | undefined;

  /** Holds the next segment link until `release` is called; resolves `reached` when one is waiting. */
  arm(): { reached: Promise<void>; release: () => void } {
    let release!: () => void;
    let reached!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const waiting = new Promise<void>((r) => {
      reached = r;
    });
    this.gate = { reached, released };
    return { reached: waiting, release };
  }

  async open(path: string, flags: string, mode?: number): Promise<WritableFile> {
    const file = await nodeFileSystem.open(path, flags, mode);
    return {
      write: (b, o, l, p) => file.write(b, o, l, p),
      sync: () => {
        this.syncs++;
        return file.sync();
      },
      datasync: () => {
        this.syncs++;
        return file.datasync();
      },
      truncate: (n) => file.truncate(n),
      stat: () => file.stat(),
      close: () => file.close(),
    };
  }

  async link(existing: string, path: string): Promise<void> {
    const gate = this.gate;
    if (gate && path.includes(`/${STREAM}/segments/`)) {
      this.gate = undefined;
      gate.reached();
      await gate.released;
    }
    return nodeFileSystem.link(existing, path);
  }

  rename(from: string, to: string): Promise<void> {
    return nodeFileSystem.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return nodeFileSystem.unlink(path);
  }
}

describe("group commit", () => {
  it("commits every request queued behind an in-flight commit as one segment with one chain of syncs, each request with its own receipts or its own error", async () => {
    // Prepare: an accepted event `x` (so a request can conflict with it or replay it).
    const dataDir = await fresh();
    const fs = new GatedFileSystem();
    const local = await openLocalSink({ dataDir, fs });
    const p = testProducer("agent");
    await local.producers.register({ id: p.id, publicKey: p.publicKey, streams: ["agents.*"] });
    const acked = new Acked();
    const x = p.event({ id: "x" });
    acked.add([x], await local.sink.submit(STREAM, [x]));
    const admit = (events: ReturnType<typeof p.event>[]): Promise<Admitted[]> =>
      Promise.all(events.map((e, i) => local.sink.authenticate(STREAM, e, `events[${i}]`)));
    const first = [p.event()];
    const singles = Array.from({ length: 5 }, () => [p.event()]);
    const conflicting = [p.event({ id: "x", type: "ai.agent.other" })];
    const y = [p.event({ id: "y" })];
    const yOther = [p.event({ id: "y", type: "ai.agent.other" })];
    const replay = [x];
    const mixed = [x, p.event()];
    const forged = { ...p.event(), type: "ai.agent.forged" };
    const admitted = {
      first: await admit(first),
      singles: await Promise.all(singles.map(admit)),
      conflicting: await admit(conflicting),
      y: await admit(y),
      yOther: await admit(yOther),
      replay: await admit(replay),
      mixed: await admit(mixed),
    };
    // Act: the first commit is held at its segment link; everything else queues behind it.
    const gate = fs.arm();
    const held = local.sink.commit(STREAM, admitted.first);
    await gate.reached;
    const queued = {
      singles: admitted.singles.map((a) => local.sink.commit(STREAM, a)),
      conflicting: local.sink.commit(STREAM, admitted.conflicting).catch((e: IngestError) => e),
      y: local.sink.commit(STREAM, admitted.y),
      yOther: local.sink.commit(STREAM, admitted.yOther).catch((e: IngestError) => e),
      replay: local.sink.commit(STREAM, admitted.replay),
      mixed: local.sink.commit(STREAM, admitted.mixed),
    };
    const refusedForgery = await local.sink.submit(STREAM, [forged]).catch((e: IngestError) => e);
    gate.release();
    const firstReceipts = await held;
    const syncsBefore = fs.syncs;
    const settled = {
      singles: await Promise.all(queued.singles),
      conflicting: await queued.conflicting,
      y: await queued.y,
      yOther: await queued.yOther,
      replay: await queued.replay,
      mixed: await queued.mixed,
    };
    const groupSyncs = fs.syncs - syncsBefore;
    const segments = await local.objects.list(segmentPrefix(STREAM));
    const checkpoints = await local.objects.list(checkpointPrefix(STREAM));
    const head = await local.heads.get(STREAM);
    const trusted = [local.signingKey.signer.key];
    const report = await verifyStoredStream(local.objects, STREAM, {
      trusted,
      deployment: local.deployment,
      producerKeys: local.registry.publicKeys(),
      ...(head ? { head } : {}),
    });
    await local.close();
    // Assess
    expect(refusedForgery).toMatchObject({ code: "bad-signature" });
    expect(settled.conflicting).toMatchObject({ code: "id-conflict" });
    expect(settled.yOther).toMatchObject({ code: "id-conflict" });
    const [xReceipt] = acked.byKey.values();
    expect(settled.replay.map((r) => r.index)).toEqual([xReceipt!.receipt.index]);
    expect(settled.mixed[0]!.index).toBe(xReceipt!.receipt.index);
    // x, the held commit, then one segment for everything queued: 5 singles, y and the fresh half of `mixed`.
    expect(segments).toHaveLength(3);
    expect(checkpoints).toHaveLength(3);
    const grouped = [...settled.singles.flat(), ...settled.y, settled.mixed[1]!];
    expect(grouped.map((r) => r.index).sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(new Set(grouped.map((r) => r.checkpoint)).size).toBe(1);
    // The group's file syncs through the port: the segment's temp file and the checkpoint's temp file. The head
    // is not synced (directory syncs do not go through the port); the index writes through SQLite's WAL, which
    // is not synced per transaction (synchronous=NORMAL: repairIndex restores what a power loss takes).
    expect(groupSyncs).toBe(2);
    const all: Receipt[] = [...firstReceipts, ...grouped, ...settled.replay];
    for (const r of all) expect(verifyReceipt(r, { trusted, deployment: local.deployment }).ok).toBe(true);
    expect(report.failures).toEqual([]);
    expect(head?.size).toBe(9);
    acked.add(first, firstReceipts);
    for (const [i, s] of singles.entries()) acked.add(s, settled.singles[i]!);
    acked.add(y, settled.y);
    acked.add(mixed, settled.mixed);
    await assertConsistent(dataDir, acked);
  });
});

/**
 * Helpers of the fault-injection suite: a sink child process, a file-system port that injects short writes and
 * EIO, and the checks every fault scenario ends with (restart, verify clean, every acknowledged event once,
 * registry and `_system` agree).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  eventKey,
  PRODUCER_REGISTERED,
  PRODUCER_REVOKED,
  parseVerifierKey,
  type Receipt,
  type SignedEvent,
  SYSTEM_STREAM,
  systemProducerKey,
  verifyStoredStream,
} from "@auditsink/core";
import { expect } from "vitest";
import {
  type FileSystem,
  LocalHeadStore,
  nodeFileSystem,
  openIndexDatabase,
  openLocalSink,
  storedStreams,
  systemRecords,
  type WritableFile,
} from "../../packages/local/src/index.ts";
import { SERVE } from "../built.ts";

export interface SinkProcess {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  stop(): Promise<void>;
}

/**
 * Starts `serve.ts` on `dataDir`. Resolves when it listens; resolves `undefined` when it dies first (a crash
 * point fired during start-up); rejects when it exits with an error status.
 */
export function startChild(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<SinkProcess | undefined> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVE, dataDir, "0"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, AUDITSINK_VERIFY_INTERVAL: "0", AUDITSINK_QUIET: "1", ...env },
    });
    let out = "";
    let err = "";
    let listening = false;
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening (http:\/\/\S+)/.exec(out);
      if (m && !listening) {
        listening = true;
        resolve({
          child,
          url: m[1]!,
          stderr: () => err,
          stop: () => stopChild(child),
        });
      }
    });
    child.stderr!.on("data", (d) => {
      err += d;
    });
    child.on("exit", (code, signal) => {
      if (listening) return;
      if (signal === "SIGKILL") resolve(undefined);
      else reject(new Error(`sink exited (${code ?? signal}) before listening: ${err}`));
    });
  });
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

/** Resolves when the child is gone (killed by its crash point, or otherwise). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export async function adminToken(dataDir: string): Promise<string> {
  return (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
}

export async function postEvents(url: string, stream: string, events: SignedEvent[]) {
  const res = await fetch(`${url}/v1/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  });
  const body = (await res.json()) as { receipts?: Receipt[]; code?: string };
  return { status: res.status, receipts: body.receipts ?? [], code: body.code };
}

/** Every acknowledged event, by eventKey, with its receipt. */
export class Acked {
  readonly byKey = new Map<string, { event: SignedEvent; receipt: Receipt }>();

  add(events: readonly SignedEvent[], receipts: readonly Receipt[]): void {
    for (const [i, r] of receipts.entries()) {
      const key = eventKey(events[i]!);
      if (!this.byKey.has(key)) this.byKey.set(key, { event: events[i]!, receipt: r });
    }
  }
}

/**
 * The end state every fault scenario must reach, checked on the data directory after the sink stopped:
 * every stream verifies with no failure and no warning against the pinned key; every acknowledged event is
 * in its stream exactly once, at the index of its receipt; the registry says what `_system` says.
 */
export async function assertConsistent(dataDir: string, acked: Acked): Promise<void> {
  const trusted = [
    parseVerifierKey((await readFile(join(dataDir, "keys", "verifier-key.txt"), "utf8")).trim()),
  ];
  const local = await openLocalSink({ dataDir });
  try {
    const producerKeys = new Map([
      ...local.registry.publicKeys(),
      [systemProducerKey(local.signingKey.signer).keyId, local.signingKey.signer.key.publicKey],
    ]);
    const streams = [
      ...new Set([...(await storedStreams(join(dataDir, "objects"))), ...(await local.heads.streams())]),
    ];
    for (const stream of streams) {
      const head = await local.heads.get(stream);
      const report = await verifyStoredStream(local.objects, stream, {
        trusted,
        deployment: local.deployment,
        producerKeys,
        receipts: [...acked.byKey.values()].filter((a) => a.receipt.stream === stream).map((a) => a.receipt),
        ...(head ? { head } : {}),
      });
      expect(report.failures, `stream ${stream}`).toEqual([]);
      expect(report.warnings, `stream ${stream}`).toEqual([]);
    }
    // Each acknowledged event once: its dedup entry points at its receipt's record, and no other record holds it.
    const seen = new Map<string, number>();
    for (const stream of streams) {
      const head = await local.heads.get(stream);
      for await (const records of readAll(local, stream, head?.size ?? 0)) {
        for (const r of records) {
          const k = `${stream}\u0000${eventKey(r.record.event)}`;
          seen.set(k, (seen.get(k) ?? 0) + 1);
        }
      }
    }
    for (const { event, receipt } of acked.byKey.values()) {
      expect(seen.get(`${receipt.stream}\u0000${eventKey(event)}`), `${event.id}`).toBe(1);
    }
    expect([...seen.values()].filter((n) => n > 1)).toEqual([]);
    // Registry and _system agree.
    const size = (await local.heads.get(SYSTEM_STREAM))?.size ?? 0;
    const log = await systemRecords(local.objects, local.signingKey, 0, size);
    const registered = new Set<string>();
    const revoked = new Set<string>();
    for (const { event } of log) {
      const data = event.data as { keyId?: string; keyIds?: string[] };
      if (event.type === PRODUCER_REGISTERED) registered.add(data.keyId!);
      if (event.type === PRODUCER_REVOKED) for (const k of data.keyIds ?? []) revoked.add(k);
    }
    const producers = await local.registry.list();
    const keys = producers.flatMap((p) => p.keys);
    expect(new Set(keys.map((k) => k.keyId))).toEqual(registered);
    expect(new Set(keys.filter((k) => k.revokedAt).map((k) => k.keyId))).toEqual(revoked);
  } finally {
    await local.close();
  }
}

async function* readAll(local: Awaited<ReturnType<typeof openLocalSink>>, stream: string, size: number) {
  const { readSegment, segmentPrefix } = await import("@auditsink/core");
  for (const key of await local.objects.list(segmentPrefix(stream))) {
    const bytes = await local.objects.get(key);
    if (bytes) yield readSegment(bytes).filter((r) => r.record.index < size);
  }
}

/**
 * The index is a sound SQLite database (integrity_check) that has indexed every stored record of every stream it
 * knows, and no more (read while no sink has the directory open).
 */
export async function assertIndexClean(dataDir: string): Promise<void> {
  const db = openIndexDatabase(join(dataDir, "index.db"), { readOnly: true });
  try {
    expect(db.prepare("PRAGMA integrity_check").get()).toMatchObject({ integrity_check: "ok" });
    const streams = db.prepare("SELECT stream, size FROM streams").all() as {
      stream: string;
      size: number;
    }[];
    const heads = new LocalHeadStore(join(dataDir, "heads"), join(dataDir, "tmp"));
    for (const { stream, size } of streams) {
      expect(size, stream).toBe((await heads.get(stream))?.size ?? 0);
      const rows = db
        .prepare("SELECT count(*) AS n, max(idx) AS top FROM events WHERE stream = ?")
        .get(stream) as {
        n: number;
        top: number;
      };
      expect([rows.n, rows.top], stream).toEqual([size, size - 1]);
    }
  } finally {
    db.close();
  }
}

export type Fault = "short-write-then-eio" | "short-write-then-enospc" | "eio-on-fsync" | "eio-on-link";

/**
 * A FileSystem port that injects faults into writes of files whose path matches `target`: a write that stores
 * only part of its bytes and then fails (what ENOSPC or EIO look like at the system-call level), an fsync that
 * fails with EIO, or a link(2) that fails with EIO. Faults stay armed until `heal()`.
 */
export class FaultyFileSystem implements FileSystem {
  private armed: { fault: Fault; target: RegExp } | undefined;
  injected = 0;
  private failNext = false;

  constructor(private readonly inner: FileSystem = nodeFileSystem) {}

  arm(fault: Fault, target: RegExp): void {
    this.armed = { fault, target };
  }

  heal(): void {
    this.armed = undefined;
    this.failNext = false;
  }

  private hits(path: string, fault: Fault): boolean {
    return this.armed?.fault === fault && this.armed.target.test(path);
  }

  async open(path: string, flags: string, mode?: number): Promise<WritableFile> {
    const file = await this.inner.open(path, flags, mode);
    const errno = (code: string) => Object.assign(new Error(`${code} (injected)`), { code });
    return {
      write: async (buffer, offset, length, position) => {
        const code = this.hits(path, "short-write-then-eio")
          ? "EIO"
          : this.hits(path, "short-write-then-enospc")
            ? "ENOSPC"
            : undefined;
        if (code === undefined) return file.write(buffer, offset, length, position);
        this.injected++;
        if (this.failNext || length < 2) {
          this.failNext = false;
          throw errno(code);
        }
        // The kernel stores part of the bytes and returns their count; the caller's next call fails.
        this.failNext = true;
        return file.write(buffer, offset, Math.floor(length / 2), position);
      },
      sync: async () => {
        if (this.hits(path, "eio-on-fsync")) {
          this.injected++;
          throw errno("EIO");
        }
        return file.sync();
      },
      datasync: async () => {
        if (this.hits(path, "eio-on-fsync")) {
          this.injected++;
          throw errno("EIO");
        }
        return file.datasync();
      },
      truncate: (n) => file.truncate(n),
      stat: () => file.stat(),
      close: () => file.close(),
    };
  }

  async link(existing: string, path: string): Promise<void> {
    if (this.hits(path, "eio-on-link")) {
      this.injected++;
      throw Object.assign(new Error("EIO (injected)"), { code: "EIO" });
    }
    return this.inner.link(existing, path);
  }

  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return this.inner.unlink(path);
  }
}

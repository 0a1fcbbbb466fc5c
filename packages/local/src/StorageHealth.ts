/**
 * Whether the data directory takes writes. Every write of the local adapters goes through `monitor(fs)`: a
 * write, fsync, link or rename that fails with a storage error (ENOSPC, EIO, EDQUOT, EROFS…) marks its kind of
 * file degraded — the index (index.db, reported by LocalIndex, which writes through SQLite), the alerts file, objects (linked into objects/ from tmp/), or other new files
 * (heads, registry, written through tmp/ and renamed) — until a later write of the same kind succeeds: reaches
 * fsync, or for an object, is linked (a registry write succeeding says nothing about segments). While any kind is degraded, `/healthz`
 * answers 503 (a load balancer takes the node out). Without traffic, `probe()` (called by /healthz) writes and
 * fsyncs a small file once storage has been degraded for `probeMs`, at most every `probeMs`; its success clears
 * every kind, so health recovers once space is freed even when nothing is written.
 */
import { type FileSystem, nodeFileSystem, tempName, type WritableFile, writeFully } from "./fsutil.ts";

/** Errors that say something about the storage, not about the caller (EEXIST, ENOENT are answers, not faults). */
const NOT_FAULTS = new Set(["EEXIST", "ENOENT", "ENOTDIR"]);

export interface StorageStatus {
  writable: boolean;
  /** Which kinds of file fail to be written: `index`, `alerts`, `objects`, `files` (heads, registry, keys…). */
  failing?: string[];
  /** Write failures since start (a counter, for alerting on rate). */
  writeFailures: number;
  /** When storage became degraded (absent while writable). */
  since?: string;
  lastError?: string;
}

type Kind = "index" | "alerts" | "objects" | "files";

function kindOf(path: string): Kind {
  if (path.endsWith("alerts.jsonl")) return "alerts";
  if (/[/\\]objects[/\\](streams|keys)[/\\]/.test(path)) return "objects";
  return "files";
}

export class StorageHealth {
  private failures = 0;
  private readonly degraded = new Map<Kind, string>();
  private degradedSince: string | undefined;
  private lastError: string | undefined;
  private lastProbe = 0;

  constructor(
    private readonly onChange: (status: StorageStatus) => void = () => undefined,
    private readonly probeMs = 5_000,
  ) {}

  get status(): StorageStatus {
    return {
      writable: this.degradedSince === undefined,
      ...(this.degraded.size > 0 ? { failing: [...this.degraded.keys()].sort() } : {}),
      writeFailures: this.failures,
      ...(this.degradedSince ? { since: this.degradedSince } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  failed(error: unknown, kind: Kind = "files"): void {
    if (NOT_FAULTS.has((error as NodeJS.ErrnoException)?.code ?? "")) return;
    if (!this.degraded.has(kind)) this.degraded.set(kind, new Date().toISOString());
    this.failures++;
    this.lastError = `${(error as NodeJS.ErrnoException)?.code ?? "error"}: ${(error as Error)?.message ?? String(error)}`;
    if (this.degradedSince === undefined) {
      this.degradedSince = new Date().toISOString();
      this.onChange(this.status);
    }
  }

  succeeded(kind?: Kind): void {
    if (kind === undefined) this.degraded.clear();
    else this.degraded.delete(kind);
    if (this.degradedSince === undefined || this.degraded.size > 0) return;
    this.degradedSince = undefined;
    this.onChange(this.status);
  }

  /**
   * While degraded, writes, fsyncs and removes a small file in `tmpDir` (at most once per probeMs); `force` probes
   * now (openLocalSink does at start, so a sink started on a full disk reports it before the first request fails).
   */
  async probe(tmpDir: string, fs: FileSystem = nodeFileSystem, force = false): Promise<StorageStatus> {
    const now = Date.now();
    if (
      !force &&
      (this.degradedSince === undefined ||
        now - Date.parse(this.degradedSince) < this.probeMs ||
        now - this.lastProbe < this.probeMs)
    ) {
      return this.status;
    }
    this.lastProbe = now;
    const path = `${tempName(tmpDir)}.probe`;
    try {
      const fh = await fs.open(path, "wx", 0o600);
      try {
        await writeFully(fh, Buffer.alloc(4096, 0x2e), 0);
        await fh.sync();
      } finally {
        await fh.close().catch(() => undefined);
      }
      this.succeeded();
    } catch (e) {
      this.failed(e);
    } finally {
      await fs.unlink(path).catch(() => undefined);
    }
    return this.status;
  }

  /** `fs` with every write, sync, link and rename reported to this tracker. */
  monitor(fs: FileSystem): FileSystem {
    const watch = async <T>(kind: Kind, op: () => Promise<T>): Promise<T> => {
      try {
        return await op();
      } catch (e) {
        this.failed(e, kind);
        throw e;
      }
    };
    const file = (f: WritableFile, kind: Kind): WritableFile => ({
      write: (b, o, l, p) => watch(kind, () => f.write(b, o, l, p)),
      sync: async () => {
        await watch(kind, () => f.sync());
        this.succeeded(kind);
      },
      datasync: async () => {
        await watch(kind, () => f.datasync());
        this.succeeded(kind);
      },
      truncate: (n) => watch(kind, () => f.truncate(n)),
      stat: () => f.stat(),
      close: () => f.close(),
    });
    return {
      open: async (path, flags, mode) =>
        file(await watch(kindOf(path), () => fs.open(path, flags, mode)), kindOf(path)),
      link: async (a, b) => {
        await watch(kindOf(b), () => fs.link(a, b));
        if (kindOf(b) === "objects") this.succeeded("objects");
      },
      rename: (a, b) => watch(kindOf(b), () => fs.rename(a, b)),
      unlink: (p) => fs.unlink(p),
    };
  }
}

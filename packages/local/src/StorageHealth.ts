/**
 * Whether the data directory takes writes. Every write of the local adapters goes through `monitor(fs)`: a
 * write, fsync, link or rename that fails with a storage error (ENOSPC, EIO, EDQUOT, EROFS…) marks storage
 * degraded; the next write that reaches fsync marks it writable again. While degraded, `/healthz` answers 503
 * (a load balancer takes the node out) and `probe()` retries a small write at most every `probeMs` so health
 * recovers without traffic once space is freed.
 */
import { type FileSystem, nodeFileSystem, tempName, type WritableFile, writeFully } from "./fsutil.ts";

/** Errors that say something about the storage, not about the caller (EEXIST, ENOENT are answers, not faults). */
const NOT_FAULTS = new Set(["EEXIST", "ENOENT", "ENOTDIR"]);

export interface StorageStatus {
  writable: boolean;
  /** Write failures since start (a counter, for alerting on rate). */
  writeFailures: number;
  /** When storage became degraded (absent while writable). */
  since?: string;
  lastError?: string;
}

export class StorageHealth {
  private failures = 0;
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
      writeFailures: this.failures,
      ...(this.degradedSince ? { since: this.degradedSince } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  failed(error: unknown): void {
    if (NOT_FAULTS.has((error as NodeJS.ErrnoException)?.code ?? "")) return;
    this.failures++;
    this.lastError = `${(error as NodeJS.ErrnoException)?.code ?? "error"}: ${(error as Error)?.message ?? String(error)}`;
    if (this.degradedSince === undefined) {
      this.degradedSince = new Date().toISOString();
      this.onChange(this.status);
    }
  }

  succeeded(): void {
    if (this.degradedSince === undefined) return;
    this.degradedSince = undefined;
    this.onChange(this.status);
  }

  /** While degraded, writes, fsyncs and removes a small file in `tmpDir` (at most once per probeMs). */
  async probe(tmpDir: string, fs: FileSystem = nodeFileSystem): Promise<StorageStatus> {
    if (this.degradedSince === undefined || Date.now() - this.lastProbe < this.probeMs) return this.status;
    this.lastProbe = Date.now();
    const path = `${tempName(tmpDir)}.probe`;
    const monitored = this.monitor(fs);
    try {
      const fh = await monitored.open(path, "wx", 0o600);
      try {
        await writeFully(fh, Buffer.alloc(4096, 0x2e), 0);
        await fh.sync();
      } finally {
        await fh.close().catch(() => undefined);
      }
    } catch {
      // stays degraded; recorded by the monitor
    } finally {
      await fs.unlink(path).catch(() => undefined);
    }
    return this.status;
  }

  /** `fs` with every write, sync, link and rename reported to this tracker. */
  monitor(fs: FileSystem): FileSystem {
    const watch = async <T>(op: () => Promise<T>): Promise<T> => {
      try {
        return await op();
      } catch (e) {
        this.failed(e);
        throw e;
      }
    };
    const file = (f: WritableFile): WritableFile => ({
      write: (b, o, l, p) => watch(() => f.write(b, o, l, p)),
      sync: async () => {
        await watch(() => f.sync());
        this.succeeded();
      },
      datasync: async () => {
        await watch(() => f.datasync());
        this.succeeded();
      },
      truncate: (n) => watch(() => f.truncate(n)),
      stat: () => f.stat(),
      close: () => f.close(),
    });
    return {
      open: async (path, flags, mode) => file(await watch(() => fs.open(path, flags, mode))),
      link: (a, b) => watch(() => fs.link(a, b)),
      rename: (a, b) => watch(() => fs.rename(a, b)),
      unlink: (p) => fs.unlink(p),
    };
  }
}

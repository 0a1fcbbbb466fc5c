/**
 * Findings of the scheduled verifier that stand until an operator acknowledges them.
 *
 * A finding (a verification failure code or `unexpected-object`) is identified by its code, stream and position.
 * It is opened the first time a run reports it and stays open — across runs that no longer look at it
 * (incremental runs read only new records) and across restarts (`<data>/findings.json`) — until acknowledged.
 * While any finding is open the sink's `/healthz` answers 503 `degraded`.
 *
 * Acknowledging is an audit event: `dev.auditsink.finding.acknowledged` is first recorded in the `_system`
 * stream (who, why, which findings), then the findings are closed. An acknowledged finding is not opened again by
 * the same failure (the damage it describes is permanent in a write-once log); a new failure opens a new one.
 * At start, `reconcile()` applies acknowledgements recorded in `_system` that the file does not reflect yet (a
 * kill between the two writes), from the file's `systemSize` watermark on.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { type SignedEvent, StoreError } from "@auditsink/core";
import { type FileSystem, isErrno, nodeFileSystem, replaceFile, storeError } from "./fsutil.ts";

export const FINDING_ACKNOWLEDGED = "dev.auditsink.finding.acknowledged";

export interface OpenFinding {
  /** Stable id: 16 hex digits of SHA-256 over code, stream and position. */
  id: string;
  code: string;
  stream?: string;
  at?: string | number;
  message: string;
  firstSeen: string;
  lastSeen: string;
}

export interface Acknowledgement {
  ids: string[];
  by: string;
  note: string;
  time: string;
}

interface File {
  open: OpenFinding[];
  acknowledged: (OpenFinding & { acknowledgedAt: string; by: string; note: string })[];
  /** When the last full verification finished (the bound on catching changes to old objects starts there). */
  lastFullRun?: string;
  /** `_system` records reflected in this file. */
  systemSize?: number;
}

export function findingId(f: { code: string; stream?: string; at?: string | number }): string {
  return createHash("sha256")
    .update(JSON.stringify([f.code, f.stream ?? "", f.at === undefined ? "" : String(f.at)]))
    .digest("hex")
    .slice(0, 16);
}

export class FindingsLedger {
  private file: File = { open: [], acknowledged: [] };
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string | undefined,
    private readonly tmpDir: string,
    private readonly fs: FileSystem = nodeFileSystem,
  ) {}

  async load(): Promise<void> {
    if (!this.path) return;
    try {
      const parsed = JSON.parse(await readFile(this.path, "utf8")) as Partial<File>;
      this.file = {
        open: Array.isArray(parsed.open) ? parsed.open : [],
        acknowledged: Array.isArray(parsed.acknowledged) ? parsed.acknowledged : [],
        ...(typeof parsed.lastFullRun === "string" ? { lastFullRun: parsed.lastFullRun } : {}),
        ...(Number.isSafeInteger(parsed.systemSize) ? { systemSize: parsed.systemSize } : {}),
      };
    } catch (e) {
      if (!isErrno(e, "ENOENT")) {
        // Replaced atomically, so this is outside damage: the next full run opens every finding again.
        this.file = { open: [], acknowledged: [] };
      }
    }
  }

  get open(): readonly OpenFinding[] {
    return this.file.open;
  }

  get acknowledged(): File["acknowledged"] {
    return this.file.acknowledged;
  }

  get lastFullRun(): string | undefined {
    return this.file.lastFullRun;
  }

  get systemSize(): number {
    return this.file.systemSize ?? 0;
  }

  /** Opens findings not seen before (returns them: they are the ones to alert on) and refreshes the others. */
  observe(
    failures: readonly { code: string; stream?: string; at?: string | number; message: string }[],
    at: string,
  ): OpenFinding[] {
    const fresh: OpenFinding[] = [];
    const acked = new Set(this.file.acknowledged.map((a) => a.id));
    for (const f of failures) {
      const id = findingId(f);
      if (acked.has(id)) continue;
      const existing = this.file.open.find((o) => o.id === id);
      if (existing) existing.lastSeen = at;
      else {
        const o: OpenFinding = {
          id,
          code: f.code,
          ...(f.stream ? { stream: f.stream } : {}),
          ...(f.at !== undefined ? { at: f.at } : {}),
          message: f.message,
          firstSeen: at,
          lastSeen: at,
        };
        this.file.open.push(o);
        fresh.push(o);
      }
    }
    return fresh;
  }

  fullRunFinished(at: string): void {
    this.file.lastFullRun = at;
  }

  /** Checks that every id is open (StoreError "conflict" names the first that is not). */
  assertOpen(ids: readonly string[]): void {
    for (const id of ids) {
      if (!this.file.open.some((o) => o.id === id)) throw new StoreError("conflict", `no open finding ${id}`);
    }
  }

  /** Closes the findings of a recorded acknowledgement; ids that are not open are ignored (already applied). */
  apply(ack: Acknowledgement, systemIndex?: number): OpenFinding[] {
    const closed = this.file.open.filter((o) => ack.ids.includes(o.id));
    this.file.open = this.file.open.filter((o) => !ack.ids.includes(o.id));
    for (const o of closed)
      this.file.acknowledged.push({ ...o, acknowledgedAt: ack.time, by: ack.by, note: ack.note });
    if (systemIndex !== undefined) this.file.systemSize = Math.max(this.systemSize, systemIndex + 1);
    return closed;
  }

  /** Applies acknowledgements found in `_system` records from the watermark on. */
  reconcile(records: readonly { index: number; event: SignedEvent }[], size: number): number {
    let closed = 0;
    for (const { index, event } of records) {
      if (event.type !== FINDING_ACKNOWLEDGED) continue;
      const ack = parseAcknowledgement(event);
      if (ack) closed += this.apply(ack, index).length;
    }
    this.file.systemSize = Math.max(this.systemSize, size);
    return closed;
  }

  save(): Promise<void> {
    const run = this.chain.then(async () => {
      if (!this.path) return;
      try {
        await replaceFile(this.tmpDir, this.path, `${JSON.stringify(this.file, null, 2)}\n`, 0o644, this.fs);
      } catch (e) {
        throw storeError(`writing ${this.path}`, e);
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}

export function parseAcknowledgement(event: SignedEvent): Acknowledgement | undefined {
  const d = event.data as Record<string, unknown> | undefined;
  if (!d || typeof d !== "object" || !Array.isArray(d.findings)) return undefined;
  const ids = d.findings.filter((x): x is string => typeof x === "string");
  return {
    ids,
    by: typeof d.by === "string" ? d.by : "admin",
    note: typeof d.note === "string" ? d.note : "",
    time: event.time ?? new Date().toISOString(),
  };
}

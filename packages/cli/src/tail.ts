/**
 * `auditsink tail`: print a stream's records from an index on, and with --follow keep printing new ones.
 * A bundle's records start at its first segment: indexes before it are not there to print.
 */
import { type AuditRecord, toHex } from "@auditsink/core";
import { openSource } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";

export interface TailOptions {
  stream: string;
  /** First index to print; negative counts from the end (default −10). */
  from?: number;
  follow?: boolean;
  intervalMs?: number;
  s3?: S3ReadOptions;
  signal?: AbortSignal;
}

export interface TailedRecord {
  index: number;
  recordHash: string;
  record: AuditRecord;
}

export async function tail(
  location: string,
  options: TailOptions,
  emit: (r: TailedRecord) => void,
): Promise<void> {
  const source = await openSource(location, options.s3);
  const reader = source.reader(options.stream);
  await reader.sync();
  const from = options.from ?? -10;
  let next = Math.max(reader.firstIndex, from < 0 ? reader.size + from : from);
  for (;;) {
    if (reader.size > next) {
      for (const r of await reader.records(next, reader.size)) {
        emit({ index: r.record.index, recordHash: toHex(r.hash), record: r.record });
      }
      next = reader.size;
    }
    if (!options.follow || options.signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, options.intervalMs ?? 1000);
      options.signal?.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });
    if (options.signal?.aborted) return;
    await reader.sync();
  }
}

/**
 * `auditsink prove`: cut an inclusion proof (as a receipt, checkable with core's verifyReceipt) or a consistency
 * proof between two stored checkpoints, from the stored objects through core's StreamReader. Every proof is
 * checked with core against the pinned keys before it is printed.
 */
import {
  checkConsistency,
  checkpointKey,
  checkpointPrefix,
  EMPTY_ROOT,
  openCheckpoint,
  parseStoreKey,
  type Receipt,
  toHex,
  verifyReceipt,
} from "@auditsink/core";
import { CliError } from "./errors.ts";
import { openSource, type Source } from "./sources.ts";
import type { S3ReadOptions } from "./stores.ts";
import { resolveTrust, type TrustOptions } from "./trust.ts";

export interface ProveCommon extends TrustOptions {
  stream: string;
  s3?: S3ReadOptions;
}

async function checkpoints(source: Source, common: ProveCommon) {
  const trust = await resolveTrust(common, source.offeredKeys, source.kind === "data-dir");
  const sizes = (await source.store.list(checkpointPrefix(common.stream)))
    .map((k) => parseStoreKey(k))
    .filter((k) => k?.kind === "checkpoints")
    .map((k) => k!.n);
  const text = async (size: number) => {
    const bytes = await source.store.get(checkpointKey(common.stream, size));
    if (!bytes) throw new CliError("not-found", `no checkpoint of size ${size} in ${common.stream}`);
    return Buffer.from(bytes).toString("utf8");
  };
  return { trust, sizes, text };
}

export interface InclusionOptions extends ProveCommon {
  index?: number;
  eventSource?: string;
  eventId?: string;
  /** Tree size to prove against (default: the smallest stored checkpoint that covers the record). */
  size?: number;
}

export async function proveInclusion(location: string, options: InclusionOptions): Promise<Receipt> {
  const source = await openSource(location, options.s3);
  const reader = source.reader(options.stream);
  const { trust, sizes, text } = await checkpoints(source, options);
  await reader.sync();
  // A bundle's reader starts at its first segment: it proves the records it holds, against the sizes after it.
  const first = reader.firstIndex;
  if (reader.size === first) throw new CliError("not-found", `stream ${options.stream} has no records`);
  let index = options.index;
  let found: { source: string; id: string; hash: string } | undefined;
  if (index === undefined) {
    if (!options.eventSource || !options.eventId) {
      throw new CliError("usage", "give --index, or --event-source and --event-id");
    }
    for (let from = first; from < reader.size && !found; from += 10_000) {
      for (const r of await reader.records(from, Math.min(reader.size, from + 10_000))) {
        if (r.record.event.source === options.eventSource && r.record.event.id === options.eventId) {
          index = r.record.index;
          found = { source: r.record.event.source, id: r.record.event.id, hash: toHex(r.hash) };
          break;
        }
      }
    }
    if (index === undefined) {
      throw new CliError(
        "not-found",
        `no event ${options.eventSource} ${options.eventId} in ${options.stream}`,
      );
    }
  }
  if (index < first || index >= reader.size) {
    throw new CliError(
      "not-found",
      `the source holds records ${first}…${reader.size - 1} of ${options.stream}, not ${index}`,
    );
  }
  if (!found) {
    const [r] = await reader.records(index, index + 1);
    found = { source: r!.record.event.source, id: r!.record.event.id, hash: toHex(r!.hash) };
  }
  const size = options.size ?? sizes.find((s) => s > index! && s <= reader.size);
  if (size === undefined || !sizes.includes(size)) {
    throw new CliError(
      "not-found",
      `no stored checkpoint ${options.size ?? "covers record"} ${options.size ? "" : index}`.trim(),
    );
  }
  const receipt: Receipt = {
    stream: options.stream,
    index,
    recordHash: found.hash,
    source: found.source,
    id: found.id,
    checkpoint: await text(size),
    inclusionProof: reader.inclusionProof(index, size).map(toHex),
  };
  const verdict = verifyReceipt(receipt, {
    trusted: trust.trusted,
    ...(source.deployment ? { deployment: source.deployment } : {}),
  });
  if (!verdict.ok)
    throw new CliError("untrusted", `the proof does not verify: ${verdict.code}: ${verdict.detail}`);
  return receipt;
}

export interface ConsistencyOptions extends ProveCommon {
  from: number;
  to: number;
}

export interface ConsistencyProofOutput {
  stream: string;
  from: number;
  to: number;
  /** The two signed checkpoints (no older one from size 0: the empty tree has none). */
  older?: string;
  newer: string;
  proof: string[];
}

export async function proveConsistency(
  location: string,
  options: ConsistencyOptions,
): Promise<ConsistencyProofOutput> {
  if (!(options.from >= 0 && options.from <= options.to))
    throw new CliError("usage", "need 0 ≤ --from ≤ --to");
  const source = await openSource(location, options.s3);
  const reader = source.reader(options.stream);
  const { trust, text } = await checkpoints(source, options);
  await reader.sync();
  if (options.to > reader.size) {
    throw new CliError("not-found", `stream ${options.stream} has ${reader.size} records, not ${options.to}`);
  }
  if (options.from > 0 && options.from < reader.firstIndex) {
    throw new CliError(
      "not-found",
      `the source starts at size ${reader.firstIndex} of ${options.stream}: no proof from ${options.from}`,
    );
  }
  // The empty tree (size 0) has no stored checkpoint: every tree extends it, with an empty proof.
  const older = options.from === 0 ? undefined : await text(options.from);
  const newer = await text(options.to);
  const proof = reader.consistencyProof(options.from, options.to).map(toHex);
  const b = openCheckpoint(newer, trust.trusted);
  const a = older === undefined ? undefined : openCheckpoint(older, trust.trusted);
  if (!b.ok || (a && !a.ok))
    throw new CliError("untrusted", "a checkpoint does not verify with the trusted keys");
  const from = a?.ok ? a.checkpoint : { ...b.checkpoint, size: 0, root: EMPTY_ROOT };
  const verdict = checkConsistency(from, b.checkpoint, proof);
  if (!verdict.ok)
    throw new CliError("untrusted", `the proof does not verify: ${verdict.code}: ${verdict.detail}`);
  return {
    stream: options.stream,
    from: options.from,
    to: options.to,
    ...(older ? { older } : {}),
    newer,
    proof,
  };
}

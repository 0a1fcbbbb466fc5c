/**
 * What `auditsink verify` checks about an evidence bundle beyond core's walk of its records (docs/FORMAT.md
 * §13): the manifest, that the bundle holds exactly the objects its manifest names, that a verified checkpoint
 * covers every bundled record, and that the proofs the bundle promises are there and hold.
 */
import { join } from "node:path";
import {
  checkConsistency,
  checkpointKey,
  type Finding,
  type NoteKey,
  openCheckpoint,
  parseStoredJson,
  parseStoreKey,
  type Receipt,
} from "@auditsink/core";
import type { BundleHandle, BundleManifest } from "./bundle.ts";
import { type ConsistencyFile, ConsistencyFileSchema } from "./bundle.ts";
import { type ReceiptEntry, receiptEntries } from "./receipts.ts";
import { readBytes, type Source } from "./sources.ts";

/** Findings only the CLI can make, about an evidence bundle as a whole (docs/FORMAT.md §13 lists them). */
export type BundleFailureCode =
  | "bundle-manifest-invalid"
  | "bundle-object-unexpected"
  | "bundle-not-covered"
  | "bundle-proof-missing"
  | "bundle-proof-invalid";

const INCLUSION = "proofs/inclusion.json";
const CONSISTENCY = "proofs/consistency.json";

type Fail = (code: BundleFailureCode, at: number | string, message: string) => void;

/** A public key document's key (docs/FORMAT.md §7), which core's layout check accepts anywhere in a store. */
const KEY_DOCUMENT = /^keys\/[0-9a-f]{8}\.json$/;

function failer(bundle: BundleHandle, into: Finding<string>[]): Fail {
  return (code, at, message) => into.push({ code, stream: bundle.stream, at, message });
}

/** `bundle-manifest-invalid` for each thing wrong with the manifest (none when it is usable). */
export function manifestFindings(bundle: BundleHandle): Finding<string>[] {
  return bundle.problems.map((p) => ({
    code: "bundle-manifest-invalid",
    stream: bundle.stream,
    at: p.at,
    message: `${p.at} ${p.message}`,
  }));
}

/** The receipts in proofs/inclusion.json as entries (core checks them), or the finding that there are none. */
export async function readBundleReceipts(
  bundle: BundleHandle,
): Promise<{ entries: ReceiptEntry[]; findings: Finding<string>[] }> {
  const findings: Finding<string>[] = [];
  const fail = failer(bundle, findings);
  const bytes = await readBytes(join(bundle.dir, INCLUSION));
  if (bytes === undefined) {
    fail("bundle-proof-missing", INCLUSION, `${INCLUSION} is missing: the bundle carries no receipts`);
    return { entries: [], findings };
  }
  try {
    // Stored JSON, read by the rules it was written by (docs/FORMAT.md §3): one meaning for every verifier.
    const json = parseStoredJson(bytes);
    if (!json.ok) throw new Error(json.detail);
    const receipts = (json.value as { receipts?: unknown } | null)?.receipts;
    if (!Array.isArray(receipts)) throw new Error('no "receipts" array');
    return { entries: receiptEntries(bytes.toString("utf8"), INCLUSION), findings };
  } catch (e) {
    fail(
      "bundle-proof-invalid",
      INCLUSION,
      `${INCLUSION} is not {"receipts": [...]}: ${(e as Error).message}`,
    );
    return { entries: [], findings };
  }
}

/**
 * Adds the bundle's own findings to the walk's result for the bundle's stream. `receipts` are the well-formed
 * receipts of proofs/inclusion.json (core checked each against the records already).
 */
export async function checkBundle(
  source: Source,
  manifest: BundleManifest,
  trusted: readonly NoteKey[],
  result: { failures: Finding<string>[]; state: { checkpointSize: number } },
  receipts: readonly Receipt[],
): Promise<void> {
  const bundle = source.bundle!;
  const fail = failer(bundle, result.failures);
  const stream = manifest.stream;

  // 1. Exactly the objects the manifest names: the segments [segments.first, segments.end) and checkpoints of
  //    sizes start.size … coveredBy of the bundle's stream. Keys outside the store layout are core's run's
  //    (`unexpected-object`); a layout key the manifest does not name is reported here, never ignored — and so
  //    is a key document, which an exporter never puts among a bundle's objects.
  const checkpointSizes: number[] = [];
  const unexpected = (key: string, why: string) =>
    fail("bundle-object-unexpected", key, `object ${key} ${why}`);
  for (const key of await source.store.list("")) {
    const parsed = parseStoreKey(key);
    if (!parsed) {
      if (KEY_DOCUMENT.test(key))
        unexpected(key, "is a key document: a bundle's keys are in keys/, pinned apart");
    } else if (parsed.stream !== stream) {
      unexpected(key, `belongs to stream ${parsed.stream}, not the bundle's stream ${stream}`);
    } else if (parsed.kind === "segments") {
      if (parsed.n < manifest.segments.first || parsed.n >= manifest.segments.end)
        unexpected(
          key,
          `is outside the manifest's segments ${manifest.segments.first}…${manifest.segments.end - 1}`,
        );
    } else if (parsed.n < manifest.start.size || parsed.n > manifest.coveredBy) {
      unexpected(
        key,
        `is outside the manifest's checkpoint sizes ${manifest.start.size}…${manifest.coveredBy}`,
      );
    } else checkpointSizes.push(parsed.n);
  }

  // 2. Covered: the newest checkpoint the walk verified (a pinned key's signature, the bundle's origin, its
  //    size, and a root recomputed from the bundled records) reaches the records' end and the covering size.
  const needed = Math.max(manifest.records.end, manifest.coveredBy);
  const newest = result.state.checkpointSize;
  const broken = result.failures.some((f) => f.at === newest && f.code.startsWith("checkpoint-"));
  if (newest < needed || broken) {
    fail(
      "bundle-not-covered",
      needed,
      `no verified checkpoint covers the bundle's records up to ${needed} (newest verified: ${broken ? "none" : newest})`,
    );
  }

  // 3. Receipts for the window's first and last record, as the exporter always writes them.
  for (const index of new Set([manifest.records.first, manifest.records.end - 1])) {
    if (!receipts.some((r) => r.stream === stream && r.index === index))
      fail("bundle-proof-missing", index, `${INCLUSION} holds no receipt for record ${index}`);
  }

  // 4. A consistency proof between every two successive bundled checkpoints, each verifying.
  const bytes = await readBytes(join(bundle.dir, CONSISTENCY));
  let file: ConsistencyFile | undefined;
  if (bytes === undefined) {
    fail("bundle-proof-missing", CONSISTENCY, `${CONSISTENCY} is missing`);
  } else {
    const json = parseStoredJson(bytes);
    const parsed = json.ok ? ConsistencyFileSchema.safeParse(json.value) : undefined;
    if (parsed?.success) file = parsed.data;
    else
      fail(
        "bundle-proof-invalid",
        CONSISTENCY,
        `${CONSISTENCY} is not {"proofs": [{from, to, proof}]}${json.ok ? "" : `: it ${json.detail}`}`,
      );
  }
  const open = async (size: number) => {
    const bytes = await source.store.get(checkpointKey(stream, size));
    return bytes ? openCheckpoint(Buffer.from(bytes).toString("utf8"), trusted) : undefined;
  };
  for (const p of file?.proofs ?? []) {
    const older = await open(p.from);
    const newer = await open(p.to);
    if (!older?.ok || !newer?.ok) {
      fail(
        "bundle-proof-invalid",
        `${p.from}..${p.to}`,
        `consistency proof ${p.from}→${p.to}: a checkpoint is missing or does not verify`,
      );
      continue;
    }
    const verdict =
      p.from > 0 && p.from < p.to
        ? checkConsistency(older.checkpoint, newer.checkpoint, p.proof)
        : { ok: false as const, detail: "must prove a size 1 ≤ from < to" };
    if (!verdict.ok)
      fail(
        "bundle-proof-invalid",
        `${p.from}..${p.to}`,
        `consistency proof ${p.from}→${p.to}: ${verdict.detail}`,
      );
  }
  if (!file) return;
  const claimed = new Set(file.proofs.map((p) => `${p.from}..${p.to}`));
  const sizes = checkpointSizes.filter((s) => s > 0).sort((a, b) => a - b);
  for (let i = 1; i < sizes.length; i++) {
    const pair = `${sizes[i - 1]}..${sizes[i]}`;
    if (!claimed.has(pair))
      fail(
        "bundle-proof-missing",
        pair,
        `${CONSISTENCY} holds no valid proof from ${sizes[i - 1]} to ${sizes[i]}`,
      );
  }
}

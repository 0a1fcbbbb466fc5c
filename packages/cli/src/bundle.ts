/**
 * Evidence bundles: what `auditsink export` writes for one stream and time window, and `auditsink verify`
 * checks offline. Layout:
 *
 *   README.md                    how an auditor checks it
 *   manifest.json                what the bundle holds (BundleManifest)
 *   keys/verifier-keys.txt       the deployment's checkpoint keys (C2SP verifier key strings) — pin out of band
 *   keys/producers.json          producer public keys, to re-verify every producer signature
 *   objects/streams/<stream>/…   the stored segments holding the window and the signed checkpoints covering
 *                                them, byte for byte as the sink stored them
 *   proofs/inclusion.json        receipts (record hash, signed checkpoint, RFC 9162 inclusion proof) for
 *                                records of the window
 *   proofs/consistency.json      RFC 9162 consistency proofs between the bundle's successive checkpoints
 *
 * A window that does not start at record 0 carries the Merkle frontier (compact range) at its first segment:
 * the records after it recompute the root of every later checkpoint only if the frontier is the true one, so
 * the signed checkpoint that covers the last record authenticates the frontier too.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Frontier, hashFromHex, parseStoredJson, STREAM_NAME, type VerifierState } from "@auditsink/core";
import { z } from "zod";
import { CliError } from "./errors.ts";

export const BUNDLE_FORMAT = "auditsink-evidence-bundle";

const hex = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits");
const size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const range = z.object({ first: size, end: size });
const instant = z.string().refine((t) => !Number.isNaN(Date.parse(t)), "must be an RFC 3339 time");

/** manifest.json, version 1 (docs/FORMAT.md §Evidence bundles). Extra members are ignored. */
export const BundleManifestSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  version: z.literal(1),
  deployment: z.string().min(1),
  stream: z.string().regex(STREAM_NAME, "must be a stream name"),
  createdAt: instant,
  /** The requested window of `received` times (RFC 3339), absent ends being open. */
  window: z.object({ from: instant.optional(), to: instant.optional() }),
  /** Indexes [first, end) of the records whose received time lies in the window. */
  records: range,
  /** Indexes [first, end) the bundled segments hold (whole segments around the window). */
  segments: range,
  /** Verifier state at segments.first: size, head record hash, Merkle frontier (largest subtree first). */
  start: z.object({ size, headHash: hex, frontier: z.array(hex), checkpointSize: size }),
  /** Size of the checkpoint that covers every bundled record (the newest bundled one). */
  coveredBy: size,
  /** Fingerprints (hex SHA-256 of DER SPKI) of the keys in keys/verifier-keys.txt. */
  keyFingerprints: z.array(hex),
});

export type BundleManifest = z.infer<typeof BundleManifestSchema> & {
  format: typeof BUNDLE_FORMAT;
  start: VerifierState;
};

/** proofs/consistency.json: RFC 9162 PROOF(from, D[0:to]) between successive bundled checkpoints, hex. */
export const ConsistencyFileSchema = z.object({
  proofs: z.array(z.object({ from: size, to: size, proof: z.array(hex) })),
});
export type ConsistencyFile = z.infer<typeof ConsistencyFileSchema>;

/** What is wrong with a manifest: a JSON pointer into manifest.json and why. */
export interface ManifestProblem {
  at: string;
  message: string;
}

export interface BundleHandle {
  dir: string;
  /** The stream the bundle is about (from the manifest; "" when the manifest does not say). */
  stream: string;
  /** Present only when manifest.json is a valid, self-consistent version 1 manifest. */
  manifest?: BundleManifest;
  problems: ManifestProblem[];
}

/** The rules a manifest's numbers must obey among themselves (the schema checks each alone). */
function inconsistencies(m: BundleManifest): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const rule = (ok: boolean, at: string, message: string) => {
    if (!ok) problems.push({ at: `manifest.json#/${at}`, message });
  };
  try {
    new Frontier(
      m.start.size,
      m.start.frontier.map((h) => hashFromHex(h, "frontier")),
    );
  } catch {
    rule(false, "start/frontier", `a frontier of size ${m.start.size} has one hash per set bit of the size`);
  }
  rule(m.start.size === m.segments.first, "start/size", "must equal segments.first");
  rule(m.start.checkpointSize <= m.start.size, "start/checkpointSize", "must not exceed start.size");
  rule(m.start.size > 0 || /^0{64}$/.test(m.start.headHash), "start/headHash", "must be zero at size 0");
  rule(m.segments.first <= m.records.first, "records/first", "must not be before segments.first");
  rule(m.records.first < m.records.end, "records/end", "must be after records.first");
  rule(m.records.end <= m.coveredBy, "coveredBy", "must cover records.end");
  rule(m.coveredBy <= m.segments.end, "segments/end", "must reach coveredBy");
  return problems;
}

/** When the manifest names no stream: the one stream the bundle's objects hold, else "". */
async function onlyStream(dir: string): Promise<string> {
  const names = await readdir(join(dir, "objects", "streams")).catch(() => [] as string[]);
  return names.length === 1 && STREAM_NAME.test(names[0]!) ? names[0]! : "";
}

/**
 * Opens `<dir>/manifest.json`: undefined when there is none (not a bundle); otherwise the bundle, whose
 * `problems` say why its manifest cannot be used (verify reports them as `bundle-manifest-invalid`).
 */
export async function readBundle(dir: string): Promise<BundleHandle | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, "manifest.json"));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError("source-unreadable", `cannot read ${dir}/manifest.json`, { cause: e });
  }
  // Read by the rules it was written by (docs/FORMAT.md §3): with two `start` members, say, every verifier would
  // otherwise start the walk from the one its JSON parser keeps.
  const parsed = parseStoredJson(bytes);
  if (!parsed.ok) {
    return {
      dir,
      stream: await onlyStream(dir),
      problems: [{ at: "manifest.json", message: parsed.detail }],
    };
  }
  const json = parsed.value;
  const named = (json as { stream?: unknown } | null)?.stream;
  const handle = {
    dir,
    stream: typeof named === "string" && STREAM_NAME.test(named) ? named : await onlyStream(dir),
  };
  const manifest = BundleManifestSchema.safeParse(json);
  if (!manifest.success) {
    return {
      ...handle,
      problems: manifest.error.issues.map((i) => ({
        at: `manifest.json#/${i.path.map(String).join("/")}`,
        message: i.message,
      })),
    };
  }
  const problems = inconsistencies(manifest.data as BundleManifest);
  return problems.length > 0
    ? { ...handle, problems }
    : { ...handle, manifest: manifest.data as BundleManifest, problems };
}

/** The manifest of a bundle a command needs whole (tail, prove): a problem is an error here, not a finding. */
export function usableManifest(bundle: BundleHandle): BundleManifest {
  if (bundle.manifest) return bundle.manifest;
  const p = bundle.problems[0];
  throw new CliError(
    "source-unreadable",
    `${bundle.dir}: ${p?.at ?? "manifest.json"} ${p?.message ?? "is not valid"}; run auditsink verify on it`,
  );
}

/**
 * Witness configuration shared by both runtimes (docs/TRANSPARENCY.md §3): parsing `<url> <vkey>` specs, the
 * endpoints and quorum, the scheduled verifier's requirement, the WitnessCosigner over a Sink, and the `witnesses`
 * health document. Errors are FormatError("bad-key") naming what is wrong; each runtime words them as its own
 * configuration error.
 */
import { FormatError } from "./errors.ts";
import type { Hash } from "./hash.ts";
import { type NoteKey, SIG_ED25519 } from "./note.ts";
import { type Sink, streamAllowed } from "./sink.ts";
import { parseWitnessKey, witnessPolicy } from "./witness.ts";
import { WitnessCosigner, type WitnessCosignerOptions, type WitnessEndpoint } from "./witness-cosigner.ts";
import { DEFAULT_WITNESS_MAX_LAG_SECONDS, type WitnessRequirement } from "./witnessed.ts";

/** One witness: its submission URL (the sink POSTs `<url>/add-checkpoint`) and its cosignature verifier key. */
export interface WitnessConfig {
  url: string;
  verifierKey: string;
}

export interface WitnessOptions {
  witnesses: readonly WitnessConfig[];
  /** Valid cosignatures each checkpoint should get (default: every witness); health and metrics judge by it. */
  quorum?: number;
  /** Least seconds between two submissions of one stream's checkpoint (default 10). */
  intervalSeconds?: number;
  /** Streams whose checkpoints are submitted, as producer stream patterns (`agents.*`); default every stream. */
  streams?: readonly string[];
  /** Seconds each request may take (default 10). */
  timeoutSeconds?: number;
  /**
   * Seconds a checkpoint may wait for a quorum's cosignatures before the scheduled verifier reports
   * `witness-policy-unmet` (default: 300, or three intervals if that is longer).
   */
  maxLagSeconds?: number;
}

/** Seconds between two submissions of one stream when nothing else is configured. */
export const DEFAULT_WITNESS_INTERVAL_SECONDS = 10;

/** Parses `<url> <verifier key>` (either order; whitespace between). Throws FormatError naming what is wrong. */
export function parseWitnessSpec(spec: string): WitnessConfig {
  const parts = spec.trim().split(/\s+/);
  const url = parts.find((p) => /^https?:\/\//.test(p));
  const verifierKey = parts.find((p) => p !== url);
  if (parts.length !== 2 || !url || !verifierKey)
    throw new FormatError(
      "bad-key",
      `witness "${spec}" must be "<http(s) URL> <verifier key>" (the witness's submission URL and its vkey)`,
    );
  try {
    new URL(url);
    parseWitnessKey(verifierKey);
  } catch (e) {
    throw new FormatError("bad-key", `witness "${spec}": ${(e as Error).message}`, { cause: e });
  }
  return { url, verifierKey };
}

/** Witness specs from a list: one per line, or separated by commas; `#` starts a comment line. */
export function parseWitnessList(text: string): WitnessConfig[] {
  return text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s !== "" && !s.startsWith("#"))
    .map(parseWitnessSpec);
}

/** Checks the options; returns the endpoints and quorum. Throws FormatError ("witnesses: …"). */
export function witnessEndpoints(options: WitnessOptions): { endpoints: WitnessEndpoint[]; quorum: number } {
  try {
    const policy = witnessPolicy(
      options.witnesses.map((w) => w.verifierKey),
      options.quorum,
    );
    for (const w of options.witnesses) new URL(w.url);
    const interval = options.intervalSeconds ?? DEFAULT_WITNESS_INTERVAL_SECONDS;
    if (!Number.isFinite(interval) || interval < 0)
      throw new FormatError("bad-key", "the witness interval must be 0 or more seconds");
    return {
      endpoints: options.witnesses.map((w, i) => ({ url: w.url, key: policy.witnesses[i]! })),
      quorum: policy.quorum,
    };
  } catch (e) {
    throw new FormatError("bad-key", `witnesses: ${(e as Error).message}`, { cause: e });
  }
}

/** Witnesses (litewitness, x/mod note) accept Ed25519 log keys only (c2sp.org/signed-note type 0x01). */
export function isWitnessableKey(key: NoteKey): boolean {
  return key.type === SIG_ED25519;
}

/**
 * The scheduled verifier's witness requirement: the configured quorum of the configured witnesses, over the
 * submitted streams, within the configured lag (default: 300 s, or three submission intervals if longer).
 */
export function witnessRequirement(options: WitnessOptions): WitnessRequirement {
  const { endpoints, quorum } = witnessEndpoints(options);
  return {
    policy: { quorum, witnesses: endpoints.map((e) => e.key) },
    maxLagSeconds:
      options.maxLagSeconds ??
      Math.max(
        DEFAULT_WITNESS_MAX_LAG_SECONDS,
        3 * (options.intervalSeconds ?? DEFAULT_WITNESS_INTERVAL_SECONDS),
      ),
    ...(options.streams ? { streams: options.streams } : {}),
    seen: new Map(),
  };
}

/** The cosigner for a sink: checkpoints from its heads, consistency proofs from its stored tiles (Sink.tree). */
export function createCosigner(
  sink: Sink,
  options: WitnessOptions,
  hooks: Pick<WitnessCosignerOptions, "observer" | "onFailure" | "onError">,
): { cosigner: WitnessCosigner; wanted(stream: string): boolean } {
  const { endpoints, quorum } = witnessEndpoints(options);
  const cosigner = new WitnessCosigner({
    witnesses: endpoints,
    quorum,
    objects: sink.options.objects,
    checkpoint: async (stream) => (await sink.head(stream))?.checkpoint,
    consistencyProof: (stream, from, to): Promise<Hash[]> => sink.tree(stream).consistencyProof(from, to),
    intervalMs: (options.intervalSeconds ?? DEFAULT_WITNESS_INTERVAL_SECONDS) * 1000,
    ...(options.timeoutSeconds !== undefined ? { timeoutMs: options.timeoutSeconds * 1000 } : {}),
    ...hooks,
  });
  const patterns = options.streams;
  return { cosigner, wanted: (stream) => !patterns || streamAllowed(patterns, stream) };
}

/**
 * The health document's `witnesses` field. `status: "failing"` when a witness's last submission failed or a
 * stream's last round missed the quorum; it does not make the sink `degraded` (503): a load balancer would take
 * an ingesting node out for a remote witness's outage, which must never stop ingest.
 */
export function witnessHealth(cosigner: WitnessCosigner): Record<string, unknown> {
  const s = cosigner.status();
  const reasons = [
    ...(s.witnesses.some((w) => w.up === false) ? ["witness-failing"] : []),
    ...(s.quorumMissed.length > 0 ? ["witness-quorum-missed"] : []),
  ];
  return {
    status: reasons.length > 0 ? "failing" : "ok",
    ...(reasons.length > 0 ? { reasons } : {}),
    quorum: s.quorum,
    streamsBelowQuorum: s.quorumMissed,
    witnesses: s.witnesses.map((w) => ({
      name: w.name,
      url: w.url,
      up: w.up ?? null,
      lastCosignedAt: w.lastCosignedAt ?? null,
      consecutiveFailures: w.consecutiveFailures,
      ...(w.lastFailure ? { lastFailure: w.lastFailure } : {}),
    })),
  };
}

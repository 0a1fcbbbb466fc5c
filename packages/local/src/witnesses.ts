/**
 * The embedded sink's witnesses (docs/TRANSPARENCY.md §3): core's witness configuration (witness-config.ts, shared
 * with the AWS runtime), with its errors worded as the embedded sink's configuration errors.
 */
import {
  createCosigner as cosignerFor,
  witnessEndpoints as endpoints,
  FormatError,
  isWitnessableKey,
  type NoteKey,
  parseWitnessList as parseList,
  parseWitnessSpec as parseSpec,
  witnessRequirement as requirement,
  type WitnessConfig,
  type WitnessEndpoint,
  type WitnessOptions,
  type WitnessRequirement,
} from "@auditsink/core";
import { LocalError } from "./errors.ts";

export {
  DEFAULT_WITNESS_INTERVAL_SECONDS,
  type WitnessConfig,
  type WitnessOptions,
  witnessHealth,
} from "@auditsink/core";

/** Runs `f`, turning core's FormatError into LocalError("config-invalid") with the same message. */
function configured<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof FormatError) throw new LocalError("config-invalid", e.message, { cause: e });
    throw e;
  }
}

/** Parses `<url> <verifier key>` (either order), as `--witness` gives it. Throws LocalError("config-invalid"). */
export const parseWitnessSpec = (spec: string): WitnessConfig => configured(() => parseSpec(spec));

/** Witness specs from AUDITSINK_WITNESSES: one per line, or separated by commas. */
export const parseWitnessList = (text: string): WitnessConfig[] => configured(() => parseList(text));

/** Checks the options before the sink opens; returns the endpoints and quorum. Throws LocalError("config-invalid"). */
export const witnessEndpoints = (options: WitnessOptions): { endpoints: WitnessEndpoint[]; quorum: number } =>
  configured(() => endpoints(options));

/** The scheduled verifier's witness requirement (core's witnessRequirement). Throws LocalError("config-invalid"). */
export const witnessRequirement = (options: WitnessOptions): WitnessRequirement =>
  configured(() => requirement(options));

/** Witnesses (litewitness, x/mod note) accept Ed25519 log keys only (c2sp.org/signed-note type 0x01). */
export function assertWitnessableKey(key: NoteKey, keyPath: string): void {
  if (!isWitnessableKey(key))
    throw new LocalError(
      "config-invalid",
      `witnesses need an Ed25519 checkpoint key, and this data directory's key (${keyPath}) is ECDSA P-256: ` +
        "witnesses only accept Ed25519 log signatures. Start a new data directory with " +
        "--checkpoint-key ed25519 (docs/TRANSPARENCY.md §3), or run without witnesses.",
    );
}

/** The cosigner over the data directory's sink (core's createCosigner). Throws LocalError("config-invalid"). */
export const createCosigner = (...args: Parameters<typeof cosignerFor>): ReturnType<typeof cosignerFor> =>
  configured(() => cosignerFor(...args));

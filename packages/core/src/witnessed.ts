/**
 * Whether a stream's checkpoints are witnessed as a policy requires (docs/FORMAT.md §11, codes
 * `witness-policy-unmet` and `cosigned-checkpoint-invalid`): the I/O half reads the stored cosigned checkpoints
 * (`streams/<stream>/cosigned/<size>`, §7); every judgement is a pure function of witness.ts.
 *
 * Cosigning lags commits (the sink submits at most once per interval, and a witness may be slow), so the rule is
 * about age, not about the newest checkpoint: every checkpoint signed more than `maxLagSeconds` ago must be
 * covered by a cosigned checkpoint of at least its size that meets the policy. Because the walk has verified that
 * all of a stream's checkpoints are consistent with its records, a quorum cosigning size c vouches that the
 * witnesses saw this same history up to c: a split view shown to them would have been refused.
 */
import { openCheckpoint, parseCheckpointText } from "./checkpoint.ts";
import { listAll } from "./fetch.ts";
import { type Note, type NoteKey, parseNote } from "./note.ts";
import type { ObjectStore } from "./ports.ts";
import { checkpointKey, checkpointPrefix, cosignedPrefix, parseStoreKey } from "./record.ts";
import type { Finding } from "./verify.ts";
import { checkWitnessPolicy, type WitnessPolicy } from "./witness.ts";

/** A witness policy and how long a checkpoint may wait for its cosignatures. */
export interface WitnessRequirement {
  policy: WitnessPolicy;
  /** Seconds a checkpoint may stay without a cosigned checkpoint covering it (default 300). */
  maxLagSeconds?: number;
  /** Only streams matching these patterns (producer stream patterns, `agents.*`); default every stream. */
  streams?: readonly string[];
  /**
   * Kept across runs by a scheduled verifier: each stream's newest cosigned keys seen, so that a run lists only
   * the keys created since (cosigned keys are write-once and sort by size), not every one since the first.
   */
  seen?: Map<string, string[]>;
}

export const DEFAULT_WITNESS_MAX_LAG_SECONDS = 300;

/** How many of the newest cosigned checkpoints are read looking for one that meets the policy. */
const LOOK_BACK = 16;

const decode = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8");

/** Checks one stream against a witness requirement; never throws for stored bytes. */
export async function checkStreamWitnessed(
  store: ObjectStore,
  stream: string,
  trusted: readonly NoteKey[],
  requirement: WitnessRequirement,
  now: Date,
): Promise<{ failures: Finding[]; witnessed?: { size: number; witnesses: string[] } }> {
  const failures: Finding[] = [];
  const keys = [...(requirement.seen?.get(stream) ?? [])];
  for await (const key of listAll(store, cosignedPrefix(stream), keys[keys.length - 1]))
    if (parseStoreKey(key)?.kind === "cosigned") {
      keys.push(key);
      if (keys.length > LOOK_BACK) keys.shift();
    }
  requirement.seen?.set(stream, [...keys]);
  let witnessed: { size: number; witnesses: string[] } | undefined;
  let shortOf = "";
  for (const key of keys.reverse().slice(0, LOOK_BACK)) {
    const size = parseStoreKey(key)!.n;
    const invalid = (why: string) =>
      failures.push({ code: "cosigned-checkpoint-invalid", stream, at: key, message: `${key} ${why}` });
    const [cosignedBytes, checkpointBytes] = await Promise.all([
      store.get(key),
      store.get(checkpointKey(stream, size)),
    ]);
    if (!cosignedBytes) continue;
    const opened = openCheckpoint(decode(cosignedBytes), trusted);
    if (!opened.ok) {
      invalid(`is not a checkpoint signed by a trusted key: ${opened.detail}`);
      continue;
    }
    let stored: Note | undefined;
    try {
      stored = checkpointBytes ? parseNote(decode(checkpointBytes)) : undefined;
    } catch {
      stored = undefined;
    }
    // The checkpoint the walk verified, byte for byte: then its consistency with the records is already proven.
    if (!stored || stored.text !== opened.note.text) {
      invalid(`does not hold the text of the stored checkpoint ${checkpointKey(stream, size)}`);
      continue;
    }
    const verdict = checkWitnessPolicy(opened.note, requirement.policy);
    for (const bad of verdict.invalid) invalid(`carries a cosignature that does not verify: ${bad.detail}`);
    if (verdict.met) {
      witnessed = { size, witnesses: verdict.signed.map((s) => s.name) };
      break;
    }
    shortOf ||= `; the newest cosigned checkpoint (size ${size}) is ${verdict.detail}`;
  }
  // The oldest checkpoint the witnessed one does not cover: it must not be older than the allowed lag.
  const [uncovered] = await store.list(checkpointPrefix(stream), {
    ...(witnessed ? { startAfter: checkpointKey(stream, witnessed.size) } : {}),
    limit: 1,
  });
  if (uncovered) {
    let time: string | undefined;
    let size: number | undefined;
    try {
      const cp = parseCheckpointText(
        parseNote(decode((await store.get(uncovered)) ?? new Uint8Array())).text,
      );
      time = cp.time;
      size = cp.size;
    } catch {
      // A checkpoint that does not parse is the walk's finding (checkpoint-malformed); nothing to judge here.
    }
    const lag = requirement.maxLagSeconds ?? DEFAULT_WITNESS_MAX_LAG_SECONDS;
    const age = time ? (now.getTime() - Date.parse(time)) / 1000 : undefined;
    if (size !== undefined && size > 0 && age !== undefined && age > lag) {
      failures.push({
        code: "witness-policy-unmet",
        stream,
        at: size,
        message:
          `checkpoint ${size} of ${stream}, signed ${time} (${Math.round(age)} s ago), is not covered by a ` +
          `cosigned checkpoint meeting the witness policy (${requirement.policy.quorum} of ` +
          `${requirement.policy.witnesses.map((w) => w.name).join(", ")}) after ${lag} s; ` +
          (witnessed ? `the newest that meets it has size ${witnessed.size}` : "none meets it") +
          shortOf,
      });
    }
  }
  return { failures, ...(witnessed ? { witnessed } : {}) };
}

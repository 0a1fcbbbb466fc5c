/**
 * Asks witnesses to cosign each stream's newest checkpoint (c2sp.org/tlog-witness) and stores what they return,
 * write-once, at `streams/<stream>/cosigned/<size>` (docs/FORMAT.md §7). Both runtimes use it after commits.
 *
 *   1. a commit calls `notify(stream)`; a round for that stream runs at most once per `intervalMs` (later
 *      commits in between are folded into the next round: only the newest checkpoint is submitted);
 *   2. the round reads the stream's newest signed checkpoint and, for each witness at once, sends add-checkpoint
 *      with `old <size the witness last cosigned>` and the consistency proof from it (empty from 0). The sizes
 *      are kept in memory only: after a restart the first request says `old 0`, the witness answers 409 with its
 *      size, and the request is sent again from there — the protocol's own way to learn it;
 *   3. each cosignature is verified with the witness's configured key (lines from other keys are dropped);
 *   4. the checkpoint with every valid cosignature is created at its cosigned key, once.
 * A witness that is down, slow or refusing never blocks or fails a commit: rounds run beside ingest, bounded by
 * `timeoutMs` per request, and their outcome is reported (status(), the observer) for health and metrics.
 */
import { parsePlainCheckpoint } from "./checkpoint.ts";
import { listAll } from "./fetch.ts";
import type { Hash } from "./hash.ts";
import { type NoteSignature, parseNote } from "./note.ts";
import type { ObjectStore } from "./ports.ts";
import { cosignedKey, cosignedPrefix, parseStoreKey } from "./record.ts";
import {
  addCheckpointRequest,
  addCosignatures,
  cosignaturesBy,
  parseAddCheckpointResponse,
  type WitnessKey,
  type WitnessRefusal,
} from "./witness.ts";

/** A witness the sink submits to: its submission prefix (`<url>/add-checkpoint`) and its cosigning key. */
export interface WitnessEndpoint {
  url: string;
  key: WitnessKey;
}

/** How one submission ended. `conflict` is counted apart because it is followed by a second attempt. */
export type SubmissionOutcome =
  | "cosigned"
  | "conflict"
  | "unreachable"
  /** The witness has cosigned a larger tree of this log than the sink's newest: a rollback, or another writer. */
  | "witness-ahead"
  | WitnessRefusal;

export interface CosignerObserver {
  submitted?(witness: string, outcome: SubmissionOutcome): void;
}

export interface WitnessCosignerOptions {
  witnesses: readonly WitnessEndpoint[];
  /** Valid cosignatures a round needs for its stream to count as witnessed (health and metrics). */
  quorum: number;
  objects: ObjectStore;
  /** The stream's newest signed checkpoint (note text), if it has one. */
  checkpoint(stream: string): Promise<string | undefined>;
  /** The RFC 9162 consistency proof between two sizes of the stream (0 < from < to). */
  consistencyProof(stream: string, from: number, to: number): Promise<Hash[]>;
  /** Least time between two rounds of one stream (the rate limit per stream), milliseconds. */
  intervalMs: number;
  /** Per request (default 10,000 ms). */
  timeoutMs?: number;
  fetch?: typeof fetch;
  now?: () => number;
  observer?: CosignerObserver;
  /** Told of each failed submission (the runtime logs it). */
  onFailure?(failure: WitnessFailure & { stream: string }): void;
  /**
   * Told when a scheduled round fails on the sink's side (reading the checkpoint or a proof, storing the cosigned
   * note): the runtime logs it; the next commit schedules another round.
   */
  onError?(stream: string, error: unknown): void;
}

export interface WitnessFailure {
  witness: string;
  outcome: Exclude<SubmissionOutcome, "cosigned" | "conflict">;
  detail: string;
}

/** One round for one stream. */
export interface CosignRound {
  stream: string;
  size: number;
  /** Witnesses that returned a valid cosignature. */
  cosigned: string[];
  failures: WitnessFailure[];
  quorumMet: boolean;
  /** The stored cosigned note (the one already stored for this size, if a round stored it before). */
  note?: string;
}

export interface WitnessState {
  name: string;
  url: string;
  verifierKey: string;
  /** Whether its last submission was cosigned (undefined: none yet). */
  up?: boolean;
  lastCosignedAt?: string;
  lastFailure?: WitnessFailure & { stream: string; at: string };
  consecutiveFailures: number;
}

/**
 * The newest cosigned checkpoint of each stream of a store. Cosigned keys are write-once and sort by size, so a
 * lookup lists only the keys after the newest one it knows: the first lookup of a stream lists its cosigned keys
 * once, later ones (`refresh`) cost one List request that returns what was stored since.
 */
export class CosignedCheckpoints {
  private readonly newest = new Map<string, { key: string; size: number; note: string }>();

  constructor(private readonly objects: ObjectStore) {}

  /** The newest known; listed from the store when not known yet or when `refresh` is set. */
  async get(stream: string, refresh = false): Promise<{ size: number; note: string } | undefined> {
    const known = this.newest.get(stream);
    if (known && !refresh) return { size: known.size, note: known.note };
    let last: string | undefined;
    for await (const key of listAll(this.objects, cosignedPrefix(stream), known?.key))
      if (parseStoreKey(key)?.kind === "cosigned") last = key;
    if (last) {
      const bytes = await this.objects.get(last);
      if (bytes) this.remember(stream, Number(last.slice(-20)), Buffer.from(bytes).toString("utf8"));
    }
    const found = this.newest.get(stream);
    return found ? { size: found.size, note: found.note } : undefined;
  }

  /** Records a cosigned checkpoint this process stored (kept if it is the newest). */
  remember(stream: string, size: number, note: string): void {
    const previous = this.newest.get(stream);
    if (!previous || previous.size <= size)
      this.newest.set(stream, { key: cosignedKey(stream, size), size, note });
  }
}

export class WitnessCosigner {
  /** `<witness url>\n<stream>` → the size that witness last cosigned (or said it holds). */
  private readonly known = new Map<string, number>();
  private readonly states: WitnessState[];
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly running = new Map<string, Promise<CosignRound | undefined>>();
  private readonly dirty = new Set<string>();
  private readonly lastRound = new Map<string, number>();
  private readonly quorumMissed = new Set<string>();
  private readonly newest: CosignedCheckpoints;
  private closed = false;

  constructor(private readonly o: WitnessCosignerOptions) {
    this.states = o.witnesses.map((w) => ({
      name: w.key.name,
      url: w.url,
      verifierKey: w.key.verifierKey,
      consecutiveFailures: 0,
    }));
    this.newest = new CosignedCheckpoints(o.objects);
  }

  /** A new checkpoint of `stream` exists: a round runs as soon as the rate limit allows. Never throws. */
  notify(stream: string): void {
    if (this.closed) return;
    if (this.running.has(stream) || this.timers.has(stream)) {
      this.dirty.add(stream);
      return;
    }
    const now = (this.o.now ?? Date.now)();
    const wait = Math.max(
      0,
      (this.lastRound.get(stream) ?? Number.NEGATIVE_INFINITY) + this.o.intervalMs - now,
    );
    const timer = setTimeout(() => {
      this.timers.delete(stream);
      void this.cosign(stream).catch((e: unknown) => this.o.onError?.(stream, e));
    }, wait);
    timer.unref?.();
    this.timers.set(stream, timer);
  }

  /** Runs one round for `stream` now (waiting for one already running). Undefined when it has no checkpoint. */
  cosign(stream: string): Promise<CosignRound | undefined> {
    const current = this.running.get(stream);
    if (current) return current;
    this.dirty.delete(stream);
    this.lastRound.set(stream, (this.o.now ?? Date.now)());
    const round = this.round(stream).finally(() => {
      this.running.delete(stream);
      if (this.dirty.delete(stream)) this.notify(stream);
    });
    this.running.set(stream, round);
    return round;
  }

  /** Each witness's state, for /healthz. */
  status(): { witnesses: WitnessState[]; quorum: number; quorumMissed: string[] } {
    return {
      witnesses: this.states.map((s) => ({ ...s })),
      quorum: this.o.quorum,
      quorumMissed: [...this.quorumMissed].sort(),
    };
  }

  /**
   * The newest cosigned checkpoint of `stream`: the last stored by this process, else the last in the store
   * (listed once per stream, then kept).
   */
  newestCosigned(stream: string): Promise<{ size: number; note: string } | undefined> {
    return this.newest.get(stream);
  }

  /**
   * Whether the rate limit lets a round of `stream` start now. A runtime that cannot keep timers between
   * invocations (a Lambda container is frozen once it answers) asks this and calls `cosign` itself instead of
   * `notify`.
   */
  due(stream: string): boolean {
    const last = this.lastRound.get(stream);
    return last === undefined || (this.o.now ?? Date.now)() - last >= this.o.intervalMs;
  }

  /** Stops scheduling rounds and waits for those running. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.running.values()]);
  }

  private async round(stream: string): Promise<CosignRound | undefined> {
    const signed = await this.o.checkpoint(stream);
    if (!signed) return undefined;
    const note = parseNote(signed);
    const size = parsePlainCheckpoint(note.text).size;
    const results = await Promise.all(
      this.o.witnesses.map((w, i) => this.submit(stream, i, w, signed, size)),
    );
    const cosignatures: NoteSignature[] = [];
    const cosigned: string[] = [];
    const failures: WitnessFailure[] = [];
    for (const [i, r] of results.entries()) {
      if ("signatures" in r) {
        cosignatures.push(...r.signatures);
        cosigned.push(this.o.witnesses[i]!.key.name);
      } else failures.push(r);
    }
    const quorumMet = cosigned.length >= this.o.quorum;
    if (quorumMet) this.quorumMissed.delete(stream);
    else this.quorumMissed.add(stream);
    const result: CosignRound = { stream, size, cosigned, failures, quorumMet };
    if (cosignatures.length > 0) {
      const text = addCosignatures(signed, cosignatures);
      const key = cosignedKey(stream, size);
      // Write-once: a second round at the same size (after a restart) keeps the first note stored.
      const stored = (await this.o.objects.putIfAbsent(key, Buffer.from(text, "utf8")))
        ? text
        : Buffer.from((await this.o.objects.get(key)) ?? Buffer.from(text)).toString("utf8");
      result.note = stored;
      this.newest.remember(stream, size, stored);
    }
    return result;
  }

  /** Submits to one witness, once more from its size after a 409; verifies what it returns. */
  private async submit(
    stream: string,
    index: number,
    witness: WitnessEndpoint,
    signed: string,
    size: number,
  ): Promise<{ signatures: NoteSignature[] } | WitnessFailure> {
    const knownKey = `${witness.url}\n${stream}`;
    const state = this.states[index]!;
    const fail = (outcome: WitnessFailure["outcome"], detail: string): WitnessFailure => {
      const failure = { witness: witness.key.name, outcome, detail };
      this.o.observer?.submitted?.(witness.key.name, outcome);
      state.up = false;
      state.consecutiveFailures++;
      state.lastFailure = { ...failure, stream, at: new Date((this.o.now ?? Date.now)()).toISOString() };
      this.o.onFailure?.({ ...failure, stream });
      return failure;
    };
    for (let attempt = 0; attempt < 2; attempt++) {
      const old = this.known.get(knownKey) ?? 0;
      if (old > size)
        return fail(
          "witness-ahead",
          `${witness.key.name} has cosigned size ${old} of ${stream}, larger than the newest checkpoint ${size}`,
        );
      // A proof the sink cannot read is the sink's failure (the round rejects), not the witness's.
      const proof = old === 0 || old === size ? [] : await this.o.consistencyProof(stream, old, size);
      const body = addCheckpointRequest(old, proof, signed);
      let response: Response;
      let text: string;
      try {
        response = await (this.o.fetch ?? fetch)(`${witness.url.replace(/\/+$/, "")}/add-checkpoint`, {
          method: "POST",
          headers: { "content-type": "text/plain; charset=utf-8" },
          body,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 10_000),
        });
        text = await response.text();
      } catch (e) {
        const cause = (e as Error).cause as Error | undefined;
        return fail(
          "unreachable",
          `${witness.url}: ${(e as Error).message}${cause ? ` (${cause.message})` : ""}`,
        );
      }
      const answer = parseAddCheckpointResponse(response.status, response.headers.get("content-type"), text);
      if (answer.kind === "conflict") {
        this.o.observer?.submitted?.(witness.key.name, "conflict");
        this.known.set(knownKey, answer.knownSize);
        continue;
      }
      if (answer.kind === "refused") return fail(answer.code, `${witness.key.name}: ${answer.detail}`);
      const note = { text: parseNote(signed).text, signatures: answer.signatures };
      const verdicts = cosignaturesBy(note, [witness.key]);
      const good = verdicts.filter((v) => v.verdict.ok).map((v) => v.signature);
      if (good.length === 0) {
        const bad = verdicts.find((v) => !v.verdict.ok)?.verdict;
        return fail(
          "witness-error",
          `${witness.key.name} answered without a valid cosignature from its configured key${bad && !bad.ok ? `: ${bad.detail}` : ""}`,
        );
      }
      this.known.set(knownKey, size);
      this.o.observer?.submitted?.(witness.key.name, "cosigned");
      state.up = true;
      state.consecutiveFailures = 0;
      state.lastCosignedAt = new Date((this.o.now ?? Date.now)()).toISOString();
      return { signatures: good.slice(0, 1) };
    }
    return fail("witness-conflict", `${witness.key.name} answered 409 twice for ${stream} at size ${size}`);
  }
}

/**
 * The producer as a witness: remember the newest signed checkpoint seen per stream, and accept a new one only
 * if an RFC 9162 consistency proof (§2.1.4) shows that one of the two extends the other. The check itself is
 * core's `checkConsistency`; this class only keeps the state and fetches proofs.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { type Checkpoint, checkConsistency, type NoteKey, openCheckpoint } from "@auditsink/core";
import { ClientError, ReceiptError, WitnessError } from "./errors.ts";

/**
 * Fetches the consistency proof between tree sizes `from` < `to` (hex hashes). Throws ClientError("rejected")
 * when the sink says it cannot prove it (it does not hold `to` records), anything else for transient failures.
 */
export type ConsistencySource = (stream: string, from: number, to: number) => Promise<string[]>;

export interface WitnessOptions {
  /** The sink's checkpoint keys the producer pins. */
  trusted: readonly NoteKey[];
  /** A small JSON file that keeps the newest checkpoint per stream across restarts. */
  stateFile?: string;
}

interface Seen {
  text: string;
  checkpoint: Checkpoint;
}

interface StateFile {
  version: 1;
  checkpoints: Record<string, string>;
}

export class CheckpointWitness {
  private readonly seen = new Map<string, Seen>();
  private readonly queues = new Map<string, Promise<unknown>>();
  /** State-file writes, one at a time: streams are observed concurrently but share one file. */
  private saving: Promise<void> = Promise.resolve();

  private constructor(private readonly options: WitnessOptions) {}

  /** Opens a witness, loading its state file when there is one. */
  static async open(options: WitnessOptions): Promise<CheckpointWitness> {
    const w = new CheckpointWitness(options);
    if (options.stateFile) {
      let text: string | undefined;
      try {
        text = await readFile(options.stateFile, "utf8");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
          throw new ClientError(
            "bad-config",
            `cannot read state file ${options.stateFile}`,
            {},
            { cause: e },
          );
        }
      }
      if (text !== undefined) {
        let state: StateFile;
        try {
          state = JSON.parse(text) as StateFile;
          if (typeof state?.checkpoints !== "object" || state.checkpoints === null)
            throw new Error("no checkpoints object");
        } catch (e) {
          throw new ClientError(
            "bad-config",
            `state file ${options.stateFile} is not a witness state (${(e as Error).message})`,
            {},
            { cause: e },
          );
        }
        for (const [stream, signed] of Object.entries(state.checkpoints)) {
          const opened = openCheckpoint(signed, options.trusted);
          if (!opened.ok) {
            throw new ClientError(
              "bad-config",
              `state file ${options.stateFile}: checkpoint of ${stream} does not verify (${opened.detail})`,
            );
          }
          w.seen.set(stream, { text: signed, checkpoint: opened.checkpoint });
        }
      }
    }
    return w;
  }

  /** The newest signed checkpoint seen for `stream`, if any. */
  newest(stream: string): string | undefined {
    return this.seen.get(stream)?.text;
  }

  /** The tree size of the newest checkpoint seen for `stream`, if any. */
  newestSize(stream: string): number | undefined {
    return this.seen.get(stream)?.checkpoint.size;
  }

  /**
   * Checks `signed` (a checkpoint of `stream`) against the newest one seen before and keeps the larger.
   * Throws WitnessError("log-fork") when they are not views of one log, WitnessError("log-rollback") when the
   * sink presents a smaller log and cannot prove that the larger one it signed before extends it.
   */
  observe(stream: string, signed: string, proofs: ConsistencySource): Promise<void> {
    // Observations of one stream are serialised: the newest checkpoint is read and replaced atomically.
    const run = (this.queues.get(stream) ?? Promise.resolve()).then(
      () => this.observeNow(stream, signed, proofs),
      () => this.observeNow(stream, signed, proofs),
    );
    this.queues.set(stream, run);
    return run;
  }

  private async observeNow(stream: string, signed: string, proofs: ConsistencySource): Promise<void> {
    const opened = openCheckpoint(signed, this.options.trusted);
    if (!opened.ok) throw new ReceiptError("receipt-checkpoint-invalid", opened.detail);
    const cp = opened.checkpoint;
    const prev = this.seen.get(stream);
    if (!prev) {
      await this.keep(stream, signed, cp);
      return;
    }
    const older = cp.size <= prev.checkpoint.size ? { text: signed, checkpoint: cp } : prev;
    const newer = older === prev ? { text: signed, checkpoint: cp } : prev;
    let proof: string[] = [];
    if (older.checkpoint.size > 0 && older.checkpoint.size < newer.checkpoint.size) {
      try {
        proof = await proofs(stream, older.checkpoint.size, newer.checkpoint.size);
      } catch (e) {
        if (e instanceof ClientError && e.code === "rejected" && newer === prev) {
          throw new WitnessError(
            "log-rollback",
            `stream ${stream}: the sink signed size ${prev.checkpoint.size} before, now presents ${cp.size} and cannot prove consistency`,
            { stream, older: prev.text, newer: signed },
            { cause: e },
          );
        }
        throw e;
      }
    }
    const verdict = checkConsistency(older.checkpoint, newer.checkpoint, proof);
    if (!verdict.ok) {
      throw new WitnessError(
        "log-fork",
        `stream ${stream}: checkpoints of size ${older.checkpoint.size} and ${newer.checkpoint.size} contradict each other (${verdict.detail})`,
        { stream, older: prev.text, newer: signed },
      );
    }
    if (newer !== prev) await this.keep(stream, signed, cp);
  }

  private async keep(stream: string, text: string, checkpoint: Checkpoint): Promise<void> {
    this.seen.set(stream, { text, checkpoint });
    const file = this.options.stateFile;
    if (!file) return;
    const save = async () => {
      const state: StateFile = {
        version: 1,
        checkpoints: Object.fromEntries([...this.seen].map(([s, v]) => [s, v.text])),
      };
      // Write then rename: a crash leaves the old state or the new one, never half a file.
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
      await rename(tmp, file);
    };
    this.saving = this.saving.then(save, save);
    await this.saving;
  }
}

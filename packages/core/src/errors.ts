/**
 * Coded errors of the core. HTTP status and problem bodies are derived from these codes in one place
 * (packages/api errors.ts, used by app.onError); verification failures are not errors but values in a report
 * (see verify.ts).
 */

import type { VerifierState } from "./verify.ts";

/** The one base of every coded error: a `code` from a string-literal union, the cause kept. */
export abstract class CodedError<C extends string = string> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type FormatErrorCode =
  | "not-canonicalizable"
  | "bad-hash"
  | "bad-base64"
  | "bad-note"
  | "bad-checkpoint"
  | "bad-key"
  | "bad-record"
  | "bad-segment"
  | "bad-receipt"
  | "bad-proof"
  | "bad-batch"
  | "bad-tile"
  | "bad-tlog-proof";

/** Bytes or text that do not follow docs/FORMAT.md. */
export class FormatError extends CodedError<FormatErrorCode> {
  override readonly name = "FormatError";
}

export type IngestErrorCode =
  | "invalid-request"
  | "invalid-event"
  | "invalid-stream"
  | "unknown-producer"
  | "bad-signature"
  | "revoked-key"
  | "stream-not-allowed"
  | "id-conflict"
  | "too-large"
  | "unavailable";

/**
 * A request the sink refuses. Nothing was committed when this is thrown.
 * `field` names the offending JSON path (for example `events[3].time`) where there is one.
 */
export class IngestError extends CodedError<IngestErrorCode> {
  override readonly name = "IngestError";
  constructor(
    code: IngestErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export type StoreErrorCode = "store-failed" | "conflict" | "locked";

/** A port implementation failed. Adapters wrap SDK and filesystem errors in this with `cause`. */
export class StoreError extends CodedError<StoreErrorCode> {
  override readonly name = "StoreError";
}

export type IntegrityErrorCode =
  /** A stored object does not parse, does not continue its stream's chain, or disappeared after it was read. */
  | "stored-object-corrupt"
  /** Committing would contradict what is stored: a checkpoint of that size exists with another root (a fork). */
  | "checkpoint-conflict";

/**
 * The write-once store's content contradicts itself or what the sink is about to commit. Never the caller's
 * fault: the HTTP app answers 500, logs it and raises an alert; nothing is committed when this is thrown.
 */
export class IntegrityError extends CodedError<IntegrityErrorCode> {
  override readonly name = "IntegrityError";
  constructor(
    code: IntegrityErrorCode,
    message: string,
    readonly where: { stream?: string; at?: string | number } = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export type TlogErrorCode =
  /** The source failed: a network error, an HTTP status other than 200 and 404, an unreadable file. */
  | "unavailable"
  /** A resource is longer than the reader accepts for it (checkpoint, tile or entry bundle). */
  | "too-large"
  /** A resource the checkpoint's size requires is absent (neither the partial nor the full tile). */
  | "missing"
  /** The checkpoint is not a signed note with a plain checkpoint body, or its origin is not the log's. */
  | "bad-checkpoint"
  /** No trusted key signed the checkpoint, or a trusted key's signature does not verify. */
  | "checkpoint-not-verified"
  /** A hash tile or entry bundle does not have the length or shape tlog-tiles gives it. */
  | "bad-tile"
  /** Hashes or entries from the log do not lead to the checkpoint's root: the log serves wrong data. */
  | "proof-failed"
  /** A question about an index or size the checkpoint does not cover. */
  | "out-of-range";

/** Reading a c2sp.org/tlog-tiles log failed (tlog-reader.ts). `path` names the resource where there is one. */
export class TlogError extends CodedError<TlogErrorCode> {
  override readonly name = "TlogError";
  constructor(
    code: TlogErrorCode,
    message: string,
    readonly path?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * A verification run stopped by its signal (run.ts). `states` are its positions to resume from, as
 * ArchiveReport.states: the new state of every stream verified without failures up to where the walk stopped
 * (inside a stream too), the given state of every other one. Findings of the stopped run are not reported; the
 * next run from these states finds them. `cause` is the signal's reason.
 */
export class VerificationStoppedError extends CodedError<"verification-stopped"> {
  override readonly name = "VerificationStoppedError";
  constructor(
    readonly states: Record<string, VerifierState>,
    reason: unknown,
  ) {
    super(
      "verification-stopped",
      `verification stopped: ${reason instanceof Error ? reason.message : String(reason)}`,
      { cause: reason },
    );
  }
}

/**
 * Coded errors of the core. HTTP status and problem bodies are derived from these codes in one place
 * (packages/api errors.ts, used by app.onError); verification failures are not errors but values in a report
 * (see verify.ts).
 */

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

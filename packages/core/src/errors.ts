/**
 * Coded errors of the core. HTTP status and problem bodies are derived from these codes in one place
 * (packages/api); verification failures are not errors but values in a report (see verify.ts).
 */

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
  | "bad-proof";

/** Bytes or text that do not follow docs/FORMAT.md. */
export class FormatError extends Error {
  override readonly name = "FormatError";
  constructor(
    readonly code: FormatErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
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
export class IngestError extends Error {
  override readonly name = "IngestError";
  constructor(
    readonly code: IngestErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type StoreErrorCode = "store-failed" | "conflict" | "locked";

/** A port implementation failed. Adapters wrap SDK and filesystem errors in this with `cause`. */
export class StoreError extends Error {
  override readonly name = "StoreError";
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Coded errors of the embedded runtime. Filesystem errors below the ports become core StoreError with `cause`;
 * these are for what the runtime itself refuses (a data directory in use, a bad configuration).
 */
export type LocalErrorCode = "data-dir-locked" | "data-dir-invalid" | "config-mismatch" | "lock-unavailable";

export class LocalError extends Error {
  override readonly name = "LocalError";
  constructor(
    readonly code: LocalErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

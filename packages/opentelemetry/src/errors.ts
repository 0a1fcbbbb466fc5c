/** Coded errors of the OpenTelemetry bridge. */

export type AuditExportErrorCode =
  /** At least one span's event was not recorded: refused, unavailable after retries, or its receipt failed. */
  | "export-failed"
  /** Every event sent was receipted, but spans were dropped (the queue was full, or the processor shut down). */
  | "spans-dropped";

/**
 * What forceFlush() and shutdown() reject with: the spans since the previous flush that were not recorded.
 * `errors` holds the first few failures (ClientError, ReceiptError, WitnessError from @auditsink/client);
 * `cause` is the first of them.
 */
export class AuditExportError extends Error {
  override readonly name = "AuditExportError";
  constructor(
    readonly code: AuditExportErrorCode,
    message: string,
    readonly counts: { failed: number; dropped: number },
    readonly errors: readonly unknown[],
  ) {
    super(message, errors.length > 0 ? { cause: errors[0] } : undefined);
  }
}

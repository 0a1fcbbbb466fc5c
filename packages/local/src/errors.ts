/**
 * Coded errors of the embedded runtime. Filesystem errors below the ports become core StoreError with `cause`;
 * these are for what the runtime itself refuses (a data directory in use, a bad configuration).
 */
import { CodedError } from "@auditsink/core";
export type LocalErrorCode =
  | "data-dir-locked"
  | "data-dir-invalid"
  | "config-mismatch"
  | "config-invalid"
  | "lock-unavailable"
  | "index-unavailable";

export class LocalError extends CodedError<LocalErrorCode> {
  override readonly name = "LocalError";
}

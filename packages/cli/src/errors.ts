/**
 * Coded errors of the CLI. Each maps to an exit status in one place (main.ts): verification failures are not
 * errors but findings in the report (exit 1); a CliError means the command could not do its job (exit 2).
 */
import { CodedError } from "@auditsink/core";
export type CliErrorCode =
  /** Arguments that cannot work together, or a value that does not parse. */
  | "usage"
  /** No trusted key was given, or none of the pinned fingerprints matches a key offered by the source. */
  | "untrusted"
  /** The source (directory, bundle, bucket, endpoint) cannot be read, or is not what it claims to be. */
  | "source-unreadable"
  /** An HTTP endpoint refused the request. */
  | "request-failed"
  /** The stream, record or checkpoint asked for does not exist. */
  | "not-found"
  /** An optional package the command needs is not installed (the message names it and how to install it). */
  | "dependency-missing"
  /** A verification worker thread could not start or stopped unexpectedly. */
  | "worker-failed";

export class CliError extends CodedError<CliErrorCode> {
  override readonly name = "CliError";
}

export const EXIT_OK = 0;
export const EXIT_FAILURES = 1;
export const EXIT_ERROR = 2;

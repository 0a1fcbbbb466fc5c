/**
 * Coded errors of the AWS runtime. SDK errors never leave an adapter as they are: they become core
 * StoreError with `{ cause }` (see `storeFailure`), so nothing above a port sees an AWS exception name.
 */
import { StoreError } from "@auditsink/core";

export type AwsConfigErrorCode = "missing-setting" | "bad-setting";

/** The Lambda environment lacks a setting, or a setting is out of range. Thrown at cold start. */
export class AwsConfigError extends Error {
  override readonly name = "AwsConfigError";
  constructor(
    readonly code: AwsConfigErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The SDK error's name and HTTP status, for deciding what a failure means. */
export function awsErrorName(error: unknown): { name: string; status: number | undefined } {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return { name: e?.name ?? "Error", status: e?.$metadata?.httpStatusCode };
}

/** Wraps an SDK failure as StoreError("store-failed"), keeping the original as `cause`. */
export function storeFailure(what: string, cause: unknown): StoreError {
  const { name, status } = awsErrorName(cause);
  // Network errors carry only a generic name; their message (ECONNRESET, socket hang up) says what happened.
  const detail = name === "Error" ? `${name}: ${(cause as Error)?.message}` : name;
  return new StoreError("store-failed", `${what} failed: ${detail}${status ? ` (HTTP ${status})` : ""}`, {
    cause,
  });
}

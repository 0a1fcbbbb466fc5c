/** Exponential backoff with full jitter (the AWS Architecture Blog's recommended variant). */
export interface RetryOptions {
  /** Attempts in all, the first included (default 6). */
  maxAttempts?: number;
  /** Delay cap before jitter for the first retry, doubling each time (default 100 ms). */
  baseDelayMs?: number;
  /** Largest delay (default 5,000 ms). */
  maxDelayMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { maxAttempts: 6, baseDelayMs: 100, maxDelayMs: 5_000 };

/** The delay before retry number `attempt` (1 for the first retry): uniform in [0, min(max, base·2^(attempt−1))]. */
export function backoffDelay(attempt: number, options: Required<RetryOptions>, random = Math.random): number {
  const cap = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random() * cap);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

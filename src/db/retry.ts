/**
 * Retry with exponential backoff and full jitter, for transient database
 * errors (DESIGN invariant 6) and for DDL under a short lock_timeout.
 */
import { isTransient } from './sqlstate.js';

/** Options of `withRetry`. */
export interface RetryOptions {
  /** Attempts in all (default 8). */
  attempts?: number;
  /** First delay in ms (default 100); doubles each time, capped at `maxMs`. */
  baseMs?: number;
  maxMs?: number;
  /** Which errors to retry (default: transient ones). */
  retryable?: (err: unknown) => boolean;
  /** Called before each wait, e.g. to log who blocks us. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void | Promise<void>;
}

/** The delay before retry number `attempt` (1-based): full jitter over an exponential cap. */
export function backoffDelay(attempt: number, baseMs = 100, maxMs = 30_000): number {
  const cap = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

/** Run `fn`, retrying retryable failures with backoff; the last error is thrown. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 8;
  const retryable = opts.retryable ?? isTransient;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || !retryable(err)) throw err;
      const delay = backoffDelay(attempt, opts.baseMs, opts.maxMs);
      await opts.onRetry?.(err, attempt, delay);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

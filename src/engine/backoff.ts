/**
 * Exponential backoff with jitter, for everything the daemon retries: runs
 * that failed transiently, LISTEN sessions that were lost, the control session.
 * Jitter keeps many syncs that failed on the same outage from retrying in lock
 * step against the database that just came back (DESIGN invariant 6).
 */

/** Options of a backoff. */
export interface BackoffOptions {
  /** Delay of the first retry, in milliseconds (default 200). */
  minMs?: number;
  /** The delay never grows past this, in milliseconds (default 30 000). */
  maxMs?: number;
  /** A number in [0, 1); injected by tests. Default Math.random. */
  random?: () => number;
}

/** Delays that double from `minMs` to `maxMs`, each drawn in [delay/2, delay). */
export class Backoff {
  readonly minMs: number;
  readonly maxMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.minMs = Math.max(1, opts.minMs ?? 200);
    this.maxMs = Math.max(this.minMs, opts.maxMs ?? 30_000);
    this.random = opts.random ?? Math.random;
  }

  /** The ceiling of the delay before retry number `attempt` (1 = the first retry), without jitter. */
  ceiling(attempt: number): number {
    const n = Math.max(1, Math.floor(attempt));
    // 2 ** 40 already exceeds any sane maximum: cap the exponent so it never overflows.
    return Math.min(this.maxMs, this.minMs * 2 ** Math.min(n - 1, 40));
  }

  /** The delay before retry number `attempt`: "equal jitter", half fixed and half random. */
  delay(attempt: number): number {
    const c = this.ceiling(attempt);
    return Math.round(c / 2 + (c / 2) * this.random());
  }
}

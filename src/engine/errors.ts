/** How a run ends other than by success (the daemon acts on each differently). */
import { IbexError } from '../errors.js';
import { LeaseLost } from '../control/run-store.js';
import { FENCED_MARK } from '../targets/target.js';

/** A failure that should pause the sync (schema mismatch, unusable configuration) rather than be retried. */
export class PauseError extends IbexError {
  constructor(message: string) {
    super('config', message);
  }
}

/**
 * Another daemon took the sync's lease since this run's daemon did (a higher
 * epoch in the control database or in a db's progress rows): the run must not commit.
 */
export class FencedError extends IbexError {
  constructor(message: string) {
    super('daemon', message);
  }
}


/** Is this a fencing failure, raised by ibex or by a db's progress check? */
export function isFenced(err: unknown): boolean {
  if (err instanceof FencedError || err instanceof LeaseLost) return true;
  const m = err instanceof Error ? err.message : '';
  return m.includes(FENCED_MARK);
}

/** The run aborted on a conflict it was told to abort on. */
export class AbortError extends IbexError {
  constructor(message: string) {
    super('conflict_abort', message);
  }
}

/**
 * A target of another kind lost everything ibex applied there (a Redis restarted without
 * persistence): the runner refills it with a onetimecopy of that target alone, then runs on.
 */
export class TargetLostError extends IbexError {
  constructor(readonly db: string) {
    super('internal', `db ${db} has lost what ibex applied there`);
  }
}

/** How a run ends other than by success (the daemon acts on each differently). */
import { IbexError } from '../errors.js';

/** A failure that should pause the sync (schema mismatch, unusable configuration) rather than be retried. */
export class PauseError extends IbexError {
  constructor(message: string) {
    super('config', message);
  }
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

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

/**
 * One run of one sync (DESIGN, "One run of a sync"). Being written; the
 * class shape below is the contract the daemon relies on.
 */
import type { Logger } from 'pino';
import type { RunKind, RunResult } from './types.js';

/** Options of a runner. */
export interface RunnerOptions {
  controlUrl: string;
  sync: string;
  log: Logger;
}

/**
 * Runs one sync, again and again, on persistent connections. Not re-entrant:
 * the daemon never calls `run` twice at once on one runner.
 */
export class SyncRunner {
  constructor(readonly opts: RunnerOptions) {}

  /** Read the sync's configuration (again). Throws IbexError('config') when unusable. */
  async load(): Promise<void> {
    throw new Error('not implemented yet');
  }

  /** Names of the source dbs (each must be LISTENed on) — valid after load(). */
  sources(): string[] {
    return [];
  }

  /** Is there anything past this sync's cursors on any source? Cheap; used after setting idle. */
  async hasPending(): Promise<boolean> {
    return false;
  }

  /** Do one run and record it in ibex.run. Never throws for run failures: they are in the result. */
  async run(_kind: RunKind, _opts: { kickId?: number } = {}): Promise<RunResult> {
    throw new Error('not implemented yet');
  }

  /** Close every connection. */
  async close(): Promise<void> {}
}

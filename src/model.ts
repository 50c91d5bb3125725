/**
 * The types shared by the engine, which produces them, and the control store and CLI, which
 * record and show them: what a run did, and the live state of a sync. Types only.
 */

/** What kind of run. */
export type RunKind = 'delta' | 'onetimecopy' | 'fullcopy';

/** Per-table counts of one run. */
export interface TableCounts {
  inserted: number;
  deleted: number;
  conflicts: number;
  truncates: number;
}

/** The outcome of one run, as recorded in ibex.run. */
export interface RunResult {
  runId: number;
  sync: string;
  kind: RunKind;
  status: 'good' | 'empty' | 'failed' | 'aborted';
  inserted: number;
  deleted: number;
  conflicts: number;
  truncates: number;
  /** Per table (`schema.table`). */
  tables: Record<string, TableCounts>;
  /** One-line error for failed/aborted runs. */
  error?: string;
  /** True when the failure is transient (retry with backoff) rather than configuration. */
  transient?: boolean;
  /** True when the transient failure was contention (a serialization failure or a deadlock with
   *  local writes): retried on a short backoff, since nothing is down. */
  contention?: boolean;
  /** True when the sync should be paused (schema mismatch, conflict abort). */
  pause?: boolean;
  /** True when the run found a newer owner of the sync (a higher lease epoch): its daemon steps back. */
  fenced?: boolean;
  durationMs: number;
}

/** The states of ibex.sync_state. */
export type SyncStateName = 'idle' | 'running' | 'stalled' | 'paused' | 'copying';

/** The live state of a sync, as written to ibex.sync_state. */
export interface SyncState {
  state: SyncStateName;
  /** When the sync entered this state. */
  since: Date;
  lastError: string | undefined;
  lastErrorAt: Date | undefined;
  /** Failed runs in a row (0 after a good or empty run). */
  attempts: number;
}

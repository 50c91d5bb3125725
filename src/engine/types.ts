/**
 * The contract between the daemon (scheduling, leases, wake-ups) and the
 * runner (one run of one sync).
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
  durationMs: number;
}

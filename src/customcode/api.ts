/**
 * The contract between ibex and custom code (`ibex add customcode`): the input
 * each hook receives and what it may return. Handler modules import these
 * types (`import type { ConflictHook } from 'ibex/customcode'`) to get type
 * checking; nothing here has runtime behaviour.
 *
 * A customcode module is an ES module whose default export is one function,
 * the hook named by its `whenrun`. It runs inside the daemon, with the
 * daemon's database privileges (see docs/customcode.md, "Trust").
 */

/** The hooks, in the order a delta run reaches them. */
export type Whenrun =
  | 'before_sync' | 'before_txn' | 'before_check_rows' | 'conflict'
  | 'exception' | 'before_commit' | 'after_txn' | 'after_sync';

/**
 * A row as every database prints it: column name -> PostgreSQL text output
 * (under ibex's pinned session settings, so identical values read the same on
 * every db), or null for SQL NULL. A `bytea` is its hex text (`\x0102`).
 */
export type Row = Record<string, string | null>;

/** What every hook receives. */
export interface HookContext {
  /** The sync being run. */
  sync: string;
  /** The run's id in ibex.run (0 before the run is recorded). */
  runId: number;
  /** Which hook this is. */
  whenrun: Whenrun;
  /** The name of this customcode. */
  code: string;
  /** The dbs of the sync with their roles. */
  dbs: { name: string; role: 'source' | 'target' | 'fullcopy' }[];
  /**
   * Run SQL on one db of the sync, on the session the run uses. In
   * before_check_rows, conflict and before_commit this is inside the run's
   * transaction (what you write commits or rolls back with the run); in
   * before_txn, exception and after_txn it runs on its own (autocommit).
   * Not available in before_sync and after_sync (undefined there).
   */
  query?: (db: string, sql: string, params?: unknown[]) => Promise<Row[]>;
  /** Write a line to the daemon's log, attributed to this customcode. */
  log: (message: string) => void;
  /** State kept between calls of every hook of this sync, for the life of the runner. */
  shared: Record<string, unknown>;
}

/** The per-table counts of a run so far (before_commit) or in the end (after_txn, after_sync). */
export interface RunCounts {
  status: 'good' | 'empty' | 'failed' | 'aborted';
  inserted: number;
  deleted: number;
  conflicts: number;
  truncates: number;
  tables: Record<string, { inserted: number; deleted: number; conflicts: number; truncates: number }>;
  error?: string;
}

/**
 * What a hook other than `conflict` and `exception` may return. Returning
 * nothing (or `{}`) lets the run go on.
 */
export interface HookResult {
  /** before_sync, before_txn, before_check_rows, before_commit: end this run without applying
   *  anything (everything rolls back; the changes stay pending for a later run). */
  skipRun?: boolean;
  /** Logged with the run. */
  message?: string;
}

/** A hook of one of the plain kinds. */
export type Hook = (ctx: HookContext & { result?: RunCounts }) => HookResult | void | Promise<HookResult | void>;

/** The input of an `exception` hook: a delta run failed, everything was rolled back. */
export interface ExceptionInput extends HookContext {
  /** The one-line error. */
  error: string;
  /** The SQLSTATE, when the failure came from a database. */
  sqlstate?: string;
  /** How many times this run was tried so far (1 on the first failure). */
  attempt: number;
}

/** What an exception hook may return. */
export interface ExceptionResult {
  /** Run again at once (after the hook fixed what failed, e.g. through `query`); at most twice per run. */
  retry?: boolean;
  /** Give up on this run quietly: it is recorded as empty, the changes stay pending. */
  skipRun?: boolean;
  message?: string;
}

/** An exception hook. */
export type ExceptionHook = (input: ExceptionInput) => ExceptionResult | void | Promise<ExceptionResult | void>;

/** One db's version of a conflicting row. */
export interface ConflictVersion {
  db: string;
  /** The row on that db now, or null when it was deleted there. */
  row: Row | null;
  /** When that db changed it (the sync's clock: change time or commit time), ISO 8601. */
  changedAt: string | null;
}

/** One conflicting key: every db that changed it since the last run, with its version. */
export interface Conflict {
  /** The key columns and their values. */
  key: Row;
  versions: ConflictVersion[];
  /** The db the table's fallback strategy (`latest`) would pick; its version is in `versions`. */
  latest: string;
}

/** The input of a `conflict` hook: a batch of conflicting keys of one table. */
export interface ConflictInput extends HookContext {
  table: { schema: string; name: string };
  keyColumns: string[];
  /** Every replicated column with its type (format_type). */
  columns: { name: string; type: string }[];
  conflicts: Conflict[];
}

/**
 * The decision for one conflict:
 * - `{ winner: 'B' }` — B's version (row or delete) is written on every db;
 * - `{ row: {...} }` — this row is written on every db (a merge); columns left out are
 *   taken from the `latest` version, key columns must not change;
 * - `undefined` / `null` — no decision: the next conflict customcode decides, and after the
 *   last one the fallback strategy (`latest`).
 */
export type ConflictDecision = { winner: string } | { row: Row } | null | undefined;

/** A conflict hook: one decision per conflict, in the order given. */
export type ConflictHook = (input: ConflictInput) => ConflictDecision[] | Promise<ConflictDecision[]>;

/**
 * Purging the control database's history: the conflict log (`ibex.conflict`)
 * and the run history (`ibex.run`), each older than its retention setting in
 * `ibex.config` (`conflict_log_retention`, `run_history_retention`).
 *
 * Deletes go in bounded batches, each its own short statement, so a purge of a
 * big backlog never holds a long transaction or a huge lock set on the control
 * database while the daemon writes to it. Each batch is found through the
 * existing `(sync, created DESC)` / `(sync, started DESC)` indexes: the syncs
 * present are enumerated with a loose index scan, then each sync's old rows
 * are a range of its index.
 */
import type pg from 'pg';
import { qualified } from '../db/ident.js';
import { sqlstate } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';

/** The retention settings and what applies when a row is missing from ibex.config. */
export const RETENTION_DEFAULTS = {
  conflict_log_retention: '30 days',
  run_history_retention: '30 days',
} as const;

/** A retention setting's name. */
export type RetentionSetting = keyof typeof RETENTION_DEFAULTS;

/** Options of {@link purgeHistory}. */
export interface PurgeOptions {
  /** Rows deleted per statement (default 10 000). */
  batchSize?: number;
}

/** What {@link purgeHistory} deleted. */
export interface PurgeResult {
  /** Conflict log entries deleted. */
  conflicts: number;
  /** Runs deleted. */
  runs: number;
  /** Answered kicks deleted (older than run_history_retention). */
  kicks: number;
}

const DEFAULT_BATCH = 10_000;

/**
 * The oldest time kept under a retention setting, as timestamptz text computed
 * by the server (its clock, the one `created` and `started` come from). A value
 * that is not a positive interval is a configuration error: a negative one
 * would put the cutoff in the future and delete everything.
 */
async function cutoff(control: pg.Client, name: RetentionSetting): Promise<string> {
  const r = await control.query(`SELECT value FROM ibex.config WHERE name = $1`, [name]);
  const value = r.rows[0] ? String(r.rows[0].value) : RETENTION_DEFAULTS[name];
  const bad = (why: string, cause?: unknown): IbexError =>
    new IbexError('config', `bad ${name} "${value}" in ibex.config (${why}): fix it with "ibex set ${name}=30d"`, cause === undefined ? undefined : { cause });
  let row: { positive: boolean; cutoff: string } | undefined;
  try {
    const c = await control.query(`SELECT $1::interval > interval '0' AS positive, (now() - $1::interval)::text AS cutoff`, [value]);
    row = c.rows[0] as { positive: boolean; cutoff: string } | undefined;
  } catch (err) {
    const state = sqlstate(err);
    if (state?.startsWith('22')) throw bad('not an interval', err);
    throw err;
  }
  if (!row || row.positive !== true) throw bad('it must be more than zero');
  return row.cutoff;
}

/**
 * Every value of `sync` in a table, by a loose index scan of its leading
 * index column (one index probe per distinct sync, not a scan of the table).
 */
async function syncsOf(control: pg.Client, table: 'conflict' | 'run'): Promise<string[]> {
  const rel = qualified('ibex', table).text;
  const r = await control.query(
    `WITH RECURSIVE s(sync) AS (
       (SELECT sync FROM ${rel} ORDER BY sync LIMIT 1)
       UNION ALL
       SELECT (SELECT t.sync FROM ${rel} t WHERE t.sync > s.sync ORDER BY t.sync LIMIT 1) FROM s WHERE s.sync IS NOT NULL
     ) SELECT sync FROM s WHERE sync IS NOT NULL`);
  return r.rows.map((x) => String(x.sync));
}

/** Delete in batches until a batch comes back short; returns the rows deleted. */
async function deleteInBatches(control: pg.Client, text: string, values: unknown[], batch: number): Promise<number> {
  let total = 0;
  for (;;) {
    const r = await control.query(text, [...values, batch]);
    const n = r.rowCount ?? 0;
    total += n;
    if (n < batch) return total;
  }
}

/**
 * Delete the conflict log entries older than `conflict_log_retention`, and the
 * runs and answered kicks older than `run_history_retention`.
 *
 * Kept whatever their age: conflicts still `pending` (logged before the targets
 * committed and never marked after: the outcome of that overwrite is unknown,
 * so the versions it records may be the only trace of lost data), and runs that
 * have not ended (`status = 'running'`, `ended IS NULL`). No table references
 * ibex.run by foreign key (`ibex.kick.run` and `ibex.conflict.run` are plain
 * ids), so deleting a run never fails nor cascades.
 *
 * Throws IbexError('config') when a retention setting is not a positive interval.
 */
export async function purgeHistory(control: pg.Client, opts: PurgeOptions = {}): Promise<PurgeResult> {
  const batch = opts.batchSize ?? DEFAULT_BATCH;
  if (!Number.isInteger(batch) || batch < 1) throw new IbexError('internal', `purgeHistory: batchSize must be a positive integer, not ${batch}`);
  const conflictCutoff = await cutoff(control, 'conflict_log_retention');
  const runCutoff = await cutoff(control, 'run_history_retention');

  let conflicts = 0;
  for (const sync of await syncsOf(control, 'conflict')) {
    conflicts += await deleteInBatches(control,
      `DELETE FROM ibex.conflict WHERE id = ANY (ARRAY(
         SELECT id FROM ibex.conflict
          WHERE sync = $1 AND created < $2::timestamptz AND status <> 'pending'
          LIMIT $3))`,
      [sync, conflictCutoff], batch);
  }
  let runs = 0;
  for (const sync of await syncsOf(control, 'run')) {
    runs += await deleteInBatches(control,
      `DELETE FROM ibex.run WHERE id = ANY (ARRAY(
         SELECT id FROM ibex.run
          WHERE sync = $1 AND started < $2::timestamptz AND ended IS NOT NULL AND status <> 'running'
          LIMIT $3))`,
      [sync, runCutoff], batch);
  }
  // Kicks that were answered (taken) are history too; one still waiting is kept whatever its age.
  const kicks = await deleteInBatches(control,
    `DELETE FROM ibex.kick WHERE id = ANY (ARRAY(
       SELECT id FROM ibex.kick WHERE requested < $1::timestamptz AND taken IS NOT NULL LIMIT $2))`,
    [runCutoff], batch);
  return { conflicts, runs, kicks };
}

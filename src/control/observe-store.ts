/**
 * Reads behind the daemon's HTTP endpoints (/metrics, /readyz, the dashboard):
 * recent runs, the conflict breakdown of one run, the dbs to probe. Read-only.
 */
import type pg from 'pg';
import type { PgParams } from '../db/connect.js';
import type { RunRow } from './daemon-store.js';
import { dbParams } from './sync-config.js';

/** One recent run, for the dashboard: a run row with its sync, without the details. */
export type RecentRun = Omit<RunRow, 'details'> & { sync: string };

/** The newest runs that did something (empty runs are left out: a busy daemon makes many). */
export async function recentRuns(c: pg.Client, limit: number): Promise<RecentRun[]> {
  const r = await c.query(
    `SELECT id, sync, kind, status, started, ended, inserted, deleted, conflicts, truncates, error
       FROM ibex.run WHERE status <> 'empty' ORDER BY id DESC LIMIT $1`, [limit]);
  return r.rows.map((x) => ({
    id: Number(x.id), sync: String(x.sync), kind: String(x.kind), status: String(x.status), started: x.started as Date,
    ended: (x.ended as Date | null) ?? null, inserted: Number(x.inserted), deleted: Number(x.deleted), conflicts: Number(x.conflicts),
    truncates: Number(x.truncates), error: x.error === null ? null : String(x.error),
  }));
}

/** The conflict log entries of one run, counted by kind, strategy, table and status. */
export async function runConflictCounts(c: pg.Client, run: number): Promise<{ kind: string; strategy: string; table: string; status: string; n: number }[]> {
  const r = await c.query(
    `SELECT kind, strategy, schemaname || '.' || relname AS tbl, status, count(*) AS n
       FROM ibex.conflict WHERE run = $1 GROUP BY 1, 2, 3, 4`, [run]);
  return r.rows.map((x) => ({ kind: String(x.kind), strategy: String(x.strategy), table: String(x.tbl), status: String(x.status), n: Number(x.n) }));
}

/** The PostgreSQL dbs used by at least one sync, with their connection parameters (to probe them). */
export async function probedDbs(c: pg.Client): Promise<{ name: string; params: PgParams }[]> {
  const r = await c.query(
    `SELECT d.* FROM ibex.db d
      WHERE d.dbtype = 'postgres'
        AND EXISTS (SELECT 1 FROM ibex.sync s JOIN ibex.dbgroup_member m ON m.dbgroup = s.dbgroup WHERE m.db = d.name)
      ORDER BY d.name`);
  return r.rows.map((x) => ({ name: String(x.name), params: dbParams(x) }));
}

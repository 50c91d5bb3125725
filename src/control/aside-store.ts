/**
 * Rows set aside (on_row_error=quarantine): a row one db refused for another reason than a
 * conflict, kept with its error, table, key and db until a retry applies it or an operator drops it.
 */
import type pg from 'pg';
import { literal } from '../db/ident.js';
import { stringifyExactJson } from '../db/json.js';

/** A row set aside in a run. */
export interface AsideRecord {
  db: string;
  schema: string;
  table: string;
  key: Record<string, unknown>;
  op: 'upsert' | 'delete';
  source: string | null;
  row: unknown;
  sqlstate: string | null;
  error: string;
}

/** A stored set-aside row. */
export interface AsideRow {
  id: number;
  sync: string;
  db: string;
  schemaname: string;
  relname: string;
  key: string;
  op: string;
  source: string | null;
  error: string;
  first_seen: string;
  last_seen: string;
  seen: number;
  requeued: boolean;
}

/** Record the rows a run set aside (one row per sync, db, table and key). */
export async function recordAside(control: pg.Client, sync: string, run: number | null, rows: readonly AsideRecord[]): Promise<void> {
  if (rows.length === 0) return;
  await control.query(
    `INSERT INTO ibex.row_aside (sync, db, schemaname, relname, key, op, source, row, sqlstate, error, run)
     SELECT $1, r->>'db', r->>'schema', r->>'table', r->'key', r->>'op', r->>'source', r->'row', r->>'sqlstate', r->>'error', $2
       FROM jsonb_array_elements($3::jsonb) r
     ON CONFLICT (sync, db, schemaname, relname, key) DO UPDATE SET
       op = EXCLUDED.op, source = EXCLUDED.source, row = EXCLUDED.row, sqlstate = EXCLUDED.sqlstate, error = EXCLUDED.error,
       run = EXCLUDED.run, last_seen = now(), seen = ibex.row_aside.seen + 1, requeued = false`,
    [sync, run, stringifyExactJson(rows)]);
}

/** Set-aside rows, of one sync or all, or by id. */
export async function listAside(control: pg.Client, sync?: string, id?: number): Promise<AsideRow[]> {
  const r = await control.query(
    `SELECT id, sync, db, schemaname, relname, key::text AS key, op, source, error, first_seen::text AS first_seen,
            last_seen::text AS last_seen, seen, requeued
       FROM ibex.row_aside WHERE ($1::text IS NULL OR sync = $1) AND ($2::bigint IS NULL OR id = $2) ORDER BY sync, id`,
    [sync ?? null, id ?? null]);
  return r.rows.map((x) => ({ ...x, id: Number(x.id), seen: Number(x.seen) }) as AsideRow);
}

/** Count of set-aside rows per sync. */
export async function countAside(control: pg.Client): Promise<Map<string, number>> {
  const r = await control.query(`SELECT sync, count(*) AS n FROM ibex.row_aside GROUP BY sync`);
  return new Map(r.rows.map((x) => [String(x.sync), Number(x.n)]));
}

/**
 * After good run `run`: forget rows re-queued before it that it did not set aside again (it
 * applied them), and return those not seen in it and not yet re-queued (to re-queue now), with
 * how many rows it forgot.
 */
export async function afterGoodRun(control: pg.Client, sync: string, run: number): Promise<{ forgotten: number; requeue: AsideRow[] }> {
  // One round trip (two statements, so the values are inlined).
  const where = `sync = ${literal(sync)} AND run < ${Math.trunc(run)}`;
  const [d, r] = (await control.query(`DELETE FROM ibex.row_aside WHERE ${where} AND requeued;
    SELECT id FROM ibex.row_aside WHERE ${where} AND NOT requeued ORDER BY id`)) as unknown as pg.QueryResult[];
  const requeue = r!.rows.length ? (await listAside(control, sync)).filter((a) => r!.rows.some((x) => Number(x.id) === a.id)) : [];
  return { forgotten: d!.rowCount ?? 0, requeue };
}

/** Mark rows re-queued (their keys are pending again on their source). */
export async function markRequeued(control: pg.Client, ids: readonly number[]): Promise<void> {
  if (ids.length) await control.query(`UPDATE ibex.row_aside SET requeued = true, retried = now() WHERE id = ANY($1::bigint[])`, [ids]);
}

/** Forget rows (after they were logged by the caller). */
export async function dropAside(control: pg.Client, ids: readonly number[]): Promise<void> {
  if (ids.length) await control.query(`DELETE FROM ibex.row_aside WHERE id = ANY($1::bigint[])`, [ids]);
}

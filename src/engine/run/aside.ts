/**
 * One bad row does not stop a sync (on_row_error=quarantine): a row one db refuses for another
 * reason than a conflict — a CHECK or NOT NULL, a trigger raising, a value out of range, its lock
 * held past row_lock_timeout_ms — is set aside with its error, table, key and db, and the rest of
 * the run applies. Set-aside rows are recorded in ibex.row_aside before the commits and re-queued
 * after a later good run: their key is made pending again on their source (a delta row), so the
 * next run sends the source's current version again. With on_row_error=stall the run fails
 * naming the row.
 */
import type pg from 'pg';
import { afterGoodRun, markRequeued, recordAside, type AsideRow } from '../../control/aside-store.js';
import { readSetting } from '../../control/settings-store.js';
import { captureNames } from '../../capture/objects.js';
import { ident, qualified } from '../../db/ident.js';
import { sqlstate } from '../../db/sqlstate.js';
import type { RunContext } from './context.js';
import type { RunState } from './state.js';

/** Refusals of one row's values or of its lock: the row's trouble, not the run's. */
export function isRowError(err: unknown): boolean {
  const s = sqlstate(err);
  if (s === undefined) return false;
  // Integrity (other than the conflicts settled elsewhere), data exceptions, a trigger's RAISE,
  // program limits (a value too large), a lock not granted in time.
  return (s.startsWith('23') && s !== '23505' && s !== '23503') || s.startsWith('22') || s.startsWith('P0') || s.startsWith('54') || s === '55P03';
}

const lockTimeouts = new WeakMap<RunContext, Promise<number>>();

const lockTimeoutOf = (v: string | undefined): number => (v === undefined ? 10_000 : Number(v));

/** Keep row_lock_timeout_ms as the run's inputs read it (run-store.runInputs). */
export function noteRowLockTimeout(ctx: RunContext, stored: string | undefined): void {
  lockTimeouts.set(ctx, Promise.resolve(lockTimeoutOf(stored)));
}

/** row_lock_timeout_ms, read once per run (with the run's inputs, or here). */
export function rowLockTimeout(ctx: RunContext): Promise<number> {
  let p = lockTimeouts.get(ctx);
  if (!p) {
    p = readSetting(ctx.control, 'row_lock_timeout_ms').then(lockTimeoutOf);
    lockTimeouts.set(ctx, p);
  }
  return p;
}

/** Make a key pending again on a source: one delta row, as a change of that db ($1: the key as JSON). */
export function requeueSql(schema: string, table: string, keyColumns: readonly string[]): string {
  const delta = qualified('ibex', captureNames(schema, table).delta).text;
  const cols = keyColumns.map((k) => ident(k).text);
  return `INSERT INTO ${delta} (${cols.join(', ')}, ibex_op)
          SELECT ${cols.map((c) => `r.${c}`).join(', ')}, 'U' FROM jsonb_populate_record(NULL::${qualified(schema, table).text}, $1::jsonb) r`;
}

/** Re-queue set-aside rows on their sources (`on`: a session of the source db by name). */
export async function requeue(rows: readonly AsideRow[], on: (db: string) => Promise<pg.Client | undefined>): Promise<number[]> {
  const done: number[] = [];
  for (const a of rows) {
    if (!a.source) continue;
    const c = await on(a.source);
    if (!c) continue;
    const key = JSON.parse(a.key) as Record<string, unknown>;
    await c.query(requeueSql(a.schemaname, a.relname, Object.keys(key)), [a.key]);
    done.push(a.id);
  }
  return done;
}

/** Before the commits: record what this run set aside. */
export async function recordRunAside(ctx: RunContext, st: RunState): Promise<void> {
  // Recorded rows wait for a later good run to re-queue them, even if this one fails after here.
  if (st.aside.length) ctx.housekeeping.asideRecorded();
  await recordAside(ctx.control, ctx.sync, st.result.runId, st.aside);
}

/** After a good run: forget rows it applied, re-queue those set aside earlier (a failure here is logged: the run committed). */
export async function afterRunAside(ctx: RunContext, st: RunState): Promise<void> {
  try {
    await requeueAfter(ctx, st);
  } catch (err) {
    ctx.log.warn({ sync: ctx.sync, err: String(err) }, 'set-aside rows were not re-queued (retried after the next good run)');
  }
}

async function requeueAfter(ctx: RunContext, st: RunState): Promise<void> {
  if (!st.result.runId || !ctx.housekeeping.asideDue()) return;
  const { forgotten, requeue: rows } = await afterGoodRun(ctx.control, ctx.sync, st.result.runId);
  // Nothing left to forget or re-queue, and this run set nothing aside: later runs may skip the check.
  ctx.housekeeping.asideChecked(forgotten === 0 && rows.length === 0 && st.aside.length === 0);
  if (rows.length === 0) return;
  const done = await requeue(rows, async (db) => {
    const d = ctx.all.find((x) => x.name === db);
    return d ? ctx.pg(d).client : undefined;
  });
  await markRequeued(ctx.control, done);
}

/**
 * Applying one origin's staged deletes or rows on a db, with quarantine: when the db refuses the
 * set for another unique index (23505) or a foreign key (23503), rows go one by one, passes
 * repeated while rows go in (a unique value moved between rows fits once the row that held it has
 * moved on). Rows still refused are left out and logged, never retried forever.
 */
import type { ConflictRecord } from '../../control/run-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import { literal } from '../../db/ident.js';
import { sqlstate, SqlState } from '../../db/sqlstate.js';
import type { PostgresTarget } from '../../targets/postgres/postgres-target.js';
import { stampSql } from '../../targets/postgres/postgres-dialect.js';
import type { TablePlan } from '../plan.js';
import { ctidsSql, refusedRowSql, swapSql } from '../sql/apply.js';
import { tempNames } from '../sql/temp.js';
import { stampFor, type RunContext } from './context.js';

/** One apply of staged work on one db. */
export interface StagedApply {
  p: TablePlan;
  db: SyncDb;
  from: 'stage' | 'del';
  origin: string | null;
  /** The statement(s), given an extra filter on `s` and the origin as SQL; several run in order, their counts added. */
  statement: (oneRow: string, origin: string) => string | string[];
  /** Statements that load the staging table first (rows sent inline), in the same round trip. */
  load?: string;
}

const refused = (err: unknown): boolean => sqlstate(err) === SqlState.uniqueViolation || sqlstate(err) === SqlState.foreignKeyViolation;

/** Apply; rows refused are pushed onto `quarantined`. Returns the rows applied. */
export async function applyOrQuarantine(ctx: RunContext, a: StagedApply, quarantined: ConflictRecord[]): Promise<number> {
  const s = ctx.pg(a.db);
  // The common case in one round trip: load the staging table (rows sent inline, if any), stamp
  // the session, try the whole set under a savepoint. Keys a local write raced are left out and
  // the set is tried again (run/raced.ts).
  for (let load = a.load;; load = undefined) {
    try {
      const all = [a.statement('', a.origin === null ? 'NULL::text' : literal(a.origin))].flat();
      const r = await s.queryAll(
        `${load ? `${load};\n` : ''}${stampSql(stampFor(ctx, a.p, a.db, a.origin))}; SAVEPOINT ibex_apply; ${all.join(';\n')}; RELEASE SAVEPOINT ibex_apply`);
      return r.slice(-1 - all.length, -1).reduce((n, x) => n + (x.rowCount ?? 0), 0);
    } catch (err) {
      // A failed load (before the savepoint) is no refusal: the run fails.
      await s.query('ROLLBACK TO SAVEPOINT ibex_apply').catch(() => { throw err; });
      if (sqlstate(err) === SqlState.serializationFailure && await ctx.races.leaveOut(ctx, a.p, a.db, a.from)) continue;
      if (!refused(err)) throw err;
      break;
    }
  }
  const table = tempNames(a.p)[a.from];
  const pending = (await s.query(ctidsSql(table), [a.origin])).rows.map((r) => String(r.id));
  const { applied, left, errors } = await rowByRow(s, a, pending);
  const swapped = a.from === 'stage' ? await swap(ctx, s, a, left, errors) : 0;
  if (swapped === 0) await quarantine(ctx, s, a, left, errors, quarantined);
  return applied + swapped;
}

type RowErrors = Map<string, { state: string; constraint: string }>;

async function rowByRow(s: PostgresTarget, a: StagedApply, ids: string[]): Promise<{ applied: number; left: string[]; errors: RowErrors }> {
  const errors: RowErrors = new Map();
  let applied = 0;
  let pending = ids;
  for (let progress = true; pending.length && progress;) {
    progress = false;
    const next: string[] = [];
    for (const id of pending) {
      await s.query('SAVEPOINT ibex_row');
      try {
        let n = 0;
        for (const one of [a.statement('AND s.ctid = $2::tid', '$1')].flat()) n += (await s.query(one, [a.origin, id])).rowCount ?? 0;
        await s.query('RELEASE SAVEPOINT ibex_row');
        applied += n;
        progress = true;
      } catch (err) {
        await s.query('ROLLBACK TO SAVEPOINT ibex_row');
        if (!refused(err)) throw err;
        errors.set(id, { state: sqlstate(err)!, constraint: String((err as { constraint?: string }).constraint ?? '') });
        next.push(id);
      }
    }
    pending = next;
  }
  return { applied, left: pending, errors };
}

/**
 * Rows that only refuse each other (two rows swapping a unique value in one source transaction)
 * cannot go in one by one. Where this db lets ibex use replica mode, replace exactly those rows
 * with triggers silenced (so no ON DELETE CASCADE fires), unique checks still on: if that holds,
 * it was a swap (returns the rows applied); if not, a real conflict (returns 0).
 */
async function swap(ctx: RunContext, s: PostgresTarget, a: StagedApply, ids: string[], errors: RowErrors): Promise<number> {
  if (!(ids.length > 1 && ids.every((id) => errors.get(id)?.state === SqlState.uniqueViolation) && a.db.canReplica)) return 0;
  const sql = swapSql(a.p);
  await s.query('SAVEPOINT ibex_swap');
  try {
    await s.query(`SELECT set_config('session_replication_role', 'replica', true)`);
    await s.query(sql.delete, [ids]);
    const r = await s.query(sql.insert, [ids]);
    await s.query(`SELECT set_config('session_replication_role', 'origin', true)`);
    await s.query('RELEASE SAVEPOINT ibex_swap');
    return r.rowCount ?? 0;
  } catch (err) {
    await s.query('ROLLBACK TO SAVEPOINT ibex_swap');
    if (!refused(err)) throw err;
    return 0;
  }
}

async function quarantine(ctx: RunContext, s: PostgresTarget, a: StagedApply, ids: string[], errors: RowErrors, quarantined: ConflictRecord[]): Promise<void> {
  const table = tempNames(a.p)[a.from];
  for (const id of ids) {
    const row = (await s.query(refusedRowSql(a.p, table), [id])).rows[0];
    const e = errors.get(id)!;
    quarantined.push({
      schema: a.p.rel.schema, table: a.p.rel.name, key: JSON.parse(String(row.key)),
      kind: e.state === SqlState.uniqueViolation ? 'unique' : 'foreign_key', strategy: 'quarantine',
      winner: a.origin, winnerRow: a.from === 'stage' ? JSON.parse(String(row.incoming)) : null, winnerTime: null,
      losers: [{ db: a.db.name, row: row.here === null ? null : JSON.parse(String(row.here)), changed_at: null, constraint: e.constraint }],
    });
    ctx.log.warn({ table: a.p.label, db: a.db.name, key: String(row.key), constraint: e.constraint },
      `${a.from === 'stage' ? 'a row' : 'a delete'} was refused by ${e.constraint || 'a constraint'} on db ${a.db.name} and quarantined (see ibex.conflict)`);
  }
}

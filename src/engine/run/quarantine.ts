/**
 * Applying one origin's staged deletes or rows on a db, with quarantine: when the db refuses the
 * set for another unique index (23505) or a foreign key (23503), rows go one by one, passes
 * repeated while rows go in (a unique value moved between rows fits once the row that held it has
 * moved on). Rows still refused are left out and logged, never retried forever.
 */
import type { AsideRecord } from '../../control/aside-store.js';
import type { ConflictRecord } from '../../control/run-store.js';
import { IbexError } from '../../errors.js';
import type { SyncDb } from '../../control/sync-config.js';
import { literal } from '../../db/ident.js';
import { sqlstate, SqlState } from '../../db/sqlstate.js';
import type { PostgresTarget } from '../../targets/postgres/postgres-target.js';
import { stampSql } from '../../targets/postgres/postgres-dialect.js';
import type { TablePlan } from '../plan.js';
import { winnerOrder } from '../../conflict/strategy.js';
import {
  claimOrderSql, ctidsSql, deleteByIdSql, localChangeSql, refusedRowSql, swapSql, uniqueColumnsSql, uniqueHolderSql,
} from '../sql/apply.js';
import { stagedClaimSql } from '../sql/raced.js';
import { tempNames } from '../sql/temp.js';
import { isRowError, rowLockTimeout } from './aside.js';
import { stampFor, type RunContext } from './context.js';
import { asOwner } from './owner.js';
import { parseExactJson } from '../../db/json.js';

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

/** A boolean column as the driver gives it ('t' as text, or true). */
const isTrue = (v: unknown): boolean => v === true || v === 't';

const refused = (err: unknown): boolean => sqlstate(err) === SqlState.uniqueViolation || sqlstate(err) === SqlState.foreignKeyViolation;

/** Apply; rows refused are pushed onto `quarantined`, rows set aside onto `aside`. Returns the rows applied. */
export async function applyOrQuarantine(ctx: RunContext, a: StagedApply, quarantined: ConflictRecord[], aside: AsideRecord[]): Promise<number> {
  const s = ctx.pg(a.db);
  // A row lock held for minutes must not hold the whole apply: past this, that row is set aside.
  const lockMs = ctx.cfg.onRowError === 'quarantine' ? await rowLockTimeout(ctx) : undefined;
  const lock = lockMs === undefined ? '' : `SET LOCAL lock_timeout = ${Math.max(0, Math.floor(lockMs))}; `;
  const table = tempNames(a.p)[a.from];
  // The table's statements run as its owner where ibex may (see owner.ts), back to ibex after.
  const role = await asOwner(ctx, a.db, a.p, [table, tempNames(a.p).all]);
  // The common case in one round trip: load the staging table (rows sent inline, if any), stamp
  // the session, try the whole set under a savepoint. Keys a local write raced are left out and
  // the set is tried again (run/raced.ts).
  for (let load = a.load;; load = undefined) {
    try {
      const all = [a.statement('', a.origin === null ? 'NULL::text' : literal(a.origin))].flat();
      const r = await s.queryAll(
        `${load ? `${load};\n` : ''}${stampSql(stampFor(ctx, a.p, a.db, a.origin))}; ${role.before ? `${role.before}; ` : ''}${lock}SAVEPOINT ibex_apply; ${all.join(';\n')}; RELEASE SAVEPOINT ibex_apply${role.after ? `; ${role.after}` : ''}`);
      const end = role.after ? -2 : -1;
      return r.slice(end - all.length, end).reduce((n, x) => n + (x.rowCount ?? 0), 0);
    } catch (err) {
      // A failed load (before the savepoint) is no refusal: the run fails.
      await s.query('ROLLBACK TO SAVEPOINT ibex_apply').catch(() => { throw err; });
      if (sqlstate(err) === SqlState.serializationFailure) {
        // Leaving raced keys out writes ibex's staging table: as ibex (the next try switches again).
        if (role.after) await s.query(role.after);
        if (await ctx.races.leaveOut(ctx, a.p, a.db, a.from)) continue;
        throw err;
      }
      if (!refused(err) && !isRowError(err)) throw err;
      break;
    }
  }
  let n: number;
  try {
    n = await oneByOne(ctx, s, a, table, role, quarantined, aside);
  } catch (err) {
    // The run fails and rolls back; the error to report is this one.
    if (role.after) await s.query(role.after).catch(() => {});
    throw err;
  }
  if (role.after) await s.query(role.after);
  return n;
}

async function oneByOne(ctx: RunContext, s: PostgresTarget, a: StagedApply, table: string, role: { after: string; again: string }, quarantined: ConflictRecord[], aside: AsideRecord[]): Promise<number> {
  const pending = (await s.query(ctidsSql(table), [a.origin])).rows.map((r) => String(r.id));
  const { applied, left, errors, bad } = await rowByRow(s, a, pending);
  if (bad.length) await setAside(ctx, s, a, bad, errors, aside);
  // Replica mode is ibex's to set (it silences the table's triggers: nothing of the owner's runs).
  if (role.after) await s.query(role.after);
  const swapped = a.from === 'stage' ? await swap(ctx, s, a, left, errors) : 0;
  if (role.again) await s.query(role.again);
  if (swapped > 0) return applied + swapped;
  const settled = await settleClaims(ctx, s, a, left, errors, quarantined);
  await quarantine(ctx, s, a, settled.left, errors, quarantined);
  return applied + settled.applied;
}

type RowErrors = Map<string, { state: string; constraint: string; message?: string }>;

async function rowByRow(s: PostgresTarget, a: StagedApply, ids: string[]): Promise<{ applied: number; left: string[]; errors: RowErrors; bad: string[] }> {
  const errors: RowErrors = new Map();
  const bad: string[] = [];
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
        const info = { state: sqlstate(err)!, constraint: String((err as { constraint?: string }).constraint ?? ''), message: err instanceof Error ? err.message : String(err) };
        errors.set(id, info);
        // Refused for its own values or lock: no later pass would take it.
        if (isRowError(err)) bad.push(id);
        else if (refused(err)) next.push(id);
        else throw err;
      }
    }
    pending = next;
  }
  return { applied, left: pending, errors, bad };
}

/** Rows refused for their values or their lock: set aside, or (on_row_error=stall) the run fails naming the first. */
async function setAside(ctx: RunContext, s: PostgresTarget, a: StagedApply, ids: string[], errors: RowErrors, aside: AsideRecord[]): Promise<void> {
  const table = tempNames(a.p)[a.from];
  for (const id of ids) {
    const row = (await s.query(refusedRowSql(a.p, table), [id])).rows[0];
    const e = errors.get(id)!;
    const what = `${a.from === 'stage' ? 'row' : 'delete of'} ${a.p.label} ${String(row.key)} on db ${a.db.name}`;
    if (ctx.cfg.onRowError === 'stall') {
      // The cause carries the row's SQLSTATE, so exception customcode sees what refused it.
      throw new IbexError('run_failed', `sync ${ctx.sync} stalls on the ${what}: ${e.message ?? e.state} (fix the row there, or "ibex update sync ${ctx.sync} on_row_error=quarantine" to set such rows aside)`,
        { cause: Object.assign(new Error(e.message ?? e.state), { code: e.state, constraint: e.constraint }) });
    }
    const src = ctx.sources.find((x) => x.name === a.origin && x !== a.db) ?? ctx.sources.find((x) => x !== a.db);
    aside.push({
      db: a.db.name, schema: a.p.rel.schema, table: a.p.rel.name, key: parseExactJson(String(row.key)), op: a.from === 'stage' ? 'upsert' : 'delete',
      source: src?.name ?? null, row: a.from === 'stage' ? parseExactJson(String(row.incoming)) : null, sqlstate: e.state, error: e.message ?? e.state,
    });
    ctx.log.warn({ table: a.p.label, db: a.db.name, key: String(row.key), sqlstate: e.state }, `the ${what} was set aside: ${e.message ?? e.state} (see "ibex quarantine list")`);
  }
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
      schema: a.p.rel.schema, table: a.p.rel.name, key: parseExactJson(String(row.key)),
      kind: e.state === SqlState.uniqueViolation ? 'unique' : 'foreign_key', strategy: 'quarantine',
      winner: a.origin, winnerRow: a.from === 'stage' ? parseExactJson(String(row.incoming)) : null, winnerTime: null,
      losers: [{ db: a.db.name, row: row.here === null ? null : parseExactJson(String(row.here)), changed_at: null, constraint: e.constraint }],
    });
    ctx.log.warn({ table: a.p.label, db: a.db.name, key: String(row.key), constraint: e.constraint },
      `${a.from === 'stage' ? 'a row' : 'a delete'} was refused by ${e.constraint || 'a constraint'} on db ${a.db.name} and quarantined (see ibex.conflict)`);
  }
}

/**
 * Two dbs claimed one unique value under different keys. Where the sync's strategy decides
 * (latest, an ordered db list, random), the claim it prefers keeps the value on every db: each db
 * compares the same two pending versions (ibex_all is the same on every source), so each reaches
 * the same outcome. When the staged row wins, the row holding the value here is deleted as a
 * change of this db (captured: the delete reaches every db by the next run) and the staged row
 * goes in; when the row here wins, the staged row is left out (its own source removes it when the
 * winner reaches it). Either way the removed version is logged. Rows this cannot settle are
 * returned for the quarantine.
 */
async function settleClaims(ctx: RunContext, s: PostgresTarget, a: StagedApply, ids: string[], errors: RowErrors, out: ConflictRecord[]): Promise<{ applied: number; left: string[] }> {
  const strategy = ctx.strategy(a.p);
  if (a.from !== 'stage' || !['latest', 'list', 'random'].includes(strategy.kind)) return { applied: 0, left: ids };
  const priority = new Map(ctx.cfg.dbs.map((d) => [d.name, d.priority]));
  const order = winnerOrder(strategy, priority, `ROW(${a.p.keyList})::text`);
  const table = tempNames(a.p).stage;
  let applied = 0;
  const left: string[] = [];
  for (const id of ids) {
    const e = errors.get(id);
    if (e?.state !== SqlState.uniqueViolation || !e.constraint) {
      left.push(id);
      continue;
    }
    await s.query('SAVEPOINT ibex_claim');
    try {
      const r = await settleClaim(ctx, s, a, id, e.constraint, order, table, strategy.kind);
      if (r === 'raced') {
        // The row holding the value was written here after the run's snapshot (its unique check
        // sees it, the snapshot does not).
        throw Object.assign(new Error(`the row holding ${e.constraint} was written after the run's snapshot`), { code: SqlState.serializationFailure });
      }
      if (r === undefined) {
        await s.query('ROLLBACK TO SAVEPOINT ibex_claim');
        left.push(id);
        continue;
      }
      await s.query('RELEASE SAVEPOINT ibex_claim');
      applied += r.applied;
      out.push(r.record);
    } catch (err) {
      await s.query('ROLLBACK TO SAVEPOINT ibex_claim');
      if (sqlstate(err) === SqlState.serializationFailure) {
        // The row holding the value was changed here after the run's snapshot: a race, not a
        // conflict to quarantine. Its newer version is pending for the next run, and so (queued
        // again) is this row: the next run compares them. In a foreign key, the run is repeated.
        // (A merge never gets here: settleClaims only settles under latest, lists and random.)
        // Counter columns need what each source changed, which a re-queued change does not carry
        // (as in Races.leaveOut): the whole run is repeated too.
        if (a.p.inForeignKey || (a.p.rel.deltaColumns ?? []).length > 0) throw err;
        // The key as its columns' text, as the sources' pending tables give it back.
        const key = JSON.parse(String((await s.query(stagedClaimSql(a.p, []), [id])).rows[0].key)) as string[];
        ctx.races.raced(a.p, a.db, key);
        ctx.log.info({ table: a.p.label, db: a.db.name, key: JSON.stringify(key) }, 'a local write raced a unique claim: the row is reconsidered at the next run');
        continue;
      }
      // Refused again (a third claimant, a child of the row to remove), or no pending versions to
      // compare on this db (a target that is no source): quarantined as before.
      ctx.log.debug({ table: a.p.label, db: a.db.name, err: String(err) }, 'a unique claim could not be settled');
      left.push(id);
    }
  }
  return { applied, left };
}

async function settleClaim(ctx: RunContext, s: PostgresTarget, a: StagedApply, id: string, constraint: string, order: string, table: string, strategy: string): Promise<{ applied: number; record: ConflictRecord } | 'raced' | undefined> {
  const idx = (await s.query(uniqueColumnsSql(), [a.p.rel.schema, constraint, a.p.q])).rows[0];
  if (!idx || isTrue(idx.opaque) || idx.cols === null) return undefined;
  const cols = JSON.parse(String(idx.cols)) as string[];
  const nullsEqual = isTrue(idx.nulls_equal);
  const holder = (await s.query(uniqueHolderSql(a.p, cols, nullsEqual), [id])).rows[0];
  if (!holder) {
    // Only a holder committed after the run's snapshot is a race; with none, nothing this run
    // or the next could settle: quarantined (never re-queued for ever).
    const claim = (await s.query(stagedClaimSql(a.p, cols), [id])).rows[0];
    const raced = await ctx.races.claimRaced(ctx, a.p, a.db, { cols, nullsEqual, key: JSON.parse(String(claim.key)) as string[], vals: JSON.parse(String(claim.vals)) as (string | null)[] });
    return raced ? 'raced' : undefined;
  }
  const incoming = (await s.query(refusedRowSql(a.p, table), [id])).rows[0];
  const versions = (await s.query(claimOrderSql(a.p, order), [id, holder.id])).rows;
  // A claim with no pending version was settled before this run: the pending one is newer.
  const win = versions[0]?.which === 'here' ? 'here' : 'in';
  const w = versions.find((v) => v.which === win);
  const l = versions.find((v) => v.which !== win);
  const inRow = parseExactJson(String(incoming.incoming));
  const hereRow = parseExactJson(String(holder.row));
  const base = { schema: a.p.rel.schema, table: a.p.rel.name, kind: 'unique', strategy };
  const lost = { changed_at: l ? String(l.ts) : null, constraint };
  if (win === 'here') {
    ctx.log.info({ table: a.p.label, db: a.db.name, key: String(incoming.key), constraint }, 'a unique claim lost to the row held here: left out');
    return {
      applied: 0,
      record: { ...base, key: parseExactJson(String(incoming.key)), winner: w ? String(w.ibex_src) : a.db.name, winnerRow: hereRow, winnerTime: w ? String(w.ts) : null,
        losers: [{ db: l ? String(l.ibex_src) : (a.origin ?? a.db.name), row: inRow, ...lost }] },
    };
  }
  await s.query(localChangeSql);
  await s.query(deleteByIdSql(a.p), [holder.id]);
  await s.query(stampSql(stampFor(ctx, a.p, a.db, a.origin)));
  let applied = 0;
  for (const one of [a.statement('AND s.ctid = $2::tid', '$1')].flat()) applied += (await s.query(one, [a.origin, id])).rowCount ?? 0;
  ctx.log.info({ table: a.p.label, db: a.db.name, key: String(holder.key), constraint }, 'a unique claim lost to a later one: the row is removed everywhere');
  return {
    applied,
    record: { ...base, key: parseExactJson(String(holder.key)), winner: w ? String(w.ibex_src) : (a.origin ?? null), winnerRow: inRow, winnerTime: w ? String(w.ts) : null,
      losers: [{ db: a.db.name, row: hereRow, ...lost }] },
  };
}

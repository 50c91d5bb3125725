/**
 * Whole-table copies: `onetimecopy` (fill targets once, then go on with
 * deltas) and `fullcopy` targets (replaced on kick or on an interval).
 *
 * onetimecopy copies in key-range chunks, each chunk in its own snapshot and
 * upserted on the targets, with progress saved per table and target after
 * each chunk commits: a crash resumes from the last chunk. The sync's cursors
 * were set when capture was installed, before the first chunk, so every
 * change made during the copy is applied by the delta runs that follow
 * (idempotently: rows are re-read from their source).
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { ident } from '../db/ident.js';
import { sqlstate } from '../db/sqlstate.js';
import { pgArray } from '../db/catalog.js';
import { IbexError } from '../errors.js';
import * as store from '../control/run-store.js';
import type { SyncConfig, SyncDb } from '../control/sync-config.js';
import { copyFanOut } from './exchange.js';
import { applyStatements, type TablePlan } from './plan.js';
import type { RunKind, RunResult, TableCounts } from './types.js';

/** What a copy needs from its runner. */
export interface CopyContext {
  sync: string;
  cfg: SyncConfig;
  plans: TablePlan[];
  log: Logger;
  control(): Promise<pg.Client>;
  db(d: SyncDb): Promise<pg.Client>;
  discard(name: string): void;
}

/** Rows per onetimecopy chunk (IBEX_COPY_CHUNK_ROWS overrides, for tests). */
function chunkRows(): number {
  return Number(process.env.IBEX_COPY_CHUNK_ROWS ?? 50_000);
}

/** Run a onetimecopy or a fullcopy; fills `result`. */
export async function copyTables(ctx: CopyContext, kind: Exclude<RunKind, 'delta'>, result: RunResult): Promise<Record<string, unknown>> {
  return kind === 'fullcopy' ? fullcopy(ctx, result) : onetimecopy(ctx, result);
}

function counts(result: RunResult, p: TablePlan): TableCounts {
  return (result.tables[p.label] ??= { inserted: 0, deleted: 0, conflicts: 0, truncates: 0 });
}

async function mark(c: pg.Client, origin: string, cfg: SyncConfig): Promise<void> {
  // Rows ibex writes carry their origin and this sync's name: this sync never sends them back.
  // apply_mode=replica silences user triggers and rules while copying, as while applying runs.
  // (Only then: setting it at all, even to its default, needs the privilege replica mode needs.)
  await c.query(`SELECT set_config('ibex.origin', $1, true), set_config('ibex.by', $2, true), set_config('ibex.nocapture', 'on', true)${
    cfg.applyMode === 'replica' ? `, set_config('session_replication_role', 'replica', true)` : ''}`, [origin, cfg.name]);
}

/** The db a copy reads from: onetimecopy_from, else the first source. */
function copySource(cfg: SyncConfig): SyncDb {
  const from = cfg.onetimecopyFrom ? cfg.dbs.find((d) => d.name === cfg.onetimecopyFrom) : cfg.dbs.find((d) => d.role === 'source');
  if (!from) throw new IbexError('config', `sync ${cfg.name} has no db to copy from: set onetimecopy_from= to one of its dbs`);
  return from;
}

async function onetimecopy(ctx: CopyContext, result: RunResult): Promise<Record<string, unknown>> {
  const { cfg } = ctx;
  const control = await ctx.control();
  const from = copySource(cfg);
  const targets = cfg.dbs.filter((d) => d.dbtype === 'postgres' && d.name !== from.name && d.role !== 'fullcopy' && d.status === 'active');
  const src = await ctx.db(from);
  const mode = cfg.onetimecopy;
  const n = chunkRows();
  const skipped: string[] = [];

  // Mode 1 replaces the targets' rows: empty them first, children first, once (progress rows mark it done).
  if (mode === 1) {
    for (const t of targets) {
      const c = await ctx.db(t);
      const fresh: TablePlan[] = [];
      for (const p of ctx.plans) if (!(await store.readCopyProgress(control, ctx.sync, p.rel.id, t.name))) fresh.push(p);
      if (fresh.length === 0) continue;
      await c.query('BEGIN');
      await mark(c, from.name, cfg);
      for (const p of [...fresh].reverse()) {
        const r = await c.query(`DELETE FROM ${p.q}`);
        counts(result, p).deleted += r.rowCount ?? 0;
        result.deleted += r.rowCount ?? 0;
      }
      await c.query('COMMIT');
      for (const p of fresh) await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.name, null, 0, false);
    }
  }

  for (const p of ctx.plans) {
    const keyCols = p.keys.map((k) => ident(k).text).join(', ');
    const keyTypes = p.rel.keyTypes;
    for (const t of targets) {
      const c = await ctx.db(t);
      let progress = await store.readCopyProgress(control, ctx.sync, p.rel.id, t.name);
      if (progress?.done) continue;
      if (mode === 2 && !progress) {
        // "Empty" is checked under a lock that keeps writers out while it is checked; rows written
        // after that are kept (chunks are upserted), the check only decides whether to copy at all.
        await c.query('BEGIN');
        await c.query(`LOCK TABLE ${p.q} IN EXCLUSIVE MODE`);
        const r = await c.query(`SELECT EXISTS (SELECT 1 FROM ${p.q}) AS e`);
        await c.query('COMMIT');
        if (r.rows[0].e === 't') {
          skipped.push(`${p.label}@${t.name}`);
          await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.name, null, 0, true);
          continue;
        }
      }
      let lastKey = progress?.lastKey ?? null;
      let rows = progress?.rows ?? 0;
      for (;;) {
        await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        await src.query(`CREATE TEMP TABLE IF NOT EXISTS ibex_copy_last_${p.idx} ON COMMIT DROP AS SELECT ${keyCols} FROM ${p.q} WITH NO DATA`);
        let fromClause = `${p.q} t`;
        let where = 'true';
        if (lastKey) {
          // The key types come from the catalog (format_type); the values are parameters.
          await src.query(
            `INSERT INTO pg_temp.ibex_copy_last_${p.idx} SELECT ${keyTypes.map((ty, i) => `($1::text[])[${i + 1}]::${ty}`).join(', ')}`, [lastKey]);
          fromClause += `, pg_temp.ibex_copy_last_${p.idx} l`;
          where = `(${p.keys.map((k) => `t.${ident(k).text}`).join(', ')}) > (${p.keys.map((k) => `l.${ident(k).text}`).join(', ')})`;
        }
        const chunk = `SELECT ${p.cols.map((col) => `t.${ident(col).text}`).join(', ')} FROM ${fromClause} WHERE ${where} ORDER BY ${p.keys.map((k) => `t.${ident(k).text}`).join(', ')} LIMIT ${n}`;
        await c.query('BEGIN');
        await mark(c, from.name, cfg);
        await c.query(`CREATE TEMP TABLE IF NOT EXISTS ibex_copy_stage_${p.idx} ON COMMIT DROP AS SELECT ${p.colList} FROM ${p.q} WITH NO DATA`);
        const [copied] = await copyFanOut(src, `COPY (${chunk}) TO STDOUT`, [{ client: c, sql: `COPY pg_temp.ibex_copy_stage_${p.idx} FROM STDIN` }]);
        const last = await src.query(
          `SELECT ARRAY[${p.keys.map((k) => `x.${ident(k).text}::text`).join(', ')}] AS k FROM (${chunk}) x ORDER BY ${p.keys.map((k) => `x.${ident(k).text}`).join(' DESC, ')} DESC LIMIT 1`);
        await src.query('COMMIT');
        let ins = 0;
        for (const sql of applyStatements(p, `pg_temp.ibex_copy_stage_${p.idx}`, 'true')) ins += (await c.query(sql)).rowCount ?? 0;
        await c.query('COMMIT');
        counts(result, p).inserted += ins;
        result.inserted += ins;
        rows += copied ?? 0;
        const done = (copied ?? 0) < n;
        lastKey = last.rows[0] ? pgArray(last.rows[0].k) : lastKey;
        await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.name, lastKey, rows, done);
        ctx.log.info({ sync: ctx.sync, table: p.label, db: t.name, rows }, 'onetimecopy progress');
        progress = { lastKey, rows, done };
        if (done) break;
      }
      if (cfg.relations.length && rows > 0) await c.query(`ANALYZE ${p.q}`).catch(() => {});
    }
  }
  await store.finishOnetimecopy(control, ctx.sync);
  result.status = result.inserted + result.deleted > 0 ? 'good' : 'empty';
  return { from: from.name, skippedNotEmpty: skipped };
}

async function fullcopy(ctx: CopyContext, result: RunResult): Promise<Record<string, unknown>> {
  const { cfg } = ctx;
  const from = copySource(cfg);
  const targets = cfg.dbs.filter((d) => d.dbtype === 'postgres' && d.role === 'fullcopy' && d.status === 'active');
  if (targets.length === 0) {
    result.status = 'empty';
    return { from: from.name, note: 'no fullcopy targets' };
  }
  const src = await ctx.db(from);
  const sinks = await Promise.all(targets.map((t) => ctx.db(t)));
  // One snapshot on the source for every table; one transaction per target.
  await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  for (const c of sinks) {
    await c.query('BEGIN');
    await mark(c, from.name, cfg);
  }
  for (const p of [...ctx.plans].reverse()) {
    for (const c of sinks) {
      if (cfg.deletemethod === 'delete') {
        const r = await c.query(`DELETE FROM ${p.q}`);
        counts(result, p).deleted += r.rowCount ?? 0;
        result.deleted += r.rowCount ?? 0;
      } else {
        await c.query('SAVEPOINT ibex_fc');
        try {
          await c.query(`TRUNCATE ${p.q}${cfg.deletemethod === 'truncate_cascade' ? ' CASCADE' : ''}`);
          await c.query('RELEASE SAVEPOINT ibex_fc');
        } catch (err) {
          await c.query('ROLLBACK TO SAVEPOINT ibex_fc');
          if (sqlstate(err) !== '0A000') throw err;
          await c.query(`DELETE FROM ${p.q}`);
        }
        counts(result, p).truncates++;
        result.truncates++;
      }
    }
  }
  for (const p of ctx.plans) {
    const rows = await copyFanOut(src, `COPY (SELECT ${p.colList} FROM ${p.q}) TO STDOUT`,
      sinks.map((c) => ({ client: c, sql: `COPY ${p.q} (${p.colList}) FROM STDIN` })));
    const n = rows.reduce((a, b) => a + b, 0);
    counts(result, p).inserted += n;
    result.inserted += n;
  }
  await src.query('COMMIT');
  for (const c of sinks) await c.query('COMMIT');
  if (cfg.relations.length) {
    for (const c of sinks) for (const p of ctx.plans) await c.query(`ANALYZE ${p.q}`).catch(() => {});
  }
  result.status = 'good';
  return { from: from.name, targets: targets.map((t) => t.name) };
}

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
import { pgArray } from '../db/catalog.js';
import { IbexError } from '../errors.js';
import * as store from '../control/run-store.js';
import type { SyncConfig, SyncDb } from '../control/sync-config.js';
import type { PostgresTarget } from '../targets/postgres/postgres-target.js';
import { copyFanOut } from './exchange.js';
import type { TablePlan } from './plan.js';
import { tableCounts } from './run/state.js';
import { anyRowSql, tableCopyInSql } from './sql/apply.js';
import {
  analyzeSql, chunkLastKeySql, chunkSql, chunkStageSql, deleteAllSql, lastKeyFillSql, lastKeyTableSql, lockTableSql, wholeTableCopyOutSql,
} from './sql/copy.js';
import type { RunKind, RunResult } from './types.js';

/** What a copy needs from its runner. */
export interface CopyContext {
  sync: string;
  cfg: SyncConfig;
  plans: TablePlan[];
  log: Logger;
  /** db → tables another sync reads there (capture must record what a copy writes to them). */
  downstream: Map<string, Set<string>>;
  control(): Promise<pg.Client>;
  db(d: SyncDb): Promise<PostgresTarget>;
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

function count(result: RunResult, p: TablePlan, what: 'inserted' | 'deleted' | 'truncates', n: number): void {
  tableCounts(result, p.label)[what] += n;
  result[what] += n;
}

/**
 * Stamp what a copy writes to table `p` on db `d`: its origin and this sync (which never sends it
 * back); capture records it where another sync reads the table there, so copied rows cascade.
 */
async function mark(ctx: CopyContext, s: PostgresTarget, d: SyncDb, p: TablePlan, origin: string): Promise<void> {
  await s.stamp({ origin, sync: ctx.sync, capture: ctx.downstream.get(d.name)?.has(p.label) ?? false });
}

/** The db a copy reads from: onetimecopy_from, else the first source. */
function copySource(cfg: SyncConfig): SyncDb {
  const from = cfg.onetimecopyFrom ? cfg.dbs.find((d) => d.name === cfg.onetimecopyFrom) : cfg.dbs.find((d) => d.role === 'source');
  if (!from) throw new IbexError('config', `sync ${cfg.name} has no db to copy from: set onetimecopy_from= to one of its dbs`);
  return from;
}

/** Statistics for freshly copied rows help the next runs' plans; a failed ANALYZE costs only that. */
async function analyze(ctx: CopyContext, s: PostgresTarget, p: TablePlan): Promise<void> {
  try {
    await s.query(analyzeSql(p));
  } catch (err) {
    ctx.log.debug({ sync: ctx.sync, table: p.label, db: s.name, err }, 'ANALYZE after a copy failed');
  }
}

/** One onetimecopy: what it copies from, to, and the run it fills. */
interface Onetime {
  ctx: CopyContext;
  control: pg.Client;
  from: SyncDb;
  src: PostgresTarget;
  result: RunResult;
  skipped: string[];
}

async function onetimecopy(ctx: CopyContext, result: RunResult): Promise<Record<string, unknown>> {
  const { cfg } = ctx;
  const from = copySource(cfg);
  const o: Onetime = { ctx, control: await ctx.control(), from, src: await ctx.db(from), result, skipped: [] };
  const targets = cfg.dbs.filter((d) => d.dbtype === 'postgres' && d.name !== from.name && d.role !== 'fullcopy' && d.status === 'active');
  // Mode 1 replaces the targets' rows: empty them first, children first, once (progress rows mark it done).
  if (cfg.onetimecopy === 1) for (const t of targets) await emptyTarget(o, t);
  for (const p of ctx.plans) for (const t of targets) await copyTable(o, p, t);
  await store.finishOnetimecopy(o.control, ctx.sync);
  result.status = result.inserted + result.deleted > 0 ? 'good' : 'empty';
  return { from: from.name, skippedNotEmpty: o.skipped };
}

/** onetimecopy=1: delete every row of the tables not yet started on a target, children first. */
async function emptyTarget(o: Onetime, t: SyncDb): Promise<void> {
  const { ctx, control } = o;
  const c = await ctx.db(t);
  const fresh: TablePlan[] = [];
  for (const p of ctx.plans) if (!(await store.readCopyProgress(control, ctx.sync, p.rel.id, t.name))) fresh.push(p);
  if (fresh.length === 0) return;
  await c.begin();
  for (const p of [...fresh].reverse()) {
    await mark(ctx, c, t, p, o.from.name);
    count(o.result, p, 'deleted', (await c.query(deleteAllSql(p))).rowCount ?? 0);
  }
  await c.commit();
  for (const p of fresh) await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.name, null, 0, false);
}

/**
 * onetimecopy=2: is the table empty on the target? Checked under a lock that keeps writers out
 * while it is checked; rows written after that are kept (chunks are upserted), the check only
 * decides whether to copy at all.
 */
async function emptyUnderLock(c: PostgresTarget, p: TablePlan): Promise<boolean> {
  await c.begin();
  await c.query(lockTableSql(p));
  const r = await c.query(anyRowSql(p.q));
  await c.commit();
  return r.rows[0].e !== 't';
}

/** Copy one table to one target, chunk after chunk, resuming from saved progress. */
async function copyTable(o: Onetime, p: TablePlan, t: SyncDb): Promise<void> {
  const { ctx, control } = o;
  const c = await ctx.db(t);
  const progress = await store.readCopyProgress(control, ctx.sync, p.rel.id, t.name);
  if (progress?.done) return;
  if (ctx.cfg.onetimecopy === 2 && !progress && !(await emptyUnderLock(c, p))) {
    o.skipped.push(`${p.label}@${t.name}`);
    await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.name, null, 0, true);
    return;
  }
  let lastKey = progress?.lastKey ?? null;
  let rows = progress?.rows ?? 0;
  const n = chunkRows();
  for (let done = false; !done;) {
    const chunk = await copyChunk(o, p, t, c, lastKey, n);
    rows += chunk.copied;
    done = chunk.copied < n;
    lastKey = chunk.lastKey ?? lastKey;
    await store.saveCopyProgress(control, ctx.sync, p.rel.id, t.name, lastKey, rows, done);
    ctx.log.info({ sync: ctx.sync, table: p.label, db: t.name, rows }, 'onetimecopy progress');
  }
  if (rows > 0) await analyze(ctx, c, p);
}

/**
 * One chunk: read in its own snapshot on the source, COPYed into a staging table on the target
 * and upserted there, committed. Returns the rows copied and the chunk's last key.
 */
async function copyChunk(o: Onetime, p: TablePlan, t: SyncDb, c: PostgresTarget, lastKey: string[] | null, n: number): Promise<{ copied: number; lastKey: string[] | null }> {
  const { src } = o;
  await src.begin('REPEATABLE READ');
  await src.query(lastKeyTableSql(p));
  // The key types come from the catalog (format_type); the values are parameters.
  if (lastKey) await src.query(lastKeyFillSql(p), [lastKey]);
  const chunk = chunkSql(p, lastKey !== null, n);
  const stage = chunkStageSql(p);
  await c.begin();
  await mark(o.ctx, c, t, p, o.from.name);
  await c.query(stage.create);
  const [copied] = await copyFanOut(src.client, `COPY (${chunk}) TO STDOUT`, [{ client: c.client, sql: stage.copyIn }]);
  const last = await src.query(chunkLastKeySql(p, chunk));
  await src.commit();
  count(o.result, p, 'inserted', (await c.query(stage.upsert)).rowCount ?? 0);
  await c.commit();
  return { copied: copied ?? 0, lastKey: last.rows[0] ? pgArray(last.rows[0].k) : null };
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
  const sinks = await Promise.all(targets.map(async (t) => ({ t, s: await ctx.db(t) })));
  // One snapshot on the source for every table; one transaction per target.
  await src.begin('REPEATABLE READ');
  for (const { s } of sinks) await s.begin();
  for (const p of [...ctx.plans].reverse()) {
    for (const { t, s } of sinks) {
      await mark(ctx, s, t, p, from.name);
      if (cfg.deletemethod === 'delete') count(result, p, 'deleted', (await s.query(deleteAllSql(p))).rowCount ?? 0);
      else {
        await s.truncateWithFallback(p, cfg.deletemethod === 'truncate_cascade');
        count(result, p, 'truncates', 1);
      }
    }
  }
  for (const p of ctx.plans) {
    for (const { t, s } of sinks) await mark(ctx, s, t, p, from.name);
    const rows = await copyFanOut(src.client, wholeTableCopyOutSql(p), sinks.map(({ s }) => ({ client: s.client, sql: tableCopyInSql(p) })));
    count(result, p, 'inserted', rows.reduce((a, b) => a + b, 0));
  }
  await src.commit();
  for (const { s } of sinks) await s.commit();
  for (const { s } of sinks) for (const p of ctx.plans) await analyze(ctx, s, p);
  result.status = 'good';
  return { from: from.name, targets: targets.map((t) => t.name) };
}

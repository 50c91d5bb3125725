/**
 * Apply, second part: rows streamed from their winner, parents first. A few rows travel inline
 * (JSON text) inside the targets' apply round trip; more go by COPY into each db's staging table;
 * both are then upserted per origin. Fast-path and replica-direct rows are COPYed straight into
 * the tables.
 */
import type { SyncDb } from '../../control/sync-config.js';
import { sqlstate, SqlState } from '../../db/sqlstate.js';
import { copyFanOut } from '../exchange.js';
import type { TablePlan } from '../plan.js';
import {
  analyzeDeltaSql, copyOutSql, inlineLoadSql, inlineReadSql, lazyPlanSql, lazyRowsSql, originsSql, stagedUpsertSql, tableCopyInSql, tableRowsSql, tempCopyInSql, wonRowsSql,
} from '../sql/apply.js';
import { together } from '../together.js';
import { deltaWindow, fewKeys, INLINE_BYTES, INLINE_ROWS, others, stampFor, type RunContext } from './context.js';
import { direct, fastPath } from './paths.js';
import { isRowError } from './aside.js';
import { movable, tooLarge } from './toolarge.js';
import { asOwner } from './owner.js';
import { applyOrQuarantine } from './quarantine.js';
import type { RunState } from './state.js';
import type { TextRow } from '../../targets/target.js';
import { upsertSinks, upsertTyped } from './typed.js';

/** The insert-only fast path met a key that already exists: repeat the run through staging. */
export interface FastPathConflict {
  fastPathConflict: string;
}

/**
 * A lazy batch of at least this many delta rows, which the delta table's statistics have not
 * seen, is read after an ANALYZE of the delta table (~10 ms at 100k rows, ~30 ms at 1M).
 */
const ANALYZE_DELTA_ROWS = 50_000;

/** Per db, the rows staged there and their origins (undefined: not known, ask the db). */
type Staged = Map<SyncDb, { rows: number; origins: Set<string | null> | undefined }>;

/** Upsert every table's won rows; a fast-path conflict ends the apply early (the run is repeated). */
export async function upserts(ctx: RunContext, st: RunState): Promise<FastPathConflict | undefined> {
  for (const p of ctx.plans) {
    const pendingOn = st.pendingOn(p);
    if (pendingOn.length === 0) continue;
    const conflict = await upsertTable(ctx, st, p, pendingOn);
    if (conflict) return conflict;
  }
  return undefined;
}

function noteStaged(st: RunState, staged: Staged, p: TablePlan, src: SyncDb, d: SyncDb, rows: number): void {
  const s = staged.get(d) ?? { rows: 0, origins: new Set<string | null>() };
  s.rows += rows;
  const known = st.table(p).sources.get(src)?.origins;
  if (known && s.origins) for (const o of known) s.origins.add(o);
  else s.origins = undefined;
  staged.set(d, s);
}

function countInserted(st: RunState, p: TablePlan, n: number): void {
  st.counts(p).inserted += n;
  st.result.inserted += n;
}

async function upsertTable(ctx: RunContext, st: RunState, p: TablePlan, pendingOn: SyncDb[]): Promise<FastPathConflict | undefined> {
  const staged: Staged = new Map();
  // Custom code or a merge may have staged merged rows on any db: ask each db what it holds.
  const merged = ctx.strategy(p).kind === 'custom' || st.table(p).merged.length > 0;
  const { inline, viaCopy } = await readInline(ctx, st, p, pendingOn, merged, staged);
  for (const src of pendingOn) {
    if (!viaCopy.has(src)) continue;
    if (fastPath(ctx, st, src, p) || direct(ctx, p)) {
      const conflict = await copyDirect(ctx, st, p, src);
      if (conflict) return conflict;
      continue;
    }
    const targets = others(ctx, src);
    const rows = await movable(ctx, st, p, src, wonRowsSql(p, fewKeys(st.table(p).sources.get(src)?.won), true));
    const got = await copyFanOut(ctx.pg(src).client, copyOutSql(rows),
      [...targets.map((d) => ({ client: ctx.pg(d).client, sql: tempCopyInSql(p, 'stage') })), ...upsertSinks(ctx, st, p, src.name)])
      .catch((err: unknown) => { throw tooLarge(err, p, src); });
    for (const [i, d] of targets.entries()) noteStaged(st, staged, p, src, d, got[i] ?? 0);
  }
  for (const td of ctx.typed) await upsertTyped(ctx, st, td, p, st.table(p).merged, 'merge');
  // Every pending source took the fast path: nothing was staged.
  if (pendingOn.every((src) => fastPath(ctx, st, src, p))) return undefined;
  // Each db applies what it received; dbs are independent sessions, so they apply at once.
  await together(ctx.all, (d) => applyStaged(ctx, st, p, d, merged ? undefined : staged.get(d) ?? { rows: 0, origins: new Set() }, inline.get(d) ?? []));
  return undefined;
}

/**
 * A few rows won on a source travel as text inside the targets' apply round trip instead of a
 * COPY exchange (three round trips each, one source after the other): every source reads its rows
 * at once, every target loads and applies them at once. Returns each db's load statements and
 * the sources whose rows still go by COPY.
 */
async function readInline(ctx: RunContext, st: RunState, p: TablePlan, pendingOn: SyncDb[], merged: boolean, staged: Staged): Promise<{ inline: Map<SyncDb, string[]>; viaCopy: Set<SyncDb> }> {
  const inline = new Map<SyncDb, string[]>();
  const viaCopy = new Set(pendingOn);
  const small = merged ? [] : pendingOn.filter((src) => !fastPath(ctx, st, src, p) && !direct(ctx, p) && (st.table(p).sources.get(src)?.won ?? Infinity) <= INLINE_ROWS);
  const types = p.cols.map((col) => ctx.columnTypes(p).find((x) => x.name === col)!.type);
  const read = await together(small, (src) => ctx.pg(src).query(inlineReadSql(p, INLINE_BYTES, types)));
  for (const [i, src] of small.entries()) {
    const row = read[i]!.rows[0];
    if (row.rows === null && Number(row.n) > 0) continue; // too large to inline: COPY
    viaCopy.delete(src);
    if (Number(row.n) === 0) continue;
    for (const d of others(ctx, src)) {
      inline.set(d, [...(inline.get(d) ?? []), inlineLoadSql(p, types, String(row.rows))]);
      noteStaged(st, staged, p, src, d, Number(row.n));
    }
    // The same text arrays are rows for targets of other kinds (less the origin at the end).
    if (ctx.typed.length) {
      const rows = (JSON.parse(String(row.rows)) as TextRow[]).map((r) => r.slice(0, p.cols.length));
      for (const td of ctx.typed) await upsertTyped(ctx, st, td, p, rows, src.name);
    }
  }
  return { inline, viaCopy };
}

/** Fast path or replica mode: COPY the won rows straight into every other db's table. */
async function copyDirect(ctx: RunContext, st: RunState, p: TablePlan, src: SyncDb): Promise<FastPathConflict | undefined> {
  const at = st.table(p).sources.get(src)!;
  const targets = others(ctx, src);
  for (const d of targets) await ctx.pg(d).stamp(stampFor(ctx, p, d, at.insertOrigin ?? null));
  // COPY straight into the table: as its owner where ibex may (see owner.ts).
  const roles = await Promise.all(targets.map((d) => asOwner(ctx, d, p, [])));
  for (const [i, d] of targets.entries()) if (roles[i]!.before) await ctx.pg(d).query(roles[i]!.before);
  const s = ctx.pg(src);
  // A big lazy batch: the delta table's statistics lag behind its growth, and the planner would
  // look every key up through the index (a nested loop, ~10x slower than hashing when the batch
  // is a good part of the table). Hash when that is cheaper.
  const plan = at.lazy && at.pending >= 1000 ? (await s.query(lazyPlanSql(p), [at.pending])).rows[0] : undefined;
  // The batch is the whole table (a first load into an empty table): its rows are read as they
  // lie, with no join of the window's keys. The table's rows are a superset of what the join
  // reads, so no row of the batch is lost; they are the same rows because every key of an
  // insert-only window is in the table (a key is deleted only by a captured write, or by this
  // sync's own apply) and is there once (inserting it again needs a delete between), so a table
  // of n rows holding the batch's n distinct keys holds only them. The one exception, this run's
  // own apply having deleted window rows (a cascade from a parent's delete) while as many older
  // rows remain, sends rows every target already holds: the COPY meets a unique violation and the
  // run repeats through staging, as for any fast-path conflict.
  const whole = plan?.whole === 't';
  const hash = !whole && plan?.hash === 't';
  // Statistics that have not seen the batch guess a few hundred distinct keys: the planner then
  // de-duplicates the keys before hashing them (spilling to disk) in every parallel worker; a
  // 1M-row batch read 3-4x slower than with fresh statistics (docs/performance.md, bulk).
  if (!whole && plan?.stale === 't' && at.pending >= ANALYZE_DELTA_ROWS) await s.query(analyzeDeltaSql(p));
  if (hash) await s.query(`SET LOCAL enable_nestloop = off`);
  let copied: number[];
  // Straight from the delta window (COPY takes no parameters: the cursor is a literal).
  const lazy = (): string => (whole ? tableRowsSql(p) : lazyRowsSql(p, deltaWindow(ctx, { text: st.cursorOf(src) })));
  const rows = await movable(ctx, st, p, src, at.lazy ? lazy() : wonRowsSql(p, fewKeys(at.won), false));
  try {
    copied = await copyFanOut(s.client, copyOutSql(rows),
      [...targets.map((d) => ({ client: ctx.pg(d).client, sql: tableCopyInSql(p) })), ...upsertSinks(ctx, st, p, src.name)]);
  } catch (err) {
    const large = tooLarge(err, p, src);
    if (large !== err) throw large;
    // A key that already exists (a repeated run), another unique index, a missing parent, a row
    // a db refuses: repeat the run through staging, which applies what fits and settles, quarantines
    // or sets aside the rest.
    if (sqlstate(err) === SqlState.uniqueViolation || sqlstate(err) === SqlState.foreignKeyViolation || isRowError(err)) return { fastPathConflict: p.label };
    throw err;
  }
  if (hash) await s.query(`SET LOCAL enable_nestloop = on`);
  for (const [i, d] of targets.entries()) if (roles[i]!.after) await ctx.pg(d).query(roles[i]!.after);
  // The typed sinks' rows were counted as they were applied.
  countInserted(st, p, copied.slice(0, targets.length).reduce((a, b) => a + b, 0));
  return undefined;
}

/** Upsert what one db staged, per origin (the inline rows load in the first statement's round trip). */
async function applyStaged(ctx: RunContext, st: RunState, p: TablePlan, d: SyncDb, staged: { rows: number; origins: Set<string | null> | undefined } | undefined, inline: string[]): Promise<void> {
  if (staged && staged.rows === 0) return;
  const s = ctx.pg(d);
  let load = inline.join(';\n');
  let origins: (string | null)[];
  if (staged?.origins) origins = [...staged.origins];
  else {
    const r = await s.queryAll(`${load ? `${load};\n` : ''}${originsSql(p, 'stage')}`);
    load = '';
    origins = r.at(-1)!.rows.map((o) => o.ibex_origin as string | null);
  }
  for (const o of origins) {
    const n = await applyOrQuarantine(ctx, { p, db: d, from: 'stage', origin: o, statement: (one, org) => stagedUpsertSql(p, one, org), load }, st.quarantined, st.aside);
    load = '';
    countInserted(st, p, n);
  }
}

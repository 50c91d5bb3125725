/**
 * Resolve: with several sources, every source learns every other's pending keys (ibex_all) and
 * computes the same per-row winner; each files the keys it won into its ibex_mine. A source that
 * alone changed a table wins every key. Conflicts are collected, custom code decides its tables',
 * and an `abort` strategy ends the run here.
 */
import type pg from 'pg';
import * as store from '../../control/run-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import { winnerOrder } from '../../conflict/strategy.js';
import { AbortError } from '../errors.js';
import { copyFanOut } from '../exchange.js';
import type { TablePlan } from '../plan.js';
import { allCopyInSql, allFromPendSql, analyzeAllSql, inlineKeysSql, mineSql, pendCopyOutSql, pendingKeysSql, wonKeysSql } from '../sql/resolve.js';
import { together } from '../together.js';
import { collectConflicts } from './conflicts.js';
import { resolveCustom } from './custom.js';
import { resolveMerge } from './merge.js';
import { deltaWindow, type RunContext } from './context.js';
import type { RunState } from './state.js';
import { mergedRows } from './typed.js';
import { stringifyExactJson } from '../../db/json.js';

/**
 * Keys exchanged by COPY from which ibex_all is analyzed before the conflict query reads it.
 * The statistics stay on the temp table across runs: a small run after a big one plans with the
 * big one's numbers, which is harmless.
 */
const ANALYZE_KEYS = 1_000;

/** Resolve every table with pending changes; throws AbortError under conflict_strategy=abort. */
export async function resolve(ctx: RunContext, st: RunState): Promise<void> {
  for (const p of ctx.plans) {
    const pendingOn = st.pendingOn(p);
    if (pendingOn.length === 0) continue;
    if (pendingOn.length === 1) {
      // Only one source changed this table: no conflict is possible, it wins every key.
      if (!st.table(p).at(pendingOn[0]!).lazy) await addMine(ctx, st, pendingOn[0]!, p, pendingKeysSql(p));
      continue;
    }
    await resolveShared(ctx, st, p, pendingOn);
  }
  const conflicts = st.conflicts;
  if (conflicts.some((c) => c.strategy === 'abort')) {
    const shown = conflicts.slice(0, 5).map((c) => `${c.schema}.${c.table} ${stringifyExactJson(c.key)}`).join(', ');
    await store.logConflicts(ctx.control, ctx.sync, st.result.runId, conflicts, 'aborted');
    throw new AbortError(`${conflicts.length} conflicting key(s) and conflict_strategy=abort: ${shown}${conflicts.length > 5 ? ', …' : ''}; make each row identical on the dbs that changed it, then "ibex resume ${ctx.sync}"`);
  }
}

/** Note what a mineSql statement answered for a source. */
function noteMine(st: RunState, src: SyncDb, p: TablePlan, row: Record<string, unknown>): void {
  const at = st.table(p).at(src);
  at.absent = (at.absent ?? 0) + Number(row.absent);
  at.won = (at.won ?? 0) + Number(row.won);
  const seen = at.origins ?? new Set<string | null>();
  for (const o of JSON.parse(String(row.origins ?? '[]')) as (string | null)[]) seen.add(o);
  at.origins = seen;
}

async function addMine(ctx: RunContext, st: RunState, src: SyncDb, p: TablePlan, select: string, params: unknown[] = []): Promise<void> {
  const r = await ctx.pg(src).query(mineSql(p, select), params);
  noteMine(st, src, p, r.rows[0]);
}

/**
 * Every source learns the others' pending keys. A few keys (read by the gather) go inline, ahead
 * of the conflict query of each source; more go by COPY, one exchange at a time (a session cannot
 * send one COPY while it receives another). Returns the statements to send ahead, if inline.
 */
async function exchangeKeys(ctx: RunContext, st: RunState, p: TablePlan, pendingOn: SyncDb[]): Promise<Map<SyncDb, string[]> | undefined> {
  const t = st.table(p);
  if (!t.allFilled) await together(ctx.sources, (src) => ctx.pg(src).query(allFromPendSql(p, src.name)));
  if (pendingOn.every((src) => t.at(src).keysJson !== undefined)) {
    const keyTypes = p.keys.map((k) => ctx.columnTypes(p).find((x) => x.name === k)!.type);
    return new Map(ctx.sources.map((s) => [s, pendingOn.filter((o) => o !== s).map((o) => inlineKeysSql(p, o.name, keyTypes, t.at(o).keysJson!))]));
  }
  for (const src of pendingOn) {
    await copyFanOut(ctx.pg(src).client, pendCopyOutSql(p, src.name),
      ctx.sources.filter((s) => s !== src).map((s) => ({ client: ctx.pg(s).client, sql: allCopyInSql(p) })));
  }
  // ibex_all was analyzed empty (run/temp.ts), so the planner knows its size but nothing of its
  // keys: with many keys it may take the DISTINCT ON winner subquery as a parameterized inner
  // side, re-sorting the whole table once per key (seen: a 20k-key run on CPU for minutes after a
  // source restart). Real statistics cost a few milliseconds, small against such a run.
  const keys = pendingOn.reduce((n, src) => n + (t.at(src).pending ?? 0), 0);
  if (keys >= ANALYZE_KEYS) await together(ctx.sources, (src) => ctx.pg(src).query(analyzeAllSql(p)));
  return undefined;
}

/** A table changed on several sources: exchange keys, pick winners, collect (and let code decide) conflicts. */
async function resolveShared(ctx: RunContext, st: RunState, p: TablePlan, pendingOn: SyncDb[]): Promise<void> {
  const before = await exchangeKeys(ctx, st, p, pendingOn);
  const priority = new Map(ctx.cfg.dbs.map((d) => [d.name, d.priority]));
  const strategy = ctx.strategy(p);
  const custom = strategy.kind === 'custom';
  // Merged column by column: under merge, and for counter columns under a strategy that picks a winner.
  const merging = strategy.kind === 'merge'
    || ((p.rel.deltaColumns ?? []).length > 0 && (strategy.kind === 'latest' || strategy.kind === 'list' || strategy.kind === 'random'));
  // Custom code starts from "latest": its version of each key is offered as the default.
  const order = winnerOrder(custom ? { kind: 'latest' } : strategy, priority, `ROW(${p.keyList})::text`);
  // skip leaves conflicting keys alone and custom code decides them below; every other key
  // (agreeing versions included) goes to its winner as usual.
  const mayHold = strategy.kind === 'skip' || custom || merging;
  // When nothing can be held back, each source files the keys it won in the same round trip
  // that reads its versions of the conflicting keys.
  const found = await collectConflicts(ctx, p, order, custom || merging, {
    mergeWindow: merging ? (src: SyncDb) => deltaWindow(ctx, { text: st.cursorOf(src) }) : undefined,
    before,
    after: mayHold ? undefined : new Map(pendingOn.map((src) => [src, mineSql(p, wonKeysSql(p, src.name, order, false))])),
    onAfter: (src: SyncDb, r: pg.QueryResult) => noteMine(st, src, p, r.rows[0]),
  });
  const held = mayHold && found.length > 0;
  if (mayHold) {
    await together(pendingOn, (src) => addMine(ctx, st, src, p, wonKeysSql(p, src.name, order, held), held ? [JSON.stringify(found.map((f) => f.keyText))] : []));
  }
  if (custom && found.length) {
    await resolveCustom(p, found, {
      hooks: ctx.hooks, runId: st.result.runId, columns: ctx.columnTypes(p).length ? ctx.columnTypes(p) : p.cols.map((name) => ({ name, type: 'text' })),
      session: (db) => ctx.pg(ctx.all.find((d) => d.name === db)!),
      sessions: ctx.all.map((d) => ctx.pg(d)),
    });
    for (const src of pendingOn) st.table(p).at(src).absent = undefined; // unknown: check for deletes
    const merges = found.filter((f) => f.winner === 'merge').map((f) => f.winnerRow as Record<string, string | null>);
    st.table(p).merged.push(...mergedRows(p, merges));
  }
  if (merging && found.length) {
    const merges = await resolveMerge(p, found, strategy.kind === 'merge', {
      columns: ctx.columnTypes(p).length ? ctx.columnTypes(p) : p.cols.map((name) => ({ name, type: 'text' })),
      session: (db) => ctx.pg(ctx.all.find((d) => d.name === db)!),
      sessions: ctx.all.map((d) => ctx.pg(d)),
    });
    // What each source won is no longer what noteMine counted: unknown, so apply asks each db.
    for (const src of pendingOn) Object.assign(st.table(p).at(src), { absent: undefined, won: undefined, origins: undefined });
    st.table(p).merged.push(...mergedRows(p, merges));
    // Keys whose versions all agree once merged went to their winner: no conflict to log.
    found.splice(0, found.length, ...found.filter((f) => !f.settled));
  }
  if (found.length) {
    st.counts(p).conflicts += found.length;
    st.result.conflicts += found.length;
    st.conflicts.push(...found.map(({ keyText: _k, text: _t, ...rec }) => rec));
  }
}

/**
 * Gather: on each source, in its snapshot, the keys changed in this sync's window past its cursor
 * (PgQ's rule: a transaction still open is never skipped, a later run consumes it). First one
 * round trip per source classifies the pending changes; a table only inserted into, on one
 * source, with one origin and no truncate, takes the fast path straight from its delta table
 * (lazy: no gather into temp tables, most of a bulk load's cost). The others are gathered into
 * ibex_pend.
 */
import type { SyncDb } from '../../control/sync-config.js';
import { clockSql, classifySql, gatherSql } from '../sql/gather.js';
import type { TablePlan } from '../plan.js';
import { together } from '../together.js';
import { deltaWindow, INLINE_ROWS, type RunContext } from './context.js';
import type { RunState } from './state.js';

/** The text that classifies a source's pending changes past `cursor` (two statements). */
export function classifyText(ctx: RunContext, src: SyncDb, cursor: string): string {
  return classifySql(ctx.plans, deltaWindow(ctx, { text: cursor }), src.name);
}

/** Per source: its truncates and, per table with pending changes, their count, kind and origin. */
async function classify(ctx: RunContext, st: RunState): Promise<void> {
  // Sources are independent sessions: they are read in parallel.
  await together(ctx.sources, async (src) => {
    const cursor = st.cursorOf(src);
    const pre = st.preclassified.get(src);
    const [tr, cls] = pre && pre.cursor === cursor
      ? [{ rows: pre.truncates }, { rows: pre.classes }]
      : await ctx.pg(src).queryAll(classifyText(ctx, src, cursor));
    for (const row of tr!.rows) {
      const p = ctx.plans.find((x) => x.label === row.label);
      if (!p) continue;
      const t = st.table(p);
      if (!t.truncate || t.truncate.ts < String(row.ts)) t.truncate = { src, ts: String(row.ts) };
    }
    for (const row of cls!.rows) {
      st.table(ctx.plans[Number(row.i)]!).classes.set(src, { n: Number(row.n), insonly: row.insonly === 't', origin: row.origin === null ? null : String(row.origin) });
    }
  });
}

/**
 * Tables only inserted into on one source with one origin and no truncate: read lazily at apply.
 * Not tables with rules: the lazy read ends in COPY, which skips them.
 */
function markLazy(ctx: RunContext, st: RunState): void {
  if (!ctx.fastPathAllowed) return;
  for (const p of ctx.plans) {
    const t = st.table(p);
    if (t.classes.size !== 1 || t.truncate || p.hasRules) continue;
    const [[src, k]] = [...t.classes] as [[SyncDb, { n: number; insonly: boolean; origin: string | null }]];
    if (k.insonly && k.origin !== null) Object.assign(t.at(src), { lazy: true, pending: k.n, insertOrigin: k.origin });
  }
}

/** The tables some source gathers (pending changes that are not lazy). */
function gatheredTables(ctx: RunContext, st: RunState): TablePlan[] {
  return ctx.plans.filter((p) => [...st.table(p).classes.keys()].some((s) => !st.table(p).sources.get(s)?.lazy));
}

/** Classify, then gather: temp tables on every session and each source's pending keys, one round trip each. */
export async function gather(ctx: RunContext, st: RunState): Promise<void> {
  await classify(ctx, st);
  markLazy(ctx, st);
  const gathered = gatheredTables(ctx, st);
  for (const p of gathered) {
    const t = st.table(p);
    t.active = true;
    // Several sources changed it (a conflict is possible) and no truncate will drop keys after
    // the gather: the gather copies its keys into ibex_all at once, saving a statement per source.
    t.allFilled = t.classes.size > 1 && !t.truncate;
  }
  const ts = clockSql(ctx.cfg.clock);
  if (gathered.length === 0) return;
  await together(ctx.all, async (d) => {
    const s = ctx.pg(d);
    const prepare = ctx.temps.prepareSql(s.client, gathered);
    if (!ctx.sources.includes(d)) {
      await s.query(prepare);
      return;
    }
    // The cursor is a literal: several statements in one text take no parameters.
    const window = deltaWindow(ctx, { text: st.cursorOf(d) });
    const mine = gathered.filter((p) => st.table(p).classes.has(d));
    const texts = mine.map((p) => gatherSql(p, window, d.name, {
      ts, fillAll: st.table(p).allFilled, inlineRows: keysInlineable(ctx, p) ? INLINE_ROWS : undefined,
    }));
    const results = await s.queryAll(`${prepare}\n${texts.join(';\n')}`);
    // The gathers' results are the last ones (the temp-table statements come first).
    for (const [i, p] of mine.entries()) {
      const g = results[results.length - mine.length + i]!.rows[0];
      if (Number(g.n) === 0) continue;
      const at = st.table(p).at(d);
      at.pending = Number(g.n);
      if (g.keys_json !== undefined && g.keys_json !== null) at.keysJson = String(g.keys_json);
      if (g.insonly === 't' && Number(g.origins) === 1) at.insertOrigin = String(g.origin);
    }
  });
  for (const p of gathered) {
    ctx.temps.note(ctx.all.map((d) => ctx.pg(d).client), p.idx, ctx.sources.reduce((n, s) => n + (st.table(p).sources.get(s)?.pending ?? 0), 0));
  }
}

/** Whether every key column's type is known (a generated key column is not among the writable columns typed at load). */
function keysInlineable(ctx: RunContext, p: TablePlan): boolean {
  const types = ctx.columnTypes(p);
  return p.keys.every((k) => types.some((x) => x.name === k));
}

/** Per source, the keys gathered (for the run's details). */
export function gatheredCounts(ctx: RunContext, st: RunState): Record<string, { keys: number; oldest: string | null }> {
  const out: Record<string, { keys: number; oldest: string | null }> = {};
  for (const src of ctx.sources) out[src.name] = { keys: ctx.plans.reduce((n, p) => n + (st.table(p).sources.get(src)?.pending ?? 0), 0), oldest: null };
  return out;
}

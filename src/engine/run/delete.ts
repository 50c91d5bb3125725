/**
 * Apply, first part: deletes of keys absent at their winner, children first. Each winner COPYs
 * those keys into ibex_del on every other db; each db deletes what it received, per origin.
 * Then the cascade pass: a delete can cascade (ON DELETE CASCADE) to a row another source won
 * after it was found present there; such rows are deleted everywhere too.
 */
import type { ConflictRecord } from '../../control/run-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import { copyFanOut } from '../exchange.js';
import type { TablePlan } from '../plan.js';
import { clearDeletesSql, deleteSql, deletesCopyOutSql, originsSql, tempCopyInSql } from '../sql/apply.js';
import { together } from '../together.js';
import { fewKeys, others, type RunContext } from './context.js';
import { direct, fastPath, mayDelete } from './paths.js';
import { applyOrQuarantine } from './quarantine.js';
import type { RunState } from './state.js';
import { applyTypedDeletes, deleteSinks } from './typed.js';

/** Stage one source's deletes of a table on every other db; adds the keys each received to `received`. */
async function stageDeletes(ctx: RunContext, st: RunState, src: SyncDb, p: TablePlan, allKeys: boolean, received: Map<SyncDb, number>): Promise<void> {
  const targets = others(ctx, src);
  const won = st.table(p).sources.get(src)?.won;
  const got = await copyFanOut(ctx.pg(src).client, deletesCopyOutSql(p, allKeys ? null : { small: fewKeys(won) }),
    [...targets.map((d) => ({ client: ctx.pg(d).client, sql: tempCopyInSql(p, 'del') })), ...deleteSinks(ctx, st, p)]);
  for (const [i, d] of targets.entries()) received.set(d, (received.get(d) ?? 0) + (got[i] ?? 0));
}

/** Delete on one db what its ibex_del holds, per origin; returns the rows deleted. */
async function applyDeletes(ctx: RunContext, d: SyncDb, p: TablePlan, received: number, quarantined: ConflictRecord[]): Promise<number> {
  let n = 0;
  for (const o of (await ctx.pg(d).query(originsSql(p, 'del'))).rows) {
    n += await applyOrQuarantine(ctx, {
      p, db: d, from: 'del', origin: o.ibex_origin as string | null,
      statement: (one, org) => deleteSql(p, fewKeys(received), one, org),
    }, quarantined);
  }
  return n;
}

function count(st: RunState, p: TablePlan, n: number): void {
  st.counts(p).deleted += n;
  st.result.deleted += n;
}

/** Stage and apply every table's deletes, then the cascade passes. */
export async function deletes(ctx: RunContext, st: RunState): Promise<void> {
  const received = new Map<TablePlan, Map<SyncDb, number>>();
  for (const src of ctx.sources) {
    for (const p of ctx.plans) {
      if (!mayDelete(ctx, st, src, p)) continue;
      if (!received.has(p)) received.set(p, new Map());
      await stageDeletes(ctx, st, src, p, direct(ctx, p), received.get(p)!);
    }
  }
  for (const p of [...ctx.plans].reverse()) {
    // Fast-path tables stage no deletes (and lazy ones have no temp tables at all).
    if (!ctx.sources.some((s) => mayDelete(ctx, st, s, p))) continue;
    // Independent sessions: every db deletes at once.
    await together(ctx.all, async (d) => count(st, p, await applyDeletes(ctx, d, p, received.get(p)?.get(d) ?? 0, st.quarantined)));
    count(st, p, await applyTypedDeletes(ctx, st, p));
  }
  if (!ctx.replica && st.result.deleted + st.result.truncates > 0) await cascades(ctx, st);
}

/**
 * Rows deleted by a cascade of the deletes above: deleted everywhere, parents first (so cascades
 * of these deletes are seen when their children come up), again until a pass deletes nothing
 * (self-references). Re-deleting keys already deleted is a no-op.
 */
async function cascades(ctx: RunContext, st: RunState): Promise<void> {
  for (let again = true; again;) {
    again = false;
    for (const p of ctx.plans) {
      const winners = ctx.sources.filter((s) => st.table(p).pendingAt(s) && !fastPath(ctx, st, s, p));
      if (winners.length === 0) continue;
      for (const d of ctx.all) await ctx.pg(d).query(clearDeletesSql(p));
      const received = new Map<SyncDb, number>();
      for (const src of winners) await stageDeletes(ctx, st, src, p, false, received);
      for (const d of ctx.all) {
        // Keys the first part quarantined come up again here: refused again, but logged once.
        const refused: ConflictRecord[] = [];
        const n = await applyDeletes(ctx, d, p, received.get(d) ?? 0, refused);
        const seen = new Set(st.quarantined.map(quarantineId));
        st.quarantined.push(...refused.filter((q) => !seen.has(quarantineId(q))));
        count(st, p, n);
        if (n > 0) again = true;
      }
      count(st, p, await applyTypedDeletes(ctx, st, p));
    }
  }
}

function quarantineId(q: ConflictRecord): string {
  return `${q.schema}.${q.table} ${JSON.stringify(q.key)} ${q.losers[0]?.db}`;
}

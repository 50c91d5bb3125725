/**
 * What is still unconsumed past the new cursors (changes committed since the run's snapshot,
 * and transactions that were open), per source: keys and the time of the oldest change, for
 * `status`. Measured outside the run's transactions.
 */
import * as store from '../../control/run-store.js';
import { backlogSql } from '../sql/gather.js';
import { deltaWindow, type RunContext } from './context.js';
import type { RunState } from './state.js';

/** Measure and record the backlog and the clock skew. */
export async function recordBacklog(ctx: RunContext, st: RunState, skewMs: number): Promise<void> {
  const backlog: Record<string, { keys: number; oldest: string | null }> = {};
  if (ctx.plans.length) {
    const text = backlogSql(ctx.plans, deltaWindow(ctx, { param: 1 }));
    for (const src of ctx.sources) {
      const r = await ctx.pg(src).query(text, [st.snaps.get(src)]);
      backlog[src.name] = { keys: Number(r.rows[0].n), oldest: r.rows[0].oldest === null ? null : String(r.rows[0].oldest) };
    }
  }
  await store.recordBacklog(ctx.control, ctx.sync, backlog, skewMs);
}

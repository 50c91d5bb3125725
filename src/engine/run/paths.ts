/** Which way a source's won rows of a table travel in apply (decided from the run's state). */
import type { SyncDb } from '../../control/sync-config.js';
import type { TablePlan } from '../plan.js';
import type { RunContext } from './context.js';
import type { RunState } from './state.js';

/**
 * The insert-only fast path: keys that were only inserted, on one source, with one origin, cannot
 * exist elsewhere (unless a crashed run already delivered them: then COPY raises 23505 and the run
 * is repeated without the fast path). Rows go straight into the table.
 */
export function fastPath(ctx: RunContext, st: RunState, src: SyncDb, p: TablePlan): boolean {
  return ctx.fastPathAllowed && !p.hasRules && st.table(p).sources.get(src)?.insertOrigin !== undefined && st.pendingOn(p).length === 1;
}

/**
 * In replica mode every winning row is deleted (apply's first part) and copied straight back;
 * not on a table with rules: COPY skips them, so such a table is always staged and applied by
 * statements (its rules marked ENABLE ALWAYS fire then, as in upsert mode).
 */
export function direct(ctx: RunContext, p: TablePlan): boolean {
  return ctx.replica && ctx.fastPathAllowed && !p.hasRules;
}

/**
 * Does this source stage deletes of this table? Where the winner holds every key it won (counted
 * when ibex_mine was filled), there is nothing to delete.
 */
export function mayDelete(ctx: RunContext, st: RunState, src: SyncDb, p: TablePlan): boolean {
  const at = st.table(p).sources.get(src);
  return (at?.pending ?? 0) > 0 && !fastPath(ctx, st, src, p) && (direct(ctx, p) || (at?.absent ?? 1) > 0);
}

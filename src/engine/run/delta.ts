/**
 * One delta run as a pipeline of phases over a typed state (DESIGN, "One run of a sync"):
 * open → gather → truncate → resolve → apply (delete, upsert) → confirm. Each phase is a function
 * of the run's context and state in its own file. A hook may end the run without applying
 * anything (skip), and the insert-only fast path may ask for the run to be repeated through
 * staging: both are returned, not thrown. Failures throw; the runner rolls every db back.
 */
import * as store from '../../control/run-store.js';
import { together } from '../together.js';
import type { RunResult } from '../types.js';
import { afterRunAside, noteRowLockTimeout, recordRunAside } from './aside.js';
import { confirm } from './confirm.js';
import type { RunContext } from './context.js';
import { runCounts } from './hooks.js';
import { deletes } from './delete.js';
import { gather, gatheredCounts } from './gather.js';
import { clockSkew, open, recover } from './open.js';
import { settleOrphans } from './orphans.js';
import { applyAsText } from './owner.js';
import { resolve } from './resolve.js';
import { syncSequences } from './sequences.js';
import { RunState } from './state.js';
import { truncate } from './truncate.js';
import { upserts, type FastPathConflict } from './upsert.js';

/** What the control db says before a run: the downstream readers, the cursors, a setting (see run-store.runInputs). */
export type RunInputs = Promise<store.RunInputValues>;

/** How a delta run ended, when it did not throw. */
export type DeltaOutcome = { details: Record<string, unknown> } | { skip: string } | FastPathConflict;

/**
 * Run the phases; fills `result`. Inputs already read (with the run's row) let the open round
 * trip classify each source's changes too; inputs still on their way are awaited after the open.
 */
export async function deltaRun(ctx: RunContext, result: RunResult, inputs: RunInputs | store.RunInputValues): Promise<DeltaOutcome> {
  const st = new RunState(result, ctx.sources);
  const runId = result.runId;
  let skip = await ctx.hooks.run('before_txn', runId);
  if (skip) return { skip };
  const takeInputs = ({ downstream, cursors, rowLockTimeoutMs }: store.RunInputValues): void => {
    ctx.downstream = downstream;
    noteRowLockTimeout(ctx, rowLockTimeoutMs);
    for (const src of ctx.sources) {
      const cur = cursors.get(src.name);
      if (cur) st.cursors.set(src, cur);
    }
  };
  if (!(inputs instanceof Promise)) takeInputs(inputs);
  await open(ctx, st);
  ctx.races.use(st.snaps);
  const skewMs = clockSkew(st);
  if (inputs instanceof Promise) takeInputs(await inputs);
  if ((skip = await ctx.hooks.run('before_check_rows', runId))) return { skip };
  st.phase('open');
  await recover(ctx, st);
  await gather(ctx, st);
  const gathered = gatheredCounts(ctx, st);
  if (!st.hasWork()) return { details: await emptyRun(ctx, st, skewMs) };
  st.phase('gather');
  await truncate(ctx, st);
  st.phase('truncate');
  await resolve(ctx, st);
  st.phase('resolve');
  await ctx.afterGather?.();
  await deletes(ctx, st);
  st.phase('delete');
  const conflict = await upserts(ctx, st);
  if (conflict) return conflict;
  await settleOrphans(ctx, st);
  await recordRunAside(ctx, st);
  await syncSequences(ctx);
  await ctx.races.requeue(ctx);
  st.phase('upsert');
  if ((skip = await ctx.hooks.run('before_commit', runId, { result: runCounts({ ...result, status: 'good' }) }))) return { skip };
  await confirm(ctx, st);
  await afterRunAside(ctx, st);
  await ctx.housekeeping.after(ctx, st, skewMs);
  st.phase('commit');
  const details: Record<string, unknown> = { skewMs, gathered, applyAs: await applyAsText(ctx), phases: st.phases, snapshots: Object.fromEntries([...st.snaps].map(([d, s]) => [d.name, s])) };
  await ctx.hooks.runAfter('after_txn', result, details);
  ctx.log.debug({ sync: ctx.sync, run: runId, phases: st.phases }, 'run phases (ms)');
  return { details };
}

/** Nothing to do: end the transactions and still move the cursors forward (keeps windows small). */
async function emptyRun(ctx: RunContext, st: RunState, skewMs: number): Promise<Record<string, unknown>> {
  await syncSequences(ctx);
  await together(ctx.all, (d) => ctx.pg(d).commit());
  await together(ctx.typed, (td) => td.target.commit());
  await store.advanceCursors(ctx.control, ctx.sync, new Map(ctx.sources.map((s) => [s.name, st.snaps.get(s)!])));
  await afterRunAside(ctx, st);
  await ctx.housekeeping.after(ctx, st, skewMs);
  st.result.status = 'empty';
  return { skewMs };
}

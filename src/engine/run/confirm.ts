/**
 * Confirm: conflicts logged as pending (durably, before any commit), progress inside each apply
 * transaction with its COMMIT, every db at once; then the cursors advance in the control db and
 * the pending records are settled. A failure anywhere leaves the cursors behind, and the next run
 * re-applies idempotently.
 */
import * as store from '../../control/run-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import type { ProgressEntry } from '../../targets/target.js';
import type { RunContext } from './context.js';
import type { RunState } from './state.js';
import { commitTyped } from './typed.js';
import { FencedError } from '../errors.js';

/** Progress entries a db records: every other source's snapshot of this run. */
function progressOf(ctx: RunContext, st: RunState, d: SyncDb): ProgressEntry[] {
  return ctx.sources.filter((s) => s !== d).map((s) => ({ source: s.name, snapshot: st.snaps.get(s)!, run: st.result.runId, ...(ctx.epoch !== undefined ? { epoch: ctx.epoch } : {}) }));
}

/** Refuse to commit when the lease went to another daemon since this one took it. */
async function checkLease(ctx: RunContext): Promise<void> {
  if (ctx.epoch === undefined) return;
  const now = await store.leaseEpoch(ctx.control, ctx.sync);
  if (now !== undefined && now !== ctx.epoch) {
    throw new FencedError(`sync ${ctx.sync} is run by another daemon now (lease epoch ${now}, this run's ${ctx.epoch}): this run commits nothing`);
  }
}

/** Log the run's conflicts before the commits (quarantined rows count as conflicts). */
async function logPending(ctx: RunContext, st: RunState): Promise<boolean> {
  const pending = [...st.conflicts.filter((c) => c.strategy !== 'skip'), ...st.quarantined];
  await store.logConflicts(ctx.control, ctx.sync, st.result.runId, pending);
  for (const q of st.quarantined) {
    const t = (st.result.tables[`${q.schema}.${q.table}`] ??= { inserted: 0, deleted: 0, conflicts: 0, truncates: 0 });
    t.conflicts++;
    st.result.conflicts++;
  }
  await store.logConflicts(ctx.control, ctx.sync, st.result.runId, st.conflicts.filter((c) => c.strategy === 'skip'), 'skipped');
  return pending.length > 0;
}

/** Commit every db with its progress; throws the first failure (cursors stay behind). */
async function commitAll(ctx: RunContext, st: RunState): Promise<void> {
  // Every db commits at once (their fsyncs overlap). A failure anywhere leaves the cursors behind
  // and the next run re-applies idempotently — the same as when a later one of sequential commits fails.
  await checkLease(ctx);
  const outcomes = await Promise.allSettled(ctx.all.map((d) => ctx.pg(d).commitWithProgress(ctx.sync, progressOf(ctx, st, d))));
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (!failure) return;
  // Once a db committed, its overwrites happened: keep their records (pending), never drop them.
  if (outcomes.every((o) => o.status === 'rejected')) {
    try {
      await store.settleConflicts(ctx.control, st.result.runId, false);
    } catch (err) {
      ctx.log.warn({ sync: ctx.sync, run: st.result.runId, err }, 'could not drop the pending conflict records of a run that committed nowhere');
    }
  }
  throw failure.reason;
}

/** Log, commit, advance the cursors, settle. */
export async function confirm(ctx: RunContext, st: RunState): Promise<void> {
  const logged = await logPending(ctx, st);
  await commitAll(ctx, st);
  await commitTyped(ctx, st);
  if (!await store.advanceCursors(ctx.control, ctx.sync, new Map(ctx.sources.map((s) => [s.name, st.snaps.get(s)!])), ctx.epoch)) {
    // Committed everywhere, but the cursors are the new owner's to move: it adopts this run's
    // snapshots from the progress rows (recover) if they are newer than its own.
    throw new FencedError(`sync ${ctx.sync} went to another daemon while this run committed (epoch ${ctx.epoch}): its cursors were left to the new owner`);
  }
  if (logged) await store.settleConflicts(ctx.control, st.result.runId, true);
  const r = st.result;
  r.status = r.inserted + r.deleted + r.truncates > 0 || r.conflicts > 0 ? 'good' : 'empty';
}

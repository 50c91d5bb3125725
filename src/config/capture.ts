/**
 * Installing and removing the capture objects of a sync, around the control writes of a
 * configuration step.
 */
import type pg from 'pg';
import { installCapture, removeCapture, type CaptureOptions } from '../capture/install.js';
import { errorText } from '../db/connect.js';
import { updateSync, type SyncStatus } from '../control/config-store.js';
import { IbexError } from '../errors.js';
import type { ConfigContext } from './context.js';

/**
 * Test-only switch: `IBEX_SKIP_CAPTURE=1` skips installing and removing
 * capture objects (the sync is marked active directly). It exists so the
 * configuration commands can be tested without the capture component; never
 * set it in production: a sync without capture replicates nothing.
 */
export function skipCapture(): boolean {
  return process.env.IBEX_SKIP_CAPTURE === '1';
}

function captureFailure(action: string, sync: string, err: unknown, undone: string): IbexError {
  if (err instanceof IbexError) return err;
  return new IbexError('internal', `${action} capture for sync "${sync}" failed: ${errorText(err)}${undone}`, { cause: err });
}

/**
 * Install capture for a sync after its rows were committed (or, in a dry run,
 * inside the open transaction, with `dryRun`). With IBEX_SKIP_CAPTURE=1 the
 * sync is set to `status` directly. After a real install, a sync the user
 * wanted inactive or paused is set back to that status.
 */
export async function runInstallCapture(ctx: ConfigContext, c: pg.Client, sync: string, status: SyncStatus, undo?: () => Promise<void>): Promise<void> {
  const dryRun = ctx.flags.dryRun;
  if (skipCapture()) {
    await updateSync(c, sync, { status });
    return;
  }
  try {
    await installCapture(c, sync, { dryRun, say: (line) => ctx.say(line) });
    if (!dryRun && status !== 'active') await updateSync(c, sync, { status });
  } catch (err) {
    if (undo && !dryRun) {
      await undo();
      throw captureFailure('installing', sync, err, ': nothing was changed');
    }
    throw captureFailure('installing', sync, err, '');
  }
}

/** Remove the capture objects of a sync (honours IBEX_SKIP_CAPTURE=1 and dry runs). */
export async function runRemoveCapture(ctx: ConfigContext, c: pg.Client, sync: string): Promise<void> {
  if (skipCapture()) return;
  // With --force, dbs that cannot be reached are skipped (their objects stay; capture says so).
  const opts: CaptureOptions & { force?: boolean } = { dryRun: ctx.flags.dryRun, say: (line) => ctx.say(line), force: ctx.flags.force };
  try {
    await removeCapture(c, sync, opts);
  } catch (err) {
    throw captureFailure('removing', sync, err, ': the sync is still configured; fix the cause and run "ibex remove sync" again');
  }
}

/**
 * Bring the capture of running syncs up to date after a table's capture options changed
 * (delta_columns): the triggers are replaced in place, pending changes stay.
 */
export async function runUpgradeCapture(ctx: ConfigContext, c: pg.Client, syncs: readonly string[]): Promise<void> {
  if (skipCapture()) return;
  // Every caller runs this inside its control transaction, which rolls back when it throws. The
  // tables are checked on every source before any trigger is replaced (in a dry run too), so
  // what is left to fail midway is a db going away.
  for (const sync of syncs) {
    try {
      await installCapture(c, sync, { say: (line) => ctx.say(line), upgrade: true, dryRun: ctx.flags.dryRun });
    } catch (err) {
      throw captureFailure('updating', sync, err, `: the configuration is unchanged; dbs whose triggers were already replaced keep the new ones until the command runs again: fix the cause and run it again`);
    }
  }
}

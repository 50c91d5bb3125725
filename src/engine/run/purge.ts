/**
 * Remove delta rows every sync reading a source has consumed, and (once in a while per process)
 * the conflict log and run history past their retention.
 */
import { errorText, redact } from '../../db/connect.js';
import * as store from '../../control/run-store.js';
import { purgeHistory } from '../../control/retention.js';
import { MIN_XMIN_SQL, purgeDeltaSql, PURGE_TRUNCATES_SQL } from '../sql/purge.js';
import type { RunContext } from './context.js';

/** Purge the control db's history (conflict log, runs, kicks) past retention. */
export async function purgeControlHistory(ctx: RunContext): Promise<void> {
  try {
    const n = await purgeHistory(ctx.control);
    if (n.conflicts + n.runs + n.kicks > 0) ctx.log.info(n, 'purged the conflict log and run history past their retention');
  } catch (err) {
    ctx.log.warn({ sync: ctx.sync }, `could not purge history: ${redact(errorText(err))}`);
  }
}

/** Delete the delta rows and truncate records that every cursor on each source has passed. */
export async function purgeDeltas(ctx: RunContext): Promise<void> {
  for (const src of ctx.sources) {
    const snaps = await store.cursorsOnDb(ctx.control, src.name);
    if (snaps.length === 0) continue;
    const s = ctx.pg(src);
    const xmin = (await s.query(MIN_XMIN_SQL, [snaps])).rows[0].x;
    if (!xmin) continue;
    for (const p of ctx.plans) await s.query(purgeDeltaSql(p.delta), [xmin]);
    await s.query(PURGE_TRUNCATES_SQL, [xmin]);
  }
}

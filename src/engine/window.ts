/**
 * Which delta rows a sync has not consumed yet (pure SQL text, shared by the runner and
 * `ibex validate`). A change is consumed by the first run whose snapshot sees its transaction
 * committed (PgQ's batch rule): a delta row is pending while its transaction is not visible in
 * the sync's cursor snapshot, so a transaction still open when a cursor was taken is never
 * skipped.
 */
import { literal as lit } from '../db/ident.js';

/** Delta rows whose transaction the cursor (`cursor`: a pg_snapshot expression) has not seen. */
export function unconsumed(cursor: string): string {
  return `ibex_txid >= pg_snapshot_xmin(${cursor}) AND NOT pg_visible_in_snapshot(ibex_txid, ${cursor})`;
}

/**
 * Delta rows the sync must carry: not applied by the sync itself, and not originated at one of
 * its sources (the sync picks those up at their origin) — which is what prevents loops.
 */
export function forSync(sync: string, sourceNames: readonly string[]): string {
  return `ibex_by IS DISTINCT FROM ${lit(sync)}
        AND (ibex_origin IS NULL OR ibex_origin NOT IN (${sourceNames.map(lit).join(', ')}))`;
}

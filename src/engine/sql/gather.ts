/**
 * What a run reads on its sources (pure SQL text): the delta window, the classification of
 * pending changes, the gather of pending keys into ibex_pend, truncates, backlog.
 */
import { ident, literal } from '../../db/ident.js';
import type { SyncConfig } from '../../control/sync-config.js';
import type { TablePlan } from '../plan.js';
import { forSync, unconsumed } from '../window.js';
import { tempNames } from './temp.js';

/** A pg_snapshot value as SQL: a parameter reference (`$1`) or a snapshot's text, quoted. */
export type SnapshotRef = { param: number } | { text: string };

function snapshotExpr(s: SnapshotRef): string {
  return 'param' in s ? `$${s.param}::pg_snapshot` : `${literal(s.text)}::pg_snapshot`;
}

/** Delta rows of this sync's window past a cursor: unconsumed, not applied by the sync, not from one of its sources. */
export function windowSql(sync: string, sourceNames: readonly string[], cursor: SnapshotRef): string {
  return `${unconsumed(snapshotExpr(cursor))} AND ${forSync(sync, sourceNames)}`;
}

/** The change-time expression of the sync's clock (over a delta table's columns). */
export function clockSql(clock: SyncConfig['clock']): string {
  // A change queued again after a race (op 'R', see run/raced.ts) keeps the time it was gathered with.
  return clock === 'commit'
    ? `CASE WHEN ibex_op = 'R' THEN ibex_ts ELSE coalesce(pg_xact_commit_timestamp(((ibex_txid::text::bigint % 4294967296)::text)::xid), ibex_ts) END`
    : 'ibex_ts';
}

/** The origin of a delta row: where it was first written (the source itself for local writes). */
function originSql(source: string): string {
  return `coalesce(ibex_origin, ${literal(source)})`;
}

/** Is anything pending in the window on this source (parameter $1: the cursor)? */
export function anyPendingSql(plans: readonly TablePlan[], window: string): string {
  const parts = plans.map((p) => `SELECT 1 FROM ${p.delta} WHERE ${window}`);
  parts.push(`SELECT 1 FROM ibex.truncates WHERE ${window}`);
  return `SELECT EXISTS (${parts.join(' UNION ALL ')}) AS p`;
}

/**
 * Two statements: the source's truncates in the window (label, latest time), then per table with
 * pending changes its count of delta rows, whether all are plain inserts, and their one origin.
 */
export function classifySql(plans: readonly TablePlan[], window: string, source: string): string {
  // This scans every pending delta row before a big run can start, so the aggregates are the
  // cheap ones: min and max skip NULL origins (local writes, the usual case) without a call each,
  // and a filtered count costs less than bool_and. The one origin is then the source's own when
  // no row names one, else the named one when all rows name it (a row naming the source itself
  // is outside the window).
  return `SELECT schemaname || '.' || relname AS label, max(ibex_ts)::text AS ts FROM ibex.truncates WHERE ${window} GROUP BY 1;
         ${plans.length === 0 ? 'SELECT 1 WHERE false' : `SELECT i, n, notins = 0 AS insonly,
                CASE WHEN named = 0 THEN ${literal(source)} WHEN lo = hi AND (named = n OR lo = ${literal(source)}) THEN lo END AS origin
           FROM (${plans.map((p) =>
          `SELECT ${p.idx} AS i, count(*) AS n, count(*) FILTER (WHERE ibex_op <> 'I') AS notins,
                  count(ibex_origin) AS named, min(ibex_origin) AS lo, max(ibex_origin) AS hi
             FROM ${p.delta} WHERE ${window}`).join(' UNION ALL ')}) x WHERE n > 0`}`;
}

/** Options of one table's gather. */
export interface GatherOptions {
  /** The change-time expression (clockSql). */
  ts: string;
  /** Also file the keys into ibex_all (several sources changed the table and no truncate follows). */
  fillAll: boolean;
  /** Return up to `inlineRows` keys as JSON (see resolve.ts inlineKeysSql). */
  inlineRows?: number | undefined;
}

/**
 * File a source's pending keys of one table into ibex_pend, with the time and origin of their
 * latest change; answers one row (n, insonly, origins, origin[, keys_json]).
 */
export function gatherSql(p: TablePlan, window: string, source: string, o: GatherOptions): string {
  const keys = p.keyList;
  const origin = originSql(source);
  const t = tempNames(p);
  // The origin of a key is that of its latest change; most keys have one origin, so the
  // ordered aggregate is only paid for keys with several (min = max short-circuits it).
  return `WITH ins AS (
             INSERT INTO ${t.pend} (${keys}, ibex_ts, ibex_insonly, ibex_origin)
             SELECT ${keys}, max(${o.ts}), bool_and(ibex_op = 'I'),
                    CASE WHEN min(${origin}) = max(${origin}) THEN min(${origin})
                         ELSE (array_agg(${origin} ORDER BY ibex_ts DESC))[1] END
               FROM ${p.delta} WHERE ${window} GROUP BY ${keys}
             RETURNING *)${o.fillAll ? `,
           a AS (INSERT INTO ${t.all} SELECT ${literal(source)}, * FROM ins)` : ''}
           SELECT count(*) AS n, bool_and(ibex_insonly) AS insonly, count(DISTINCT ibex_origin) AS origins, min(ibex_origin) AS origin${o.fillAll && o.inlineRows !== undefined ? `,
                  (SELECT json_agg(to_json(ARRAY[${p.keys.map((k) => `i.${ident(k).text}::text`).join(', ')}, i.ibex_ts::text, i.ibex_insonly::text, i.ibex_origin]))
                     FROM ins i WHERE (SELECT count(*) FROM ins) <= ${o.inlineRows})::text AS keys_json` : ''} FROM ins`;
}

/** Unconsumed delta rows past the new cursor ($1), for `status`: count and oldest change. */
export function backlogSql(plans: readonly Pick<TablePlan, 'delta'>[], window: string): string {
  const parts = plans.map((p) => `SELECT ibex_ts FROM ${p.delta} WHERE ${window}`);
  return `SELECT count(*) AS n, min(ibex_ts)::text AS oldest FROM (${parts.join(' UNION ALL ')}) x`;
}

/** Purging consumed delta rows on a source (pure SQL text). */

/** The oldest xmin among some snapshots ($1: text[]). */
export const MIN_XMIN_SQL = `SELECT min(pg_snapshot_xmin(s::pg_snapshot))::text AS x FROM unnest($1::text[]) s`;

/** Delete a delta table's rows older than $1 (an xid8). */
export function purgeDeltaSql(delta: string): string {
  return `DELETE FROM ${delta} WHERE ibex_txid < $1::xid8`;
}

/** Delete truncate records older than $1 (an xid8). */
export const PURGE_TRUNCATES_SQL = `DELETE FROM ibex.truncates WHERE ibex_txid < $1::xid8`;

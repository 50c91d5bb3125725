/** Whole-table copies: onetimecopy chunks and fullcopy (pure SQL text). */
import { ident } from '../../db/ident.js';
import { applyStatements, type TablePlan } from '../plan.js';

const keyCols = (p: TablePlan, alias: string): string => p.keys.map((k) => `${alias}.${ident(k).text}`).join(', ');

/** On the source: the temp table holding the last key copied (dropped at commit). */
export function lastKeyTableSql(p: TablePlan): string {
  return `CREATE TEMP TABLE IF NOT EXISTS ibex_copy_last_${p.idx} ON COMMIT DROP AS SELECT ${p.keyList} FROM ${p.q} WITH NO DATA`;
}

/** Fill it from $1 (the key as text[]), each value through its key type (from the catalog). */
export function lastKeyFillSql(p: TablePlan): string {
  return `INSERT INTO pg_temp.ibex_copy_last_${p.idx} SELECT ${p.rel.keyTypes.map((ty, i) => `($1::text[])[${i + 1}]::${ty}`).join(', ')}`;
}

/** The next chunk of `limit` rows in key order, after the last key copied when `after`. */
export function chunkSql(p: TablePlan, after: boolean, limit: number): string {
  const from = after ? `${p.q} t, pg_temp.ibex_copy_last_${p.idx} l` : `${p.q} t`;
  const where = after ? `(${keyCols(p, 't')}) > (${keyCols(p, 'l')})` : 'true';
  return `SELECT ${p.cols.map((col) => `t.${ident(col).text}`).join(', ')} FROM ${from} WHERE ${where} ORDER BY ${keyCols(p, 't')} LIMIT ${Math.trunc(limit)}`;
}

/** The last key of a chunk, as text[]. */
export function chunkLastKeySql(p: TablePlan, chunk: string): string {
  return `SELECT ARRAY[${p.keys.map((k) => `x.${ident(k).text}::text`).join(', ')}] AS k FROM (${chunk}) x ORDER BY ${p.keys.map((k) => `x.${ident(k).text}`).join(' DESC, ')} DESC LIMIT 1`;
}

/** On a target: the chunk's staging table (dropped at commit), COPY into it, and its upsert. */
export function chunkStageSql(p: TablePlan): { stage: string; create: string; copyIn: string; upsert: string[] } {
  const stage = `pg_temp.ibex_copy_stage_${p.idx}`;
  return {
    stage,
    create: `CREATE TEMP TABLE IF NOT EXISTS ibex_copy_stage_${p.idx} ON COMMIT DROP AS SELECT ${p.colList} FROM ${p.q} WITH NO DATA`,
    copyIn: `COPY ${stage} FROM STDIN`,
    upsert: applyStatements(p, stage, 'true'),
  };
}

/** Every row of a table, for a fullcopy. */
export function wholeTableCopyOutSql(p: TablePlan): string {
  return `COPY (SELECT ${p.colList} FROM ${p.q}) TO STDOUT`;
}

/** Keep writers out while a table is checked for rows (onetimecopy=2). */
export function lockTableSql(p: TablePlan): string {
  return `LOCK TABLE ${p.q} IN EXCLUSIVE MODE`;
}

/** Remove every row (onetimecopy=1, deletemethod=delete). */
export function deleteAllSql(p: TablePlan): string {
  return `DELETE FROM ${p.q}`;
}

/** Statistics for freshly copied rows. */
export function analyzeSql(p: TablePlan): string {
  return `ANALYZE ${p.q}`;
}

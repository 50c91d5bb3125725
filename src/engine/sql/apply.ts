/**
 * Apply (pure SQL text): what winners send (COPY out of their table joined with ibex_mine, or a
 * few rows inline as JSON text arrays), and what each PostgreSQL db runs on what it received.
 */
import { ident, literal } from '../../db/ident.js';
import { fromJsonText } from '../../targets/postgres/postgres-dialect.js';
import { applyStatements, OVERRIDING, type TablePlan } from '../plan.js';
import { tempNames } from './temp.js';

/** The rows a source won: table `t` joined with its ibex_mine `m` (index probes for a small batch, see absentSql). */
export function wonRowsFrom(p: TablePlan, small: boolean): string {
  const mine = tempNames(p).mine;
  return small
    ? `${mine} m CROSS JOIN LATERAL (SELECT * FROM ${p.q} t WHERE ${p.keyJoin('t', 'm')} OFFSET 0) t`
    : `${p.q} t JOIN ${mine} m ON ${p.keyJoin('t', 'm')}`;
}

/**
 * Keys of ibex_mine `m` absent from the table. For a small batch, one index probe per key
 * (OFFSET 0 keeps the planner from turning it into an anti-join it might hash over the whole
 * table, guessing the temp table's size from its pages); a large batch may be hashed.
 */
export function absentSql(p: TablePlan, small: boolean): string {
  return `NOT EXISTS (SELECT 1 FROM ${p.q} t WHERE ${p.keyJoin('t', 'm')}${small ? ' OFFSET 0' : ''})`;
}

/** The origin filter of an apply statement: `origin` is SQL (a literal, NULL::text or a parameter). */
function sameOrigin(alias: string, origin: string): string {
  return `${alias}.ibex_origin IS NOT DISTINCT FROM ${origin}`;
}

/** COPY out the keys a source won to delete elsewhere: all of them (`absentOnly` null) or those absent here. */
export function deletesCopyOutSql(p: TablePlan, absentOnly: { small: boolean } | null): string {
  const keys = p.keys.map((k) => `m.${ident(k).text}`).join(', ');
  return `COPY (SELECT ${keys}, m.ibex_origin FROM ${tempNames(p).mine} m${absentOnly ? ` WHERE ${absentSql(p, absentOnly.small)}` : ''}) TO STDOUT`;
}

/** COPY into one of a db's temp tables (`del` or `stage`). */
export function tempCopyInSql(p: TablePlan, to: 'del' | 'stage'): string {
  return `COPY ${tempNames(p)[to]} FROM STDIN`;
}

/** Empty a db's ibex_del (between cascade passes). */
export function clearDeletesSql(p: TablePlan): string {
  return `DELETE FROM ${tempNames(p).del}`;
}

/** The distinct origins of what a db received (`del` or `stage`). */
export function originsSql(p: TablePlan, from: 'del' | 'stage'): string {
  return `SELECT DISTINCT ibex_origin FROM ${tempNames(p)[from]}`;
}

/**
 * Delete the rows whose keys are in ibex_del with one origin (`oneRow`: an extra filter on `s`).
 * A small batch on a one-column key deletes through `key = ANY(array)` (an index scan whatever
 * the table's size); otherwise a join.
 */
export function deleteSql(p: TablePlan, small: boolean, oneRow: string, origin: string): string {
  const del = tempNames(p).del;
  if (small && p.keys.length === 1) {
    const k = ident(p.keys[0]!).text;
    return `DELETE FROM ${p.q} t WHERE t.${k} = ANY (ARRAY(
                SELECT s.${k} FROM ${del} s WHERE ${sameOrigin('s', origin)} ${oneRow}))`;
  }
  return `DELETE FROM ${p.q} t USING ${del} s WHERE ${p.keyJoin('t', 's')} AND ${sameOrigin('s', origin)} ${oneRow}`;
}

/**
 * Upsert the staged rows of one origin (`oneRow`: an extra filter on `s`): one statement, or on a
 * table with rules several (see applyStatements), run in order in one transaction.
 */
export function stagedUpsertSql(p: TablePlan, oneRow: string, origin: string): string[] {
  return applyStatements(p, tempNames(p).stage, `${sameOrigin('s', origin)} ${oneRow}`);
}

/**
 * Read the rows a source won as one JSON array of text arrays — every column as its type's text
 * output, exactly what COPY's text format carries, then the origin — with the count; `rows` is
 * NULL when they exceed `maxBytes` (stored size; then COPY carries them). At most a few hundred
 * keys: one index probe each.
 */
export function inlineReadSql(p: TablePlan, maxBytes: number): string {
  const cols = p.cols.map((col) => `t.${ident(col).text}::text`).join(', ');
  return `WITH x AS (SELECT to_json(ARRAY[${cols}, m.ibex_origin]) AS j, pg_column_size(t.*) AS size
                         FROM ${wonRowsFrom(p, true)})
            SELECT count(*) AS n, CASE WHEN coalesce(sum(size), 0) <= ${maxBytes} THEN json_agg(j)::text END AS rows FROM x`;
}

/** Load rows read by inlineReadSql into a db's staging table (`types`: of p.cols, in order). */
export function inlineLoadSql(p: TablePlan, types: readonly string[], rowsJson: string): string {
  return `INSERT INTO ${tempNames(p).stage} (${p.colList}, ibex_origin)
            SELECT ${fromJsonText(types)}, r->>${p.cols.length}
              FROM json_array_elements(${literal(rowsJson)}::json) r`;
}

/** COPY out the rows a source won (with their origin for staging; without, straight into tables). */
export function wonCopyOutSql(p: TablePlan, small: boolean, withOrigin: boolean): string {
  const cols = p.cols.map((col) => `t.${ident(col).text}`).join(', ');
  return `COPY (SELECT ${cols}${withOrigin ? ', m.ibex_origin' : ''} FROM ${wonRowsFrom(p, small)}) TO STDOUT`;
}

/** COPY out the current rows of the keys pending in a delta window (the lazy fast path: no gather). */
export function lazyCopyOutSql(p: TablePlan, window: string): string {
  const cols = p.cols.map((col) => `t.${ident(col).text}`).join(', ');
  return `COPY (SELECT ${cols} FROM ${p.q} t WHERE (${p.keys.map((k) => `t.${ident(k).text}`).join(', ')}) IN (
                     SELECT ${p.keyList} FROM ${p.delta} WHERE ${window})) TO STDOUT`;
}

/** COPY straight into the table (fast path, replica mode, fullcopy). */
export function tableCopyInSql(p: TablePlan): string {
  return `COPY ${p.q} (${p.colList}) FROM STDIN`;
}

/** Would hashing a lazy batch of $1 keys beat index probes (more than 1/20 of the table)? */
export function preferHashSql(p: TablePlan): string {
  return `SELECT $1::bigint * 20 > reltuples AS hash FROM pg_class WHERE oid = ${literal(p.q)}::regclass`;
}

/** COPY out every key a table holds (the keep-set of a truncate). */
export function keysCopyOutSql(p: TablePlan): string {
  return `COPY (SELECT ${p.keyList} FROM ${p.q}) TO STDOUT`;
}

/** COPY into a db's keep-set. */
export function keepCopyInSql(p: TablePlan): string {
  return `COPY ${tempNames(p).keep} FROM STDIN`;
}

/** Does the table (or a temp table) hold any row? */
export function anyRowSql(table: string): string {
  return `SELECT EXISTS (SELECT 1 FROM ${table}) AS e`;
}

/** A truncate that must keep some rows: those pending here and/or those in the keep-set. */
export function truncateKeepingSql(p: TablePlan, pending: boolean, held: boolean): string {
  const t = tempNames(p);
  return `DELETE FROM ${p.q} t WHERE true
            ${pending ? `AND NOT EXISTS (SELECT 1 FROM ${t.pend} m WHERE ${p.keyJoin('t', 'm')})` : ''}
            ${held ? `AND NOT EXISTS (SELECT 1 FROM ${t.keep} k WHERE ${p.keyJoin('t', 'k')})` : ''}`;
}

/** Drop a source's pending keys older than a truncate ($1: its time). */
export function dropBeforeTruncateSql(p: TablePlan): string {
  return `DELETE FROM ${tempNames(p).pend} WHERE ibex_ts <= $1::timestamptz`;
}

/** The rows of a temp table with one origin ($1), by ctid (row-by-row apply). */
export function ctidsSql(table: string): string {
  return `SELECT ctid::text AS id FROM ${table} WHERE ibex_origin IS NOT DISTINCT FROM $1`;
}

/** Replace exactly some staged rows ($1: ctids) under replica mode: delete, then insert. */
export function swapSql(p: TablePlan): { delete: string; insert: string } {
  const stage = tempNames(p).stage;
  return {
    delete: `DELETE FROM ${p.q} t USING ${stage} s WHERE ${p.keyJoin('t', 's')} AND s.ctid = ANY($1::tid[])`,
    insert: `INSERT INTO ${p.q} (${p.colList})${OVERRIDING} SELECT ${p.colList} FROM ${stage} s WHERE s.ctid = ANY($1::tid[])`,
  };
}

/** A refused row ($1: ctid) for the conflict log: its key, the incoming row and what this db holds. */
export function refusedRowSql(p: TablePlan, table: string): string {
  const keyJson = `jsonb_build_object(${p.keys.map((k) => `${literal(k)}, s.${ident(k).text}`).join(', ')})`;
  return `SELECT ${keyJson}::text AS key, (to_jsonb(s) - 'ibex_origin')::text AS incoming,
                (SELECT to_jsonb(t)::text FROM ${p.q} t WHERE ${p.keyJoin('t', 's')}) AS here
           FROM ${table} s WHERE s.ctid = $1::tid`;
}

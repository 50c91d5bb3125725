/**
 * Resolve on the sources (pure SQL text): every source learns the others' pending keys
 * (ibex_all), picks the same winner per key, files the keys it won (ibex_mine), and reads its
 * version of each conflicting key.
 */
import { ident, literal } from '../../db/ident.js';
import { fromJsonText } from '../../targets/postgres/postgres-dialect.js';
import type { TablePlan } from '../plan.js';
import { tempNames } from './temp.js';

/**
 * SQL of a jsonb object mapping each column to its text output, for alias `a` (in chunks:
 * a function takes at most 100 arguments). Text output is exact and reads back with a cast.
 */
export function textRowSql(a: string, cols: readonly string[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cols.length; i += 50) {
    parts.push(`jsonb_build_object(${cols.slice(i, i + 50).map((c) => `${literal(c)}, ${a}.${ident(c).text}::text`).join(', ')})`);
  }
  return `(${parts.join(' || ')})`;
}

/**
 * Put the keys a source won (`select`: key columns and ibex_origin) into its ibex_mine; answers
 * how many are absent from its table (deletes to apply elsewhere), how many it won, and their origins.
 */
export function mineSql(p: TablePlan, select: string): string {
  const keys = p.keyList;
  return `WITH ins AS (INSERT INTO ${tempNames(p).mine} (${keys}, ibex_origin) ${select} RETURNING ${keys}, ibex_origin)
         SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM ${p.q} t WHERE ${p.keyJoin('t', 'ins')})) AS absent,
                count(*) AS won, to_jsonb(array_agg(DISTINCT ibex_origin))::text AS origins FROM ins`;
}

/** Every key a source has pending (it wins them all when it alone changed the table). */
export function pendingKeysSql(p: TablePlan): string {
  return `SELECT ${p.keyList}, ibex_origin FROM ${tempNames(p).pend}`;
}

/**
 * The keys `source` wins under `order` (winnerOrder); with `held`, less the keys in the jsonb
 * array parameter $1 (key text rows held back for skip or custom code).
 */
export function wonKeysSql(p: TablePlan, source: string, order: string, held: boolean): string {
  const keys = p.keyList;
  return `SELECT ${keys}, ibex_origin FROM (
           SELECT DISTINCT ON (${keys}) * FROM ${tempNames(p).all} AS a ORDER BY ${keys}, ${order}) w
          WHERE w.ibex_src = ${literal(source)}
          ${held ? `AND ${textRowSql('w', p.keys)} NOT IN (SELECT jsonb_array_elements($1::jsonb))` : ''}`;
}

/** File this source's own pending keys into its ibex_all. */
export function allFromPendSql(p: TablePlan, source: string): string {
  const t = tempNames(p);
  return `INSERT INTO ${t.all} SELECT ${literal(source)}, * FROM ${t.pend}`;
}

/** COPY out a source's pending keys, tagged with its name, for the others' ibex_all. */
export function pendCopyOutSql(p: TablePlan, source: string): string {
  return `COPY (SELECT ${literal(source)}, * FROM ${tempNames(p).pend}) TO STDOUT`;
}

/** Statistics of ibex_all once it holds every source's keys. */
export function analyzeAllSql(p: TablePlan): string {
  return `ANALYZE ${tempNames(p).all}`;
}

/** COPY into ibex_all. */
export function allCopyInSql(p: TablePlan): string {
  return `COPY ${tempNames(p).all} FROM STDIN`;
}

/**
 * Load a source's pending keys, read as JSON by the gather (gatherSql keys_json), into ibex_all,
 * each text through its key column's type (`keyTypes`, in key order).
 */
export function inlineKeysSql(p: TablePlan, source: string, keyTypes: readonly string[], keysJson: string): string {
  const n = p.keys.length;
  return `INSERT INTO ${tempNames(p).all} (ibex_src, ${p.keyList}, ibex_ts, ibex_insonly, ibex_origin)
            SELECT ${literal(source)}, ${fromJsonText(keyTypes)}, (r->>${n})::timestamptz, (r->>${n + 1})::boolean, r->>${n + 2}
              FROM json_array_elements(${literal(keysJson)}::json) r`;
}

/**
 * On one source: its version of every key pending on several sources, with the winner under
 * `order`; with `asText`, the row as text too (for custom code).
 */
export function conflictsSql(p: TablePlan, source: string, order: string, asText: boolean, merge?: MergeRead): string {
  const keys = p.keyList;
  const all = tempNames(p).all;
  const keyJson = `jsonb_build_object(${p.keys.map((k) => `${literal(k)}, w.${ident(k).text}`).join(', ')})`;
  return `WITH w AS (SELECT DISTINCT ON (${keys}) * FROM ${all} ORDER BY ${keys}, ${order}),
              k AS (SELECT ${keys} FROM ${all} GROUP BY ${keys} HAVING count(*) > 1)${merge ? `,
              r AS (SELECT ${keys}, ibex_src, row_number() OVER (PARTITION BY ${keys} ORDER BY ${order}) AS rnk FROM ${all}),
              m AS (${mergeReadSql(p, merge)})` : ''}
         SELECT ${keyJson}::text AS key, w.ibex_src AS winner, a.ibex_ts::text AS my_ts, a.ibex_insonly AS inserted,
                (SELECT to_jsonb(t) FROM ${p.q} t WHERE ${p.keyJoin('t', 'w')})::text AS row
                , ${textRowSql('w', p.keys)}::text AS key_text${asText ? `, (SELECT ${textRowSql('t', p.cols)} FROM ${p.q} t WHERE ${p.keyJoin('t', 'w')})::text AS row_text` : ''}${merge ? `,
                (SELECT r.rnk FROM r WHERE ${p.keyJoin('r', 'w')} AND r.ibex_src = ${literal(source)}) AS rnk,
                m.ibex_mask, m.ibex_sums,
                (SELECT to_jsonb(cols) FROM ibex.captured WHERE schemaname = ${literal(p.rel.schema)} AND relname = ${literal(p.rel.name)})::text AS capcols` : ''}
           FROM w JOIN k USING (${keys}) JOIN ${all} a ON ${p.keyJoin('a', 'w')} AND a.ibex_src = ${literal(source)}${merge ? `
           LEFT JOIN m ON ${p.keyJoin('m', 'w')}` : ''}`;
}

/** What a merge reads of each conflicting key from a source's delta table. */
export interface MergeRead {
  /** The window of this source (its delta rows of this run). */
  window: string;
  /** The table's counter columns. */
  counters: readonly string[];
}

/**
 * Per conflicting key: the OR of the column masks of this source's changes in the window (NULL
 * when one of them was not a masked update), and per counter column the sum of its differences
 * (NULL when one was not a plain number change).
 */
function mergeReadSql(p: TablePlan, m: MergeRead): string {
  const sums = m.counters.length
    ? `jsonb_build_object(${m.counters.map((c) => `${literal(c)}, CASE WHEN bool_and(ibex_op = 'U' AND ibex_delta->>${literal(c)} IS NOT NULL)
         THEN sum((ibex_delta->>${literal(c)})::numeric)::text END`).join(', ')})::text`
    : `'{}'`;
  return `SELECT ${p.keyList}, CASE WHEN bool_and(ibex_op = 'U' AND ibex_cols IS NOT NULL) THEN bit_or(ibex_cols)::text END AS ibex_mask,
                ${sums} AS ibex_sums
           FROM ${p.delta} WHERE ${m.window} AND (${p.keyList}) IN (SELECT ${p.keyList} FROM k) GROUP BY ${p.keyList}`;
}

/** Keys custom code gave to a db ($1: the db, $2: jsonb array of key text rows) into its ibex_mine. */
export function customWinsSql(p: TablePlan): string {
  const t = tempNames(p);
  return `INSERT INTO ${t.mine} SELECT ${p.keyList}, ibex_origin FROM ${t.all} a
          WHERE a.ibex_src = $1 AND ${textRowSql('a', p.keys)} IN (SELECT jsonb_array_elements($2::jsonb))`;
}

/** Stage rows custom code merged ($1: jsonb array of objects of column texts), with origin 'merge'. */
export function mergedStageSql(p: TablePlan, columns: readonly { name: string; type: string }[]): string {
  const cast = columns.map((col) => `(r->>${literal(col.name)})::${col.type}`).join(', ');
  return `INSERT INTO ${tempNames(p).stage} (${p.colList}, ibex_origin) SELECT ${cast}, 'merge' FROM jsonb_array_elements($1::jsonb) r`;
}

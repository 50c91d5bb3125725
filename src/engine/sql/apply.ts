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
 * NULL when their text exceeds `maxBytes` (then COPY carries them). The size is the text's, not
 * the stored (compressed) size, and it is measured before anything is aggregated: a compressible
 * row of hundreds of MB stores small but would build a JSON text past PostgreSQL's 1 GB limit
 * (`out of memory`). octet_length of a text value reads its TOAST header, not the value. At most
 * a few hundred keys: one index probe each (twice when they fit).
 */
export function inlineReadSql(p: TablePlan, maxBytes: number, types?: readonly string[]): string {
  const cols = p.cols.map((col) => `t.${ident(col).text}::text`).join(', ');
  const size = p.cols.map((col, i) => textSizeSql(`t.${ident(col).text}`, types?.[i], 'text')).join(' + ');
  return `SELECT n, CASE WHEN bytes <= ${maxBytes} THEN (SELECT json_agg(to_json(ARRAY[${cols}, m.ibex_origin]))::text FROM ${wonRowsFrom(p, true)}) END AS rows
            FROM (SELECT count(*) AS n, coalesce(sum(${size}), 0) AS bytes FROM ${wonRowsFrom(p, true)}) x`;
}

/** Load rows read by inlineReadSql into a db's staging table (`types`: of p.cols, in order). */
export function inlineLoadSql(p: TablePlan, types: readonly string[], rowsJson: string): string {
  return `INSERT INTO ${tempNames(p).stage} (${p.colList}, ibex_origin)
            SELECT ${fromJsonText(types)}, r->>${p.cols.length}
              FROM json_array_elements(${literal(rowsJson)}::json) r`;
}

/** The rows a source won (with their origin for staging; without, straight into tables). */
export function wonRowsSql(p: TablePlan, small: boolean, withOrigin: boolean): string {
  const cols = p.cols.map((col) => `t.${ident(col).text}`).join(', ');
  return `SELECT ${cols}${withOrigin ? ', m.ibex_origin' : ''} FROM ${wonRowsFrom(p, small)}`;
}

/** COPY out the rows a source won (see wonRowsSql). */
export function wonCopyOutSql(p: TablePlan, small: boolean, withOrigin: boolean): string {
  return copyOutSql(wonRowsSql(p, small, withOrigin));
}

/** The current rows of the keys pending in a delta window (the lazy fast path: no gather). */
export function lazyRowsSql(p: TablePlan, window: string): string {
  const cols = p.cols.map((col) => `t.${ident(col).text}`).join(', ');
  return `SELECT ${cols} FROM ${p.q} t WHERE (${p.keys.map((k) => `t.${ident(k).text}`).join(', ')}) IN (
                     SELECT ${p.keyList} FROM ${p.delta} WHERE ${window})`;
}

/** COPY them out (see lazyRowsSql). */
export function lazyCopyOutSql(p: TablePlan, window: string): string {
  return copyOutSql(lazyRowsSql(p, window));
}

/** COPY a query's rows out. */
export function copyOutSql(select: string): string {
  return `COPY (${select}) TO STDOUT`;
}

/**
 * The rows of `select` (its columns named as the table's) but those with the keys given, each as
 * its columns' text: compared as text, never through the table's row type (whose NOT NULL
 * domains would refuse a row of keys alone) nor JSON numbers (a bigint past 2^53).
 */
export function withoutKeysSql(p: TablePlan, select: string, keys: readonly (readonly string[])[]): string {
  const same = p.keys.map((k, i) => `x.${ident(k).text}::text = o->>${i}`).join(' AND ');
  return `SELECT x.* FROM (${select}) x
           WHERE NOT EXISTS (SELECT 1 FROM json_array_elements(${literal(JSON.stringify(keys))}::json) o WHERE ${same})`;
}

/**
 * The length of a value's text without building it where its type allows: the raw length of a
 * text-like value (read from its TOAST header), twice that of bytea plus 2 (hex). Other types: the
 * text's length (`text`: built, exact) or the stored size (`stored`: for values that may be too
 * large to turn into text at all; arrays of text-like values are such others). Without a type,
 * the text's length.
 */
export function textSizeSql(c: string, type: string | undefined, other: 'text' | 'stored'): string {
  if (type === 'bytea') return `coalesce(2 * octet_length(${c}) + 2, 0)`;
  if (type === undefined || /^(text|character varying|character|json)(\(\d+\))?$/.test(type)) return `coalesce(octet_length(${c}::text), 0)`;
  return other === 'text' ? `coalesce(octet_length(${c}::text), 0)` : `coalesce(pg_column_size(${c}), 0)`;
}

/**
 * The `limit` rows of `select` with the most COPY text, estimated without building it (the values
 * of a row too large to move cannot be turned into text either): the raw length of text-like
 * values, twice that of bytea (hex), the stored size of others. `types`: of p.cols, in order. Each
 * row's key as JSON (`key`) and as a JSON array of its columns' text (`texts`).
 */
export function largestRowsSql(p: TablePlan, types: readonly string[], select: string, limit: number): string {
  const size = p.cols.map((col, i) => textSizeSql(`x.${ident(col).text}`, types[i], 'stored')).join(' + ');
  const key = p.keys.map((k) => `${literal(k)}, x.${ident(k).text}`).join(', ');
  const texts = p.keys.map((k) => `x.${ident(k).text}::text`).join(', ');
  return `SELECT jsonb_build_object(${key})::text AS key, json_build_array(${texts})::text AS texts, (${size})::bigint AS bytes
            FROM (${select}) x ORDER BY 3 DESC LIMIT ${Math.trunc(limit)}`;
}

/** COPY straight into the table (fast path, replica mode, fullcopy). */
export function tableCopyInSql(p: TablePlan): string {
  return `COPY ${p.q} (${p.colList}) FROM STDIN`;
}

/**
 * Before a lazy batch of $1 delta rows is read: does the table hold exactly $1 rows (`whole`:
 * counted up to $1 + 1, so never more than the batch is read), would hashing the batch beat index
 * probes (more than 1/20 of the table), and do the delta table's statistics know of fewer rows
 * than the batch alone holds (never analyzed: -1)?
 */
export function lazyPlanSql(p: TablePlan): string {
  return `SELECT (SELECT count(*) FROM (SELECT FROM ${p.q} LIMIT $1::bigint + 1) x) = $1::bigint AS whole,
                 $1::bigint * 20 > t.reltuples AS hash, $1::bigint > d.reltuples AS stale
            FROM pg_class t, pg_class d WHERE t.oid = ${literal(p.q)}::regclass AND d.oid = ${literal(p.delta)}::regclass`;
}

/** Every row of the table (a lazy batch that is the whole table, see lazyPlanSql). */
export function tableRowsSql(p: TablePlan): string {
  return `SELECT ${p.cols.map((col) => `t.${ident(col).text}`).join(', ')} FROM ${p.q} t`;
}

/**
 * Fresh statistics of a delta table. SKIP_LOCKED: a run of another sync analyzing it holds its
 * lock until that run commits, and this run does not wait for it (it plans without). Only the
 * table's owner may: for another role PostgreSQL skips it with a warning, not an error.
 */
export function analyzeDeltaSql(p: TablePlan): string {
  return `ANALYZE (SKIP_LOCKED) ${p.delta}`;
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

/**
 * The columns of a unique index of table $3 ($1 schema, $2 index name) as a JSON array, whether it
 * is opaque to a claim's resolution (an expression or a partial index: the holder cannot be found
 * by equal columns), and whether it takes NULLs as equal (NULLS NOT DISTINCT, PostgreSQL 15+). No
 * row: no such index on that table (a trigger's write to another table was refused).
 */
export function uniqueColumnsSql(): string {
  return `SELECT (SELECT json_agg(a.attname::text ORDER BY k.n)::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS cols,
                 (0 = ANY (i.indkey::int2[]) OR i.indpred IS NOT NULL) AS opaque,
                 coalesce((to_jsonb(i)->>'indnullsnotdistinct')::boolean, false) AS nulls_equal
            FROM pg_index i WHERE i.indexrelid = to_regclass(format('%I.%I', $1::text, $2::text)) AND i.indrelid = $3::regclass`;
}

/**
 * The row of the table holding the unique value (columns `cols`) a staged row ($1: ctid) claims
 * under another key. `nullsEqual`: the index takes NULLs as equal.
 */
export function uniqueHolderSql(p: TablePlan, cols: readonly string[], nullsEqual = false): string {
  const same = cols.map((c) => `t.${ident(c).text} ${nullsEqual ? 'IS NOT DISTINCT FROM' : '='} s.${ident(c).text}`).join(' AND ');
  const keyJson = `jsonb_build_object(${p.keys.map((k) => `${literal(k)}, t.${ident(k).text}`).join(', ')})`;
  return `SELECT t.ctid::text AS id, ${keyJson}::text AS key, to_jsonb(t)::text AS row
            FROM ${p.q} t JOIN ${tempNames(p).stage} s ON ${same}
           WHERE s.ctid = $1::tid AND NOT (${p.keyJoin('t', 's')})`;
}

/**
 * Which of two claims of one unique value wins: the staged row ($1: ctid, 'in') or the row held
 * here ($2: ctid, 'here'), each by its pending versions in ibex_all, ordered by the sync's
 * strategy (`order`, see winnerOrder). Rows in order of preference; a claim with no pending
 * version (it was settled before this run) has no row.
 */
export function claimOrderSql(p: TablePlan, order: string): string {
  const t = tempNames(p);
  const keys = p.keys.map((k) => `a.${ident(k).text}`).join(', ');
  return `SELECT which, ibex_src, ibex_ts::text AS ts FROM (
            SELECT 'in'::text AS which, a.ibex_src, a.ibex_ts, ${keys} FROM ${t.all} a JOIN ${t.stage} s ON ${p.keyJoin('a', 's')} WHERE s.ctid = $1::tid
            UNION ALL
            SELECT 'here'::text, a.ibex_src, a.ibex_ts, ${keys} FROM ${t.all} a JOIN ${p.q} h ON ${p.keyJoin('a', 'h')} WHERE h.ctid = $2::tid) c
          ORDER BY ${order}`;
}

/** Delete one row of the table by ctid ($1). */
export function deleteByIdSql(p: TablePlan): string {
  return `DELETE FROM ${p.q} WHERE ctid = $1::tid`;
}

/**
 * Stamp what follows as a change made on this db itself (captured, with no origin and not by a
 * sync): what ibex removes or touches to settle a conflict replicates to every db by the next run.
 */
export const localChangeSql = `SELECT set_config('ibex.origin', '', true), set_config('ibex.by', '', true), set_config('ibex.nocapture', 'off', true)`;

/**
 * A foreign key by name ($1) on or to a table ($2: its quoted name): the referencing (child) and
 * referenced (parent) tables and their columns in the key's order, as JSON arrays.
 */
export function foreignKeySql(): string {
  return `SELECT cn.nspname AS child_schema, cc.relname AS child_table, pn.nspname AS parent_schema, pc.relname AS parent_table,
                 (SELECT json_agg(a.attname::text ORDER BY k.n)::text FROM unnest(f.conkey) WITH ORDINALITY k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.attnum) AS child_cols,
                 (SELECT json_agg(a.attname::text ORDER BY k.n)::text FROM unnest(f.confkey) WITH ORDINALITY k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum) AS parent_cols
            FROM pg_constraint f
            JOIN pg_class cc ON cc.oid = f.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
            JOIN pg_class pc ON pc.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
           WHERE f.contype = 'f' AND f.conname = $1 AND $2::regclass IN (f.conrelid, f.confrelid)`;
}

/** `t.c = (v).c AND …` for a row `v` of JSON ($n) matching some columns of table `p`. */
function jsonMatch(p: TablePlan, cols: readonly string[], param: number): string {
  return cols.map((c) => `t.${ident(c).text} = (jsonb_populate_record(NULL::${p.q}, $${param}::jsonb)).${ident(c).text}`).join(' AND ');
}

/** A source's pending version of one key ($1: the key as JSON): its change time and origin. */
export function pendingVersionSql(p: TablePlan): string {
  return `SELECT ibex_ts::text AS ts FROM ${tempNames(p).pend} t WHERE ${jsonMatch(p, p.keys, 1)}`;
}

/** The rows of a child table whose columns `cols` hold the values of $1 (JSON, by those column names). */
export function childrenSql(p: TablePlan, cols: readonly string[]): string {
  const keyJson = `jsonb_build_object(${p.keys.map((k) => `${literal(k)}, t.${ident(k).text}`).join(', ')})`;
  return `SELECT ${keyJson}::text AS key, to_jsonb(t)::text AS row FROM ${p.q} t WHERE ${jsonMatch(p, cols, 1)}`;
}

/** Delete one row by key ($1: JSON). */
export function deleteByKeySql(p: TablePlan): string {
  return `DELETE FROM ${p.q} t WHERE ${jsonMatch(p, p.keys, 1)}`;
}

/** Rewrite one row by key ($1: JSON) unchanged: captured as a change of this db, so it replicates. */
export function touchByKeySql(p: TablePlan): string {
  const k = ident(p.keys[0]!).text;
  return `UPDATE ${p.q} t SET ${k} = t.${k} WHERE ${jsonMatch(p, p.keys, 1)} RETURNING to_jsonb(t)::text AS row`;
}

/** Order versions ($1: JSON array of {which, ibex_src, ibex_ts, k}) by a strategy's `order` (see winnerOrder, key expression `k`). */
export function versionOrderSql(order: string): string {
  return `SELECT which, ibex_src, ibex_ts::text AS ts FROM jsonb_to_recordset($1::jsonb) AS c(which text, ibex_src text, ibex_ts timestamptz, k text) ORDER BY ${order}`;
}

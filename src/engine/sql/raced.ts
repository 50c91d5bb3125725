/**
 * Keys raced by a local write (pure SQL text): the row versions a run sees of some staged keys,
 * the versions committed now, leaving raced keys out of a db's staged work, and re-queuing their
 * pending changes on the sources (see run/raced.ts).
 */
import { ident } from '../../db/ident.js';
import type { TablePlan } from '../plan.js';
import { tempNames } from './temp.js';

/** A JSON array of the key columns of alias `a` as text, then the row's xmin (NULL: no row). */
function versionOf(p: TablePlan, a: string): string {
  return `json_build_array(${p.keys.map((k) => `${a}.${ident(k).text}::text`).join(', ')}, t.xmin::text)`;
}

/** The key columns of alias `a` as text, as a row value. */
function keyTextRow(p: TablePlan, a: string): string {
  return `(${p.keys.map((k) => `${a}.${ident(k).text}::text`).join(', ')})`;
}

/** The elements of a JSON array of key text arrays ($n) as a row set, cast to `types` (undefined: compare as text). */
function keysFromJson(p: TablePlan, param: number, types: readonly (string | undefined)[]): string {
  return `SELECT ${p.keys.map((_, i) => `(x->>${i})${types[i] ? `::${types[i]}` : ''}`).join(', ')} FROM json_array_elements($${param}::json) x`;
}

/**
 * In the run's session: the distinct keys of a db's staged work (`stage` or `del`) and the xmin
 * of the row version the run sees there (NULL: no row), as `[key texts…, xmin]` JSON.
 */
export function seenVersionsSql(p: TablePlan, from: 'stage' | 'del'): string {
  return `SELECT coalesce(json_agg(${versionOf(p, 's')}), '[]')::text AS v
            FROM (SELECT DISTINCT ${p.keys.map((k) => `s.${ident(k).text}`).join(', ')} FROM ${tempNames(p)[from]} s) s
            LEFT JOIN ${p.q} t ON ${p.keyJoin('t', 's')}`;
}

/**
 * Outside the run (autocommit, the latest committed versions): the xmin of the rows of some keys
 * ($1: JSON array of key text arrays), as `[key texts…, xmin]` JSON. `types`: the key columns'
 * types, so the lookup uses the key's index.
 */
export function committedVersionsSql(p: TablePlan, types: readonly (string | undefined)[]): string {
  const keyRow = `(${p.keys.map((k) => `t.${ident(k).text}`).join(', ')})`;
  const typed = types.every((x) => x !== undefined);
  return `SELECT coalesce(json_agg(${versionOf(p, 't')}), '[]')::text AS v
            FROM ${p.q} t WHERE ${typed ? keyRow : keyTextRow(p, 't')} IN (${keysFromJson(p, 1, typed ? types : [])})`;
}

/** Leave some keys ($1: JSON array of key text arrays) out of a db's staged work. */
export function leaveOutSql(p: TablePlan, from: 'stage' | 'del'): string {
  return `DELETE FROM ${tempNames(p)[from]} s WHERE ${keyTextRow(p, 's')} IN (${keysFromJson(p, 1, [])})`;
}

/**
 * On a source, inside its run transaction: queue again the pending changes it gathered for some
 * keys ($1: JSON array of key text arrays; $2: the source's name) as delta rows of op 'R', with
 * their original change time and origin. They are written by the run's own transaction, so they
 * lie past the cursor this run sets: the next run reconsiders those keys as this source's changes.
 */
export function requeueSql(p: TablePlan): string {
  const keys = p.keys.map((k) => `m.${ident(k).text}`).join(', ');
  return `INSERT INTO ${p.delta} (${p.keyList}, ibex_op, ibex_origin, ibex_by, ibex_ts)
            SELECT ${keys}, 'R', nullif(m.ibex_origin, $2::text), NULL, m.ibex_ts
              FROM ${tempNames(p).pend} m WHERE ${keyTextRow(p, 'm')} IN (${keysFromJson(p, 1, [])})`;
}

/**
 * In the run's session: a staged row's ($1: ctid) key columns and the columns `cols` of a unique
 * index it claims, each as a JSON array of their text (the form the keys take everywhere here).
 */
export function stagedClaimSql(p: TablePlan, cols: readonly string[]): string {
  const texts = (names: readonly string[]): string => `json_build_array(${names.map((c) => `s.${ident(c).text}::text`).join(', ')})::text`;
  return `SELECT ${texts(p.keys)} AS key, ${texts(cols)} AS vals FROM ${tempNames(p).stage} s WHERE s.ctid = $1::tid`;
}

/**
 * Outside the run (the latest committed rows): the xmin of rows holding the unique values ($1:
 * JSON array of the texts of columns `cols`, typed `types`) under another key ($2: JSON array of
 * the key texts). `nullsEqual`: the index treats NULLs as equal (NULLS NOT DISTINCT).
 */
export function committedHoldersSql(p: TablePlan, cols: readonly string[], types: readonly (string | undefined)[], nullsEqual: boolean): string {
  const same = cols.map((c, i) => {
    const v = `($1::json->>${i})${types[i] ? `::${types[i]}` : ''}`;
    const col = `t.${ident(c).text}${types[i] ? '' : '::text'}`;
    return nullsEqual ? `${col} IS NOT DISTINCT FROM ${v}` : `${col} = ${v}`;
  }).join(' AND ');
  return `SELECT t.xmin::text AS x FROM ${p.q} t
           WHERE ${same} AND ${keyTextRow(p, 't')} IS DISTINCT FROM (${p.keys.map((_, i) => `($2::json->>${i})`).join(', ')})`;
}

/**
 * The SQL of `ibex validate` (pure: text only). Every statement reads a table
 * through its canonical text under ibex's pinned session settings, so the same
 * row prints, and hashes, the same on every database.
 */
import { ident, literal as lit, raw } from '../db/ident.js';
import { applyStatements, type TablePlan } from '../engine/plan.js';
import { forSync, unconsumed } from '../engine/window.js';

/** Seed of the bucket hash (any constant; the row hash uses 0, so the two are independent). */
const BUCKET_SEED = 1729;

const cols = (names: readonly string[], alias: string): string => names.map((c) => `${alias}.${ident(c).text}`).join(', ');

/** The key's identity: JSON array of the key columns' text values. */
export function keyJson(p: TablePlan, alias: string): string {
  return `to_json(ARRAY[${p.keys.map((k) => `${alias}.${ident(k).text}::text`).join(', ')}])::text`;
}

/** The key as the conflict log stores it (the runner's form: column name → typed JSON value). */
export function keyJsonb(p: TablePlan, alias: string): string {
  return `jsonb_build_object(${p.keys.map((k) => `${lit(k)}, ${alias}.${ident(k).text}`).join(', ')})::text`;
}

/** The 64-bit hash of a row's canonical text (columns by name, in the plan's order). */
export function rowHash(p: TablePlan, alias: string): string {
  return `hashtextextended(ROW(${cols(p.cols, alias)})::text, 0)`;
}

/** A row as a JSON array of its columns' text values. */
export function rowJson(p: TablePlan, alias: string): string {
  return `to_json(ARRAY[${p.cols.map((c) => `${alias}.${ident(c).text}::text`).join(', ')}])::text`;
}

function bucket(p: TablePlan, alias: string): string {
  // One key column: its text is unambiguous and cheaper to print than a one-column record.
  const text = p.keys.length === 1 ? `${alias}.${ident(p.keys[0]!).text}::text` : `ROW(${cols(p.keys, alias)})::text`;
  return `(hashtextextended(${text}, ${BUCKET_SEED}) & $1::bigint)`;
}

/**
 * About how many rows a table holds, every partition, never scanned: the
 * planner's way (the density the last ANALYZE saw times the current size; an
 * index build on an empty table leaves reltuples 0 however much is added
 * later). Without statistics, 64 bytes a row (too many buckets is cheap, too
 * few makes narrowing move more). Parameter: $1 the quoted name.
 */
export function estimateSql(): string {
  return `SELECT coalesce(sum(CASE WHEN c.relpages > 0 AND c.reltuples > 0
                                   THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::float8)
                                   ELSE pg_relation_size(c.oid) / 64.0 END), 0)::float8 AS est
            FROM (SELECT $1::regclass AS relid UNION SELECT relid FROM pg_partition_tree($1::regclass)) pt
            JOIN pg_class c ON c.oid = pt.relid WHERE c.relkind = 'r'`;
}

/** Per bucket: row count and sum of row hashes. Parameter: $1 the bucket mask (N - 1). */
export function bucketSql(p: TablePlan): string {
  return `SELECT ${bucket(p, 't')}::int AS b, count(*) AS n, sum(${rowHash(p, 't')})::text AS h FROM ${p.q} t GROUP BY 1`;
}

/** Key identity and row hash of every row in some buckets. Parameters: $1 the mask, $2 bigint[] buckets. */
export function narrowSql(p: TablePlan): string {
  return `SELECT ${keyJson(p, 't')} AS k, ${rowHash(p, 't')}::text AS h FROM ${p.q} t
           WHERE ${bucket(p, 't')} IN (SELECT unnest($2::bigint[]))`;
}

/**
 * The typed keys of a list, as a FROM item `u` with columns named like the
 * key columns. Parameters $1…$n: one text[] per key column, cast with the
 * key's registered types (text in, the input function decides: values round-trip).
 */
function keysFrom(p: TablePlan, firstParam = 1): string {
  const params = p.keys.map((_, i) => `$${firstParam + i}::text[]`).join(', ');
  const names = p.keys.map((_, i) => `k${i}`).join(', ');
  const typed = p.keys.map((k, i) => `u.k${i}::${raw(p.rel.keyTypes[i] ?? 'text').text} AS ${ident(k).text}`).join(', ');
  return `(SELECT ${typed} FROM unnest(${params}) AS u(${names}))`;
}

/** Rows of some keys: identity, hash and (optionally) the row's text values. Parameters: one text[] per key column. */
export function byKeySql(p: TablePlan, withRows: boolean): string {
  return `SELECT ${keyJson(p, 't')} AS k, ${rowHash(p, 't')}::text AS h${withRows ? `, ${rowJson(p, 't')} AS r` : ''}
            FROM ${keysFrom(p)} u JOIN ${p.q} t ON ${p.keyJoin('t', 'u')}`;
}

/**
 * The runner's delta-window rule (src/engine/window.ts); a source without a cursor has
 * everything pending. Parameter: $1 the cursor (or NULL).
 */
export function windowFilter(sync: string, sourceNames: readonly string[]): string {
  return `($1::text IS NULL OR (${unconsumed('$1::text::pg_snapshot')}))
        AND ${forSync(sync, sourceNames)}`;
}

/** Which of some keys have pending delta rows on a source. Parameters: $1 cursor, $2 text[] key identities. */
export function pendingSql(p: TablePlan, sync: string, sourceNames: readonly string[]): string {
  return `SELECT DISTINCT ${keyJson(p, 'd')} AS k FROM ${p.delta} d
           WHERE ${windowFilter(sync, sourceNames)} AND ${keyJson(p, 'd')} IN (SELECT unnest($2::text[]))`;
}

/** Is a truncate of a table pending on a source? Parameters: $1 cursor, $2 schema, $3 table. */
export function pendingTruncateSql(sync: string, sourceNames: readonly string[]): string {
  return `SELECT EXISTS (SELECT 1 FROM ibex.truncates WHERE schemaname = $2 AND relname = $3 AND ${windowFilter(sync, sourceNames)}) AS p`;
}

// ---- repair ---------------------------------------------------------------------------------

/** Temp-table names of one table's repair. */
export function repairTemps(p: TablePlan): { keys: string; stage: string } {
  return { keys: `pg_temp.ibex_vkeys_${p.idx}`, stage: `pg_temp.ibex_vstage_${p.idx}` };
}

/** Create the repair's temp tables (dropped at commit), then fill the keys (parameters: one text[] per key column). */
export function repairSetupSql(p: TablePlan): { create: string; fill: string } {
  const t = repairTemps(p);
  return {
    create: `SET LOCAL client_min_messages = warning;
      DROP TABLE IF EXISTS ${t.keys}, ${t.stage};
      CREATE TEMP TABLE ${t.keys.slice('pg_temp.'.length)} ON COMMIT DROP AS SELECT ${p.keyList} FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE ${t.stage.slice('pg_temp.'.length)} ON COMMIT DROP AS SELECT ${p.colList} FROM ${p.q} WITH NO DATA;`,
    fill: `INSERT INTO ${t.keys} (${p.keyList}) SELECT * FROM ${keysFrom(p)} u`,
  };
}

/** The repair source's rows of the keys, as COPY text. */
export function repairCopyOutSql(p: TablePlan): string {
  return `COPY (SELECT ${cols(p.cols, 't')} FROM ${p.q} t JOIN ${repairTemps(p).keys} k ON ${p.keyJoin('t', 'k')}) TO STDOUT`;
}

/** Where the repair source's rows land on a target. */
export function repairCopyInSql(p: TablePlan): string {
  return `COPY ${repairTemps(p).stage} (${p.colList}) FROM STDIN`;
}

/** The version of every key on the repair source (conflict-log forms). */
export function repairWinnersSql(p: TablePlan): string {
  return `SELECT ${keyJson(p, 'k')} AS k, ${keyJsonb(p, 'k')} AS key, (SELECT to_jsonb(t)::text FROM ${p.q} t WHERE ${p.keyJoin('t', 'k')}) AS row
            FROM ${repairTemps(p).keys} k`;
}

/** On a target: the keys whose row differs from the staged one, with the version about to be overwritten. */
export function repairChangesSql(p: TablePlan): string {
  const t = repairTemps(p);
  return `SELECT k, key, here FROM (
            SELECT ${keyJson(p, 'k')} AS k, ${keyJsonb(p, 'k')} AS key,
                   (SELECT to_jsonb(t)::text FROM ${p.q} t WHERE ${p.keyJoin('t', 'k')}) AS here,
                   (SELECT ROW(${cols(p.cols, 't')})::text FROM ${p.q} t WHERE ${p.keyJoin('t', 'k')}) AS here_text,
                   (SELECT ROW(${cols(p.cols, 's')})::text FROM ${t.stage} s WHERE ${p.keyJoin('s', 'k')}) AS want_text
              FROM ${t.keys} k) x
           WHERE here_text IS DISTINCT FROM want_text`;
}

/** On a target: delete the keys the repair source does not have. */
export function repairDeleteSql(p: TablePlan): string {
  const t = repairTemps(p);
  return `DELETE FROM ${p.q} t USING ${t.keys} k WHERE ${p.keyJoin('t', 'k')}
            AND NOT EXISTS (SELECT 1 FROM ${t.stage} s WHERE ${p.keyJoin('s', 'k')})`;
}

/**
 * On a target: upsert the staged rows that differ (never delete-then-insert: no cascades, no user
 * delete triggers); on a table with rules, an UPDATE then an INSERT (one text, several statements).
 */
export function repairUpsertSql(p: TablePlan): string {
  const t = repairTemps(p);
  return applyStatements(p, t.stage,
    `NOT EXISTS (SELECT 1 FROM ${p.q} t WHERE ${p.keyJoin('t', 's')} AND ROW(${cols(p.cols, 't')})::text = ROW(${cols(p.cols, 's')})::text)`).join(';\n');
}

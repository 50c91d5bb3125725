/**
 * SQLite SQL text for the SQLite target: identifier quoting, the type mapping, and the pure
 * statement builders (exact-text unit tests in test/unit/sqlite-dialect.test.ts).
 */
import { pgType } from '../codec.js';
import type { TableSpec } from '../target.js';

/** Bound parameters per statement: SQLITE_MAX_VARIABLE_NUMBER since 3.32 (999 before). */
export const SQLITE_MAX_PARAMS = 32_766;
/** Rows per multi-row statement: beyond a few hundred the statement is longer without being faster. */
export const SQLITE_MAX_ROWS = 500;

/** The progress table: one row per sync and source, written in the run's transaction. */
export const PROGRESS_TABLE = 'ibex_progress';

/** Quote an identifier for SQLite: double quotes, inner quotes doubled; empty names and NUL refused. */
export function quoteIdent(name: string): string {
  if (name === '' || name.includes('\0')) throw new Error(`not a usable SQLite identifier: ${JSON.stringify(name)}`);
  return '"' + name.replaceAll('"', '""') + '"';
}

/** The SQLite column type ibex creates for a PostgreSQL type (targets.md, "Type mapping"). */
export function sqliteType(pgTypeText: string): 'INTEGER' | 'REAL' | 'TEXT' | 'BLOB' {
  switch (pgType(pgTypeText).cls) {
    case 'int':
    case 'bool':
      return 'INTEGER';
    case 'float':
      return 'REAL';
    case 'bytes':
      return 'BLOB';
    default:
      // numeric stays exact as TEXT; times are ISO 8601 text; json and arrays are JSON text.
      return 'TEXT';
  }
}

/** The affinity SQLite gives a declared column type (sqlite.org/datatype3.html, section 3.1). */
export function affinityOf(declared: string): 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC' {
  const t = declared.toUpperCase();
  if (t.includes('INT')) return 'INTEGER';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT';
  if (t.includes('BLOB') || t.trim() === '') return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL';
  return 'NUMERIC';
}

/**
 * The affinities that hold every value of a PostgreSQL type without conversion, and why others
 * do not. NUMERIC/INTEGER affinity turns the text '007' into 7 and REAL affinity rounds
 * 9223372036854775807, so text-like values need TEXT (or no) affinity and integers no REAL.
 */
export function affinityProblem(pgTypeText: string, affinity: ReturnType<typeof affinityOf>): string | null {
  const cls = pgType(pgTypeText).cls;
  const ok = (list: string[]): boolean => list.includes(affinity);
  switch (cls) {
    case 'int':
      return ok(['INTEGER', 'NUMERIC', 'BLOB', 'TEXT']) ? null : 'REAL affinity rounds integers beyond 2^53; declare it INTEGER';
    case 'bool':
      return null;
    case 'float':
      return ok(['REAL', 'NUMERIC', 'INTEGER', 'BLOB']) ? null : 'TEXT affinity stores floats as text; declare it REAL';
    case 'bytes':
      return ok(['BLOB']) ? null : `${affinity} affinity is not a byte store; declare it BLOB`;
    default:
      return ok(['TEXT', 'BLOB'])
        ? null
        : `${affinity} affinity converts number-like text (e.g. '007' or '1.50') and loses digits; declare it TEXT`;
  }
}

/** CREATE TABLE for a source table: the mapping above, NOT NULL as on the source, the key as PRIMARY KEY. */
export function createTableSql(t: TableSpec): string {
  const cols = t.columns.map((c) => `  ${quoteIdent(c.name)} ${sqliteType(c.type)}${c.notNull ? ' NOT NULL' : ''}`);
  cols.push(`  PRIMARY KEY (${t.keys.map(quoteIdent).join(', ')})`);
  return `CREATE TABLE ${quoteIdent(t.targetName)} (\n${cols.join(',\n')}\n)`;
}

/** How many rows go in one upsert statement of this table. */
export function upsertChunkRows(columnCount: number): number {
  return Math.max(1, Math.min(SQLITE_MAX_ROWS, Math.floor(SQLITE_MAX_PARAMS / Math.max(1, columnCount))));
}

/**
 * A multi-row upsert: `INSERT … VALUES (…),(…) ON CONFLICT (key) DO UPDATE SET c = excluded.c`,
 * or `DO NOTHING` when every column is a key column. VALUES, never `INSERT … SELECT`, which
 * would need `WHERE true` to parse with ON CONFLICT.
 */
export function upsertSql(t: TableSpec, rows: number): string {
  const cols = t.columns.map((c) => quoteIdent(c.name));
  const tuple = '(' + cols.map(() => '?').join(', ') + ')';
  const keys = new Set(t.keys);
  const sets = t.columns.filter((c) => !keys.has(c.name)).map((c) => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`);
  const action = sets.length === 0 ? 'DO NOTHING' : `DO UPDATE SET ${sets.join(', ')}`;
  return (
    `INSERT INTO ${quoteIdent(t.targetName)} (${cols.join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')}` +
    ` ON CONFLICT (${t.keys.map(quoteIdent).join(', ')}) ${action}`
  );
}

/** How many keys go in one delete statement. */
export function deleteChunkKeys(keyCount: number): number {
  return Math.max(1, Math.min(SQLITE_MAX_ROWS * 2, Math.floor(SQLITE_MAX_PARAMS / Math.max(1, keyCount))));
}

/** `DELETE … WHERE k IN (?, …)`, or with row values `(k1, k2) IN (VALUES (?, ?), …)` for a composite key. */
export function deleteSql(t: TableSpec, keys: number): string {
  const target = quoteIdent(t.targetName);
  if (t.keys.length === 1) {
    return `DELETE FROM ${target} WHERE ${quoteIdent(t.keys[0] as string)} IN (${Array.from({ length: keys }, () => '?').join(', ')})`;
  }
  const tuple = '(' + t.keys.map(() => '?').join(', ') + ')';
  return (
    `DELETE FROM ${target} WHERE (${t.keys.map(quoteIdent).join(', ')}) IN ` +
    `(VALUES ${Array.from({ length: keys }, () => tuple).join(', ')})`
  );
}

/** Every row of a table, columns in source order, by key. */
export function scanSql(t: TableSpec): string {
  return `SELECT ${t.columns.map((c) => quoteIdent(c.name)).join(', ')} FROM ${quoteIdent(t.targetName)} ORDER BY ${t.keys.map(quoteIdent).join(', ')}`;
}

/**
 * The progress table, created on first use inside the run's transaction. `epoch`: the lease of
 * the daemon that wrote the row (the fencing token; NULL from runs outside any daemon).
 */
export const PROGRESS_DDL =
  `CREATE TABLE IF NOT EXISTS ${quoteIdent(PROGRESS_TABLE)} (sync TEXT NOT NULL, source TEXT NOT NULL, ` +
  'snapshot TEXT NOT NULL, run INTEGER NOT NULL, applied TEXT NOT NULL, epoch INTEGER, PRIMARY KEY (sync, source))';

/** The columns of the progress table (one made by an older ibex has no epoch). */
export const PROGRESS_COLUMNS_SQL = `SELECT name FROM pragma_table_info('${PROGRESS_TABLE}')`;

/** Adds the epoch column to such a table. */
export const PROGRESS_ADD_EPOCH_SQL = `ALTER TABLE ${quoteIdent(PROGRESS_TABLE)} ADD COLUMN epoch INTEGER`;

/**
 * The newest epoch among a sync's progress rows. The run's transaction is BEGIN IMMEDIATE: it
 * holds the file's write lock from its start, so this reads the latest commit and no other
 * writer can commit before this transaction ends.
 */
export const PROGRESS_FENCE_SQL = `SELECT COALESCE(MAX(epoch), 0) AS epoch FROM ${quoteIdent(PROGRESS_TABLE)} WHERE sync = ?`;

/** Upsert one progress row (sync, source, snapshot, run, applied, epoch); a row written without an epoch keeps the one it had. */
export const PROGRESS_UPSERT =
  `INSERT INTO ${quoteIdent(PROGRESS_TABLE)} (sync, source, snapshot, run, applied, epoch) VALUES (?, ?, ?, ?, ?, ?) ` +
  'ON CONFLICT (sync, source) DO UPDATE SET snapshot = excluded.snapshot, run = excluded.run, applied = excluded.applied, epoch = COALESCE(excluded.epoch, epoch)';

/** A sync's progress rows (its fence record left out). */
export const PROGRESS_SELECT = `SELECT source, snapshot, run FROM ${quoteIdent(PROGRESS_TABLE)} WHERE sync = ? AND source <> '*' ORDER BY source`;

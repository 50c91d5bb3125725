/**
 * The Oracle dialect of ibex, as pure functions: identifier quoting, the type mapping, the SQL
 * text of every statement, and each value's bind form (no driver is loaded here).
 *
 * Identifiers are always double-quoted exactly as PostgreSQL names them. Oracle folds unquoted
 * names to upper case, so a source table `orders` is the Oracle table `"orders"` (lower case),
 * which is not the table an unquoted `CREATE TABLE orders` makes (`ORDERS`). Quoting keeps every
 * name reachable (mixed case, reserved words, spaces) and the mapping one-to-one; `createTableSql`
 * makes tables under the same quoted names. Oracle refuses quoted names with `"` or NUL and names
 * over 128 bytes (12.2 and later); those are refused here with the fix.
 *
 * Values are bound, never inlined. Numbers go as their exact decimal text through `TO_NUMBER`
 * (the session pins NLS_NUMERIC_CHARACTERS to '.,'), timestamps as text through
 * `TO_TIMESTAMP(_TZ)` with an explicit format, so no digit or microsecond is lost in a JavaScript
 * number or Date.
 */
import { IbexError } from '../../errors.js';
import { decimalParts, decode, pgType, plainDecimal } from '../codec.js';
import type { ColumnSpec, TableSpec } from '../target.js';

/** How a value is bound (the target maps these to oracledb's bind types). */
export type BindKind = 'string' | 'double' | 'number' | 'blob' | 'clob' | 'raw';

/** How one column is written, read and created on Oracle. */
export interface OracleColumn {
  name: string;
  /** The quoted identifier. */
  ident: string;
  /** The PostgreSQL type (format_type text). */
  pgType: string;
  /** The Oracle column type for CREATE TABLE. */
  ddlType: string;
  kind: BindKind;
  /** The SQL expression that turns bind placeholder `p` into the column's value. */
  wrap(p: string): string;
  /** The SQL expression that reads column `c` back as something `textOf` turns into PostgreSQL text. */
  read(c: string): string;
  /** How the driver should fetch the read expression: as a string (CLOB), a buffer (BLOB), or by default. */
  fetchAs: 'string' | 'buffer' | undefined;
}

/** The longest identifier Oracle takes (bytes, 12.2 and later). */
export const MAX_IDENT_BYTES = 128;

/** The most significant digits an Oracle NUMBER holds. */
export const NUMBER_DIGITS = 38;

/** Bytes of a VARCHAR2 in the default (standard) MAX_STRING_SIZE. */
export const VARCHAR2_BYTES = 4000;

/** The progress table (upper case, so unquoted SQL of users finds it too). */
export const PROGRESS_TABLE = '"IBEX_PROGRESS"';

/** A value Oracle cannot hold; the row is refused with this reason. */
export class RefusedValue extends Error {}

/** A quoted Oracle identifier; refuses names Oracle cannot take. */
export function quoteIdent(name: string): string {
  if (name === '') throw new IbexError('config', 'an empty name cannot be an Oracle identifier');
  if (name.includes('"') || name.includes('\0')) {
    throw new IbexError('config', `name ${JSON.stringify(name)} holds a double quote or NUL, which Oracle identifiers cannot; give the table a customname or rename the column`);
  }
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_IDENT_BYTES) {
    throw new IbexError('config', `name "${name}" is ${bytes} bytes, over Oracle's ${MAX_IDENT_BYTES}-byte identifier limit; give the table a customname or rename the column`);
  }
  return `"${name}"`;
}

const TS_FORMAT = "'YYYY-MM-DD HH24:MI:SS.FF6'";
const TSTZ_FORMAT = "'YYYY-MM-DD HH24:MI:SS.FF6 TZH:TZM'";
const READ_TS = `'YYYY-MM-DD"T"HH24:MI:SS.FF6'`;

const asIs = (p: string): string => p;

/** The Oracle side of one column. */
export function oracleColumn(col: ColumnSpec, isKey: boolean): OracleColumn {
  const t = pgType(col.type);
  const ident = quoteIdent(col.name);
  const base = { name: col.name, ident, pgType: col.type, fetchAs: undefined as OracleColumn['fetchAs'] };
  const textual = (ddl: string): OracleColumn => ({ ...base, ddlType: ddl, kind: 'string', wrap: asIs, read: asIs });
  const clob = (): OracleColumn =>
    isKey ? textual(`VARCHAR2(${VARCHAR2_BYTES} CHAR)`) : { ...base, ddlType: 'CLOB', kind: 'clob', wrap: asIs, read: asIs, fetchAs: 'string' };
  switch (t.cls) {
    case 'int': {
      const digits = t.width === 2 ? 5 : t.width === 4 ? 10 : 19;
      return { ...base, ddlType: `NUMBER(${digits})`, kind: 'string', wrap: (p) => `TO_NUMBER(${p})`, read: (c) => `TO_CHAR(${c}, 'TM9')` };
    }
    case 'decimal': {
      const ddl = t.precision !== undefined && t.precision <= NUMBER_DIGITS ? `NUMBER(${t.precision},${t.scale ?? 0})` : 'NUMBER';
      return { ...base, ddlType: ddl, kind: 'string', wrap: (p) => `TO_NUMBER(${p})`, read: (c) => `TO_CHAR(${c}, 'TM9')` };
    }
    case 'float':
      return { ...base, ddlType: t.width === 4 ? 'BINARY_FLOAT' : 'BINARY_DOUBLE', kind: 'double', wrap: asIs, read: asIs };
    case 'bool':
      return { ...base, ddlType: 'NUMBER(1)', kind: 'number', wrap: asIs, read: asIs };
    case 'bytes':
      return { ...base, ddlType: 'BLOB', kind: 'blob', wrap: asIs, read: asIs, fetchAs: 'buffer' };
    case 'uuid':
      return { ...base, ddlType: 'RAW(16)', kind: 'raw', wrap: asIs, read: asIs };
    case 'timestamptz':
      return {
        ...base,
        ddlType: 'TIMESTAMP(6) WITH TIME ZONE',
        kind: 'string',
        wrap: (p) => `TO_TIMESTAMP_TZ(${p}, ${TSTZ_FORMAT})`,
        read: (c) => `CASE WHEN ${c} IS NULL THEN NULL ELSE TO_CHAR(SYS_EXTRACT_UTC(${c}), ${READ_TS}) || 'Z' END`,
      };
    case 'timestamp':
      return { ...base, ddlType: 'TIMESTAMP(6)', kind: 'string', wrap: (p) => `TO_TIMESTAMP(${p}, ${TS_FORMAT})`, read: (c) => `TO_CHAR(${c}, ${READ_TS})` };
    case 'date':
      return { ...base, ddlType: 'DATE', kind: 'string', wrap: (p) => `TO_DATE(${p}, 'YYYY-MM-DD')`, read: (c) => `TO_CHAR(${c}, 'YYYY-MM-DD')` };
    case 'time':
    case 'interval':
      return textual('VARCHAR2(64)');
    case 'json':
    case 'array':
      return clob();
    case 'text':
      if (t.base === 'character varying' && t.precision !== undefined && t.precision <= VARCHAR2_BYTES) return textual(`VARCHAR2(${t.precision} CHAR)`);
      if (t.base === 'character' && t.precision !== undefined && t.precision <= 2000) return textual(`CHAR(${t.precision} CHAR)`);
      return clob();
  }
}

/** The Oracle columns of a table, in column order, and the index of each key column. */
export interface OracleTable {
  ident: string;
  columns: OracleColumn[];
  keyIdx: number[];
}

/** A table's Oracle form; throws IbexError('config') for a name Oracle cannot take. */
export function oracleTable(table: TableSpec): OracleTable {
  const names = table.columns.map((c) => c.name);
  const keyIdx = table.keys.map((k) => {
    const i = names.indexOf(k);
    if (i < 0) throw new IbexError('internal', `key column ${k} of ${table.label} is not among its columns`);
    return i;
  });
  return {
    ident: quoteIdent(table.targetName),
    columns: table.columns.map((c, i) => oracleColumn(c, keyIdx.includes(i))),
    keyIdx,
  };
}

/**
 * The MERGE that inserts or replaces one row (bound once per row through executeMany): binds
 * `:1…:n` are the columns in column order. Without non-key columns there is nothing to update,
 * so WHEN MATCHED is left out (Oracle refuses an empty SET).
 */
export function mergeSql(t: OracleTable): string {
  const src = t.columns.map((c, i) => `${c.wrap(`:${i + 1}`)} AS ${c.ident}`).join(', ');
  const on = t.keyIdx.map((i) => `d.${t.columns[i]!.ident} = s.${t.columns[i]!.ident}`).join(' AND ');
  const rest = t.columns.filter((_, i) => !t.keyIdx.includes(i));
  const matched = rest.length === 0 ? '' : ` WHEN MATCHED THEN UPDATE SET ${rest.map((c) => `d.${c.ident} = s.${c.ident}`).join(', ')}`;
  const cols = t.columns.map((c) => c.ident).join(', ');
  const vals = t.columns.map((c) => `s.${c.ident}`).join(', ');
  return `MERGE INTO ${t.ident} d USING (SELECT ${src} FROM dual) s ON (${on})${matched} WHEN NOT MATCHED THEN INSERT (${cols}) VALUES (${vals})`;
}

/** The DELETE of one key (bound once per key through executeMany): binds `:1…:k` in key order. */
export function deleteSql(t: OracleTable): string {
  const where = t.keyIdx.map((ci, k) => `${t.columns[ci]!.ident} = ${t.columns[ci]!.wrap(`:${k + 1}`)}`).join(' AND ');
  return `DELETE FROM ${t.ident} WHERE ${where}`;
}

/** Every row goes; DELETE, not TRUNCATE, because TRUNCATE is DDL and would commit the run half-way. */
export function truncateSql(t: OracleTable): string {
  return `DELETE FROM ${t.ident}`;
}

/** The SELECT of `scan`: every column as its read expression, aliased by its own name. */
export function scanSql(t: OracleTable): string {
  return `SELECT ${t.columns.map((c) => `${c.read(`${c.ident}`)} AS ${c.ident}`).join(', ')} FROM ${t.ident}`;
}

/** CREATE TABLE for a table (quoted names, a primary key on the key columns). */
export function createTableSql(table: TableSpec): string[] {
  const t = oracleTable(table);
  const cols = t.columns.map((c, i) => `  ${c.ident} ${c.ddlType}${table.columns[i]!.notNull || t.keyIdx.includes(i) ? ' NOT NULL' : ''}`);
  const pk = `  PRIMARY KEY (${t.keyIdx.map((i) => t.columns[i]!.ident).join(', ')})`;
  return [`CREATE TABLE ${t.ident} (\n${[...cols, pk].join(',\n')}\n)`];
}

/** The progress table. `EPOCH`: the lease of the daemon that wrote the row (the fencing token; NULL outside any daemon). */
export const CREATE_PROGRESS_SQL = `CREATE TABLE ${PROGRESS_TABLE} ("SYNC_NAME" VARCHAR2(128 CHAR) NOT NULL, "SOURCE" VARCHAR2(128 CHAR) NOT NULL, "SNAPSHOT" CLOB NOT NULL, "RUN" NUMBER(19) NOT NULL, "EPOCH" NUMBER(19), PRIMARY KEY ("SYNC_NAME", "SOURCE"))`;

/** Does IBEX_PROGRESS have the EPOCH column (one made by an older ibex has not)? */
export const PROGRESS_HAS_EPOCH_SQL = `SELECT COUNT(*) FROM USER_TAB_COLUMNS WHERE TABLE_NAME = 'IBEX_PROGRESS' AND COLUMN_NAME = 'EPOCH'`;

/** Adds it. */
export const PROGRESS_ADD_EPOCH_SQL = `ALTER TABLE ${PROGRESS_TABLE} ADD ("EPOCH" NUMBER(19))`;

/** The progress of one sync (its fence record left out): binds `:1` = sync. */
export const READ_PROGRESS_SQL = `SELECT "SOURCE", "SNAPSHOT", "RUN" FROM ${PROGRESS_TABLE} WHERE "SYNC_NAME" = :1 AND "SOURCE" <> '*' ORDER BY "SOURCE"`;

/**
 * The epochs of a sync's progress rows, locked until the transaction ends (Oracle refuses FOR
 * UPDATE with an aggregate, so the newest is taken by the caller): a new owner's write of these
 * rows waits for this transaction. Binds `:1` = sync.
 */
export const PROGRESS_FENCE_SQL = `SELECT "EPOCH" FROM ${PROGRESS_TABLE} WHERE "SYNC_NAME" = :1 FOR UPDATE`;

/** Insert or replace one progress row: binds sync, source, snapshot, run, epoch (NULL keeps the row's). */
export const WRITE_PROGRESS_SQL =
  `MERGE INTO ${PROGRESS_TABLE} d USING (SELECT :1 AS "SYNC_NAME", :2 AS "SOURCE", :3 AS "SNAPSHOT", TO_NUMBER(:4) AS "RUN", TO_NUMBER(:5) AS "EPOCH" FROM dual) s` +
  ` ON (d."SYNC_NAME" = s."SYNC_NAME" AND d."SOURCE" = s."SOURCE")` +
  ` WHEN MATCHED THEN UPDATE SET d."SNAPSHOT" = s."SNAPSHOT", d."RUN" = s."RUN", d."EPOCH" = NVL(s."EPOCH", d."EPOCH")` +
  ` WHEN NOT MATCHED THEN INSERT ("SYNC_NAME", "SOURCE", "SNAPSHOT", "RUN", "EPOCH") VALUES (s."SYNC_NAME", s."SOURCE", s."SNAPSHOT", s."RUN", s."EPOCH")`;

/** The session every connection gets: numbers with '.', times in UTC. */
export const SESSION_SQL = [`ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'`, `ALTER SESSION SET TIME_ZONE = '+00:00'`];

/** The columns of a table on the target (user's schema): binds `:1` = table name as stored. */
export const TABLE_COLUMNS_SQL = 'SELECT COLUMN_NAME, DATA_TYPE FROM USER_TAB_COLUMNS WHERE TABLE_NAME = :1 ORDER BY COLUMN_ID';

/** The primary key columns of a table, in key order: binds `:1` = table name as stored. */
export const TABLE_PK_SQL =
  "SELECT cc.COLUMN_NAME FROM USER_CONSTRAINTS c JOIN USER_CONS_COLUMNS cc ON cc.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND cc.OWNER = c.OWNER WHERE c.TABLE_NAME = :1 AND c.CONSTRAINT_TYPE = 'P' ORDER BY cc.POSITION";

// ---------------------------------------------------------------- values

/** Significant digits of a canonical decimal (leading and trailing zeros do not count) and its decimal exponent. */
function numberShape(text: string): { digits: number; exponent: number } {
  const p = decimalParts(text);
  const all = p.int + p.frac;
  const lead = all.length - all.replace(/^0+/, '').length;
  const sig = all.replace(/^0+/, '').replace(/0+$/, '');
  // The position of the first significant digit relative to the decimal point.
  const exponent = p.int.length - lead - 1;
  return { digits: sig.length, exponent };
}

function timestampText(parts: { year: number; month: number; day: number; hour: number; minute: number; second: number; micro: number }, column: string): string {
  if (parts.year < 1 || parts.year > 9999) {
    throw new RefusedValue(`column ${column} is in year ${parts.year}, outside the years 1 to 9999 that ibex writes to Oracle; change the value or leave the table out of this target`);
  }
  const pad = (n: number, w: number): string => String(n).padStart(w, '0');
  return `${pad(parts.year, 4)}-${pad(parts.month, 2)}-${pad(parts.day, 2)} ${pad(parts.hour, 2)}:${pad(parts.minute, 2)}:${pad(parts.second, 2)}.${pad(parts.micro, 6)}`;
}

/** The bind value of one column's PostgreSQL text (null for NULL); throws RefusedValue for what Oracle cannot hold. */
export function bindValue(col: OracleColumn, text: string | null): unknown {
  if (text === null) return null;
  const v = decode(col.pgType, text);
  switch (v.kind) {
    case 'int':
      return v.value.toString();
    case 'decimal': {
      if (v.special !== null) throw new RefusedValue(`column ${col.name} is ${v.special}, which an Oracle NUMBER cannot hold; change the value or leave the table out of this target`);
      const s = numberShape(v.value);
      if (s.digits > NUMBER_DIGITS) {
        throw new RefusedValue(`column ${col.name} has ${s.digits} significant digits, over the ${NUMBER_DIGITS} an Oracle NUMBER holds; round the value or leave the table out of this target`);
      }
      if (s.digits > 0 && (s.exponent > 125 || s.exponent < -130)) {
        throw new RefusedValue(`column ${col.name} is of magnitude 1E${s.exponent}, outside an Oracle NUMBER's 1E-130 to 1E125; change the value or leave the table out of this target`);
      }
      return v.value;
    }
    case 'float':
      return v.value;
    case 'bool':
      return v.value ? 1 : 0;
    case 'bytes':
      return v.value;
    case 'uuid':
      return Buffer.from(v.value.replace(/-/g, ''), 'hex');
    case 'timestamptz':
      if (v.special !== null) throw new RefusedValue(`column ${col.name} is ${v.special}, which an Oracle TIMESTAMP cannot hold; change the value or leave the table out of this target`);
      return `${timestampText(v.parts, col.name)} +00:00`;
    case 'timestamp':
      if (v.special !== null) throw new RefusedValue(`column ${col.name} is ${v.special}, which an Oracle TIMESTAMP cannot hold; change the value or leave the table out of this target`);
      return timestampText(v.parts, col.name);
    case 'date':
      if (v.special !== null) throw new RefusedValue(`column ${col.name} is ${v.special}, which an Oracle DATE cannot hold; change the value or leave the table out of this target`);
      return timestampText({ ...v.parts, hour: 0, minute: 0, second: 0, micro: 0 }, col.name).slice(0, 10);
    case 'time':
    case 'interval':
      return v.iso;
    case 'json':
      return text;
    case 'array':
      return v.json;
    case 'text': {
      if (v.value === '') {
        throw new RefusedValue(`column ${col.name} is an empty string, which Oracle stores as NULL; make it NULL or non-empty on the source, or leave the table out of this target`);
      }
      if (col.kind === 'string') {
        const bytes = Buffer.byteLength(v.value, 'utf8');
        if (bytes > VARCHAR2_BYTES) {
          throw new RefusedValue(`column ${col.name} is ${bytes} bytes, over the ${VARCHAR2_BYTES} an Oracle VARCHAR2 holds; shorten the value or leave the table out of this target`);
        }
      }
      return v.value;
    }
  }
}

/** A value as the driver fetched the read expression back, to text the codec reads as the column's type. */
export function textOf(col: OracleColumn, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const t = pgType(col.pgType);
  if (Buffer.isBuffer(v)) {
    const hex = v.toString('hex');
    if (t.cls === 'uuid') return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    return `\\x${hex}`;
  }
  if (typeof v === 'number') {
    if (t.cls === 'bool') return v === 0 ? 'f' : 't';
    return Object.is(v, -0) ? '-0' : String(v);
  }
  if (v instanceof Date) return v.toISOString();
  // TO_CHAR(…, 'TM9') switches to scientific notation past 64 characters (1E-100).
  if ((t.cls === 'int' || t.cls === 'decimal') && typeof v === 'string') return plainDecimal(v);
  return String(v);
}


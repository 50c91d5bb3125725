/**
 * MariaDB / MySQL SQL text: identifier quoting, the type mapping, and the pure statement
 * builders (exact-text unit tests in test/unit/mysql-dialect.test.ts).
 *
 * Identifiers are quoted with backticks, which mean the same under every sql_mode; ibex's
 * session still sets ANSI_QUOTES, so no text of ours relies on double quotes being strings.
 */
import { pgType } from '../codec.js';
import type { TableSpec } from '../target.js';

/** Which server the SQL is for: MariaDB, or MySQL ≥ 8.0.20 (the `AS new` upsert). */
export type MysqlFlavor = 'mariadb' | 'mysql';

/** Placeholders per prepared statement (ER_PS_MANY_PARAM above it). */
export const MYSQL_MAX_PARAMS = 65_535;
/**
 * Rows per multi-row statement. The engine hands rows on in batches of 5,000 (RowSink), so a batch
 * is ten statements of one size, and the server executes one while the next is encoded (sendBatched).
 */
export const MYSQL_MAX_ROWS = 500;
/** Characters of a text key column ibex creates: 768 × 4 bytes is InnoDB's 3072-byte index limit. */
export const TEXT_KEY_CHARS = 768;

/** The progress table: one row per sync and source, in the run's transaction. */
export const PROGRESS_TABLE = 'ibex_progress';

/** Session settings every connection gets (targets.md, "Session"). */
export const SESSION_SQL_MODE = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,ANSI_QUOTES';

/** Quote an identifier with backticks (inner backticks doubled); empty, NUL and trailing-blank names refused. */
export function quoteIdent(name: string): string {
  if (name === '' || name.includes('\0') || name.endsWith(' ')) {
    throw new Error(`not a usable MariaDB/MySQL identifier: ${JSON.stringify(name)}`);
  }
  return '`' + name.replaceAll('`', '``') + '`';
}

/** The binary, no-pad collation of utf8mb4 for text keys: trailing blanks and case both matter, as in PostgreSQL. */
export function keyCollation(flavor: MysqlFlavor): string {
  return flavor === 'mariadb' ? 'utf8mb4_nopad_bin' : 'utf8mb4_0900_bin';
}

/** Whether a text column of this PostgreSQL type has blanks that matter (varchar, text, enums), so a key needs NO PAD. */
export function blanksMatter(pgTypeText: string): boolean {
  const t = pgType(pgTypeText);
  return t.cls === 'text' && !t.padded;
}

/** The column type ibex creates for a PostgreSQL type (targets.md, "Type mapping"). */
export function mysqlType(pgTypeText: string, isKey: boolean, flavor: MysqlFlavor, keyChars = TEXT_KEY_CHARS): string {
  const t = pgType(pgTypeText);
  switch (t.cls) {
    case 'int':
      return t.width === 2 ? 'SMALLINT' : t.width === 4 ? 'INT' : 'BIGINT';
    case 'decimal': {
      const maxScale = 30;
      if (t.precision !== undefined && t.precision <= 65 && (t.scale ?? 0) <= maxScale && (t.scale ?? 0) >= 0) {
        return `DECIMAL(${t.precision},${t.scale ?? 0})`;
      }
      return 'DECIMAL(65,30)';
    }
    case 'float':
      return t.width === 4 ? 'FLOAT' : 'DOUBLE';
    case 'bool':
      return 'TINYINT(1)';
    case 'bytes':
      return isKey ? `VARBINARY(${keyChars * 4})` : 'LONGBLOB';
    case 'json':
    case 'array':
      return 'JSON';
    case 'uuid':
      return 'CHAR(36) CHARACTER SET ascii COLLATE ascii_bin';
    case 'timestamptz':
    case 'timestamp':
      return 'DATETIME(6)';
    case 'date':
      return 'DATE';
    case 'time':
      return t.base === 'time with time zone' ? 'VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin' : 'TIME(6)';
    case 'interval':
      return 'VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin';
    case 'text': {
      const coll = isKey ? ` CHARACTER SET utf8mb4 COLLATE ${keyCollation(flavor)}` : ' CHARACTER SET utf8mb4';
      if (t.padded) return `CHAR(${t.precision ?? 1})${coll}`;
      if (t.precision !== undefined && t.precision <= 16_383) return `VARCHAR(${t.precision})${coll}`;
      return isKey ? `VARCHAR(${keyChars})${coll}` : `LONGTEXT${coll}`;
    }
  }
}

/** Bytes of each MariaDB/MySQL integer type, signed range ±2^(8·bytes−1). */
export const INT_TYPE_BYTES: Readonly<Record<string, number>> = { tinyint: 1, smallint: 2, mediumint: 3, int: 4, bigint: 8 };

/** Decimal digits of the largest value of a PostgreSQL integer of this many bytes. */
const INT_DIGITS: Readonly<Record<number, number>> = { 2: 5, 4: 10, 8: 19 };

const TEXT_DATA_TYPES = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext']);
const BINARY_DATA_TYPES = new Set(['varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);

/** What `columnMismatch` needs of an existing column (information_schema.COLUMNS). */
export interface ExistingColumn {
  /** DATA_TYPE, lower case (`int`, `varchar`, `longtext` — MariaDB's JSON is LONGTEXT). */
  dataType: string;
  /** COLUMN_TYPE (`int(10) unsigned`). */
  columnType: string;
  maxChars: number | null;
  precision: number | null;
  scale: number | null;
}

/**
 * Why an existing column cannot hold every value of a PostgreSQL type, or null when it can: the
 * type ibex creates (mysqlType) and types obviously wider pass. Values a wide-enough type still
 * cannot take one by one (a too long text, a numeric with too many digits) are refused as rows
 * instead (encodeMysql); what this refuses would fail the whole statement under STRICT_ALL_TABLES,
 * or change the value silently. Cases `check()` words on its own (TIMESTAMP, short DATETIME,
 * decimal as FLOAT/DOUBLE, varchar as CHAR) pass here.
 */
export function columnMismatch(pgTypeText: string, col: ExistingColumn): string | null {
  const t = pgType(pgTypeText);
  const dt = col.dataType.toLowerCase();
  const DT = dt.toUpperCase();
  const unsigned = /\bunsigned\b/i.test(col.columnType);
  const textAtLeast = (n: number): boolean => (TEXT_DATA_TYPES.has(dt) && (col.maxChars === null || col.maxChars >= n));
  const notA = (what: string): string => `${DT} is not ${what}`;
  switch (t.cls) {
    case 'int': {
      const width = t.width ?? 8;
      const bytes = INT_TYPE_BYTES[dt];
      if (bytes !== undefined) {
        if (unsigned) return 'UNSIGNED has no negative values';
        return bytes < width ? `${DT} holds ${bytes} byte${bytes === 1 ? '' : 's'}, ${t.base} ${width}` : null;
      }
      if (dt === 'decimal') {
        const digits = (col.precision ?? 10) - (col.scale ?? 0);
        const need = INT_DIGITS[width] ?? 19;
        if (unsigned) return 'UNSIGNED has no negative values';
        return digits < need ? `DECIMAL(${col.precision ?? 10},${col.scale ?? 0}) has ${digits} integer digits, ${t.base} needs ${need}` : null;
      }
      return notA('an integer type');
    }
    case 'decimal':
      return dt === 'decimal' || dt === 'float' || dt === 'double' ? null : notA('DECIMAL');
    case 'float':
      if (dt === 'double') return null;
      if (dt === 'float') return t.width === 4 ? null : 'FLOAT keeps about 7 of the 17 digits of double precision';
      return notA('floating point');
    case 'bool':
      return INT_TYPE_BYTES[dt] !== undefined ? null : notA('an integer type');
    case 'bytes':
      if (BINARY_DATA_TYPES.has(dt)) return null;
      if (dt === 'binary') return 'BINARY pads shorter values with zero bytes';
      return TEXT_DATA_TYPES.has(dt) ? `${DT} holds characters, not bytes` : notA('a binary type');
    case 'json':
    case 'array':
      // MariaDB's JSON is LONGTEXT with a json_valid check; shorter text types would cut a document off.
      return dt === 'json' || dt === 'longtext' ? null : notA('JSON or LONGTEXT');
    case 'uuid':
      return dt === 'uuid' || textAtLeast(36) ? null : notA('text of at least 36 characters');
    case 'timestamptz':
    case 'timestamp':
      return dt === 'datetime' || dt === 'timestamp' ? null : notA('DATETIME');
    case 'date':
      return dt === 'date' ? null : notA('DATE');
    case 'time':
      if (t.base === 'time with time zone') return textAtLeast(32) ? null : notA('text of at least 32 characters');
      return dt === 'time' ? null : notA('TIME');
    case 'interval':
      return textAtLeast(64) ? null : notA('text of at least 64 characters');
    case 'text':
      if (TEXT_DATA_TYPES.has(dt)) return null;
      if (dt === 'enum' || dt === 'set') return `${DT} refuses any value not in its list`;
      return notA('a text type');
  }
}

/**
 * Characters each unbounded text (or bytea) key column gets, so that the whole key stays within
 * InnoDB's 3072-byte index limit (4 bytes per utf8mb4 character; 16 bytes allowed for any other key column).
 */
export function textKeyChars(t: TableSpec): number {
  let fixed = 0;
  let open = 0;
  for (const k of t.keys) {
    const c = t.columns.find((x) => x.name === k);
    const pt = pgType(c?.type ?? 'text');
    if ((pt.cls === 'text' && !pt.padded && (pt.precision === undefined || pt.precision > 16_383)) || pt.cls === 'bytes') open += 1;
    else if (pt.cls === 'text') fixed += 4 * (pt.precision ?? 1) + 2;
    else fixed += 16;
  }
  return open === 0 ? TEXT_KEY_CHARS : Math.max(1, Math.floor((3072 - fixed) / (4 * open)));
}

/** CREATE TABLE for a source table: InnoDB, utf8mb4, the key as PRIMARY KEY, no other unique key. */
export function createTableSql(t: TableSpec, flavor: MysqlFlavor): string {
  const keys = new Set(t.keys);
  const chars = textKeyChars(t);
  const cols = t.columns.map((c) => `  ${quoteIdent(c.name)} ${mysqlType(c.type, keys.has(c.name), flavor, chars)}${c.notNull ? ' NOT NULL' : ' NULL'}`);
  cols.push(`  PRIMARY KEY (${t.keys.map(quoteIdent).join(', ')})`);
  return `CREATE TABLE ${quoteIdent(t.targetName)} (\n${cols.join(',\n')}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`;
}

/**
 * A multi-row upsert. MariaDB: `… ON DUPLICATE KEY UPDATE c = VALUES(c)` (it rejects the alias
 * form). MySQL ≥ 8.0.20: `… AS new ON DUPLICATE KEY UPDATE c = new.c` (VALUES() is deprecated
 * there). A table of key columns only updates its first key to itself. Never REPLACE: it deletes
 * and reinserts, firing cascades and triggers.
 */
export function upsertSql(t: TableSpec, rows: number, flavor: MysqlFlavor): string {
  const cols = t.columns.map((c) => quoteIdent(c.name));
  const tuple = '(' + cols.map(() => '?').join(', ') + ')';
  const keys = new Set(t.keys);
  const nonKey = t.columns.filter((c) => !keys.has(c.name)).map((c) => quoteIdent(c.name));
  const head = `INSERT INTO ${quoteIdent(t.targetName)} (${cols.join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')}`;
  if (nonKey.length === 0) {
    const k = quoteIdent(t.keys[0] as string);
    return `${head} ON DUPLICATE KEY UPDATE ${k} = ${k}`;
  }
  if (flavor === 'mariadb') return `${head} ON DUPLICATE KEY UPDATE ${nonKey.map((c) => `${c} = VALUES(${c})`).join(', ')}`;
  return `${head} AS \`new\` ON DUPLICATE KEY UPDATE ${nonKey.map((c) => `${c} = \`new\`.${c}`).join(', ')}`;
}

/** `DELETE … WHERE k IN (?, …)`, or `WHERE (k1, k2) IN ((?, ?), …)` for a composite key. */
export function deleteSql(t: TableSpec, keys: number): string {
  const table = quoteIdent(t.targetName);
  if (t.keys.length === 1) {
    return `DELETE FROM ${table} WHERE ${quoteIdent(t.keys[0] as string)} IN (${Array.from({ length: keys }, () => '?').join(', ')})`;
  }
  const tuple = '(' + t.keys.map(() => '?').join(', ') + ')';
  return `DELETE FROM ${table} WHERE (${t.keys.map(quoteIdent).join(', ')}) IN (${Array.from({ length: keys }, () => tuple).join(', ')})`;
}

/** Every row by key, columns in source order; FLOAT is read as DOUBLE, since its text output keeps only 6 digits. */
export function scanSql(t: TableSpec): string {
  const cols = t.columns.map((c) => {
    const pt = pgType(c.type);
    return pt.cls === 'float' && pt.width === 4 ? `CAST(${quoteIdent(c.name)} AS DOUBLE)` : quoteIdent(c.name);
  });
  return `SELECT ${cols.join(', ')} FROM ${quoteIdent(t.targetName)} ORDER BY ${t.keys.map(quoteIdent).join(', ')}`;
}

/** Empty a table inside the run's transaction (TRUNCATE would commit it implicitly). */
export function truncateSql(t: TableSpec): string {
  return `DELETE FROM ${quoteIdent(t.targetName)}`;
}

/**
 * The progress table. Created before the run's transaction starts, because DDL commits
 * implicitly; sync and source are bytes so no collation can merge two names. `epoch`: the lease
 * of the daemon that wrote the row (the fencing token; NULL from runs outside any daemon).
 */
export const PROGRESS_DDL =
  `CREATE TABLE IF NOT EXISTS ${quoteIdent(PROGRESS_TABLE)} (sync VARBINARY(512) NOT NULL, source VARBINARY(512) NOT NULL, ` +
  'snapshot LONGTEXT NOT NULL, run BIGINT NOT NULL, applied DATETIME(6) NOT NULL, epoch BIGINT NULL, PRIMARY KEY (sync, source)) ENGINE=InnoDB';

/** Does the progress table have the epoch column (a table made by an older ibex has not)? */
export const PROGRESS_HAS_EPOCH_SQL =
  `SELECT COUNT(*) AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '${PROGRESS_TABLE}' AND COLUMN_NAME = 'epoch'`;

/** Adds it (MySQL has no ADD COLUMN IF NOT EXISTS; the check above comes first). */
export const PROGRESS_ADD_EPOCH_SQL = `ALTER TABLE ${quoteIdent(PROGRESS_TABLE)} ADD COLUMN epoch BIGINT NULL`;

/**
 * The newest epoch among a sync's progress rows, read with a locking read: it sees the latest
 * committed rows (not the transaction's snapshot) and holds their locks and the gap after them
 * until commit, so a new owner's progress write waits for this transaction and the other way round.
 */
export const PROGRESS_FENCE_SQL = `SELECT COALESCE(MAX(epoch), 0) AS epoch FROM ${quoteIdent(PROGRESS_TABLE)} WHERE sync = ? FOR UPDATE`;

/**
 * Upsert one progress row (sync, source, snapshot, run, epoch); `applied` is the server's UTC
 * clock. A row written without an epoch keeps the one it had.
 */
export function progressUpsertSql(flavor: MysqlFlavor): string {
  const head = `INSERT INTO ${quoteIdent(PROGRESS_TABLE)} (sync, source, snapshot, run, epoch, applied) VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))`;
  if (flavor === 'mariadb') {
    return `${head} ON DUPLICATE KEY UPDATE snapshot = VALUES(snapshot), run = VALUES(run), epoch = COALESCE(VALUES(epoch), epoch), applied = VALUES(applied)`;
  }
  return `${head} AS \`new\` ON DUPLICATE KEY UPDATE snapshot = \`new\`.snapshot, run = \`new\`.run, epoch = COALESCE(\`new\`.epoch, ${quoteIdent(PROGRESS_TABLE)}.epoch), applied = \`new\`.applied`;
}

/** A sync's progress rows (its fence record left out). */
export const PROGRESS_SELECT = `SELECT source, snapshot, run FROM ${quoteIdent(PROGRESS_TABLE)} WHERE sync = ? AND source <> '*' ORDER BY source`;

/**
 * Split n items into statement sizes: as many full chunks as fit, then the rest as powers of
 * two, so a connection prepares at most a dozen distinct statements per table.
 */
export function chunkSizes(n: number, full: number): number[] {
  const out: number[] = [];
  let rest = n;
  while (rest >= full) {
    out.push(full);
    rest -= full;
  }
  for (let p = 1 << 30; p >= 1; p >>= 1) {
    if (rest >= p) {
      out.push(p);
      rest -= p;
    }
  }
  return out;
}

/**
 * The MariaDB and MySQL target (kinds `mariadb` and `mysql`, one implementation). A run is one
 * InnoDB transaction with the progress row inside it; rows go in as multi-row upserts of
 * prepared statements, under 65,535 placeholders and under max_allowed_packet.
 */
import type { Connection as CoreConnection } from 'mysql2';
import type * as Mysql2 from 'mysql2/promise';
import type { Connection, FieldPacket, ResultSetHeader } from 'mysql2/promise';
import { userInfo } from 'node:os';
import { IbexError } from '../../errors.js';
import { canonicalIntText, canonicalText, byteaText, CodecError, decimalParts, decode, isoDate, isoTime, jsonNumberLostAsDouble, pgType, plainNumericCanonical, utcTimestamptzIso } from '../codec.js';
import type {
  KeyRow,
  Problem,
  ProgressEntry,
  RefusedRow,
  TableSpec,
  Target,
  TargetCaps,
  TargetParams,
  TextRow,
  UpsertOutcome,
} from '../target.js';
import { epochOf, fencedMessage, otherUniqueProblem } from '../target.js';
import {
  blanksMatter,
  chunkSizes,
  columnMismatch,
  createTableSql,
  deleteSql,
  INT_TYPE_BYTES,
  keyCollation,
  MYSQL_MAX_PARAMS,
  MYSQL_MAX_ROWS,
  mysqlType,
  PROGRESS_ADD_EPOCH_SQL,
  PROGRESS_DDL,
  PROGRESS_FENCE_SQL,
  PROGRESS_HAS_EPOCH_SQL,
  PROGRESS_SELECT,
  progressUpsertSql,
  quoteIdent,
  scanSql,
  SESSION_SQL_MODE,
  textKeyChars,
  truncateSql,
  upsertSql as upsertSqlOf,
  type MysqlFlavor,
} from './mysql-dialect.js';

type Param = string | number | Buffer | null;

/** A value the target cannot hold: the reason, one line. */
export class Refusal {
  constructor(readonly reason: string) {}
}

/** What ibex needs to know of a target column to refuse, rather than let the server round or fail, a value. */
export interface ColumnLimits {
  dataType: string;
  /** Characters (text) or bytes (binary). */
  maxChars: number | null;
  maxBytes: number | null;
  precision: number | null;
  scale: number | null;
  /**
   * An integer column's range (`check()` refuses one narrower than its source type, but a column
   * altered after `add sync` can be): a value outside it is refused as a row, since the server
   * would fail the whole statement under STRICT_ALL_TABLES. Absent: no integer column.
   */
  intRange?: { min: bigint; max: bigint; unsigned: boolean } | undefined;
}

/** The range of an integer column of this DATA_TYPE, signed or not; undefined for other types. */
export function intRangeOf(dataType: string, unsigned: boolean): ColumnLimits['intRange'] {
  const bytes = INT_TYPE_BYTES[dataType];
  if (bytes === undefined) return undefined;
  const bits = BigInt(bytes * 8);
  return unsigned ? { min: 0n, max: (1n << bits) - 1n, unsigned } : { min: -(1n << (bits - 1n)), max: (1n << (bits - 1n)) - 1n, unsigned };
}

/** Whether an integer column of this range holds every value of a PostgreSQL integer type. */
function holdsEvery(range: NonNullable<ColumnLimits['intRange']>, pgTypeText: string): boolean {
  const bits = BigInt((pgType(pgTypeText).width ?? 8) * 8);
  return range.min <= -(1n << (bits - 1n)) && range.max >= (1n << (bits - 1n)) - 1n;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** The limits ibex's own mapping gives a column (used when the table's columns were not read). */
export function mappedLimits(pgTypeText: string, isKey: boolean, flavor: MysqlFlavor): ColumnLimits {
  const declared = mysqlType(pgTypeText, isKey, flavor);
  // MariaDB's JSON is an alias of LONGTEXT (its information_schema says longtext): it keeps the text.
  const dataType = flavor === 'mariadb' && declared === 'JSON' ? 'longtext' : (/^[A-Z]+/.exec(declared)?.[0] ?? '').toLowerCase();
  const num = /\((\d+)(?:,(\d+))?\)/.exec(declared);
  const isDecimal = dataType === 'decimal';
  const chars = !isDecimal && num !== null ? Number(num[1]) : dataType === 'longtext' ? 2 ** 32 - 1 : null;
  return {
    dataType,
    maxChars: dataType === 'varbinary' ? null : chars,
    maxBytes: dataType === 'longblob' || dataType === 'longtext' ? 2 ** 32 - 1 : dataType === 'varbinary' ? Number(num?.[1]) : null,
    precision: isDecimal ? Number(num?.[1]) : null,
    scale: isDecimal ? Number(num?.[2] ?? 0) : null,
  };
}

function dateTimeText(p: { year: number; month: number; day: number; hour: number; minute: number; second: number; micro: number }): string {
  return `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)} ${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(p.second, 2)}.${pad(p.micro, 6)}`;
}

const yearFits = (y: number): boolean => y >= 1 && y <= 9999;

/** One PostgreSQL text to the parameter bound for MariaDB/MySQL, or why it cannot be stored as it is. */
export function encodeMysql(type: string, text: string | null, limits: ColumnLimits): Param | Refusal {
  if (text === null) return null;
  let v;
  try {
    v = decode(type, text);
  } catch (e) {
    if (e instanceof CodecError) return new Refusal(e.message);
    throw e;
  }
  switch (v.kind) {
    case 'int': {
      const r = limits.intRange;
      if (r !== undefined && (v.value < r.min || v.value > r.max)) {
        return new Refusal(`${v.value} does not fit ${limits.dataType.toUpperCase()}${r.unsigned ? ' UNSIGNED' : ''} (${r.min} to ${r.max}); make it ${mysqlType(type, false, 'mariadb')}`);
      }
      return v.value.toString();
    }
    case 'decimal': {
      if (v.special !== null) return new Refusal(`${v.special} has no DECIMAL form; store it on the source as NULL or a number`);
      const p = decimalParts(v.value);
      const prec = limits.precision ?? 65;
      const scale = limits.scale ?? 30;
      if (p.int.length > prec - scale || p.frac.length > scale) {
        return new Refusal(
          `${clip(v.value)} has ${p.int.length} integer and ${p.frac.length} fraction digits; DECIMAL(${prec},${scale}) holds ${prec - scale} and ${scale} (65 digits at most): widen the column or change the value`,
        );
      }
      return v.value;
    }
    case 'float':
      if (v.special !== null) return new Refusal(`${v.special} cannot be stored in ${v.width === 4 ? 'FLOAT' : 'DOUBLE'}; store NULL or a finite number on the source`);
      return v.value;
    case 'bool':
      return v.value ? 1 : 0;
    case 'bytes':
      if (limits.maxBytes !== null && v.value.length > limits.maxBytes) {
        return new Refusal(`${v.value.length} bytes do not fit the column's ${limits.maxBytes}; widen it (LONGBLOB)`);
      }
      return v.value;
    case 'json':
      return limits.dataType === 'json' ? jsonRefusal(text) ?? text : text;
    case 'array':
      return limits.dataType === 'json' ? jsonRefusal(v.json) ?? v.json : v.json;
    case 'timestamptz':
    case 'timestamp':
      if (v.special !== null) return new Refusal(`${v.special} has no DATETIME form; use a real date on the source`);
      if (!yearFits(v.parts.year)) return new Refusal(`${v.iso} is outside DATETIME's years 0001-9999`);
      return dateTimeText(v.parts);
    case 'date':
      if (v.special !== null) return new Refusal(`${v.special} has no DATE form; use a real date on the source`);
      if (!yearFits(v.parts.year)) return new Refusal(`${v.iso} is outside DATE's years 0001-9999`);
      return isoDate(v.parts);
    case 'time':
      return v.offset === null ? isoTime(v.parts) : v.iso;
    case 'interval':
      return v.iso;
    case 'uuid':
      return v.value;
    case 'text': {
      const s = v.value;
      if (limits.maxChars !== null && s.length > limits.maxChars) {
        const n = [...s].length;
        if (n > limits.maxChars) return new Refusal(`${n} characters do not fit ${limits.dataType}(${limits.maxChars}); widen the column`);
      }
      if (limits.maxBytes !== null && s.length * 3 > limits.maxBytes && Buffer.byteLength(s) > limits.maxBytes) {
        return new Refusal(`${Buffer.byteLength(s)} bytes do not fit ${limits.dataType} (${limits.maxBytes} bytes); use LONGTEXT`);
      }
      return s;
    }
  }
}

/**
 * Why MySQL's JSON type (which parses the text; MariaDB's keeps it) would store a number of this
 * JSON as another one: a number with a fraction or exponent, or an integer beyond 64 bits, is
 * stored as a double.
 */
function jsonRefusal(json: string): Refusal | undefined {
  const lost = jsonNumberLostAsDouble(json, { int64: true });
  if (lost === undefined) return undefined;
  const d = Number(lost);
  const as = Number.isFinite(d) ? `would be stored by MySQL's JSON type as the double ${d}` : `is beyond the range of a double, which MySQL's JSON type stores it as`;
  return new Refusal(`json number ${clip(lost)} ${as}; keep it as a JSON string on the source, or make the column LONGTEXT`);
}

/** Encodes one non-NULL text of a column: `encodeMysql` of that column's type and limits. */
export type MysqlEncoder = (text: string) => Param | Refusal;

/**
 * `encodeMysql` for one column, resolved once: the forms a row mostly carries (an integer, a plain
 * numeric, a timestamptz in the pinned session's form, text) are encoded straight from the text
 * without decoding a Value; any other text takes `encodeMysql`, so the result is the same.
 */
export function mysqlEncoder(type: string, limits: ColumnLimits): MysqlEncoder {
  const general = (text: string): Param | Refusal => encodeMysql(type, text, limits);
  switch (pgType(type).cls) {
    case 'int':
      // A column narrower than the source type checks each value (general); the usual one need not.
      if (limits.intRange !== undefined && !holdsEvery(limits.intRange, type)) return general;
      return (text) => canonicalIntText(text) ?? general(text);
    case 'decimal': {
      const prec = limits.precision ?? 65;
      const scale = limits.scale ?? 30;
      return (text) => {
        const c = plainNumericCanonical(text);
        if (c === null) return general(text);
        const neg = c.charCodeAt(0) === 45 ? 1 : 0;
        const dot = c.indexOf('.');
        const intEnd = dot < 0 ? c.length : dot;
        // The canonical text's integer part is '0' only when it has no integer digits.
        const intDigits = intEnd - neg === 1 && c.charCodeAt(neg) === 48 ? 0 : intEnd - neg;
        const fracDigits = dot < 0 ? 0 : c.length - dot - 1;
        return intDigits > prec - scale || fracDigits > scale ? general(text) : c;
      };
    }
    case 'timestamptz':
      return (text) => {
        const iso = utcTimestamptzIso(text);
        // Year 0 is outside DATETIME: the general path says so.
        if (iso === null || iso.startsWith('0000')) return general(text);
        return iso.slice(0, 10) + ' ' + iso.slice(11, 26);
      };
    case 'text':
      return (text) => {
        if ((limits.maxChars !== null && text.length > limits.maxChars) || (limits.maxBytes !== null && text.length * 3 > limits.maxBytes)) return general(text);
        return text;
      };
    default:
      return general;
  }
}

/** Statements of one call sent ahead of their answers (see sendBatched). */
const IN_FLIGHT = 2;

function paramBytes(p: Param): number {
  if (p === null) return 1;
  if (typeof p === 'number') return 9;
  if (typeof p === 'string') return Buffer.byteLength(p) + 9;
  return p.length + 9;
}

/** A stored value (text protocol, strings for big numbers and dates) back to a text the codec canonicalizes. */
function storedText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return byteaText(v);
  return String(v);
}

interface ColumnRow {
  COLUMN_NAME: string;
  DATA_TYPE: string;
  COLUMN_TYPE: string;
  CHARACTER_MAXIMUM_LENGTH: string | number | null;
  CHARACTER_OCTET_LENGTH: string | number | null;
  NUMERIC_PRECISION: string | number | null;
  NUMERIC_SCALE: string | number | null;
  DATETIME_PRECISION: string | number | null;
  CHARACTER_SET_NAME: string | null;
  COLLATION_NAME: string | null;
  IS_NULLABLE: string;
  COLUMN_DEFAULT: string | null;
  EXTRA: string;
}

const numOrNull = (v: string | number | null): number | null => (v === null ? null : Number(v));

/** A collation in which trailing blanks count (NO PAD): MariaDB's `_nopad_`, MySQL 8's `_0900_`, or binary. */
export function isNoPad(collation: string): boolean {
  return collation === 'binary' || collation.includes('_nopad_') || collation.includes('_0900_');
}

/** A collation that compares bytes (no case or accent folding). */
export function isBinaryCollation(collation: string): boolean {
  return collation === 'binary' || collation.endsWith('_bin');
}

const TEXT_TYPES = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext', 'enum', 'set']);

class MysqlTarget implements Target {
  readonly kind: 'mariadb' | 'mysql';
  readonly name: string;
  readonly caps: TargetCaps = { transactional: true, progressInTxn: true, copyText: false };
  private readonly params: TargetParams;
  private readonly flavor: MysqlFlavor;
  private conn: Connection | null = null;
  /** The session died (server restart, network): the next connect() opens a new one. */
  private broken = false;
  private maxPacket = 16 << 20;
  private version = '';
  private progressReady = false;
  private readonly limits = new Map<string, Map<string, ColumnLimits>>();
  /** Column encoders per table, with the limits they were made under (new limits, new encoders). */
  private readonly encoders = new WeakMap<TableSpec, { limits: Map<string, ColumnLimits>; encoders: MysqlEncoder[] }>();

  constructor(params: TargetParams) {
    if (params.kind !== 'mariadb' && params.kind !== 'mysql') throw new IbexError('internal', `db ${params.name}: kind ${params.kind} is not mariadb or mysql`);
    this.kind = params.kind;
    this.flavor = params.kind;
    this.name = params.name;
    this.params = params;
    if (params.dbname === undefined || params.dbname === '') {
      throw new IbexError('config', `db ${params.name}: a ${params.kind} db needs dbname=<database>`);
    }
  }

  private get c(): Connection {
    if (this.conn === null) throw new IbexError('internal', `db ${this.name}: not connected`);
    return this.conn;
  }

  /** Run one statement on this session (ibex's own statements; also what tests use to prepare a server). */
  async sql(text: string, values: readonly Param[] = []): Promise<unknown[]> {
    try {
      const [rows] = await this.c.query(text, values as Param[]);
      return Array.isArray(rows) ? rows : [];
    } catch (e) {
      throw this.lost(e);
    }
  }

  private async exec(text: string, values: readonly Param[]): Promise<ResultSetHeader> {
    try {
      const [res] = (await this.c.execute(text, values as Param[])) as [ResultSetHeader, FieldPacket[]];
      return res;
    } catch (e) {
      throw this.lost(e);
    }
  }

  /**
   * A session that died (server stopped or restarted, network) as a one-line 'unreachable' error
   * naming the db (the run is retried, and the next begin() connects afresh); other errors as they are.
   */
  private lost(e: unknown): unknown {
    const err = e as { fatal?: boolean; code?: string; message?: string };
    const gone = this.broken || err.fatal === true || /closed state|PROTOCOL_CONNECTION_LOST|ECONNRESET|EPIPE|ECONNREFUSED/.test(`${err.code ?? ''} ${err.message ?? ''}`);
    if (!gone || e instanceof IbexError) return e;
    this.broken = true;
    return new IbexError('unreachable', `db ${this.name}: lost the connection to ${this.kind} at ${this.where()}: ${err.message ?? String(e)}`, { cause: e });
  }

  /** host:port/database, for messages. */
  private where(): string {
    return `${this.params.host ?? '127.0.0.1'}:${this.params.port ?? 3306}/${this.params.dbname}`;
  }

  async connect(): Promise<void> {
    if (this.conn !== null && !this.broken) return;
    if (this.conn !== null) await this.close();
    const where = this.where();
    let mysql: typeof Mysql2;
    try {
      mysql = await import('mysql2/promise');
    } catch (e) {
      throw new IbexError('unreachable', `db ${this.name}: the mysql2 driver cannot be loaded (${(e as Error).message}); run npm install`, { cause: e });
    }
    try {
      this.conn = await mysql.createConnection({
        host: this.params.host ?? '127.0.0.1',
        port: this.params.port ?? 3306,
        // As the mysql client does: the login name when no user is configured.
        user: this.params.user ?? userInfo().username,
        password: this.params.password ?? '',
        database: this.params.dbname,
        charset: 'utf8mb4',
        timezone: 'Z',
        dateStrings: true,
        supportBigNumbers: true,
        bigNumberStrings: true,
        decimalNumbers: false,
        jsonStrings: true,
        connectTimeout: 10_000,
        maxPreparedStatements: 256,
      });
      this.broken = false;
      // A fatal error with no command waiting is emitted as an event; unheard, it would end the process.
      this.conn.on('error', () => {
        this.broken = true;
      });
    } catch (e) {
      throw new IbexError('unreachable', `db ${this.name}: cannot connect to ${this.kind} at ${where}: ${(e as Error).message}`, { cause: e });
    }
    try {
      await this.sql('SET NAMES utf8mb4');
      await this.sql("SET time_zone = '+00:00'");
      await this.sql('SET sql_mode = ?', [SESSION_SQL_MODE]);
      const [row] = (await this.sql('SELECT VERSION() AS v, @@max_allowed_packet AS p')) as { v: string; p: string | number }[];
      this.version = row?.v ?? '';
      this.maxPacket = Number(row?.p ?? this.maxPacket);
    } catch (e) {
      await this.close();
      throw new IbexError('unreachable', `db ${this.name}: session setup failed on ${where}: ${(e as Error).message}`, { cause: e });
    }
    const isMaria = /mariadb/i.test(this.version);
    if (this.kind === 'mysql' && isMaria) {
      await this.close();
      throw new IbexError('config', `db ${this.name}: ${where} is MariaDB ${this.version}, not MySQL; declare the db with type=mariadb`);
    }
    if (this.kind === 'mariadb' && !isMaria) {
      await this.close();
      throw new IbexError('config', `db ${this.name}: ${where} is MySQL ${this.version}, not MariaDB; declare the db with type=mysql`);
    }
    if (this.kind === 'mysql' && !versionAtLeast(this.version, [8, 0, 20])) {
      await this.close();
      throw new IbexError('config', `db ${this.name}: MySQL ${this.version} is older than 8.0.20, which ibex's upsert needs; upgrade the server`);
    }
  }

  async probe(): Promise<{ version: string }> {
    return { version: `${this.kind === 'mariadb' ? 'MariaDB' : 'MySQL'} ${this.version}` };
  }

  private async columnsOf(table: string): Promise<ColumnRow[]> {
    return (await this.sql(
      `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,
              DATETIME_PRECISION, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE, COLUMN_DEFAULT, EXTRA
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
      [table],
    )) as ColumnRow[];
  }

  async check(tables: readonly TableSpec[]): Promise<Problem[]> {
    const problems: Problem[] = [];
    const [mode] = (await this.sql('SELECT @@SESSION.sql_mode AS m')) as { m: string }[];
    const noAutoOnZero = (mode?.m ?? '').split(',').includes('NO_AUTO_VALUE_ON_ZERO');
    for (const t of tables) {
      const p = (message: string): void => {
        problems.push({ table: t.label, message });
      };
      const name = t.targetName;
      const [info] = (await this.sql('SELECT ENGINE AS engine FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?', [name])) as { engine: string | null }[];
      if (info === undefined) {
        p(`table ${name} is missing on ${this.name}; create it (ibex schema prints the CREATE TABLE)`);
        continue;
      }
      if ((info.engine ?? '').toLowerCase() !== 'innodb') {
        p(`table ${name} uses engine ${info.engine ?? 'none'}, which has no transactions, so a failed run would stay half applied: ALTER TABLE ${quoteIdent(name)} ENGINE=InnoDB`);
      }
      const cols = await this.columnsOf(name);
      const byName = new Map(cols.map((c) => [c.COLUMN_NAME.toLowerCase(), c]));
      const keys = new Set(t.keys.map((k) => k.toLowerCase()));
      for (const c of t.columns) {
        const col = byName.get(c.name.toLowerCase());
        const isKey = keys.has(c.name.toLowerCase());
        if (col === undefined) {
          p(`column ${c.name} is missing in ${name} on ${this.name}; add it: ALTER TABLE ${quoteIdent(name)} ADD ${quoteIdent(c.name)} ${mysqlType(c.type, isKey, this.flavor)}`);
          continue;
        }
        const where = `column ${name}.${col.COLUMN_NAME} (${col.COLUMN_TYPE})`;
        const cls = pgType(c.type).cls;
        const dt = col.DATA_TYPE.toLowerCase();
        if ((cls === 'timestamptz' || cls === 'timestamp') && dt === 'timestamp') {
          p(`${where} is TIMESTAMP, which ends in 2038 and shifts with the session time zone; make it DATETIME(6)`);
        } else if ((cls === 'timestamptz' || cls === 'timestamp') && dt === 'datetime' && Number(col.DATETIME_PRECISION ?? 0) < 6) {
          p(`${where} rounds away microseconds of ${c.type}; make it DATETIME(6)`);
        }
        if (cls === 'decimal' && (dt === 'float' || dt === 'double')) {
          p(`${where} is binary floating point and would round ${c.type}; make it ${mysqlType(c.type, isKey, this.flavor)}`);
        }
        if (cls === 'text' && blanksMatter(c.type) && dt === 'char') {
          p(`${where} drops trailing blanks of ${c.type} values on read; make it VARCHAR`);
        }
        if (cls === 'time' && dt === 'time' && Number(col.DATETIME_PRECISION ?? 0) < (pgType(c.type).precision ?? 6)) {
          p(`${where} rounds away microseconds of ${c.type}; make it ${mysqlType(c.type, isKey, this.flavor)}`);
        }
        const mismatch = columnMismatch(c.type, {
          dataType: dt, columnType: col.COLUMN_TYPE, maxChars: numOrNull(col.CHARACTER_MAXIMUM_LENGTH),
          precision: numOrNull(col.NUMERIC_PRECISION), scale: numOrNull(col.NUMERIC_SCALE),
        });
        if (mismatch !== null) {
          // Under STRICT_ALL_TABLES a value the type cannot take fails its whole statement, and every retry with it.
          p(`${where} cannot hold ${c.type}: ${mismatch}; make it ${mysqlType(c.type, isKey, this.flavor, textKeyChars(t))}`);
        }
        if ((cls === 'text' || cls === 'json' || cls === 'array') && TEXT_TYPES.has(dt) && col.CHARACTER_SET_NAME !== null && col.CHARACTER_SET_NAME !== 'utf8mb4') {
          p(`${where} has character set ${col.CHARACTER_SET_NAME}, which cannot hold every character of ${c.type}; convert it to utf8mb4`);
        }
        if (isKey && col.COLLATION_NAME !== null && TEXT_TYPES.has(dt)) {
          const coll = col.COLLATION_NAME;
          if (!isBinaryCollation(coll)) {
            p(`key ${where} has collation ${coll}, under which different keys ('ABC' and 'abc') are one row: make it COLLATE ${keyCollation(this.flavor)}`);
          } else if (blanksMatter(c.type) && !isNoPad(coll)) {
            p(`key ${where} has collation ${coll}, which ignores trailing blanks ('x ' and 'x' are one row): make it COLLATE ${keyCollation(this.flavor)}`);
          }
        }
        if (isKey && /auto_increment/i.test(col.EXTRA) && !noAutoOnZero) {
          p(`key ${where} is AUTO_INCREMENT and the session lacks NO_AUTO_VALUE_ON_ZERO, so a key 0 would get a new number: allow sql_mode NO_AUTO_VALUE_ON_ZERO or drop AUTO_INCREMENT`);
        }
      }
      const src = new Set(t.columns.map((c) => c.name.toLowerCase()));
      for (const col of cols) {
        if (!src.has(col.COLUMN_NAME.toLowerCase()) && col.IS_NULLABLE === 'NO' && col.COLUMN_DEFAULT === null && !/auto_increment|generated/i.test(col.EXTRA)) {
          p(`column ${name}.${col.COLUMN_NAME} is NOT NULL without a default and not in the source table, so every insert would fail: drop it or give it a default`);
        }
      }
      await this.checkKeys(t, p);
    }
    return problems;
  }

  private async checkKeys(t: TableSpec, p: (m: string) => void): Promise<void> {
    const rows = (await this.sql(
      `SELECT INDEX_NAME AS ix, COLUMN_NAME AS col, SUB_PART AS sub FROM information_schema.STATISTICS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX`,
      [t.targetName],
    )) as { ix: string; col: string | null; sub: string | number | null }[];
    const uniques = new Map<string, { cols: string[]; prefix: boolean }>();
    for (const r of rows) {
      const u = uniques.get(r.ix) ?? { cols: [], prefix: false };
      u.cols.push((r.col ?? '(expression)').toLowerCase());
      if (r.sub !== null || r.col === null) u.prefix = true;
      uniques.set(r.ix, u);
    }
    const want = t.keys.map((k) => k.toLowerCase()).sort().join(',');
    let keyIndex: string | null = null;
    for (const [ix, u] of uniques) {
      if (!u.prefix && [...u.cols].sort().join(',') === want && (keyIndex === null || ix === 'PRIMARY')) keyIndex = ix;
    }
    if (keyIndex === null) {
      p(`table ${t.targetName} has no PRIMARY KEY or unique key on exactly (${t.keys.join(', ')}), so upserts cannot find rows: ALTER TABLE ${quoteIdent(t.targetName)} ADD PRIMARY KEY (${t.keys.map(quoteIdent).join(', ')})`);
    }
    for (const [ix, u] of uniques) {
      if (ix === keyIndex) continue;
      p(otherUniqueProblem(t.targetName, 'unique key', ix, u.cols, 'ON DUPLICATE KEY UPDATE fires on any unique key and would overwrite another row'));
    }
  }

  createTableSql(table: TableSpec): string[] {
    return [createTableSql(table, this.flavor)];
  }

  async begin(): Promise<void> {
    // A session the server dropped since the last run is replaced (throws 'unreachable' while it is down).
    if (this.conn === null || this.broken) await this.connect();
    if (!this.progressReady) {
      // DDL commits implicitly, so the progress table is made before the run's transaction.
      await this.sql(PROGRESS_DDL);
      const [has] = (await this.sql(PROGRESS_HAS_EPOCH_SQL)) as { n: number | string }[];
      if (Number(has?.n ?? 0) === 0) await this.sql(PROGRESS_ADD_EPOCH_SQL);
      this.progressReady = true;
    }
    this.limits.clear();
    // The run's transaction: with autocommit off it begins at the run's first statement. Off rather
    // than START TRANSACTION because a statement the server answers with a deadlock (or a lock
    // timeout under innodb_rollback_on_timeout) ends the transaction, and the statement already
    // sent behind it (sendBatched) would then commit on its own; with autocommit off it opens a new
    // transaction that the run's ROLLBACK undoes. Back on once the run has committed or rolled back.
    await this.sql('SET autocommit = 0');
  }

  async readProgress(sync: string): Promise<ProgressEntry[] | 'missing'> {
    let rows: { source: Buffer | string; snapshot: string; run: string | number }[];
    try {
      rows = (await this.sql(PROGRESS_SELECT, [sync])) as typeof rows;
    } catch (e) {
      // Before the first begin() on a new database the progress table does not exist yet: nothing applied.
      if ((e as { errno?: number }).errno === 1146) return [];
      throw e;
    }
    return rows.map((r) => ({ source: r.source.toString(), snapshot: r.snapshot, run: Number(r.run) }));
  }

  private async limitsOf(t: TableSpec): Promise<Map<string, ColumnLimits>> {
    let m = this.limits.get(t.targetName);
    if (m !== undefined) return m;
    m = new Map();
    const cols = new Map((await this.columnsOf(t.targetName)).map((c) => [c.COLUMN_NAME.toLowerCase(), c]));
    const keys = new Set(t.keys);
    for (const c of t.columns) {
      const col = cols.get(c.name.toLowerCase());
      if (col === undefined) {
        m.set(c.name, mappedLimits(c.type, keys.has(c.name), this.flavor));
        continue;
      }
      const dt = col.DATA_TYPE.toLowerCase();
      const binary = col.CHARACTER_SET_NAME === null && numOrNull(col.CHARACTER_OCTET_LENGTH) !== null;
      m.set(c.name, {
        dataType: dt,
        maxChars: binary ? null : numOrNull(col.CHARACTER_MAXIMUM_LENGTH),
        maxBytes: numOrNull(col.CHARACTER_OCTET_LENGTH),
        precision: dt === 'decimal' ? numOrNull(col.NUMERIC_PRECISION) : null,
        scale: dt === 'decimal' ? numOrNull(col.NUMERIC_SCALE) : null,
        intRange: intRangeOf(dt, /\bunsigned\b/i.test(col.COLUMN_TYPE)),
      });
    }
    this.limits.set(t.targetName, m);
    return m;
  }

  /** Bytes one statement's parameters may take: max_allowed_packet less room for the SQL text. */
  private get packetBudget(): number {
    return Math.floor(this.maxPacket * 0.9) - 65_536;
  }

  /**
   * Send items as multi-row statements: each item is encoded to `perItem` parameters (or skipped
   * when `encode` gives null), and a statement carries at most `full` items and stays under the
   * packet budget. Full statements go as they fill; what is left at the end goes in power-of-two
   * sizes (chunkSizes), so a session prepares few distinct statements. A statement is not awaited
   * before the next one is encoded: the server executes one while this process encodes the next
   * (the session still runs one at a time; a failure ends the call at the next statement or at the
   * end). Returns the items sent and the rows the server reports affected.
   */
  private async sendBatched<T>(items: readonly T[], perItem: number, full: number, sqlFor: (n: number) => string,
    encode: (item: T) => Param[] | null): Promise<{ sent: number; affected: number }> {
    let sent = 0;
    let affected = 0;
    let params: Param[] = [];
    let count = 0;
    let bytes = 0;
    // Statements sent and not yet answered: one executing and one queued behind it on the session,
    // which the driver sends the moment the first is answered, so the server does not wait on this process.
    const inflight: Promise<void>[] = [];
    const issue = async (text: string, values: Param[]): Promise<void> => {
      if (inflight.length === IN_FLIGHT) await inflight.shift();
      const p = this.exec(text, values).then((res) => {
        affected += res.affectedRows;
      });
      // Awaited in turn or at the end; until then its failure is held, not unhandled.
      p.catch(() => undefined);
      inflight.push(p);
    };
    const flush = async (): Promise<void> => {
      if (count === 0) return;
      let at = 0;
      for (const n of chunkSizes(count, full)) {
        await issue(sqlFor(n), n === count ? params : params.slice(at, at + n * perItem));
        at += n * perItem;
      }
      sent += count;
      params = [];
      count = 0;
      bytes = 0;
    };
    try {
      for (const item of items) {
        const enc = encode(item);
        if (enc === null) continue;
        const size = enc.reduce<number>((sum, e) => sum + paramBytes(e), 0);
        if (bytes + size > this.packetBudget) await flush();
        for (const e of enc) params.push(e);
        count += 1;
        bytes += size;
        if (count === full) await flush();
      }
      await flush();
    } finally {
      // Every statement sent is awaited, even when encoding threw; a failure of one of them fails
      // the call. After a failure the driver still runs the one queued behind it, in order and
      // before the run's ROLLBACK (autocommit is off during a run: see begin).
      for (const p of inflight.splice(0)) await p;
    }
    return { sent, affected };
  }

  async deleteKeys(table: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    if (keys.length === 0) return 0;
    const limits = await this.limitsOf(table);
    const keyTypes = table.keys.map((k) => typeOfColumn(table, k));
    const keyLimits = table.keys.map((k, j) => limits.get(k) ?? mappedLimits(keyTypes[j] as string, true, this.flavor));
    const per = table.keys.length;
    const full = Math.max(1, Math.min(MYSQL_MAX_ROWS, Math.floor(MYSQL_MAX_PARAMS / per)));
    const out = await this.sendBatched(keys, per, full, (n) => deleteSql(table, n), (key) => {
      const enc: Param[] = [];
      for (let j = 0; j < per; j++) {
        const e = encodeMysql(keyTypes[j] as string, key[j] ?? null, keyLimits[j] as ColumnLimits);
        // A key the target cannot hold was never stored here.
        if (e instanceof Refusal) return null;
        enc.push(e);
      }
      return enc;
    });
    return out.affected;
  }

  async upsertRows(table: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    const limits = await this.limitsOf(table);
    const width = table.columns.length;
    const full = Math.max(1, Math.min(MYSQL_MAX_ROWS, Math.floor(MYSQL_MAX_PARAMS / width)));
    const keyIdx = table.keys.map((k) => table.columns.findIndex((c) => c.name === k));
    const encoders = this.encodersOf(table, limits);
    const refused: RefusedRow[] = [];
    const out = await this.sendBatched(rows, width, full, (n) => this.upsertText(table, n), (row) => {
      const enc: Param[] = new Array<Param>(width);
      let why: string | null = null;
      let size = 0;
      for (let i = 0; i < width; i++) {
        const text = row[i] ?? null;
        const e = text === null ? null : (encoders[i] as MysqlEncoder)(text);
        if (e instanceof Refusal) {
          const col = table.columns[i] as TableSpec['columns'][number];
          why = `column ${col.name} (${col.type}): ${e.reason}`;
          break;
        }
        enc[i] = e;
        size += paramBytes(e);
      }
      if (why === null && size > this.packetBudget) {
        why = `the row is ${size} bytes, over what max_allowed_packet (${this.maxPacket}) lets one statement carry: raise max_allowed_packet on ${this.name}`;
      }
      if (why === null) return enc;
      refused.push({ key: keyIdx.map((i) => row[i] ?? null), reason: `${table.label} on ${this.name}: ${why}` });
      return null;
    });
    return { applied: out.sent, refused };
  }

  /** The table's column encoders under the limits read in this transaction (cached with them). */
  private encodersOf(t: TableSpec, limits: Map<string, ColumnLimits>): MysqlEncoder[] {
    const got = this.encoders.get(t);
    if (got !== undefined && got.limits === limits) return got.encoders;
    const encoders = t.columns.map((c) => mysqlEncoder(c.type, limits.get(c.name) ?? mappedLimits(c.type, t.keys.includes(c.name), this.flavor)));
    this.encoders.set(t, { limits, encoders });
    return encoders;
  }

  private upsertText(t: TableSpec, n: number): string {
    return upsertSqlCached(t, n, this.flavor);
  }

  async truncate(table: TableSpec): Promise<void> {
    await this.sql(truncateSql(table));
  }

  /** Fenced entries: refused when a newer epoch committed here, checked by a locking read in this transaction. */
  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    const epoch = epochOf(entries);
    if (epoch !== undefined) {
      const [row] = (await this.sql(PROGRESS_FENCE_SQL, [sync])) as { epoch: number | string }[];
      const newer = Number(row?.epoch ?? 0);
      if (newer > epoch) throw new IbexError('daemon', fencedMessage(this.kind, this.name, sync, epoch, newer));
    }
    const text = progressUpsertSql(this.flavor);
    for (const e of entries) await this.exec(text, [sync, e.source, e.snapshot, String(e.run), e.epoch === undefined ? null : String(e.epoch)]);
  }

  async commit(): Promise<void> {
    await this.sql('COMMIT');
    await this.sql('SET autocommit = 1');
  }

  async rollback(): Promise<void> {
    if (this.conn === null) return;
    try {
      await this.conn.query('ROLLBACK');
      await this.conn.query('SET autocommit = 1');
    } catch {
      // A session that is gone has nothing left to undo: the server rolled it back. Whatever the
      // failure, the session is not trusted again: the next begin() connects afresh.
      this.broken = true;
    }
  }

  async close(): Promise<void> {
    const c = this.conn;
    if (c === null) return;
    this.conn = null;
    this.progressReady = false;
    this.limits.clear();
    try {
      await c.end();
    } catch {
      c.destroy();
    }
  }

  async *scan(table: TableSpec): AsyncIterable<TextRow> {
    const types = table.columns.map((c) => c.type);
    // The promise wrapper has no streaming query; its core connection (same session) has.
    const core = (this.c as unknown as { connection: CoreConnection }).connection;
    const stream = core.query({ sql: scanSql(table), rowsAsArray: true }).stream({ highWaterMark: 256 });
    for await (const row of stream as AsyncIterable<unknown[]>) {
      yield row.map((v, i) => canonicalText(types[i] as string, storedText(v)));
    }
  }
}

const upsertCache = new WeakMap<TableSpec, Map<string, string>>();
function upsertSqlCached(t: TableSpec, n: number, flavor: MysqlFlavor): string {
  let m = upsertCache.get(t);
  if (m === undefined) {
    m = new Map();
    upsertCache.set(t, m);
  }
  const k = `${flavor}:${n}`;
  let s = m.get(k);
  if (s === undefined) {
    s = upsertSqlOf(t, n, flavor);
    m.set(k, s);
  }
  return s;
}

function versionAtLeast(version: string, want: number[]): boolean {
  const got = (/^(\d+)\.(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
  for (let i = 0; i < want.length; i++) {
    const g = got[i] ?? 0;
    const w = want[i] ?? 0;
    if (g !== w) return g > w;
  }
  return true;
}

function typeOfColumn(t: TableSpec, name: string): string {
  const c = t.columns.find((x) => x.name === name);
  if (c === undefined) throw new IbexError('internal', `${t.label}: key column ${name} is not a column of the table`);
  return c.type;
}

function clip(s: string): string {
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

/** The target for a db of kind mariadb or mysql. */
export function createTarget(params: TargetParams): Target {
  return new MysqlTarget(params);
}

export type { MysqlTarget };

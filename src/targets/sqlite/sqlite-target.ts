/**
 * The SQLite target: one file (`dbname`), written in one `BEGIN IMMEDIATE` transaction per run
 * with the progress row inside it, so a crash leaves either the whole run or none of it.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { IbexError } from '../../errors.js';
import { canonicalIntText, canonicalText, CodecError, decode, byteaText, pgType, plainNumericCanonical, utcTimestamptzIso } from '../codec.js';
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
  affinityOf,
  affinityProblem,
  createTableSql,
  deleteChunkKeys,
  deleteSql,
  PROGRESS_ADD_EPOCH_SQL,
  PROGRESS_COLUMNS_SQL,
  PROGRESS_DDL,
  PROGRESS_FENCE_SQL,
  PROGRESS_SELECT,
  PROGRESS_TABLE,
  PROGRESS_UPSERT,
  quoteIdent,
  scanSql,
  sqliteType,
  upsertChunkRows,
  upsertSql,
} from './sqlite-dialect.js';

type Db = BetterSqlite3.Database;
type Stmt = BetterSqlite3.Statement;
type SqliteValue = bigint | number | string | Buffer | null;

/** How long a run waits for another writer's lock on the file before it fails (and is retried with backoff). */
const BUSY_TIMEOUT_MS = 10_000;
/**
 * How long one statement may wait for that lock inside SQLite. better-sqlite3 waits synchronously,
 * stopping the whole process (every other sync, the lease renewals), so the wait is spent in short
 * slices with the event loop free between them.
 */
const BUSY_SLICE_MS = 20;

/** A value that cannot be stored: the reason, one line. */
class Refusal {
  constructor(readonly reason: string) {}
}

/** One PostgreSQL text to the value bound for SQLite (see the mapping in sqlite-dialect.ts). */
export function encodeSqlite(type: string, text: string | null): SqliteValue | Refusal {
  if (text === null) return null;
  let v;
  try {
    v = decode(type, text);
  } catch (e) {
    if (e instanceof CodecError) return new Refusal(e.message);
    throw e;
  }
  switch (v.kind) {
    case 'int':
      return v.value;
    case 'decimal':
      return v.value;
    case 'float':
      // SQLite stores NaN as NULL, which would silently lose the value.
      return v.special === 'NaN' ? new Refusal('NaN is not storable in SQLite (it becomes NULL); fix the value on the source') : v.value;
    case 'bool':
      return v.value ? 1 : 0;
    case 'bytes':
      return v.value;
    case 'json':
      return text;
    case 'timestamptz':
    case 'timestamp':
    case 'date':
    case 'time':
    case 'interval':
      return v.iso;
    case 'uuid':
      return v.value;
    case 'array':
      return v.json;
    case 'text':
      return v.value;
  }
}

/** Encodes one non-NULL text of a column: `encodeSqlite` of that column's type. */
type Encoder = (text: string) => SqliteValue | Refusal;

/**
 * `encodeSqlite` for one column type, resolved once: the forms a row mostly carries (an integer,
 * a plain numeric, a timestamptz in the pinned session's form, text) are encoded straight from
 * the text without decoding a Value; any other text takes `encodeSqlite`, so the result is the same.
 */
export function sqliteEncoder(type: string): Encoder {
  const general = (text: string): SqliteValue | Refusal => encodeSqlite(type, text);
  switch (pgType(type).cls) {
    case 'int':
      return (text) => (canonicalIntText(text) !== null ? BigInt(text) : general(text));
    case 'decimal':
      return (text) => plainNumericCanonical(text) ?? general(text);
    case 'timestamptz':
      return (text) => utcTimestamptzIso(text) ?? general(text);
    case 'text':
      return (text) => text;
    default:
      return general;
  }
}

const encodersCache = new WeakMap<TableSpec, Encoder[]>();
function encodersOf(t: TableSpec): Encoder[] {
  let e = encodersCache.get(t);
  if (e === undefined) {
    e = t.columns.map((c) => sqliteEncoder(c.type));
    encodersCache.set(t, e);
  }
  return e;
}

const upsertSqlCache = new WeakMap<TableSpec, Map<number, string>>();
function upsertSqlOf(t: TableSpec, rows: number): string {
  let m = upsertSqlCache.get(t);
  if (m === undefined) upsertSqlCache.set(t, (m = new Map()));
  let s = m.get(rows);
  if (s === undefined) m.set(rows, (s = upsertSql(t, rows)));
  return s;
}

/** A stored SQLite value back to a text the codec canonicalizes. */
function storedText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint' || typeof v === 'number') return String(v);
  if (Buffer.isBuffer(v)) return byteaText(v);
  return String(v);
}

class SqliteTarget implements Target {
  readonly kind = 'sqlite' as const;
  readonly name: string;
  readonly caps: TargetCaps = { transactional: true, progressInTxn: true, copyText: false };
  private readonly file: string;
  private readonly mustExist: boolean;
  private db: Db | null = null;
  private readonly stmts = new Map<string, Stmt>();

  constructor(params: TargetParams) {
    this.name = params.name;
    if (params.dbname === undefined || params.dbname === '') {
      throw new IbexError('config', `db ${params.name}: a sqlite db needs dbname=<path of the database file>`);
    }
    this.file = params.dbname;
    this.mustExist = params.mustExist === true;
  }

  private get conn(): Db {
    if (this.db === null) throw new IbexError('internal', `db ${this.name}: not connected`);
    return this.db;
  }

  private prepare(sql: string): Stmt {
    let s = this.stmts.get(sql);
    if (s === undefined) {
      s = this.conn.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  async connect(): Promise<void> {
    if (this.db !== null) return;
    let Driver: typeof BetterSqlite3;
    try {
      Driver = (await import('better-sqlite3')).default;
    } catch (e) {
      throw new IbexError('unreachable', `db ${this.name}: the better-sqlite3 driver cannot be loaded (${(e as Error).message}); run npm install`, { cause: e });
    }
    // Runs open the file as it is (creating it if gone: check() then reports every table missing);
    // a connection test must not turn a mistyped path into a new empty database.
    if (this.mustExist && !existsSync(this.file)) {
      throw new IbexError('config', `db ${this.name}: SQLite file ${this.file} does not exist: create it (sqlite3 ${this.file} 'VACUUM') or fix dbname=`);
    }
    try {
      const db = new Driver(this.file, { timeout: BUSY_SLICE_MS, fileMustExist: this.mustExist });
      db.pragma(`busy_timeout = ${BUSY_SLICE_MS}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.defaultSafeIntegers(true);
      this.db = db;
    } catch (e) {
      throw new IbexError('unreachable', `db ${this.name}: cannot open SQLite file ${this.file}: ${(e as Error).message}`, { cause: e });
    }
  }

  async probe(): Promise<{ version: string }> {
    const row = this.conn.prepare('SELECT sqlite_version() AS v').get() as { v: string };
    return { version: `SQLite ${row.v}` };
  }

  async check(tables: readonly TableSpec[]): Promise<Problem[]> {
    const problems: Problem[] = [];
    const colsOf = this.conn.prepare('SELECT name, type, "notnull" AS nn, dflt_value AS dflt, pk, hidden FROM pragma_table_xinfo(?)');
    const indexes = this.conn.prepare('SELECT name, "unique" AS uq, origin, partial FROM pragma_index_list(?)');
    const indexCols = this.conn.prepare('SELECT name, coll, key FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno');
    for (const t of tables) {
      const p = (message: string): void => {
        problems.push({ table: t.label, message });
      };
      const cols = colsOf.all(t.targetName) as { name: string; type: string; nn: bigint; dflt: unknown; pk: bigint; hidden: bigint }[];
      if (cols.length === 0) {
        p(`table ${t.targetName} is missing on ${this.name}; create it (ibex schema prints the CREATE TABLE)`);
        continue;
      }
      const byName = new Map(cols.map((c) => [c.name.toLowerCase(), c]));
      for (const c of t.columns) {
        const col = byName.get(c.name.toLowerCase());
        if (col === undefined) {
          p(`column ${c.name} is missing in ${t.targetName} on ${this.name}; add it as ${quoteIdent(c.name)} ${sqliteType(c.type)}`);
          continue;
        }
        const why = affinityProblem(c.type, affinityOf(col.type));
        if (why !== null) p(`column ${t.targetName}.${c.name} (${col.type || 'no type'}) cannot hold ${c.type} exactly: ${why}`);
      }
      const srcNames = new Set(t.columns.map((c) => c.name.toLowerCase()));
      for (const col of cols) {
        if (!srcNames.has(col.name.toLowerCase()) && col.nn !== 0n && col.dflt === null && col.hidden === 0n) {
          p(`column ${t.targetName}.${col.name} is NOT NULL without a default and not in the source table; every insert would fail: drop it or give it a default`);
        }
      }
      const want = t.keys.map((k) => k.toLowerCase()).sort().join('\0');
      const pkCols = cols.filter((c) => c.pk > 0n).map((c) => c.name.toLowerCase()).sort().join('\0');
      // An INTEGER PRIMARY KEY is the rowid and has no index entry in pragma_index_list.
      let hasKey = pkCols === want && t.keys.length === 1 && affinityOf(cols.find((c) => c.pk > 0n)?.type ?? '') === 'INTEGER';
      const others: { name: string; cols: (string | null)[]; onKeyColumns: boolean }[] = [];
      for (const ix of indexes.all(t.targetName) as { name: string; uq: bigint; partial: bigint }[]) {
        if (ix.uq === 0n) continue;
        const ic = indexCols.all(ix.name) as { name: string | null; coll: string }[];
        const onKeyColumns = ic.every((c) => c.name !== null) && ic.map((c) => (c.name as string).toLowerCase()).sort().join('\0') === want;
        // Unique on exactly the key columns, binary and whole: it conflicts exactly when the key
        // does, so it can serve as the key (ON CONFLICT's target) and is harmless besides it.
        if (onKeyColumns && ix.partial === 0n && ic.every((c) => c.coll.toUpperCase() === 'BINARY')) hasKey = true;
        else others.push({ name: ix.name, cols: ic.map((c) => c.name), onKeyColumns });
      }
      if (!hasKey) {
        p(`table ${t.targetName} has no PRIMARY KEY or unique index on exactly (${t.keys.join(', ')}) with binary collation; upserts need one: add PRIMARY KEY (${t.keys.join(', ')})`);
      }
      for (const o of others) {
        // Without a usable key, an index on the key columns is the would-be key: the line above covers it.
        if (!hasKey && o.onKeyColumns) continue;
        // UNIQUE constraints too (their sqlite_autoindex_…): the upsert's ON CONFLICT names the
        // key only, so a row colliding on any other unique index fails its statement, and the run.
        p(otherUniqueProblem(t.targetName, 'unique index', o.name, o.cols.map((c) => c ?? '(expression)'),
          'ON CONFLICT (key) covers only the key, so a row colliding on it would fail the whole run'));
      }
    }
    return problems;
  }

  createTableSql(table: TableSpec): string[] {
    return [createTableSql(table)];
  }

  async begin(): Promise<void> {
    await this.whileLocked('BEGIN IMMEDIATE');
  }

  /** Run `sql`, waiting (without blocking the process) while another writer holds the lock, up to BUSY_TIMEOUT_MS. */
  private async whileLocked(sql: string): Promise<void> {
    const until = Date.now() + BUSY_TIMEOUT_MS;
    for (;;) {
      try {
        this.conn.exec(sql);
        return;
      } catch (e) {
        if (!/^SQLITE_BUSY/.test(String((e as { code?: unknown }).code ?? '')) || Date.now() >= until) throw this.locked(e);
        await new Promise((resolve) => setTimeout(resolve, BUSY_SLICE_MS));
      }
    }
  }

  /**
   * Another process holding the file's write lock past the busy timeout (SQLITE_BUSY, or
   * SQLITE_LOCKED within one process) as a one-line 'unreachable' error naming the db: the db is
   * out of reach for now, so the run is retried with backoff like a server that is down, and
   * nothing was written (the lock is taken at begin, before any row). Other errors as they are.
   */
  private locked(e: unknown): unknown {
    const code = String((e as { code?: unknown }).code ?? '');
    if (!/^SQLITE_(BUSY|LOCKED)/.test(code)) return e;
    return new IbexError('unreachable',
      `db ${this.name}: SQLite file ${this.file} stayed locked by another writer for ${BUSY_TIMEOUT_MS / 1000} s (${code}: ${(e as Error).message}); ibex retries: end that writer's transaction if it lasts`,
      { cause: e });
  }

  async readProgress(sync: string): Promise<ProgressEntry[] | 'missing'> {
    const exists = this.conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(PROGRESS_TABLE);
    if (exists === undefined) return [];
    const rows = this.prepare(PROGRESS_SELECT).all(sync) as { source: string; snapshot: string; run: bigint }[];
    return rows.map((r) => ({ source: r.source, snapshot: r.snapshot, run: Number(r.run) }));
  }

  async deleteKeys(table: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    if (keys.length === 0) return 0;
    const keyTypes = table.keys.map((k) => typeOfColumn(table, k));
    const chunk = deleteChunkKeys(table.keys.length);
    let deleted = 0;
    for (let i = 0; i < keys.length; i += chunk) {
      const part = keys.slice(i, i + chunk);
      const params: SqliteValue[] = [];
      for (const key of part) {
        key.forEach((v, j) => {
          const e = encodeSqlite(keyTypes[j] as string, v);
          // A key the target cannot hold was never stored: bind a value no row has.
          params.push(e instanceof Refusal ? null : e);
        });
      }
      deleted += Number(this.prepare(deleteSql(table, part.length)).run(...params).changes);
    }
    return deleted;
  }

  async upsertRows(table: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    const refused: RefusedRow[] = [];
    const width = table.columns.length;
    const chunk = upsertChunkRows(width);
    const encoders = encodersOf(table);
    let params: SqliteValue[] = [];
    let pending = 0;
    let applied = 0;
    const flush = (): void => {
      if (pending === 0) return;
      // An array binds its elements in order, as spread arguments would, without the spread.
      this.prepare(upsertSqlOf(table, pending)).run(params);
      applied += pending;
      params = [];
      pending = 0;
    };
    for (const row of rows) {
      const start = params.length;
      let why: string | null = null;
      for (let i = 0; i < width; i++) {
        const text = row[i] ?? null;
        const e = text === null ? null : (encoders[i] as Encoder)(text);
        if (e instanceof Refusal) {
          const col = table.columns[i] as TableSpec['columns'][number];
          why = `column ${col.name} (${col.type}): ${e.reason}`;
          break;
        }
        params.push(e);
      }
      if (why !== null) {
        params.length = start;
        const keyIdx = table.keys.map((k) => table.columns.findIndex((c) => c.name === k));
        refused.push({ key: keyIdx.map((i) => row[i] ?? null), reason: `${table.label} on ${this.name}: ${why}` });
        continue;
      }
      pending += 1;
      if (pending === chunk) flush();
    }
    flush();
    return { applied, refused };
  }

  async truncate(table: TableSpec): Promise<void> {
    this.conn.prepare(`DELETE FROM ${quoteIdent(table.targetName)}`).run();
  }

  /** Fenced entries: refused when a newer epoch committed here (this transaction holds the write lock). */
  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    this.conn.exec(PROGRESS_DDL);
    const cols = this.conn.prepare(PROGRESS_COLUMNS_SQL).all() as { name: string }[];
    if (!cols.some((c) => c.name === 'epoch')) this.conn.exec(PROGRESS_ADD_EPOCH_SQL);
    const epoch = epochOf(entries);
    if (epoch !== undefined) {
      const row = this.conn.prepare(PROGRESS_FENCE_SQL).get(sync) as { epoch: number | bigint } | undefined;
      const newer = Number(row?.epoch ?? 0);
      if (newer > epoch) throw new IbexError('daemon', fencedMessage(this.kind, this.name, sync, epoch, newer));
    }
    const stmt = this.prepare(PROGRESS_UPSERT);
    const applied = new Date().toISOString();
    for (const e of entries) stmt.run(sync, e.source, e.snapshot, BigInt(e.run), applied, e.epoch === undefined ? null : BigInt(e.epoch));
  }

  async commit(): Promise<void> {
    // A COMMIT that met SQLITE_BUSY leaves the transaction open, so it may be tried again.
    await this.whileLocked('COMMIT');
  }

  async rollback(): Promise<void> {
    if (this.db !== null && this.db.open && this.db.inTransaction) this.db.exec('ROLLBACK');
  }

  async close(): Promise<void> {
    if (this.db === null) return;
    await this.rollback().catch(() => undefined);
    this.stmts.clear();
    this.db.close();
    this.db = null;
  }

  async *scan(table: TableSpec): AsyncIterable<TextRow> {
    const types = table.columns.map((c) => c.type);
    const stmt = this.conn.prepare(scanSql(table)).raw(true);
    for (const row of stmt.iterate() as Iterable<unknown[]>) {
      yield row.map((v, i) => canonicalText(types[i] as string, storedText(v)));
    }
  }
}

function typeOfColumn(t: TableSpec, name: string): string {
  const c = t.columns.find((x) => x.name === name);
  if (c === undefined) throw new IbexError('internal', `${t.label}: key column ${name} is not a column of the table`);
  return c.type;
}

/** The SQLite target for a db of kind sqlite (`dbname` is the file). */
export function createTarget(params: TargetParams): Target {
  return new SqliteTarget(params);
}

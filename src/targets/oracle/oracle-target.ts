/**
 * The Oracle target, on node-oracledb in thin mode (pure JavaScript, no Instant Client).
 *
 * A run is one transaction (autoCommit off on every call, explicit commit or rollback): rows go
 * through MERGE and deletes through DELETE, each as array DML (`executeMany`, one round trip per
 * batch), and the progress row is merged into IBEX_PROGRESS inside the same transaction, so a
 * crash after Oracle committed is recognised by the next run. Rows Oracle rejects one by one
 * (a value too large for its column, a constraint) come back as batch errors and are refused,
 * the rest of the batch applies. A session lost to a restart or the network fails the run as
 * 'unreachable' (retried) and is replaced at the next begin(), so the target catches up by itself.
 */
import { createRequire } from 'node:module';
import { IbexError } from '../../errors.js';
import { connected, firstLine, targetFailure, withoutPassword } from '../failure.js';
import { canonicalText } from '../codec.js';
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
import { epochOf, fencedMessage } from '../target.js';
import {
  CREATE_PROGRESS_SQL,
  PROGRESS_ADD_EPOCH_SQL,
  PROGRESS_FENCE_SQL,
  PROGRESS_HAS_EPOCH_SQL,
  READ_PROGRESS_SQL,
  RefusedValue,
  SESSION_SQL,
  TABLE_COLUMNS_SQL,
  TABLE_PK_SQL,
  WRITE_PROGRESS_SQL,
  bindValue,
  createTableSql,
  deleteSql,
  mergeSql,
  oracleTable,
  scanSql,
  textOf,
  truncateSql,
  type BindKind,
  type OracleColumn,
  type OracleTable,
} from './oracle-dialect.js';

/** Rows per executeMany call. */
export const BATCH_ROWS = 1000;
/** Rows fetched per round trip by scan. */
const FETCH_ROWS = 1000;

/** The subset of an oracledb result this target reads. */
export interface OracleResult {
  rows?: unknown[][];
  rowsAffected?: number;
  batchErrors?: { offset: number; message: string; errorNum?: number }[];
  resultSet?: { getRows(n: number): Promise<unknown[][]>; close(): Promise<void> };
}

/** The subset of oracledb's Connection this target uses (a test may pass a fake). */
export interface OracleConnection {
  execute(sql: string, binds?: unknown[], options?: Record<string, unknown>): Promise<OracleResult>;
  executeMany(sql: string, binds: unknown[][], options?: Record<string, unknown>): Promise<OracleResult>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  close(): Promise<void>;
  oracleServerVersionString?: string;
}

/** The subset of the oracledb module this target uses: getConnection and the type constants. */
export interface OracleDriver {
  getConnection(attrs: Record<string, unknown>): Promise<OracleConnection>;
  DB_TYPE_VARCHAR: unknown;
  DB_TYPE_NUMBER: unknown;
  DB_TYPE_BINARY_DOUBLE: unknown;
  DB_TYPE_BLOB: unknown;
  DB_TYPE_CLOB: unknown;
  DB_TYPE_RAW: unknown;
  STRING: unknown;
  BUFFER: unknown;
  OUT_FORMAT_ARRAY: unknown;
}

/**
 * node-oracledb's codes for a session that is gone or cannot be opened now: NJS-500 and its kin
 * (the driver maps ORA-03113, ORA-03114, ORA-03135, ORA-00028 and the others of its own list to
 * NJS-500, but keeps the ORA code when it passes one through), NJS-003 (a call on a closed
 * connection), and the listener's and instance's refusals while a server starts or stops.
 */
const LOST_SESSION_CODES = new Set([
  'NJS-003', 'NJS-500', 'NJS-501', 'NJS-503', 'NJS-510', 'NJS-511', 'NJS-513', 'NJS-521',
  // What node-oracledb itself counts as a closed connection (lib/errors.js, adjustErrorXref).
  'ORA-00022', 'ORA-00028', 'ORA-00031', 'ORA-00045', 'ORA-00378', 'ORA-00600', 'ORA-00602', 'ORA-00603', 'ORA-00609',
  'ORA-01012', 'ORA-01041', 'ORA-01043', 'ORA-01089', 'ORA-01092', 'ORA-02396', 'ORA-03113', 'ORA-03114', 'ORA-03122',
  'ORA-03135', 'ORA-12153', 'ORA-12537', 'ORA-12547', 'ORA-12570', 'ORA-12583', 'ORA-27146', 'ORA-28511', 'ORA-56600',
  // A server that is starting, stopping or out of reach: no listener, unknown service yet, no handler, timeout.
  'ORA-01033', 'ORA-01034', 'ORA-01109', 'ORA-12170', 'ORA-12505', 'ORA-12514', 'ORA-12516', 'ORA-12519', 'ORA-12520',
  'ORA-12521', 'ORA-12528', 'ORA-12541', 'ORA-12543',
]);

/** True for an error of a lost session, or of a server that cannot take a new one now (see LOST_SESSION_CODES). */
export function isOracleSessionLost(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // The thin driver marks the errors after which a new session may succeed.
  if ((err as { isRecoverable?: unknown }).isRecoverable === true) return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && LOST_SESSION_CODES.has(code)) return true;
  const lead = /^(?:NJS-\d{3}|ORA-\d{5})/.exec(err.message)?.[0];
  return lead !== undefined && LOST_SESSION_CODES.has(lead);
}

/** Create an Oracle target for these parameters (the registry's factory). */
export function createTarget(params: TargetParams): Target {
  return new OracleTarget(params);
}

/** See the module comment. */
export class OracleTarget implements Target {
  readonly kind = 'oracle' as const;
  readonly name: string;
  readonly caps: TargetCaps = { transactional: true, progressInTxn: true, copyText: false };
  private readonly params: TargetParams;
  private readonly connectString: string;
  private readonly loadDriver: () => Promise<OracleDriver>;
  private driver: OracleDriver | undefined;
  private conn: OracleConnection | undefined;
  /** The session died (server restart, network): the next begin() opens a new one. */
  private broken = false;
  /** IBEX_PROGRESS and its EPOCH column are there (checked once per session). */
  private progressReady = false;

  /** `driver` replaces node-oracledb (tests pass a recording fake). */
  constructor(params: TargetParams, driver?: OracleDriver) {
    this.params = params;
    this.name = params.name;
    if (params.conn) {
      this.connectString = params.conn;
    } else {
      if (!params.host || !params.dbname) {
        throw new IbexError('usage', `db "${params.name}": an oracle target needs conn=<connect string>, or host= and dbname=<service name>`);
      }
      this.connectString = `${params.host}:${params.port ?? 1521}/${params.dbname}`;
    }
    if (!params.user) throw new IbexError('usage', `db "${params.name}": an oracle target needs user=`);
    this.loadDriver = driver ? async () => driver : async () => createRequire(import.meta.url)('oracledb') as OracleDriver;
  }

  private clean(message: string): string {
    return withoutPassword(message, this.params);
  }

  /**
   * A failed call as one line naming the db: 'unreachable' when the session is gone (the run is
   * retried and the next begin() connects afresh), 'internal' otherwise.
   */
  private fail(what: string, err: unknown): IbexError {
    if (!isOracleSessionLost(err)) return targetFailure(this.params, what, err);
    this.broken = true;
    return new IbexError('unreachable', this.clean(`oracle target "${this.name}": lost the connection to ${this.connectString} while ${what}: ${firstLine(err)}`), { cause: err });
  }

  private get c(): OracleConnection {
    return connected(this.conn, this.params);
  }

  private get d(): OracleDriver {
    return connected(this.driver, this.params);
  }

  async connect(): Promise<void> {
    this.driver = await this.loadDriver();
    try {
      this.conn = await this.driver.getConnection({
        user: this.params.user,
        password: this.params.password,
        connectString: this.connectString,
        connectTimeout: 10,
        transportConnectTimeout: 10,
      });
    } catch (err) {
      // NJS-503 and friends put the socket error on a second line; one line is enough.
      const msg = err instanceof Error ? err.message.replace(/\s*\(CONNECTION_ID=[^)]*\)/, '').split('\n') : [String(err)];
      const why = [msg[0], msg[1]].filter(Boolean).join(': ');
      throw new IbexError('unreachable', this.clean(`oracle target "${this.name}": cannot connect to ${this.connectString}: ${why}`), { cause: err });
    }
    this.broken = false;
    try {
      for (const sql of SESSION_SQL) await this.conn.execute(sql, [], { autoCommit: false });
    } catch (err) {
      const failure = this.fail('setting up the session', err);
      await this.close();
      throw failure;
    }
  }

  async probe(): Promise<{ version: string }> {
    return { version: `Oracle ${this.c.oracleServerVersionString ?? 'unknown'}` };
  }

  /** Missing tables and columns (names compared exactly, as quoted), and a primary key other than the source's key. */
  async check(tables: readonly TableSpec[]): Promise<Problem[]> {
    const problems: Problem[] = [];
    for (const table of tables) {
      try {
        oracleTable(table);
      } catch (err) {
        problems.push({ table: table.label, message: (err as Error).message });
        continue;
      }
      let cols: unknown[][];
      let pk: unknown[][];
      try {
        cols = (await this.c.execute(TABLE_COLUMNS_SQL, [table.targetName], { outFormat: this.d.OUT_FORMAT_ARRAY })).rows ?? [];
        pk = (await this.c.execute(TABLE_PK_SQL, [table.targetName], { outFormat: this.d.OUT_FORMAT_ARRAY })).rows ?? [];
      } catch (err) {
        throw this.fail(`checking ${table.label}`, err);
      }
      if (cols.length === 0) {
        problems.push({ table: table.label, message: `table "${table.targetName}" does not exist on this db (names are case-sensitive, quoted); create it with the statements of \`ibex schema\`` });
        continue;
      }
      const have = new Set(cols.map((r) => String(r[0])));
      const missing = table.columns.filter((c) => !have.has(c.name)).map((c) => `"${c.name}"`);
      if (missing.length > 0) {
        problems.push({ table: table.label, message: `table "${table.targetName}" lacks column(s) ${missing.join(', ')}; add them (names are case-sensitive, quoted)` });
      }
      const pkCols = pk.map((r) => String(r[0]));
      if (pkCols.join('\0') !== table.keys.join('\0')) {
        problems.push({
          table: table.label,
          message: `table "${table.targetName}" has primary key (${pkCols.join(', ') || 'none'}), ibex needs (${table.keys.join(', ')}) so its MERGE matches one row per key; change the key`,
        });
      }
    }
    return problems;
  }

  createTableSql(table: TableSpec): string[] {
    return createTableSql(table);
  }

  async begin(): Promise<void> {
    // A session lost since the last run is replaced (throws 'unreachable' while the server is down).
    // Oracle opens the transaction with the first statement; every call runs with autoCommit off.
    if (this.conn === undefined || this.broken) {
      await this.close();
      await this.connect();
    }
  }

  /**
   * The progress rows of a sync. Creates IBEX_PROGRESS (or adds its EPOCH column) when it does
   * not exist: that is DDL, which commits, so it is done here, before the run's first write,
   * where there is nothing to commit yet.
   */
  async readProgress(sync: string): Promise<ProgressEntry[] | 'missing'> {
    await this.ensureProgress();
    let rows: unknown[][];
    try {
      rows = (await this.c.execute(READ_PROGRESS_SQL, [sync], { outFormat: this.d.OUT_FORMAT_ARRAY, fetchInfo: { SNAPSHOT: { type: this.d.STRING } } })).rows ?? [];
    } catch (err) {
      throw this.fail('reading progress', err);
    }
    return rows.map((r) => ({ source: String(r[0]), snapshot: String(r[1]), run: Number(r[2]) }));
  }

  /** IBEX_PROGRESS with its EPOCH column, checked once per session (DDL: only before a transaction's first write). */
  private async ensureProgress(): Promise<void> {
    if (this.progressReady) return;
    try {
      const r = await this.c.execute(PROGRESS_HAS_EPOCH_SQL, [], { outFormat: this.d.OUT_FORMAT_ARRAY });
      if (Number((r.rows as unknown[][] | undefined)?.[0]?.[0] ?? 0) === 0) {
        const exists = await this.c.execute(`SELECT COUNT(*) FROM USER_TABLES WHERE TABLE_NAME = 'IBEX_PROGRESS'`, [], { outFormat: this.d.OUT_FORMAT_ARRAY });
        const has = Number((exists.rows as unknown[][] | undefined)?.[0]?.[0] ?? 0) > 0;
        await this.c.execute(has ? PROGRESS_ADD_EPOCH_SQL : CREATE_PROGRESS_SQL, [], { autoCommit: false });
      }
    } catch (err) {
      throw this.fail('creating IBEX_PROGRESS', err);
    }
    this.progressReady = true;
  }

  /** bindDefs for these columns over these rows (strings and raws need their largest size). */
  private bindDefs(cols: OracleColumn[], binds: unknown[][]): Record<string, unknown>[] {
    const type: Record<BindKind, unknown> = {
      string: this.d.DB_TYPE_VARCHAR,
      number: this.d.DB_TYPE_NUMBER,
      double: this.d.DB_TYPE_BINARY_DOUBLE,
      blob: this.d.DB_TYPE_BLOB,
      clob: this.d.DB_TYPE_CLOB,
      raw: this.d.DB_TYPE_RAW,
    };
    return cols.map((c, i) => {
      if (c.kind !== 'string' && c.kind !== 'raw') return { type: type[c.kind] };
      let max = 1;
      for (const b of binds) {
        const v = b[i];
        const n = typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : Buffer.isBuffer(v) ? v.length : 0;
        if (n > max) max = n;
      }
      return { type: type[c.kind], maxSize: max };
    });
  }

  async deleteKeys(table: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    if (keys.length === 0) return 0;
    const t = oracleTable(table);
    const keyCols = t.keyIdx.map((i) => t.columns[i]!);
    const sql = deleteSql(t);
    const binds: unknown[][] = [];
    for (const k of keys) {
      try {
        binds.push(keyCols.map((c, i) => bindValue(c, k[i] ?? null)));
      } catch (err) {
        // A key Oracle cannot hold cannot be stored there either: nothing to delete.
        if (!(err instanceof RefusedValue)) throw err;
      }
    }
    let deleted = 0;
    for (let s = 0; s < binds.length; s += BATCH_ROWS) {
      const batch = binds.slice(s, s + BATCH_ROWS);
      try {
        const r = await this.c.executeMany(sql, batch, { autoCommit: false, bindDefs: this.bindDefs(keyCols, batch) });
        deleted += r.rowsAffected ?? 0;
      } catch (err) {
        throw this.fail(`deleting from ${table.label}`, err);
      }
    }
    return deleted;
  }

  async upsertRows(table: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    const t = oracleTable(table);
    const sql = mergeSql(t);
    const refused: RefusedRow[] = [];
    const binds: unknown[][] = [];
    const keysOf: KeyRow[] = [];
    for (const row of rows) {
      const key = t.keyIdx.map((i) => row[i] ?? null);
      try {
        binds.push(t.columns.map((c, i) => bindValue(c, row[i] ?? null)));
        keysOf.push(key);
      } catch (err) {
        if (!(err instanceof RefusedValue)) throw err;
        refused.push({ key, reason: err.message });
      }
    }
    let applied = 0;
    for (let s = 0; s < binds.length; s += BATCH_ROWS) {
      const batch = binds.slice(s, s + BATCH_ROWS);
      let r: OracleResult;
      try {
        r = await this.c.executeMany(sql, batch, { autoCommit: false, batchErrors: true, bindDefs: this.bindDefs(t.columns, batch) });
      } catch (err) {
        throw this.fail(`writing ${table.label}`, err);
      }
      const errors = r.batchErrors ?? [];
      for (const e of errors) {
        refused.push({ key: keysOf[s + e.offset]!, reason: `Oracle refused the row: ${e.message.split('\n')[0]}` });
      }
      applied += batch.length - errors.length;
    }
    return { applied, refused };
  }

  async truncate(table: TableSpec): Promise<void> {
    try {
      await this.c.execute(truncateSql(oracleTable(table)), [], { autoCommit: false });
    } catch (err) {
      throw this.fail(`truncating ${table.label}`, err);
    }
  }

  /**
   * In the run's transaction: it commits with the data or not at all. Fenced entries first lock
   * the sync's progress rows and are refused when one holds a newer epoch. (A copy writes its
   * fence record before any data, so creating IBEX_PROGRESS there commits nothing of the run.)
   */
  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.ensureProgress();
    const epoch = epochOf(entries);
    if (epoch !== undefined) {
      let newer = 0;
      try {
        const r = await this.c.execute(PROGRESS_FENCE_SQL, [sync], { outFormat: this.d.OUT_FORMAT_ARRAY, autoCommit: false });
        for (const row of (r.rows ?? []) as unknown[][]) newer = Math.max(newer, Number(row[0] ?? 0));
      } catch (err) {
        throw this.fail('checking the lease epoch', err);
      }
      if (newer > epoch) throw new IbexError('daemon', fencedMessage(this.kind, this.name, sync, epoch, newer));
    }
    const binds = entries.map((e) => [sync, e.source, e.snapshot, String(e.run), e.epoch === undefined ? null : String(e.epoch)]);
    try {
      await this.c.executeMany(WRITE_PROGRESS_SQL, binds, {
        autoCommit: false,
        bindDefs: [
          { type: this.d.DB_TYPE_VARCHAR, maxSize: 512 },
          { type: this.d.DB_TYPE_VARCHAR, maxSize: 512 },
          { type: this.d.DB_TYPE_CLOB },
          { type: this.d.DB_TYPE_VARCHAR, maxSize: 20 },
          { type: this.d.DB_TYPE_VARCHAR, maxSize: 20 },
        ],
      });
    } catch (err) {
      throw this.fail('writing progress', err);
    }
  }

  async commit(): Promise<void> {
    try {
      await this.c.commit();
    } catch (err) {
      throw this.fail('committing', err);
    }
  }

  async rollback(): Promise<void> {
    try {
      await this.conn?.rollback();
    } catch {
      // A session that is gone has nothing left to roll back: the server did. Whatever the
      // failure, the session is not trusted again: the next begin() connects afresh.
      this.broken = true;
    }
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    this.progressReady = false;
    if (c !== undefined) await c.close().catch(() => undefined);
  }

  /** Every row, read through expressions that give exact text (numbers, timestamps), then canonical. */
  async *scan(table: TableSpec): AsyncIterable<TextRow> {
    const t: OracleTable = oracleTable(table);
    const fetchInfo: Record<string, unknown> = {};
    for (const c of t.columns) {
      if (c.fetchAs === 'string') fetchInfo[c.name] = { type: this.d.STRING };
      else if (c.fetchAs === 'buffer') fetchInfo[c.name] = { type: this.d.BUFFER };
    }
    let r: OracleResult;
    try {
      r = await this.c.execute(scanSql(t), [], { resultSet: true, outFormat: this.d.OUT_FORMAT_ARRAY, fetchInfo });
    } catch (err) {
      throw this.fail(`scanning ${table.label}`, err);
    }
    const rs = r.resultSet;
    if (rs === undefined) return;
    try {
      for (;;) {
        const rows = await rs.getRows(FETCH_ROWS);
        for (const row of rows) yield t.columns.map((c, i) => canonicalOrAsIs(c.pgType, textOf(c, row[i])));
        if (rows.length < FETCH_ROWS) break;
      }
    } finally {
      await rs.close().catch(() => undefined);
    }
  }
}

function canonicalOrAsIs(type: string, text: string | null): string | null {
  try {
    return canonicalText(type, text);
  } catch {
    return text;
  }
}

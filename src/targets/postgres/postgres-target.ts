/**
 * A PostgreSQL db ibex writes: one session (pg.Client) with ibex's pinned settings. It is the
 * `Target` of its kind (COPY text passes through unparsed: caps.copyText) and offers the engine
 * what only PostgreSQL has: its client as a COPY sink, staged applies, the stamp of origin.
 * Every statement that fails says which db refused it (the error is tagged with the db's name).
 */
import type pg from 'pg';
import { connect, errorText, type PgParams, type SessionOptions } from '../../db/connect.js';
import { ident, identList, qualified } from '../../db/ident.js';
import { sqlstate } from '../../db/sqlstate.js';
import { sessionNames, tagDb } from '../../db/tag.js';
import { IbexError } from '../../errors.js';
import { canonicalText } from '../codec.js';
import type {
  KeyRow, ProgressEntry, Problem, TableSpec, Target, TargetCaps, TargetParams, TextRow, UpsertOutcome,
} from '../target.js';
import {
  fromJsonText, readProgressSql, stampSql, truncateSql, upsertSql, writeProgressSql,
  type PgTableNames, type Stamp,
} from './postgres-dialect.js';

/** The quoted names of a TableSpec (the target's own table name). */
function namesOf(t: TableSpec): PgTableNames & { types: string[] } {
  const cols = t.columns.map((c) => c.name);
  return {
    q: qualified(t.schema, t.targetName).text,
    keys: t.keys, keyList: identList(t.keys).text, colList: identList(cols).text,
    nonKeyCols: cols.filter((c) => !t.keys.includes(c)),
    types: t.columns.map((c) => c.type),
  };
}

/** One session on a PostgreSQL db. */
export class PostgresTarget implements Target {
  readonly kind = 'postgres' as const;
  readonly caps: TargetCaps = { transactional: true, progressInTxn: true, copyText: true };
  private session: pg.Client | undefined;

  constructor(readonly name: string, private readonly params: PgParams, private readonly opts: SessionOptions = {}) {}

  /** A target on a session opened elsewhere (tests, tools). */
  static on(name: string, client: pg.Client): PostgresTarget {
    const t = new PostgresTarget(name, {});
    t.adopt(client);
    return t;
  }

  /** Open a session on the db described by target parameters. */
  static fromParams(p: TargetParams, opts: SessionOptions = {}): PostgresTarget {
    return new PostgresTarget(p.name, { host: p.host, port: p.port, dbname: p.dbname, user: p.user, password: p.password, conn: p.conn }, opts);
  }

  private adopt(c: pg.Client): void {
    sessionNames.set(c, this.name);
    this.session = c;
  }

  /**
   * The session (for COPY streams). Throws when it was lost (destroyed after a connection error
   * while a run still held this target): a connection error, so the run is retried soon.
   */
  get client(): pg.Client {
    if (!this.session) throw new IbexError('unreachable', `db ${this.name}: the connection is closed (its session was lost)`);
    return this.session;
  }

  async connect(): Promise<void> {
    if (this.session) return;
    try {
      this.adopt(await connect(this.params, this.opts));
    } catch (err) {
      throw new IbexError('unreachable', `db ${this.name} is unreachable: ${errorText(err)}`, { cause: (err as IbexError).cause ?? err });
    }
  }

  /** Run a statement; a failure is tagged with this db's name. */
  async query(text: string, params?: unknown[]): Promise<pg.QueryResult> {
    const c = this.client;
    try {
      return await c.query(text, params);
    } catch (err) {
      tagDb(err, c);
      throw err;
    }
  }

  /** Run a text of several statements (no parameters); every statement's result, in order. */
  async queryAll(text: string): Promise<pg.QueryResult[]> {
    return [(await this.query(text)) as unknown as pg.QueryResult | pg.QueryResult[]].flat();
  }

  async probe(): Promise<{ version: string }> {
    const r = await this.query(`SELECT current_setting('server_version') AS v`);
    return { version: `PostgreSQL ${String(r.rows[0].v)}` };
  }

  async check(tables: readonly TableSpec[]): Promise<Problem[]> {
    const problems: Problem[] = [];
    for (const t of tables) {
      const r = await this.query(
        `SELECT a.attname AS name FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
        [qualified(t.schema, t.targetName).text]);
      if (r.rows.length === 0) {
        problems.push({ table: t.label, message: `table ${t.schema}.${t.targetName} is missing on db ${this.name}: create it (ibex schema prints its CREATE TABLE)` });
        continue;
      }
      const have = new Set(r.rows.map((x) => String(x.name)));
      const missing = t.columns.filter((c) => !have.has(c.name)).map((c) => c.name);
      if (missing.length) problems.push({ table: t.label, message: `column(s) ${missing.join(', ')} missing on db ${this.name}: add them` });
    }
    return problems;
  }

  createTableSql(t: TableSpec): string[] {
    const n = namesOf(t);
    const cols = t.columns.map((c) => `${ident(c.name).text} ${c.type}${c.notNull ? ' NOT NULL' : ''}`);
    return [`CREATE TABLE ${n.q} (${[...cols, `PRIMARY KEY (${n.keyList})`].join(', ')})`];
  }

  async begin(isolation: 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE' = 'READ COMMITTED'): Promise<void> {
    await this.query(`BEGIN ISOLATION LEVEL ${isolation}`);
  }

  /** Mark what this transaction writes next (origin, sync, capture): see Stamp. */
  async stamp(s: Stamp): Promise<void> {
    await this.query(stampSql(s));
  }

  async readProgress(sync: string): Promise<ProgressEntry[]> {
    const r = await this.query(readProgressSql(sync));
    return r.rows.map((x) => ({ source: String(x.source), snapshot: String(x.snapshot), run: Number(x.run) }));
  }

  async deleteKeys(t: TableSpec, keys: readonly KeyRow[]): Promise<number> {
    if (keys.length === 0) return 0;
    const n = namesOf(t);
    const types = t.keys.map((k) => t.columns.find((c) => c.name === k)!.type);
    const r = await this.query(
      `DELETE FROM ${n.q} WHERE (${n.keyList}) IN (SELECT ${fromJsonText(types)} FROM json_array_elements($1::json) r)`, [JSON.stringify(keys)]);
    return r.rowCount ?? 0;
  }

  async upsertRows(t: TableSpec, rows: readonly TextRow[]): Promise<UpsertOutcome> {
    if (rows.length === 0) return { applied: 0, refused: [] };
    const n = namesOf(t);
    const r = await this.query(upsertSql(n, `SELECT ${fromJsonText(n.types)} FROM json_array_elements($1::json) r`), [JSON.stringify(rows)]);
    return { applied: r.rowCount ?? 0, refused: [] };
  }

  async truncate(t: TableSpec): Promise<void> {
    await this.truncateWithFallback(namesOf(t));
  }

  /**
   * TRUNCATE a table; where a foreign key from outside the truncation refuses it (0A000), DELETE
   * every row instead. Returns the rows a DELETE removed (0 after a TRUNCATE).
   */
  async truncateWithFallback(t: PgTableNames, cascade = false): Promise<number> {
    const s = truncateSql(t, cascade);
    await this.query(s.savepoint);
    try {
      await this.query(s.truncate);
      await this.query(s.release);
      return 0;
    } catch (err) {
      await this.query(s.rollback);
      if (sqlstate(err) !== '0A000') throw err;
      return (await this.query(s.fallback)).rowCount ?? 0;
    }
  }

  async writeProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    const text = writeProgressSql(sync, entries);
    if (text) await this.query(text);
  }

  async commit(): Promise<void> {
    await this.query('COMMIT');
  }

  /** Write progress and commit in one round trip. */
  async commitWithProgress(sync: string, entries: readonly ProgressEntry[]): Promise<void> {
    await this.query(`${writeProgressSql(sync, entries)}COMMIT`);
  }

  async rollback(): Promise<void> {
    if (!this.session) return;
    try {
      await this.session.query('ROLLBACK');
    } catch {
      // A session that is already gone has nothing left to undo (its server rolled back).
    }
  }

  /** ROLLBACK, giving up after `ms`: false when it failed or did not answer (discard the session). */
  async rollbackWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.client.query('ROLLBACK'), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('ROLLBACK timed out')), ms); })]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Close the session at once: the socket is cut (a session left mid-COPY would never answer a
   * graceful end); the server rolls back whatever it had open.
   */
  destroy(): void {
    const c = this.session;
    if (!c) return;
    this.session = undefined;
    (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    // The socket is already cut: end() only settles the client's own state; nothing is lost if it fails.
    c.end().catch(() => {});
  }

  async close(): Promise<void> {
    const c = this.session;
    this.session = undefined;
    await c?.end();
  }

  async *scan(t: TableSpec): AsyncIterable<TextRow> {
    const n = namesOf(t);
    const order = t.keys.map((k) => ident(k).text).join(', ');
    const r = await this.query(`SELECT ${t.columns.map((c) => `${ident(c.name).text}::text`).join(', ')} FROM ${n.q} ORDER BY ${order}`, []);
    for (const row of r.rows) yield t.columns.map((c) => canonicalText(c.type, row[c.name] === null ? null : String(row[c.name])));
  }
}

/** The factory the registry calls (src/targets/registry.ts). */
export function createTarget(params: TargetParams): PostgresTarget {
  return PostgresTarget.fromParams(params);
}

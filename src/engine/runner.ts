/**
 * One run of one sync (DESIGN, "One run of a sync"):
 *
 *  open    one REPEATABLE READ transaction per database, snapshot taken first;
 *  gather  on each source, the keys changed by transactions that committed in
 *          this snapshot but not in the cursor's (PgQ's rule: a transaction
 *          still open is never skipped, it is consumed by a later run);
 *  resolve with two or more sources, every source receives every other
 *          source's pending keys and computes the same per-row winner;
 *  apply   each source streams the rows it won (COPY, raw bytes) into staging
 *          tables on every other database, then deletes (children first) and
 *          upserts (parents first), stamped with their origin so capture
 *          never sends a change back and cascades work;
 *  confirm progress rows inside each apply transaction, commit everywhere,
 *          then advance the cursors in the control database.
 *
 * A failure anywhere before the commits rolls back every database; the
 * cursors only move after every database committed, so a crash re-applies
 * idempotently.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { connect, errorText, redact } from '../db/connect.js';
import { ident, literal as lit } from '../db/ident.js';
import { isConnectionError, isTransient, sqlstate, SqlState } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { openControl } from '../control/connection.js';
import { loadSyncConfig, type SyncConfig, type SyncDb } from '../control/sync-config.js';
import * as store from '../control/run-store.js';
import { purgeHistory } from '../control/retention.js';
import { parseStrategy, winnerOrder, type Strategy } from '../conflict/strategy.js';
import { checkDecisions, type Decision } from '../conflict/custom.js';
import { upgradeCaptureNames } from '../capture/install.js';
import { callCode, codesFor, CustomCodeError, loadCustomcode, type LoadedCode } from '../customcode/loader.js';
import type { Conflict, ExceptionResult, HookContext, HookResult, Row, RunCounts, Whenrun } from '../customcode/api.js';
import { applyStatements, buildPlans, fingerprintQuery, fingerprintParams, OVERRIDING, type TablePlan } from './plan.js';
import { together } from './together.js';
import { copyFanOut, sessionNames, tagDb } from './exchange.js';
import { forSync, unconsumed } from './window.js';
import { copyTables, type CopyContext } from './copy.js';
import type { RunKind, RunResult, TableCounts } from './types.js';

/** Options of a runner. */
export interface RunnerOptions {
  controlUrl: string;
  sync: string;
  log: Logger;
  /** Test hooks: called at fixed points of a delta run (e.g. to race a local write against apply). */
  hooks?: { afterGather?: () => Promise<void> };
}

/** A failure that should pause the sync (schema mismatch) rather than be retried. */
export class PauseError extends IbexError {
  constructor(message: string) {
    super('config', message);
  }
}

/** The insert-only fast path met a key that already exists: repeat the run without it. */
class FastPathConflict extends Error {
  constructor(readonly table: string) {
    super(`a row inserted on its source already exists on a target (${table}); repeating the run through staging`);
  }
}

/** The run aborted on a conflict it was told to abort on. */
export class AbortError extends IbexError {
  constructor(message: string) {
    super('conflict_abort', message);
  }
}

/** When this process last purged the control database's history (shared by every runner). */
let historyPurgedAt = 0;

/** A hook asked to end the run without applying anything; the changes stay pending. */
class SkipRun extends Error {}

/** Hooks whose skipRun is honoured (they run before anything is committed). */
const SKIPPABLE: ReadonlySet<Whenrun> = new Set(['before_sync', 'before_txn', 'before_check_rows', 'before_commit']);

/** The change-time expression of the sync's clock. */
/** At most this many rows won on a source travel inline in the apply round trip (see inlineReadSql)… */
const INLINE_ROWS = 200;
/** …and at most this many bytes of them (stored size). */
const INLINE_BYTES = 256 * 1024;

/** Batches up to this many keys are read and deleted by one index probe per key (see absentSql). */
const SMALL_BATCH = 1_000;

/** Rows through a session's temp tables of one table after which they are truncated, not deleted from. */
const TEMP_TRUNCATE_ROWS = 1_000;

function clockExpr(cfg: SyncConfig): string {
  return cfg.clock === 'commit'
    ? `coalesce(pg_xact_commit_timestamp(((ibex_txid::text::bigint % 4294967296)::text)::xid), ibex_ts)`
    : 'ibex_ts';
}

/**
 * Runs one sync, again and again, on persistent connections. Not re-entrant:
 * the daemon never calls `run` twice at once on one runner.
 */
export class SyncRunner {
  private cfg: SyncConfig | undefined;
  private plans: TablePlan[] = [];
  private control: pg.Client | undefined;
  private readonly conns = new Map<string, pg.Client>();
  /** db -> tables whose applied rows another sync reads there (capture must record them). */
  private downstream = new Map<string, Set<string>>();
  private strategy: Strategy = { kind: 'latest' };
  private lastPurge = 0;
  private fastPathAllowed = true;
  private statementTimeoutMs = 0;
  private lastBacklog = 0;
  /** The sync's active customcodes, loaded with the configuration. */
  private codes: LoadedCode[] = [];
  /** Columns and types of tables that custom conflict code decides (by plan index). */
  private columnTypes = new Map<number, { name: string; type: string }[]>();
  /** State custom code keeps between calls (HookContext.shared). */
  private readonly shared: Record<string, unknown> = {};
  /** Per session and table index, rows put into its temp tables since their last TRUNCATE (see ensureTemp). */
  private readonly tempRows = new WeakMap<pg.Client, Map<number, number>>();

  constructor(readonly opts: RunnerOptions) {}

  private get log(): Logger {
    return this.opts.log;
  }

  private async ctl(): Promise<pg.Client> {
    if (!this.control) {
      const c = await openControl(this.opts.controlUrl, { applicationName: `ibex/${this.opts.sync}/control` });
      // Run history and cursors need not wait for an fsync of the control cluster on every run: a
      // cursor update lost in a crash is recovered from the progress rows every target wrote durably
      // inside its apply transaction (see "Recover" in deltaRun). Conflict records that must
      // precede the commits are written with synchronous_commit on (run-store.logConflicts).
      await c.query(`SET synchronous_commit = off`);
      // A lost control session is replaced at the next use, never reused dead.
      const forget = (): void => {
        if (this.control === c) this.control = undefined;
      };
      c.on('error', forget);
      c.on('end', forget);
      this.control = c;
    }
    return this.control;
  }

  /** The loaded configuration. */
  config(): SyncConfig {
    if (!this.cfg) throw new IbexError('internal', `sync ${this.opts.sync} is not loaded`);
    return this.cfg;
  }

  /** Read the sync's configuration (again). Throws IbexError('config') when unusable. */
  async load(): Promise<void> {
    try {
      await this.loadConfig();
    } catch (err) {
      // Never run on half a configuration (say, without the custom code that failed to load).
      this.cfg = undefined;
      throw err;
    }
  }

  private async loadConfig(): Promise<void> {
    const control = await this.ctl();
    this.cfg = await loadSyncConfig(control, this.opts.sync);
    this.strategy = parseStrategy(this.cfg.conflictStrategy, this.cfg.dbs.map((d) => d.name));
    this.downstream = await store.downstreamReaders(control, this.opts.sync);
    const st = await control.query(`SELECT value FROM ibex.config WHERE name = 'statement_timeout_ms'`);
    this.statementTimeoutMs = st.rows[0] ? Number(st.rows[0].value) || 0 : 0;
    const ref = this.cfg.dbs.find((d) => d.role === 'source');
    if (!ref) throw new IbexError('config', `sync ${this.opts.sync} has no source db: add one with ibex update dbgroup`);
    if (this.cfg.applyMode === 'replica') {
      const cannot = this.cfg.dbs.filter((d) => d.dbtype === 'postgres' && !d.canReplica).map((d) => d.name);
      if (cannot.length) {
        throw new PauseError(`apply_mode=replica needs a role that may set session_replication_role on ${cannot.join(', ')} (superuser, or GRANT SET ON PARAMETER session_replication_role): grant it and "ibex update db" to re-test, or use apply_mode=upsert`);
      }
      const mine = new Set(this.cfg.relations.map((r) => `${r.schema}.${r.name}`));
      const cascades = this.cfg.dbs.filter((d) => [...(this.downstream.get(d.name) ?? [])].some((t) => mine.has(t))).map((d) => d.name);
      if (cascades.length) {
        throw new PauseError(`apply_mode=replica silences capture of applied rows, but other syncs read ${cascades.join(', ')}: use apply_mode=upsert so their changes cascade`);
      }
    }
    this.plans = [];
    await this.closeDbs();
    const c = await this.db(ref);
    const others = await Promise.all(this.cfg.dbs.filter((d) => d !== ref && d.dbtype === 'postgres' && d.status === 'active')
      .map(async (d) => ({ db: d.name, client: await this.db(d) })));
    this.plans = await buildPlans(c, this.cfg.relations, ref.name, others);
    this.codes = await loadCustomcode(control, this.opts.sync, this.plans.map((p) => p.rel));
    this.columnTypes.clear();
    for (const p of this.plans) {
      if (this.relStrategy(p).kind === 'custom' && !codesFor(this.codes, 'conflict', p.label).length) {
        throw new PauseError(`table ${p.label} has conflict_strategy=custom but no active conflict customcode is mapped to it or to sync ${this.opts.sync}: add one with "ibex add customcode <name> whenrun=conflict src_code=<file> sync=${this.opts.sync}", then "ibex resume ${this.opts.sync}"`);
      }
      // The column types (the same on every db: the fingerprint compares them at every run) cast
      // rows sent as text: custom merges and inlined rows.
      const r = await c.query(
        `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, [p.oid]);
      this.columnTypes.set(p.idx, r.rows.map((x) => ({ name: String(x.name), type: String(x.type) })));
    }
  }

  /** Names of the source dbs (each must be LISTENed on) — valid after load(). */
  sources(): string[] {
    return this.cfg?.dbs.filter((d) => d.role === 'source').map((d) => d.name) ?? [];
  }

  private pgDbs(roles: SyncDb['role'][] = ['source', 'target']): SyncDb[] {
    return this.config().dbs.filter((d) => d.dbtype === 'postgres' && roles.includes(d.role) && d.status === 'active');
  }

  /** A session on one db, connected lazily and kept between runs. */
  private async db(d: SyncDb): Promise<pg.Client> {
    let c = this.conns.get(d.name);
    if (c) return c;
    try {
      // A run never waits long behind an application's lock: 55P03 is transient, the run is retried.
      c = await connect(d.params, { applicationName: `ibex/${this.opts.sync}`, lockTimeoutMs: 10_000, statementTimeoutMs: this.statementTimeoutMs });
    } catch (err) {
      throw new IbexError('unreachable', `db ${d.name} is unreachable: ${errorText(err)}`, { cause: (err as IbexError).cause ?? err });
    }
    c.on('error', () => this.discard(d.name));
    sessionNames.set(c, d.name);
    if (d.role === 'source' && d.dbtype === 'postgres' && this.cfg) {
      // Capture objects an older ibex installed under other names move to today's names before
      // this session reads a delta table (cheap when nothing is old: one query, no locks).
      try {
        await upgradeCaptureNames(c, d.name, this.cfg.relations.filter((r) => r.reltype === 'table'),
          (line) => this.log.warn({ sync: this.opts.sync, db: d.name }, line));
      } catch (err) {
        c.end().catch(() => {});
        throw err;
      }
    }
    // Every failed statement says which db refused it (see run(): "db B: …").
    const query = c.query.bind(c) as (...args: unknown[]) => unknown;
    (c as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const out = query(...args);
      if (out instanceof Promise) return out.catch((err: unknown) => { tagDb(err, c!); throw err; });
      return out;
    };
    this.conns.set(d.name, c);
    return c;
  }

  private discard(name: string): void {
    const c = this.conns.get(name);
    if (!c) return;
    this.conns.delete(name);
    // Cut the socket: a session left mid-COPY would never answer a graceful end. The server
    // rolls back whatever the session had open.
    (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    c.end().catch(() => {});
  }

  private async closeDbs(): Promise<void> {
    for (const name of [...this.conns.keys()]) this.discard(name);
  }

  /**
   * The temp tables of some tables on one session, in one round trip (pending keys, all sources'
   * pending keys, keys this db wins, deletes, staged rows), emptied for this run. Created inside
   * the run transaction the first time a session needs them; rollbackAll forgets what a session
   * created, so a rolled-back run never leaves the runner believing in a table that is gone.
   *
   * They are plain temp tables emptied here, before use, not ON COMMIT DELETE ROWS: PostgreSQL
   * truncates every such table of a session at every commit that touched any temp table, ~0.3 ms
   * each, i.e. five per replicated table at every commit of every db — 1.5 ms a run with one
   * table, half a second with a hundred. A DELETE of the few rows a run left costs almost nothing;
   * the dead rows it leaves (temp tables are never autovacuumed) are cleared by a TRUNCATE once
   * TEMP_TRUNCATE_ROWS rows went through a table.
   */
  private async ensureTemp(c: pg.Client, plans: readonly TablePlan[]): Promise<void> {
    if (plans.length === 0) return;
    await c.query(this.tempSql(c, plans));
  }

  /** The statements of ensureTemp (one text, to be sent alone or ahead of others). */
  private tempSql(c: pg.Client, plans: readonly TablePlan[]): string {
    let used = this.tempRows.get(c);
    if (!used) this.tempRows.set(c, (used = new Map()));
    const meta = `NULL::timestamptz AS ibex_ts, NULL::boolean AS ibex_insonly, NULL::text AS ibex_origin`;
    return `SET LOCAL client_min_messages = warning;
      ${plans.map((p) => {
        const keyOnly = p.keys.map((k) => ident(k).text).join(', ');
        const i = p.idx;
        const tables = ['pend', 'all', 'mine', 'del', 'stage'].map((t) => `pg_temp.ibex_${t}_${i}`);
        const big = (used.get(i) ?? 0) >= TEMP_TRUNCATE_ROWS;
        // New to this session, or new storage after a TRUNCATE: ANALYZE them once, empty. A temp
        // table never analyzed is planned as if it held ten pages of rows (~1,000), so a join of a
        // few pending keys with a big table became a hash join over all of it (4 ms at 13k rows,
        // seconds at millions); analyzed, it is planned from its real size at every statement.
        // Tables this session created in a run that committed need no CREATE (a rolled-back run
        // forgets them in rollbackAll; were one gone regardless, the DELETE below fails the run,
        // which forgets them too).
        const known = used.has(i);
        const fresh = big || !known;
        if (fresh) used.set(i, 0);
        return `
      ${known ? '' : `
      CREATE TEMP TABLE IF NOT EXISTS ibex_pend_${i} AS SELECT ${keyOnly}, ${meta} FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_all_${i} AS SELECT NULL::text AS ibex_src, ${keyOnly}, ${meta} FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_mine_${i} AS SELECT ${keyOnly}, NULL::text AS ibex_origin FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_del_${i} AS SELECT ${keyOnly}, NULL::text AS ibex_origin FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_stage_${i} AS SELECT ${p.colList}, NULL::text AS ibex_origin FROM ${p.q} WITH NO DATA;`}
      ${big ? `TRUNCATE ${tables.join(', ')};` : tables.map((t) => `DELETE FROM ${t};`).join(' ')}
      ${fresh ? `ANALYZE ${tables.join(', ')};` : ''}`;
      }).join('')}`;
  }

  /**
   * Read the rows a source won (its ibex_mine) as one JSON array of text arrays — every column as
   * its type's text output, exactly what COPY's text format carries — with the count; `rows` is
   * NULL when they are too large to inline (then COPY carries them).
   */
  private inlineReadSql(p: TablePlan): string {
    const cols = p.cols.map((col) => `t.${ident(col).text}::text`).join(', ');
    // At most INLINE_ROWS keys: one index probe each.
    return `WITH x AS (SELECT to_json(ARRAY[${cols}, m.ibex_origin]) AS j, pg_column_size(t.*) AS size
                         FROM ${this.wonRowsFrom(p, true)})
            SELECT count(*) AS n, CASE WHEN coalesce(sum(size), 0) <= ${INLINE_BYTES} THEN json_agg(j)::text END AS rows FROM x`;
  }

  /** Whether every key column's type is known (a generated key column is not among the writable columns typed at load). */
  private keysInlineable(p: TablePlan): boolean {
    const types = this.columnTypes.get(p.idx) ?? [];
    return p.keys.every((k) => types.some((x) => x.name === k));
  }

  /**
   * `(r->>0)::type0, (r->>1)::type1, …`: the elements of a JSON array `r` of texts, read back
   * through the types of some columns (in order) — the inverse of `to_json(ARRAY[col::text, …])`.
   */
  private fromText(p: TablePlan, cols: readonly string[]): string {
    const types = this.columnTypes.get(p.idx)!;
    return cols.map((col, i) => `(r->>${i})::${types.find((x) => x.name === col)!.type}`).join(', ');
  }

  /** Load a source's pending keys, read as JSON by the gather, into ibex_all (each text through its type's input). */
  private inlineKeysSql(p: TablePlan, srcName: string, keys: string): string {
    const n = p.keys.length;
    return `INSERT INTO pg_temp.ibex_all_${p.idx} (ibex_src, ${p.keyList}, ibex_ts, ibex_insonly, ibex_origin)
            SELECT ${lit(srcName)}, ${this.fromText(p, p.keys)}, (r->>${n})::timestamptz, (r->>${n + 1})::boolean, r->>${n + 2}
              FROM json_array_elements(${lit(keys)}::json) r`;
  }

  /** Load rows read by inlineReadSql into this db's staging table (each text through its type's input). */
  private inlineLoadSql(p: TablePlan, rows: string): string {
    return `INSERT INTO pg_temp.ibex_stage_${p.idx} (${p.colList}, ibex_origin)
            SELECT ${this.fromText(p, p.cols)}, r->>${p.cols.length}
              FROM json_array_elements(${lit(rows)}::json) r`;
  }

  /** The rows a source won: table `t` joined with its ibex_mine `m` (index probes for a small batch, see absentSql). */
  private wonRowsFrom(p: TablePlan, small: boolean): string {
    return small
      ? `pg_temp.ibex_mine_${p.idx} m CROSS JOIN LATERAL (SELECT * FROM ${p.q} t WHERE ${p.keyJoin('t', 'm')} OFFSET 0) t`
      : `${p.q} t JOIN pg_temp.ibex_mine_${p.idx} m ON ${p.keyJoin('t', 'm')}`;
  }

  /**
   * Keys of ibex_mine `m` absent from the table. For a small batch, one index probe per key
   * (OFFSET 0 keeps the planner from turning it into an anti-join it might hash over the whole
   * table, guessing the temp table's size from its pages); a large batch may be hashed.
   */
  private absentSql(p: TablePlan, small: boolean): string {
    return `NOT EXISTS (SELECT 1 FROM ${p.q} t WHERE ${p.keyJoin('t', 'm')}${small ? ' OFFSET 0' : ''})`;
  }

  /**
   * Delete the rows whose keys are in ibex_del with one origin. A small batch on a one-column key
   * deletes through `key = ANY(array)` (an index scan whatever the table's size); otherwise a join.
   */
  private deleteSql(p: TablePlan, small: boolean, oneRow: string, origin: string): string {
    if (small && p.keys.length === 1) {
      const k = ident(p.keys[0]!).text;
      return `DELETE FROM ${p.q} t WHERE t.${k} = ANY (ARRAY(
                SELECT s.${k} FROM pg_temp.ibex_del_${p.idx} s WHERE s.ibex_origin IS NOT DISTINCT FROM ${origin} ${oneRow}))`;
    }
    return `DELETE FROM ${p.q} t USING pg_temp.ibex_del_${p.idx} s WHERE ${p.keyJoin('t', 's')} AND s.ibex_origin IS NOT DISTINCT FROM ${origin} ${oneRow}`;
  }

  /** Count rows that went through the temp tables of a table on every session (see ensureTemp). */
  private noteTempRows(idx: number, rows: number): void {
    for (const c of this.conns.values()) {
      const used = this.tempRows.get(c);
      if (used) used.set(idx, (used.get(idx) ?? 0) + rows);
    }
  }

  /** The delta-window filter of this sync for one source (parameters: $1 cursor snapshot). */
  private windowFilter(sourceNames: string[]): string {
    return `${unconsumed('$1::pg_snapshot')} AND ${forSync(this.opts.sync, sourceNames)}`;
  }

  /** Is there anything past this sync's cursors on any source? Cheap; used after setting idle. */
  async hasPending(): Promise<boolean> {
    if (!this.cfg) return false;
    const control = await this.ctl();
    const cursors = await store.readCursors(control, this.opts.sync);
    const sources = this.pgDbs(['source']);
    const names = sources.map((s) => s.name);
    for (const src of sources) {
      const cur = cursors.get(src.name);
      if (!cur) return true;
      const c = await this.db(src);
      const parts = this.plans.map((p) => `SELECT 1 FROM ${p.delta} WHERE ${this.windowFilter(names)}`);
      parts.push(`SELECT 1 FROM ibex.truncates WHERE ${this.windowFilter(names)}`);
      const r = await c.query(`SELECT EXISTS (${parts.join(' UNION ALL ')}) AS p`, [cur]);
      if (r.rows[0].p === 't') return true;
    }
    return false;
  }

  /** Do one run and record it in ibex.run. Never throws for run failures: they are in the result. */
  async run(kind: RunKind = 'delta', opts: { kickId?: number } = {}): Promise<RunResult> {
    const started = Date.now();
    const result: RunResult = {
      runId: 0, sync: this.opts.sync, kind, status: 'empty', inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {}, durationMs: 0,
    };
    let extra: Record<string, unknown> = {};
    try {
      const control = await this.ctl();
      result.runId = await store.startRun(control, this.opts.sync, kind);
      if (opts.kickId !== undefined) await control.query(`UPDATE ibex.kick SET run = $1, taken = coalesce(taken, now()) WHERE id = $2`, [result.runId, opts.kickId]);
      if (!this.cfg) await this.load();
      if (kind === 'delta') {
        // A local write racing the apply (40001) or a deadlock is answered at once with a fresh
        // snapshot, a few times, before the failure goes to the daemon's backoff: under steady
        // writes a short retry usually wins, a growing wait only makes the next run longer.
        await this.runHooks('before_sync', result.runId);
        let hookRetries = 0;
        for (let attempt = 1; ; attempt++) {
          try {
            extra = await this.deltaRun(result);
            break;
          } catch (err) {
            const raced = sqlstate(err) === SqlState.serializationFailure || sqlstate(err) === SqlState.deadlock;
            if (!(err instanceof FastPathConflict) && !(raced && attempt < 4)) {
              // Exception customcode may repair what failed and ask for a retry (twice at most), or skip.
              const askHooks = hookRetries < 2 && this.codes.some((c) => c.whenrun === 'exception')
                && !(err instanceof SkipRun) && !(err instanceof CustomCodeError) && !(err instanceof AbortError);
              if (!askHooks) throw err;
              await this.rollbackAll(err);
              const verdict = await this.runExceptionHooks(err, result.runId, attempt);
              if (verdict === 'skip') throw new SkipRun(`exception customcode skipped the run after: ${redact(errorText(err))}`);
              if (verdict === 'fail') throw err;
              hookRetries++;
              Object.assign(result, { inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {} });
              continue;
            }
            this.log.debug({ run: result.runId, attempt }, err instanceof FastPathConflict ? err.message : `retrying at once: ${errorText(err)}`);
            await this.rollbackAll(err);
            Object.assign(result, { inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {} });
            if (err instanceof FastPathConflict) this.fastPathAllowed = false;
          }
        }
        this.fastPathAllowed = true;
      }
      else extra = await copyTables(this.copyContext(), kind, result);
    } catch (err) {
      this.fastPathAllowed = true;
      await this.rollbackAll(err);
      if (err instanceof SkipRun) {
        Object.assign(result, { status: 'empty', inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {} });
        extra = { skipped: err.message };
        this.log.info({ sync: this.opts.sync, run: result.runId }, err.message);
      } else {
        const msg = redact(err instanceof IbexError ? err.message : withDb(err));
        result.error = msg;
        result.status = err instanceof AbortError ? 'aborted' : 'failed';
        result.transient = !(err instanceof PauseError) && !(err instanceof AbortError) && (isTransient(err) || (err instanceof IbexError && err.code === 'unreachable'));
        result.pause = err instanceof PauseError || err instanceof AbortError;
        result.contention = sqlstate(err) === SqlState.serializationFailure || sqlstate(err) === SqlState.deadlock;
        if (err instanceof IbexError && err.code === 'internal' && this.control === undefined) result.transient = true;
        this.log.warn({ sync: this.opts.sync, run: result.runId, sqlstate: sqlstate(err) ?? sqlstate((err as { cause?: unknown }).cause), transient: result.transient }, `run failed: ${msg}`);
        if (!isTransient(err) && !(err instanceof IbexError)) this.log.debug({ err }, 'run failure detail');
      }
    }
    result.durationMs = Date.now() - started;
    if (kind === 'delta' && this.cfg) await this.runAfterHooks('after_sync', result, extra);
    try {
      const control = await this.ctl();
      if (result.runId) {
        await store.endRun(control, result, extra);
        if (result.pause && result.error) await store.pauseSync(control, this.opts.sync, result.error);
      }
    } catch (err) {
      // The control db went away: the run itself is settled (committed or rolled back); say so and go on.
      this.control?.end().catch(() => {});
      this.control = undefined;
      this.log.warn({ sync: this.opts.sync }, `could not record run: ${redact(errorText(err))}`);
      if (result.status !== 'failed') result.transient = false;
    }
    this.log[result.status === 'empty' ? 'debug' : 'info']({ run: result.runId, kind, status: result.status, inserted: result.inserted, deleted: result.deleted, conflicts: result.conflicts, truncates: result.truncates, ms: result.durationMs }, 'run');
    return result;
  }

  private copyContext(): CopyContext {
    return {
      sync: this.opts.sync,
      cfg: this.config(),
      plans: this.plans,
      log: this.log,
      control: () => this.ctl(),
      db: (d) => this.db(d),
      discard: (name) => this.discard(name),
    };
  }

  /**
   * Roll back every session after a failed run. Sessions stay open after a clean rollback of a
   * statement error (a serialization failure under load should not cost reconnects and new temp
   * tables); they are discarded after a connection error, a broken COPY stream, or a failed ROLLBACK.
   */
  private async rollbackAll(cause?: unknown): Promise<void> {
    const keep = cause !== undefined && !isConnectionError(cause) && !(cause as { ibexCopyStream?: boolean }).ibexCopyStream;
    await Promise.all([...this.conns.entries()].map(async ([name, c]) => {
      // Sessions not kept are closed without a ROLLBACK (closing rolls back), so a session
      // wedged by a broken stream cannot hang the runner; a ROLLBACK that does not answer
      // within 10 s gets the same treatment.
      if (!keep) return this.discard(name);
      // Temp tables created (and analyzed) by the rolled-back run are gone: start afresh.
      this.tempRows.delete(c);
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([c.query('ROLLBACK'), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('ROLLBACK timed out')), 10_000); })]);
      } catch {
        this.discard(name);
      } finally {
        clearTimeout(timer);
      }
    }));
  }

  /** One delta run; fills `result`, returns extra details for ibex.run. */
  private async deltaRun(result: RunResult): Promise<Record<string, unknown>> {
    const cfg = this.config();
    const control = await this.ctl();
    const all = this.pgDbs(['source', 'target']);
    const sources = all.filter((d) => d.role === 'source');
    const sourceNames = sources.map((s) => s.name);
    const clients = new Map<string, pg.Client>();
    for (const d of all) clients.set(d.name, await this.db(d));
    // The cursors, and the syncs that read our tables downstream (review fix: a sync added since
    // load() may read them somewhere: capture what we apply there) — read while the dbs open.
    const inputs = store.runInputs(control, this.opts.sync);
    inputs.catch(() => {}); // awaited below; an open failing first must not leave it unhandled

    // Replica mode: user triggers, rules and FK checks are silenced on the dbs ibex writes, so rows
    // may be deleted and copied back (never fires ON DELETE CASCADE or user triggers).
    const replica = cfg.applyMode === 'replica';

    await this.runHooks('before_txn', result.runId);

    // Open: one REPEATABLE READ transaction per db; the snapshot is fixed by the first query.
    const snaps = new Map<string, string>();
    const clocks: number[] = [];
    /** Per db, the progress rows of this sync's runs there (read in the open round trip; see Recover). */
    const progressRows = new Map<string, Record<string, unknown>[]>();
    // One round trip per db: open, snapshot and clock, and the schema check (every db must still
    // have the columns and key the plans were built from). Parameters are inlined as literals:
    // several statements in one query text go through the simple protocol, which takes none.
    const fpParams = fingerprintParams(this.plans.map((p) => p.rel));
    const fpQuery = fingerprintQuery().replace(/\$(\d)/g, (_, n: string) => `ARRAY[${fpParams[Number(n) - 1]!.map(lit).join(', ')}]::text[]`);
    await together(all, async (d) => {
      const c = clients.get(d.name)!;
      const t0 = Date.now();
      const [, r, fp, prog] = (await c.query(
        `BEGIN ISOLATION LEVEL ${cfg.isolationLevel === 'serializable' ? 'SERIALIZABLE' : 'REPEATABLE READ'};
         SELECT set_config('work_mem', '64MB', true), ${replica ? `set_config('session_replication_role', 'replica', true), ` : ''}pg_current_snapshot()::text AS snap,
                extract(epoch FROM clock_timestamp() + ${process.env.IBEX_TEST_CLOCK_OFFSET === '1' ? `coalesce(nullif(current_setting('ibex.clock_offset', true), ''), '0')::interval` : `'0'::interval`}) * 1000 AS now_ms;
         ${fpQuery};
         SELECT source, snapshot, run FROM ibex.progress WHERE sync = ${lit(this.opts.sync)}`)) as unknown as pg.QueryResult[];
      const t1 = Date.now();
      progressRows.set(d.name, prog!.rows);
      snaps.set(d.name, String(r!.rows[0].snap));
      clocks.push(Number(r!.rows[0].now_ms) - (t0 + t1) / 2);
      const got = new Map(fp!.rows.map((row) => [String(row.label), String(row.fp)]));
      for (const p of this.plans) {
        const f = got.get(p.label) ?? '';
        if (f !== p.fingerprint) {
          throw new PauseError(`table ${p.label} on db ${d.name} no longer matches (${describeDiff(p.fingerprint, f)}): make the tables identical on every db, then "ibex resume ${this.opts.sync}"`);
        }
      }
    });
    const skewMs = clocks.length > 1 ? Math.max(...clocks) - Math.min(...clocks) : 0;
    const { downstream, cursors } = await inputs;
    this.downstream = downstream;

    await this.runHooks('before_check_rows', result.runId);

    const phases: Record<string, number> = {};
    let phaseStart = Date.now();
    const phase = (name: string): void => {
      phases[name] = Date.now() - phaseStart;
      phaseStart = Date.now();
    };
    phase('open');

    // Recover: a run whose transactions all committed but whose cursor update was lost (a crash
    // in between) is recognised from the progress rows it wrote on every other db. Adopting its
    // snapshots keeps a stale re-delivery from overriding a later change under a priority strategy.
    const progress = all.map((d) => {
      const rows = progressRows.get(d.name) ?? [];
      return { db: d.name, rows: new Map(rows.map((x) => [String(x.source), String(x.snapshot)])), runs: rows.map((x) => Number(x.run)) };
    });
    const adoptedRuns = new Set<number>();
    for (const src of sources) {
      const others = progress.filter((p) => p.db !== src.name);
      const seen = new Set(others.map((p) => p.rows.get(src.name) ?? ''));
      const snap = [...seen][0];
      const cur = cursors.get(src.name);
      if (others.length === 0 || seen.size !== 1 || !snap || !cur || snap === cur) continue;
      const newer = await clients.get(src.name)!.query(`SELECT pg_snapshot_xmax($1::pg_snapshot) > pg_snapshot_xmax($2::pg_snapshot) AS n`, [snap, cur]);
      if (newer.rows[0].n === 't') {
        this.log.info({ source: src.name }, 'adopting the snapshot of a run that committed everywhere before its cursor was saved');
        cursors.set(src.name, snap);
        for (const p of others) for (const run of p.runs) adoptedRuns.add(run);
      }
    }
    // That run's overwrites happened everywhere: its conflict records, logged pending before the
    // commits, are settled now (its own settle was lost with the cursor update).
    for (const run of adoptedRuns) if (run && run !== result.runId) await store.settleConflicts(control, run, true);

    // Gather, on each source, the keys changed in this run's window.
    const window = this.windowFilter(sourceNames);
    const ts = clockExpr(cfg);
    const counts = new Map<string, number>(); // `${src}/${idx}` -> pending keys
    const truncs = new Map<number, { src: string; ts: string }>();
    const activeTables = new Set<number>();
    /** `${src}/${idx}` -> the one origin, when every pending key there is a plain insert. */
    const insertOnly = new Map<string, string>();
    /** `${src}/${idx}` of pending changes read straight from the delta table, never gathered (see below). */
    const lazy = new Set<string>();
    // One round trip per source finds its truncates, and per table with pending changes how many
    // delta rows, whether all are plain inserts, and their one origin (if one).
    const classes = new Map<string, { n: number; insonly: boolean; origin: string | null }>();
    // Sources are independent sessions: they are read in parallel.
    await together(sources, async (src) => {
      const c = clients.get(src.name)!;
      const cur = cursors.get(src.name) ?? snaps.get(src.name)!;
      const inlined = window.replaceAll('$1', lit(cur));
      const origin = `coalesce(ibex_origin, ${lit(src.name)})`;
      const [tr, cls] = (await c.query(
        `SELECT schemaname || '.' || relname AS label, max(ibex_ts)::text AS ts FROM ibex.truncates WHERE ${inlined} GROUP BY 1;
         ${this.plans.length === 0 ? 'SELECT 1 WHERE false' : `SELECT i, n, insonly, origin FROM (${this.plans.map((p) =>
          `SELECT ${p.idx} AS i, count(*) AS n, bool_and(ibex_op = 'I') AS insonly,
                  CASE WHEN min(${origin}) = max(${origin}) THEN min(${origin}) END AS origin
             FROM ${p.delta} WHERE ${inlined}`).join(' UNION ALL ')}) x WHERE n > 0`}`)) as unknown as pg.QueryResult[];
      for (const row of tr!.rows) {
        const p = this.plans.find((x) => x.label === row.label);
        if (!p) continue;
        const prev = truncs.get(p.idx);
        if (!prev || prev.ts < String(row.ts)) truncs.set(p.idx, { src: src.name, ts: String(row.ts) });
      }
      for (const row of cls!.rows) {
        classes.set(`${src.name}/${row.i}`, { n: Number(row.n), insonly: row.insonly === 't', origin: row.origin === null ? null : String(row.origin) });
      }
    });
    // A table only inserted into, on one source, with one origin and no truncate, takes the fast
    // path straight from its delta table: no gather into temp tables (most of a bulk load's cost).
    // Not a table with rules: the fast path ends in COPY, which skips them.
    for (const [key, k] of classes) {
      const idx = Number(key.slice(key.lastIndexOf('/') + 1));
      const single = sources.filter((s) => classes.has(`${s.name}/${idx}`)).length === 1;
      if (this.fastPathAllowed && k.insonly && k.origin !== null && single && !truncs.has(idx) && !this.plans.find((p) => p.idx === idx)?.hasRules) {
        lazy.add(key);
        counts.set(key, k.n);
        insertOnly.set(key, k.origin);
      }
    }
    // Temp tables for every table gathered (one round trip per session), then the gathers.
    const gathered = this.plans.filter((p) => sources.some((s) => classes.has(`${s.name}/${p.idx}`) && !lazy.has(`${s.name}/${p.idx}`)));
    for (const p of gathered) activeTables.add(p.idx);
    /** `${src}/${idx}` -> a few pending keys as JSON (see inlineKeysSql), read by the gather. */
    const pendJson = new Map<string, string>();
    /** Tables whose ibex_all (every source's pending keys) each source filled while gathering. */
    const allFilled = new Set<number>();
    for (const p of gathered) {
      // Several sources changed it (a conflict is possible) and no truncate will drop keys after
      // the gather: the gather copies its keys into ibex_all at once, saving a statement per source.
      if (sources.filter((s) => classes.has(`${s.name}/${p.idx}`)).length > 1 && !truncs.has(p.idx)) allFilled.add(p.idx);
    }
    // One round trip per source: its temp tables, then the gather of each table (the cursor is a
    // literal: several statements in one text take no parameters). Other dbs only get temp tables.
    await together([...clients.entries()], async ([name, c]) => {
      if (!sourceNames.includes(name)) return this.ensureTemp(c, gathered);
      const cur = cursors.get(name) ?? snaps.get(name)!;
      const mine = gathered.filter((p) => classes.has(`${name}/${p.idx}`));
      const inlined = window.replaceAll('$1', lit(cur));
      const origin = `coalesce(ibex_origin, ${lit(name)})`;
      const texts = mine.map((p) => {
        const keys = p.keys.map((k) => ident(k).text).join(', ');
        // The origin of a key is that of its latest change; most keys have one origin, so the
        // ordered aggregate is only paid for keys with several (min = max short-circuits it).
        return `WITH ins AS (
             INSERT INTO pg_temp.ibex_pend_${p.idx} (${keys}, ibex_ts, ibex_insonly, ibex_origin)
             SELECT ${keys}, max(${ts}), bool_and(ibex_op = 'I'),
                    CASE WHEN min(${origin}) = max(${origin}) THEN min(${origin})
                         ELSE (array_agg(${origin} ORDER BY ibex_ts DESC))[1] END
               FROM ${p.delta} WHERE ${inlined} GROUP BY ${keys}
             RETURNING *)${allFilled.has(p.idx) ? `,
           a AS (INSERT INTO pg_temp.ibex_all_${p.idx} SELECT ${lit(name)}, * FROM ins)` : ''}
           SELECT count(*) AS n, bool_and(ibex_insonly) AS insonly, count(DISTINCT ibex_origin) AS origins, min(ibex_origin) AS origin${allFilled.has(p.idx) && this.keysInlineable(p) ? `,
                  (SELECT json_agg(to_json(ARRAY[${p.keys.map((k) => `i.${ident(k).text}::text`).join(', ')}, i.ibex_ts::text, i.ibex_insonly::text, i.ibex_origin]))
                     FROM ins i WHERE (SELECT count(*) FROM ins) <= ${INLINE_ROWS})::text AS keys_json` : ''} FROM ins`;
      });
      const results = [(await c.query(`${this.tempSql(c, gathered)}\n${texts.join(';\n')}`)) as unknown as pg.QueryResult[]].flat();
      // The gathers' results are the last ones (the temp-table statements come first).
      for (const [i, p] of mine.entries()) {
        const g = results[results.length - mine.length + i]!.rows[0];
        if (Number(g.n) > 0) {
          counts.set(`${name}/${p.idx}`, Number(g.n));
          if (g.keys_json !== undefined && g.keys_json !== null) pendJson.set(`${name}/${p.idx}`, String(g.keys_json));
          if (g.insonly === 't' && Number(g.origins) === 1) insertOnly.set(`${name}/${p.idx}`, String(g.origin));
        }
      }
    });
    for (const p of gathered) this.noteTempRows(p.idx, sources.reduce((n, s) => n + (counts.get(`${s.name}/${p.idx}`) ?? 0), 0));
    const backlog: Record<string, { keys: number; oldest: string | null }> = {};
    for (const src of sources) {
      backlog[src.name] = { keys: this.plans.reduce((n, p) => n + (counts.get(`${src.name}/${p.idx}`) ?? 0), 0), oldest: null };
    }

    const hasWork = counts.size > 0 || truncs.size > 0;
    if (!hasWork) {
      await this.syncSequences(clients, sources, all);
      // Nothing to do: end the transactions and still move the cursors forward (keeps windows small).
      await together([...clients.values()], (c) => c.query('COMMIT'));
      await store.advanceCursors(control, this.opts.sync, new Map(sources.map((s) => [s.name, snaps.get(s.name)!])));
      await this.recordBacklog(sources, clients, snaps, skewMs);
      await this.maybePurge(sources, clients);
      result.status = 'empty';
      return { skewMs };
    }

    const tableCounts = (p: TablePlan): TableCounts => (result.tables[p.label] ??= { inserted: 0, deleted: 0, conflicts: 0, truncates: 0 });
    const others = (name: string): SyncDb[] => all.filter((d) => d.name !== name);
    /** The transaction-local settings that stamp what ibex applies on a db (origin, sync, capture). */
    const localSql = (origin: string | null, p: TablePlan, dbName: string): string => {
      const downstream = this.downstream.get(dbName)?.has(p.label) ?? false;
      return `SELECT set_config('ibex.origin', ${lit(origin ?? '')}, true), set_config('ibex.by', ${lit(this.opts.sync)}, true), set_config('ibex.nocapture', ${downstream ? `'off'` : `'on'`}, true)`;
    };
    const setLocal = async (c: pg.Client, origin: string | null, p: TablePlan, dbName: string): Promise<void> => {
      await c.query(localSql(origin, p, dbName));
    };

    phase('gather');

    // Truncates: the latest truncate of a table wins; changes older than it are dropped.
    for (const [idx, t] of truncs) {
      const p = this.plans[idx]!;
      if (!activeTables.has(idx)) {
        activeTables.add(idx);
        await together([...clients.values()], (x) => this.ensureTemp(x, [p]));
      }
      for (const src of sources) await clients.get(src.name)!.query(`DELETE FROM pg_temp.ibex_pend_${idx} WHERE ibex_ts <= $1::timestamptz`, [t.ts]);
      // What the truncating db holds now stays everywhere: its own later changes, and rows a run
      // applied there after the truncate committed but before it was replicated (that run's
      // snapshot predated it). Truncating the others regardless would leave those rows on the
      // truncating db alone, for ever.
      const keys = p.keys.map((k) => ident(k).text).join(', ');
      const held = (await clients.get(t.src)!.query(`SELECT EXISTS (SELECT 1 FROM ${p.q}) AS e`)).rows[0].e === 't';
      if (held) {
        await together(others(t.src), (d) => clients.get(d.name)!.query(
          `SET LOCAL client_min_messages = warning;
           CREATE TEMP TABLE IF NOT EXISTS ibex_keep_${idx} AS SELECT ${keys} FROM ${p.q} WITH NO DATA;
           TRUNCATE pg_temp.ibex_keep_${idx}`));
        await copyFanOut(clients.get(t.src)!, `COPY (SELECT ${keys} FROM ${p.q}) TO STDOUT`,
          others(t.src).map((d) => ({ client: clients.get(d.name)!, sql: `COPY pg_temp.ibex_keep_${idx} FROM STDIN` })));
      }
      for (const d of others(t.src)) {
        const c = clients.get(d.name)!;
        await setLocal(c, t.src, p, d.name);
        // Review fix: rows a source changed after the truncate are still pending there and are read
        // from its table later in this run: keep them (a plain TRUNCATE would lose them everywhere).
        const pending = sourceNames.includes(d.name) && (await c.query(`SELECT EXISTS (SELECT 1 FROM pg_temp.ibex_pend_${idx}) AS e`)).rows[0].e === 't';
        if (pending || held) {
          await c.query(`DELETE FROM ${p.q} t WHERE true
            ${pending ? `AND NOT EXISTS (SELECT 1 FROM pg_temp.ibex_pend_${idx} m WHERE ${p.keyJoin('t', 'm')})` : ''}
            ${held ? `AND NOT EXISTS (SELECT 1 FROM pg_temp.ibex_keep_${idx} k WHERE ${p.keyJoin('t', 'k')})` : ''}`);
          continue;
        }
        await c.query('SAVEPOINT ibex_trunc');
        try {
          await c.query(`TRUNCATE ${p.q}`);
          await c.query('RELEASE SAVEPOINT ibex_trunc');
        } catch (err) {
          // Referenced by a foreign key from outside the truncation: delete instead.
          await c.query('ROLLBACK TO SAVEPOINT ibex_trunc');
          if (sqlstate(err) !== '0A000') throw err;
          await c.query(`DELETE FROM ${p.q}`);
        }
      }
      tableCounts(p).truncates++;
      result.truncates++;
    }

    phase('truncate');

    // Resolve: with several sources, every source learns every other's pending keys.
    const conflicts: store.ConflictRecord[] = [];
    /** `${src}/${idx}` -> how many keys the source won that are absent there (deletes to apply). */
    const absent = new Map<string, number>();
    /** `${src}/${idx}` -> how many keys the source won (filed in its ibex_mine through noteMine). */
    const wonRows = new Map<string, number>();
    /** `${src}/${idx}` -> the origins of the keys the source won (what it will stage elsewhere). */
    const mineOrigins = new Map<string, Set<string | null>>();
    /** Put the keys a source won into its ibex_mine; the statement's answer goes to noteMine. */
    const mineSql = (p: TablePlan, select: string): string => {
      const keys = p.keys.map((k) => ident(k).text).join(', ');
      return `WITH ins AS (INSERT INTO pg_temp.ibex_mine_${p.idx} (${keys}, ibex_origin) ${select} RETURNING ${keys}, ibex_origin)
         SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM ${p.q} t WHERE ${p.keyJoin('t', 'ins')})) AS absent,
                count(*) AS won, to_jsonb(array_agg(DISTINCT ibex_origin))::text AS origins FROM ins`;
    };
    const noteMine = (srcName: string, p: TablePlan, row: Record<string, unknown>): void => {
      const key = `${srcName}/${p.idx}`;
      absent.set(key, (absent.get(key) ?? 0) + Number(row.absent));
      wonRows.set(key, (wonRows.get(key) ?? 0) + Number(row.won));
      const seen = mineOrigins.get(key) ?? new Set<string | null>();
      for (const o of JSON.parse(String(row.origins ?? '[]')) as (string | null)[]) seen.add(o);
      mineOrigins.set(key, seen);
    };
    const addMine = async (src: SyncDb, p: TablePlan, select: string, params: unknown[] = []): Promise<void> => {
      const r = await clients.get(src.name)!.query(mineSql(p, select), params);
      noteMine(src.name, p, r.rows[0]);
    };
    for (const p of this.plans) {
      const keys = p.keys.map((k) => ident(k).text).join(', ');
      const pendingOn = sources.filter((s) => counts.has(`${s.name}/${p.idx}`));
      if (pendingOn.length === 0) continue;
      if (pendingOn.length === 1) {
        // Only one source changed this table: no conflict is possible, it wins every key.
        if (lazy.has(`${pendingOn[0]!.name}/${p.idx}`)) continue;
        await addMine(pendingOn[0]!, p, `SELECT ${keys}, ibex_origin FROM pg_temp.ibex_pend_${p.idx}`);
        continue;
      }
      if (!allFilled.has(p.idx)) await together(sources, (src) => clients.get(src.name)!.query(`INSERT INTO pg_temp.ibex_all_${p.idx} SELECT ${lit(src.name)}, * FROM pg_temp.ibex_pend_${p.idx}`));
      // Every source learns the others' pending keys. A few keys (read by the gather) go inline,
      // ahead of the conflict query of each source; more go by COPY, one exchange at a time (a
      // session cannot send one COPY while it receives another).
      let before: Map<string, string[]> | undefined;
      if (pendingOn.every((src) => pendJson.has(`${src.name}/${p.idx}`))) {
        before = new Map(sources.map((s) => [s.name, pendingOn.filter((o) => o.name !== s.name)
          .map((o) => this.inlineKeysSql(p, o.name, pendJson.get(`${o.name}/${p.idx}`)!))]));
      } else {
        for (const src of pendingOn) {
          await copyFanOut(clients.get(src.name)!, `COPY (SELECT ${lit(src.name)}, * FROM pg_temp.ibex_pend_${p.idx}) TO STDOUT`,
            sources.filter((s) => s.name !== src.name).map((s) => ({ client: clients.get(s.name)!, sql: `COPY pg_temp.ibex_all_${p.idx} FROM STDIN` })));
        }
      }
      const priority = new Map(cfg.dbs.map((d) => [d.name, d.priority]));
      const strategy = this.relStrategy(p);
      const custom = strategy.kind === 'custom';
      // Custom code starts from "latest": its version of each key is offered as the default.
      const order = winnerOrder(custom ? { kind: 'latest' } : strategy, priority, `ROW(${keys})::text`);
      const won = (src: SyncDb, held: boolean): string => `SELECT ${keys}, ibex_origin FROM (
           SELECT DISTINCT ON (${keys}) * FROM pg_temp.ibex_all_${p.idx} AS a ORDER BY ${keys}, ${order}) w
          WHERE w.ibex_src = ${lit(src.name)}
          ${held ? `AND ${textRow('w', p.keys)} NOT IN (SELECT jsonb_array_elements($1::jsonb))` : ''}`;
      // skip leaves conflicting keys alone and custom code decides them below; every other key
      // (agreeing versions included) goes to its winner as usual.
      const mayHold = strategy.kind === 'skip' || custom;
      // When nothing can be held back, each source files the keys it won in the same round trip
      // that reads its versions of the conflicting keys.
      const found = await this.collectConflicts(p, sources, clients, order, custom, {
        before,
        after: mayHold ? undefined : new Map(pendingOn.map((src) => [src.name, mineSql(p, won(src, false))])),
        onAfter: (srcName, r) => noteMine(srcName, p, r.rows[0]),
      });
      const held = mayHold && found.length > 0;
      if (mayHold) {
        await together(pendingOn, (src) => addMine(src, p, won(src, held), held ? [JSON.stringify(found.map((f) => f.keyText))] : []));
      }
      if (custom && found.length) {
        await this.resolveCustom(p, found, clients, result.runId);
        for (const src of pendingOn) absent.delete(`${src.name}/${p.idx}`); // unknown: check for deletes
      }
      if (found.length) {
        tableCounts(p).conflicts += found.length;
        result.conflicts += found.length;
        conflicts.push(...found.map(({ keyText: _k, text: _t, ...rec }) => rec));
      }
    }
    if (conflicts.some((c) => c.strategy === 'abort')) {
      const shown = conflicts.slice(0, 5).map((c) => `${c.schema}.${c.table} ${JSON.stringify(c.key)}`).join(', ');
      await store.logConflicts(control, this.opts.sync, result.runId, conflicts, 'aborted');
      throw new AbortError(`${conflicts.length} conflicting key(s) and conflict_strategy=abort: ${shown}${conflicts.length > 5 ? ', …' : ''}; make each row identical on the dbs that changed it, then "ibex resume ${this.opts.sync}"`);
    }

    phase('resolve');
    await this.opts.hooks?.afterGather?.();

    // The insert-only fast path: keys that were only inserted, on one source, with one origin,
    // cannot exist elsewhere (unless a crashed run already delivered them: then COPY raises
    // 23505 and the run is repeated without the fast path). Rows go straight into the table.
    const fastPath = (src: string, p: TablePlan): boolean =>
      this.fastPathAllowed && !p.hasRules && insertOnly.has(`${src}/${p.idx}`) && sources.filter((s) => counts.has(`${s.name}/${p.idx}`)).length === 1;
    // In replica mode every winning row is deleted (phase 1) and copied straight back (phase 2).
    // COPY skips rules: tables with rules always go through staging and INSERT/UPDATE statements.
    const direct = (_src: string, p: TablePlan): boolean => replica && this.fastPathAllowed && !p.hasRules;

    /** Rows a db refused (another unique index, a foreign key): logged, not retried forever. */
    const quarantined: store.ConflictRecord[] = [];

    // Apply, phase 1: deletes of keys absent at their winner, children first. Where the winners
    // hold every key they won (counted when ibex_mine was filled), there is nothing to delete.
    const mayDelete = (src: string, p: TablePlan): boolean =>
      counts.has(`${src}/${p.idx}`) && !fastPath(src, p) && (direct(src, p) || (absent.get(`${src}/${p.idx}`) ?? 1) > 0);
    /** A batch small enough for one index probe per key (see absentSql, deleteSql). */
    const fewKeys = (n: number | undefined): boolean => n !== undefined && n <= SMALL_BATCH;
    /** `${db}/${idx}` -> keys copied into that db's ibex_del. */
    const delRows = new Map<string, number>();
    for (const src of sources) {
      const c = clients.get(src.name)!;
      for (const p of this.plans) {
        if (!mayDelete(src.name, p)) continue;
        const keys = p.keys.map((k) => `m.${ident(k).text}`).join(', ');
        const targets = others(src.name);
        const got = await copyFanOut(c,
          `COPY (SELECT ${keys}, m.ibex_origin FROM pg_temp.ibex_mine_${p.idx} m${direct(src.name, p) ? '' : ` WHERE ${this.absentSql(p, fewKeys(wonRows.get(`${src.name}/${p.idx}`)))}`}) TO STDOUT`,
          targets.map((d) => ({ client: clients.get(d.name)!, sql: `COPY pg_temp.ibex_del_${p.idx} FROM STDIN` })));
        for (const [i, d] of targets.entries()) delRows.set(`${d.name}/${p.idx}`, (delRows.get(`${d.name}/${p.idx}`) ?? 0) + (got[i] ?? 0));
      }
    }
    for (const p of [...this.plans].reverse()) {
      // Fast-path tables stage no deletes (and lazy ones have no temp tables at all).
      if (!sources.some((s) => mayDelete(s.name, p))) continue;
      // Independent sessions: every db deletes at once.
      await together(all, async (d) => {
        const c = clients.get(d.name)!;
        const origins = await c.query(`SELECT DISTINCT ibex_origin FROM pg_temp.ibex_del_${p.idx}`);
        for (const o of origins.rows) {
          const n = await this.applyOrQuarantine(c, p, d.name, 'del', o.ibex_origin, quarantined, localSql(o.ibex_origin, p, d.name), (one, org) =>
            this.deleteSql(p, fewKeys(delRows.get(`${d.name}/${p.idx}`) ?? 0), one, org));
          tableCounts(p).deleted += n;
          result.deleted += n;
        }
      });
    }
    // Review fix: a delete above can cascade (ON DELETE CASCADE) to a row another source won after it
    // was found present there; it is then never copied while the other nodes keep their version. Delete
    // such rows everywhere too: parents first (so cascades of these deletes are seen when their children
    // come up), again until a pass deletes nothing (self-references). Re-deleting phase-1 keys is a no-op.
    for (let again = !replica && result.deleted + result.truncates > 0; again;) {
      again = false;
      for (const p of this.plans) {
        const winners = sources.filter((s) => counts.has(`${s.name}/${p.idx}`) && !fastPath(s.name, p));
        if (winners.length === 0) continue;
        for (const d of all) await clients.get(d.name)!.query(`DELETE FROM pg_temp.ibex_del_${p.idx}`);
        const cascaded = new Map<string, number>();
        for (const src of winners) {
          const targets = others(src.name);
          const got = await copyFanOut(clients.get(src.name)!,
            `COPY (SELECT ${p.keys.map((k) => `m.${ident(k).text}`).join(', ')}, m.ibex_origin FROM pg_temp.ibex_mine_${p.idx} m WHERE ${this.absentSql(p, fewKeys(wonRows.get(`${src.name}/${p.idx}`)))}) TO STDOUT`,
            targets.map((d) => ({ client: clients.get(d.name)!, sql: `COPY pg_temp.ibex_del_${p.idx} FROM STDIN` })));
          for (const [i, d] of targets.entries()) cascaded.set(d.name, (cascaded.get(d.name) ?? 0) + (got[i] ?? 0));
        }
        for (const d of all) {
          const c = clients.get(d.name)!;
          for (const o of (await c.query(`SELECT DISTINCT ibex_origin FROM pg_temp.ibex_del_${p.idx}`)).rows) {
            // Keys phase 1 quarantined come up again here: refused again, but logged once.
            const refused: store.ConflictRecord[] = [];
            const n = await this.applyOrQuarantine(c, p, d.name, 'del', o.ibex_origin, refused, localSql(o.ibex_origin, p, d.name), (one, org) =>
              this.deleteSql(p, fewKeys(cascaded.get(d.name) ?? 0), one, org));
            const seen = new Set(quarantined.map((q) => `${q.schema}.${q.table} ${JSON.stringify(q.key)} ${q.losers[0]?.db}`));
            quarantined.push(...refused.filter((q) => !seen.has(`${q.schema}.${q.table} ${JSON.stringify(q.key)} ${q.losers[0]?.db}`)));
            tableCounts(p).deleted += n;
            result.deleted += n;
            if (n > 0) again = true;
          }
        }
      }
    }

    phase('delete');

    // Apply, phase 2: rows streamed from their winner into staging, then upserted, parents first.
    for (const p of this.plans) {
      const pendingOn = sources.filter((s) => counts.has(`${s.name}/${p.idx}`));
      if (pendingOn.length === 0) continue;
      /** Per db, the rows staged there and their origins (undefined: not known, ask the db). */
      const staged = new Map<string, { rows: number; origins: Set<string | null> | undefined }>();
      const noteStaged = (src: SyncDb, d: SyncDb, rows: number): void => {
        const st = staged.get(d.name) ?? { rows: 0, origins: new Set<string | null>() };
        st.rows += rows;
        const known = mineOrigins.get(`${src.name}/${p.idx}`);
        if (known && st.origins) for (const o of known) st.origins.add(o);
        else st.origins = undefined;
        staged.set(d.name, st);
      };
      // Custom code may have staged merged rows on any db: ask each db what it holds.
      const merged = this.relStrategy(p).kind === 'custom';
      /** Per db, statements that load rows into its staging table, sent with its first apply statement. */
      const inline = new Map<string, string[]>();
      // A few rows won on a source travel as text inside the targets' apply round trip instead of a
      // COPY exchange (three round trips each, one source after the other): every source reads its
      // rows at once, every target loads and applies them at once. Larger batches use COPY.
      const small = merged ? [] : pendingOn.filter((src) => !fastPath(src.name, p) && !direct(src.name, p)
        && (wonRows.get(`${src.name}/${p.idx}`) ?? Infinity) <= INLINE_ROWS);
      const read = await together(small, (src) => clients.get(src.name)!.query(this.inlineReadSql(p)));
      const viaCopy = new Set(pendingOn);
      for (const [i, src] of small.entries()) {
        const row = read[i]!.rows[0];
        if (row.rows === null && Number(row.n) > 0) continue; // too large to inline: COPY
        viaCopy.delete(src);
        if (Number(row.n) === 0) continue;
        for (const d of others(src.name)) {
          inline.set(d.name, [...(inline.get(d.name) ?? []), this.inlineLoadSql(p, String(row.rows))]);
          noteStaged(src, d, Number(row.n));
        }
      }
      for (const src of pendingOn) {
        if (!viaCopy.has(src)) continue;
        const cols = p.cols.map((col) => `t.${ident(col).text}`).join(', ');
        if (fastPath(src.name, p) || direct(src.name, p)) {
          const targets = others(src.name);
          for (const d of targets) await setLocal(clients.get(d.name)!, insertOnly.get(`${src.name}/${p.idx}`) ?? null, p, d.name);
          let copied: number[];
          // A big lazy batch: the delta table's statistics lag behind its growth, and the planner
          // would look every key up through the index (a nested loop, ~10x slower than hashing
          // when the batch is a good part of the table). Hash when that is cheaper.
          const hash = lazy.has(`${src.name}/${p.idx}`) && (counts.get(`${src.name}/${p.idx}`) ?? 0) >= 1000
            && (await clients.get(src.name)!.query(
              `SELECT $1::bigint * 20 > reltuples AS hash FROM pg_class WHERE oid = ${lit(p.q)}::regclass`, [counts.get(`${src.name}/${p.idx}`)])).rows[0]?.hash === 't';
          if (hash) await clients.get(src.name)!.query(`SET LOCAL enable_nestloop = off`);
          try {
            copied = await copyFanOut(clients.get(src.name)!,
              lazy.has(`${src.name}/${p.idx}`)
                // Straight from the delta window (COPY takes no parameters: the cursor is a literal).
                ? `COPY (SELECT ${cols} FROM ${p.q} t WHERE (${p.keys.map((k) => `t.${ident(k).text}`).join(', ')}) IN (
                     SELECT ${p.keys.map((k) => ident(k).text).join(', ')} FROM ${p.delta} WHERE ${window.replaceAll('$1', lit(cursors.get(src.name) ?? snaps.get(src.name)!))})) TO STDOUT`
                : `COPY (SELECT ${cols} FROM ${this.wonRowsFrom(p, fewKeys(wonRows.get(`${src.name}/${p.idx}`)))}) TO STDOUT`,
              targets.map((d) => ({ client: clients.get(d.name)!, sql: `COPY ${p.q} (${p.colList}) FROM STDIN` })));
          } catch (err) {
            // A key that already exists (a repeated run), another unique index or a missing parent:
            // repeat the run through staging, which applies what fits and quarantines the rest.
            if (sqlstate(err) === SqlState.uniqueViolation || sqlstate(err) === SqlState.foreignKeyViolation) throw new FastPathConflict(p.label);
            throw err;
          }
          if (hash) await clients.get(src.name)!.query(`SET LOCAL enable_nestloop = on`);
          const n = copied.reduce((a, b) => a + b, 0);
          tableCounts(p).inserted += n;
          result.inserted += n;
          continue;
        }
        const targets = others(src.name);
        const got = await copyFanOut(clients.get(src.name)!,
          `COPY (SELECT ${cols}, m.ibex_origin FROM ${this.wonRowsFrom(p, fewKeys(wonRows.get(`${src.name}/${p.idx}`)))}) TO STDOUT`,
          targets.map((d) => ({ client: clients.get(d.name)!, sql: `COPY pg_temp.ibex_stage_${p.idx} FROM STDIN` })));
        for (const [i, d] of targets.entries()) noteStaged(src, d, got[i] ?? 0);
      }
      // Every pending source took the fast path: nothing was staged.
      if (pendingOn.every((src) => fastPath(src.name, p))) continue;
      // Each db applies what it received; dbs are independent sessions, so they apply at once.
      await together(all, async (d) => {
        const c = clients.get(d.name)!;
        const st = merged ? undefined : staged.get(d.name) ?? { rows: 0, origins: new Set<string | null>() };
        if (st && st.rows === 0) return;
        let load = (inline.get(d.name) ?? []).join(';\n');
        const origins = st?.origins ? [...st.origins]
          : (await c.query(`${load ? `${load};\n` : ''}SELECT DISTINCT ibex_origin FROM pg_temp.ibex_stage_${p.idx}`).then((r) => {
            load = '';
            return [r].flat().at(-1)!.rows.map((o) => o.ibex_origin as string | null);
          }));
        for (const o of origins) {
          const n = await this.applyOrQuarantine(c, p, d.name, 'stage', o, quarantined, localSql(o, p, d.name), (one, org) =>
            applyStatements(p, `pg_temp.ibex_stage_${p.idx}`, `s.ibex_origin IS NOT DISTINCT FROM ${org} ${one}`), load);
          load = '';
          tableCounts(p).inserted += n;
          result.inserted += n;
        }
      });
    }

    await this.syncSequences(clients, sources, all);

    phase('upsert');

    // Confirm: progress inside each apply transaction, conflicts logged as pending, commit everywhere.
    // The progress rows go with each db's COMMIT, in the same round trip.
    const progressSql = (d: SyncDb): string => {
      const srcs = sources.filter((s) => s.name !== d.name);
      if (srcs.length === 0) return '';
      return `INSERT INTO ibex.progress (sync, source, snapshot, run)
                VALUES ${srcs.map((s) => `(${lit(this.opts.sync)}, ${lit(s.name)}, ${lit(snaps.get(s.name)!)}, ${result.runId})`).join(', ')}
              ON CONFLICT (sync, source) DO UPDATE SET snapshot = EXCLUDED.snapshot, run = EXCLUDED.run, applied = now();\n`;
    };
    await this.runHooks('before_commit', result.runId, { result: runCounts({ ...result, status: 'good' }) });
    const pendingRecords = [...conflicts.filter((c) => c.strategy !== 'skip'), ...quarantined];
    await store.logConflicts(control, this.opts.sync, result.runId, pendingRecords);
    for (const q of quarantined) {
      const t = (result.tables[`${q.schema}.${q.table}`] ??= { inserted: 0, deleted: 0, conflicts: 0, truncates: 0 });
      t.conflicts++;
      result.conflicts++;
    }
    await store.logConflicts(control, this.opts.sync, result.runId, conflicts.filter((c) => c.strategy === 'skip'), 'skipped');
    // Every db commits at once (their fsyncs overlap). A failure anywhere leaves the cursors behind
    // and the next run re-applies idempotently — the same as when a later one of sequential commits fails.
    const outcomes = await Promise.allSettled(all.map((d) => clients.get(d.name)!.query(`${progressSql(d)}COMMIT`)));
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure) {
      // Review fix: once a db committed, its overwrites happened: keep their records (pending), never drop them.
      if (outcomes.every((o) => o.status === 'rejected')) await store.settleConflicts(control, result.runId, false).catch(() => {});
      throw failure.reason;
    }
    await store.advanceCursors(control, this.opts.sync, new Map(sources.map((s) => [s.name, snaps.get(s.name)!])));
    if (pendingRecords.length) await store.settleConflicts(control, result.runId, true);
    await this.recordBacklog(sources, clients, snaps, skewMs);
    await this.maybePurge(sources, clients);
    result.status = result.inserted + result.deleted + result.truncates > 0 || result.conflicts > 0 ? 'good' : 'empty';
    phase('commit');
    const details: Record<string, unknown> = { skewMs, gathered: backlog, phases, snapshots: Object.fromEntries(snaps) };
    await this.runAfterHooks('after_txn', result, details);
    this.log.debug({ sync: this.opts.sync, run: result.runId, phases }, 'run phases (ms)');
    return details;
  }

  /**
   * Run one apply statement over a staging table; when a db refuses it for another unique index
   * (23505) or a foreign key (23503), apply row by row instead, repeating passes while rows go in
   * (a unique value moved between rows fits once the row that held it has moved on). Rows still
   * refused are quarantined: left out, logged with the constraint, never retried forever.
   */
  private async applyOrQuarantine(c: pg.Client, p: TablePlan, dbName: string, from: 'stage' | 'del', origin: string | null,
    quarantined: store.ConflictRecord[], local: string, statement: (oneRow: string, origin: string) => string | string[], load = ''): Promise<number> {
    const refused = (err: unknown): boolean => sqlstate(err) === SqlState.uniqueViolation || sqlstate(err) === SqlState.foreignKeyViolation;
    // The common case in one round trip: load the staging table (rows sent inline, if any), stamp
    // the session, try the whole set under a savepoint.
    try {
      const all = [statement('', origin === null ? 'NULL::text' : lit(origin))].flat();
      const r = [(await c.query(
        `${load ? `${load};\n` : ''}${local}; SAVEPOINT ibex_apply; ${all.join(';\n')}; RELEASE SAVEPOINT ibex_apply`)) as unknown as pg.QueryResult[]].flat();
      return r.slice(-1 - all.length, -1).reduce((n, x) => n + (x.rowCount ?? 0), 0);
    } catch (err) {
      // A failed load (before the savepoint) is no refusal: the run fails.
      await c.query('ROLLBACK TO SAVEPOINT ibex_apply').catch(() => { throw err; });
      if (!refused(err)) throw err;
    }
    const table = `pg_temp.ibex_${from}_${p.idx}`;
    let pending = (await c.query(`SELECT ctid::text AS id FROM ${table} WHERE ibex_origin IS NOT DISTINCT FROM $1`, [origin])).rows.map((r) => String(r.id));
    const errors = new Map<string, { state: string; constraint: string }>();
    let applied = 0;
    for (let progress = true; pending.length && progress;) {
      progress = false;
      const next: string[] = [];
      for (const id of pending) {
        await c.query('SAVEPOINT ibex_row');
        try {
          let n = 0;
          for (const one of [statement('AND s.ctid = $2::tid', '$1')].flat()) n += (await c.query(one, [origin, id])).rowCount ?? 0;
          await c.query('RELEASE SAVEPOINT ibex_row');
          applied += n;
          progress = true;
        } catch (err) {
          await c.query('ROLLBACK TO SAVEPOINT ibex_row');
          if (!refused(err)) throw err;
          errors.set(id, { state: sqlstate(err)!, constraint: String((err as { constraint?: string }).constraint ?? '') });
          next.push(id);
        }
      }
      pending = next;
    }
    // Rows that only refuse each other (two rows swapping a unique value in one source transaction)
    // cannot go in one by one. Where this db lets ibex use replica mode, replace exactly those rows
    // with triggers silenced (so no ON DELETE CASCADE fires), unique checks still on: if that holds,
    // it was a swap; if not, a real conflict, and they are quarantined below.
    if (from === 'stage' && pending.length > 1 && pending.every((id) => errors.get(id)?.state === SqlState.uniqueViolation)
      && this.config().dbs.find((d) => d.name === dbName)?.canReplica) {
      await c.query('SAVEPOINT ibex_swap');
      try {
        await c.query(`SELECT set_config('session_replication_role', 'replica', true)`);
        await c.query(`DELETE FROM ${p.q} t USING pg_temp.ibex_stage_${p.idx} s WHERE ${p.keyJoin('t', 's')} AND s.ctid = ANY($1::tid[])`, [pending]);
        const r = await c.query(`INSERT INTO ${p.q} (${p.colList})${OVERRIDING} SELECT ${p.colList} FROM pg_temp.ibex_stage_${p.idx} s WHERE s.ctid = ANY($1::tid[])`, [pending]);
        await c.query(`SELECT set_config('session_replication_role', 'origin', true)`);
        await c.query('RELEASE SAVEPOINT ibex_swap');
        applied += r.rowCount ?? 0;
        pending = [];
      } catch (err) {
        await c.query('ROLLBACK TO SAVEPOINT ibex_swap');
        if (!refused(err)) throw err;
      }
    }
    const keyJson = `jsonb_build_object(${p.keys.map((k) => `${lit(k)}, s.${ident(k).text}`).join(', ')})`;
    for (const id of pending) {
      const r = await c.query(
        `SELECT ${keyJson}::text AS key, (to_jsonb(s) - 'ibex_origin')::text AS incoming,
                (SELECT to_jsonb(t)::text FROM ${p.q} t WHERE ${p.keyJoin('t', 's')}) AS here
           FROM ${table} s WHERE s.ctid = $1::tid`, [id]);
      const row = r.rows[0];
      const e = errors.get(id)!;
      quarantined.push({
        schema: p.rel.schema, table: p.rel.name, key: JSON.parse(String(row.key)),
        kind: e.state === SqlState.uniqueViolation ? 'unique' : 'foreign_key', strategy: 'quarantine',
        winner: origin, winnerRow: from === 'stage' ? JSON.parse(String(row.incoming)) : null, winnerTime: null,
        losers: [{ db: dbName, row: row.here === null ? null : JSON.parse(String(row.here)), changed_at: null, constraint: e.constraint }],
      });
      this.log.warn({ table: p.label, db: dbName, key: String(row.key), constraint: e.constraint },
        `${from === 'stage' ? 'a row' : 'a delete'} was refused by ${e.constraint || 'a constraint'} on db ${dbName} and quarantined (see ibex.conflict)`);
    }
    return applied;
  }

  /** The context one customcode call receives. */
  private hookContext(code: LoadedCode, runId: number): HookContext {
    const cfg = this.config();
    const noQuery = code.whenrun === 'before_sync' || code.whenrun === 'after_sync';
    return {
      sync: this.opts.sync, runId, whenrun: code.whenrun, code: code.name,
      dbs: cfg.dbs.map((d) => ({ name: d.name, role: d.role })),
      query: noQuery ? undefined : async (db: string, text: string, params?: unknown[]): Promise<Row[]> => {
        const d = cfg.dbs.find((x) => x.name === db && x.dbtype === 'postgres');
        if (!d) throw new Error(`query(): "${db}" is not a PostgreSQL db of sync ${this.opts.sync}`);
        return (await (await this.db(d)).query(text, params)).rows as Row[];
      },
      log: (message: string) => this.log.info({ sync: this.opts.sync, run: runId, customcode: code.name }, message),
      shared: this.shared,
    };
  }

  /** Run the codes of a plain hook in order; throws SkipRun when one asks to skip (where allowed). */
  private async runHooks(whenrun: Whenrun, runId: number, extra: Record<string, unknown> = {}): Promise<void> {
    for (const code of this.codes.filter((c) => c.whenrun === whenrun)) {
      const out = await callCode<HookResult | undefined>(code, { ...this.hookContext(code, runId), ...extra });
      if (out !== undefined && out !== null && (typeof out !== 'object' || Array.isArray(out))) {
        throw new CustomCodeError(code.name, whenrun, `returned ${JSON.stringify(out)?.slice(0, 100)}: return nothing or { skipRun?: boolean, message?: string }`);
      }
      if (out?.message) this.log.info({ sync: this.opts.sync, run: runId, customcode: code.name }, String(out.message));
      if (out?.skipRun && SKIPPABLE.has(whenrun)) throw new SkipRun(`custom code "${code.name}" (whenrun=${whenrun}) skipped the run${out.message ? `: ${String(out.message)}` : ''}`);
    }
  }

  /** Hooks after the commits cannot undo anything: a failure is logged and kept in the run's details. */
  private async runAfterHooks(whenrun: 'after_txn' | 'after_sync', result: RunResult, extra: Record<string, unknown>): Promise<void> {
    try {
      await this.runHooks(whenrun, result.runId, { result: runCounts(result) });
    } catch (err) {
      const msg = redact(errorText(err));
      this.log.warn({ sync: this.opts.sync, run: result.runId }, msg);
      extra.hookErrors = [...((extra.hookErrors as string[] | undefined) ?? []), msg];
    }
  }

  /** Ask the exception codes what to do about a failed run (everything is rolled back). */
  private async runExceptionHooks(err: unknown, runId: number, attempt: number): Promise<'retry' | 'skip' | 'fail'> {
    let verdict: 'retry' | 'skip' | 'fail' = 'fail';
    for (const code of this.codes.filter((c) => c.whenrun === 'exception')) {
      const out = await callCode<ExceptionResult | undefined>(code, {
        ...this.hookContext(code, runId), error: redact(errorText(err)), sqlstate: sqlstate(err) ?? sqlstate((err as { cause?: unknown }).cause), attempt,
      });
      if (out !== undefined && out !== null && (typeof out !== 'object' || Array.isArray(out))) {
        throw new CustomCodeError(code.name, 'exception', `returned ${JSON.stringify(out)?.slice(0, 100)}: return nothing or { retry?: boolean, skipRun?: boolean, message?: string }`);
      }
      if (out?.message) this.log.info({ sync: this.opts.sync, run: runId, customcode: code.name }, String(out.message));
      if (out?.skipRun) return 'skip';
      if (out?.retry) verdict = 'retry';
    }
    return verdict;
  }

  private relStrategy(p: TablePlan): Strategy {
    // A conflict customcode mapped to the table or its sync takes over (Bucardo's rule).
    if (codesFor(this.codes, 'conflict', p.label).length) return { kind: 'custom' };
    if (!p.rel.conflictStrategy) return this.strategy;
    return parseStrategy(p.rel.conflictStrategy, this.config().dbs.map((d) => d.name));
  }

  /**
   * The conflicts of one table: winner and every losing version, read inside each db's apply
   * snapshot. With `asText`, each record also carries every version as text (for custom code).
   */
  /**
   * The keys of a table changed on several sources whose versions differ. Per source, `before`
   * holds statements (`;`-separated) sent ahead in the same round trip, `after` one statement sent
   * behind, whose result goes to `onAfter`.
   */
  private async collectConflicts(p: TablePlan, sources: SyncDb[], clients: Map<string, pg.Client>, order: string, asText = false,
    around: { before?: Map<string, string[]>; after?: Map<string, string>; onAfter?: (srcName: string, r: pg.QueryResult) => void } = {}): Promise<CollectedConflict[]> {
    const keys = p.keys.map((k) => ident(k).text).join(', ');
    const keyJson = `jsonb_build_object(${p.keys.map((k) => `${lit(k)}, w.${ident(k).text}`).join(', ')})`;
    type Version = { db: string; row: unknown; changed_at: string | null; inserted: boolean; text: Row | null };
    const byKey = new Map<string, { key: Record<string, unknown>; winner: string; keyText: Row; versions: Version[] }>();
    const strategy = this.relStrategy(p);
    // Read on every source at once, then merged in source order (the order of the versions).
    const perSource = await together(sources, async (src) => {
      const extra = around.after?.get(src.name);
      const ahead = around.before?.get(src.name) ?? [];
      const r = await clients.get(src.name)!.query(
        `${ahead.map((x) => `${x};\n`).join('')}WITH w AS (SELECT DISTINCT ON (${keys}) * FROM pg_temp.ibex_all_${p.idx} ORDER BY ${keys}, ${order}),
              k AS (SELECT ${keys} FROM pg_temp.ibex_all_${p.idx} GROUP BY ${keys} HAVING count(*) > 1)
         SELECT ${keyJson}::text AS key, w.ibex_src AS winner, a.ibex_ts::text AS my_ts, a.ibex_insonly AS inserted,
                (SELECT to_jsonb(t) FROM ${p.q} t WHERE ${p.keyJoin('t', 'w')})::text AS row
                , ${textRow('w', p.keys)}::text AS key_text${asText ? `, (SELECT ${textRow('t', p.cols)} FROM ${p.q} t WHERE ${p.keyJoin('t', 'w')})::text AS row_text` : ''}
           FROM w JOIN k USING (${keys}) JOIN pg_temp.ibex_all_${p.idx} a ON ${p.keyJoin('a', 'w')} AND a.ibex_src = ${lit(src.name)}${extra ? `;\n${extra}` : ''}`);
      const results = [r as unknown as pg.QueryResult | pg.QueryResult[]].flat();
      const at = ahead.length;
      if (extra) around.onAfter?.(src.name, results[at + 1]!);
      return results[at]!;
    });
    for (const [i, src] of sources.entries()) {
      for (const row of perSource[i]!.rows) {
        const k = String(row.key);
        let entry = byKey.get(k);
        if (!entry) {
          entry = { key: JSON.parse(k), winner: String(row.winner), keyText: JSON.parse(String(row.key_text)), versions: [] };
          byKey.set(k, entry);
        }
        entry.versions.push({
          db: src.name, row: row.row === null ? null : JSON.parse(String(row.row)), changed_at: row.my_ts === null ? null : String(row.my_ts),
          inserted: row.inserted === 't', text: asText && row.row_text !== null ? JSON.parse(String(row.row_text)) : null,
        });
      }
    }
    const out: CollectedConflict[] = [];
    for (const e of byKey.values()) {
      // Versions that agree (the same row everywhere, or deleted everywhere) overwrite nothing:
      // not a conflict. This is also how an operator settles an aborted conflict: make the rows equal.
      const first = JSON.stringify(e.versions[0]!.row);
      if (e.versions.every((v) => JSON.stringify(v.row) === first)) continue;
      // skip and abort write nothing: every version is kept in losers, no winner is named.
      const decides = strategy.kind !== 'skip' && strategy.kind !== 'abort';
      const w = decides ? e.versions.find((v) => v.db === e.winner)! : undefined;
      const rec: CollectedConflict = {
        schema: p.rel.schema, table: p.rel.name, key: e.key, kind: 'update_update', strategy: strategy.kind,
        keyText: e.keyText, winner: w ? w.db : null, winnerRow: w ? w.row : null, winnerTime: w ? w.changed_at : null,
        losers: e.versions.filter((v) => v !== w).map((v) => ({ db: v.db, row: v.row, changed_at: v.changed_at })),
      };
      if (asText) {
        rec.text = { key: e.keyText, latest: e.winner, versions: e.versions.map((v) => ({ db: v.db, row: v.text, changedAt: v.changed_at })) };
      }
      setConflictKind(rec, e.versions.every((v) => v.inserted && v.row !== null));
      out.push(rec);
    }
    return out;
  }

  /**
   * Let the conflict customcodes of a table decide its conflicts, in batches: the first code
   * that decides a key wins it, undecided keys fall back to "latest". A winning db gets the key
   * into its ibex_mine (copied from there like any won row); a merged row is staged on every db
   * with origin "merge". Records are rewritten to say what was done.
   */
  private async resolveCustom(p: TablePlan, found: CollectedConflict[], clients: Map<string, pg.Client>, runId: number): Promise<void> {
    const codes = codesFor(this.codes, 'conflict', p.label);
    const columns = this.columnTypes.get(p.idx) ?? p.cols.map((name) => ({ name, type: 'text' }));
    const decided: ({ code: string; d: Decision } | undefined)[] = found.map(() => undefined);
    const BATCH = 500;
    for (const code of codes) {
      for (let at = 0; at < found.length; at += BATCH) {
        const idx = [...found.keys()].slice(at, at + BATCH).filter((i) => decided[i] === undefined);
        if (idx.length === 0) continue;
        const batch = idx.map((i) => found[i]!.text!);
        const out = await callCode<unknown>(code, {
          ...this.hookContext(code, runId), table: { schema: p.rel.schema, name: p.rel.name }, keyColumns: [...p.keys], columns, conflicts: batch,
        });
        const checked = checkDecisions(code.name, batch, out, p.cols, p.keys);
        checked.forEach((d, j) => {
          if (d) decided[idx[j]!] = { code: code.name, d };
        });
      }
    }
    const wins = new Map<string, Row[]>();
    const merged: Row[] = [];
    found.forEach((rec, i) => {
      const t = rec.text!;
      const dec = decided[i];
      const winner = !dec ? t.latest : 'winner' in dec.d ? dec.d.winner : null;
      rec.strategy = dec ? `custom:${dec.code}` : 'latest';
      const versions = [...rec.losers, ...(rec.winner && rec.winner !== 'merge' ? [{ db: rec.winner, row: rec.winnerRow, changed_at: rec.winnerTime }] : [])];
      if (winner === null) {
        merged.push((dec!.d as { row: Row }).row);
        rec.winner = 'merge';
        rec.winnerRow = (dec!.d as { row: Row }).row;
        rec.winnerTime = null;
        rec.losers = versions;
      } else {
        const list = wins.get(winner) ?? [];
        list.push(t.key);
        wins.set(winner, list);
        const w = versions.find((v) => v.db === winner)!;
        rec.winner = winner;
        rec.winnerRow = w.row;
        rec.winnerTime = w.changed_at;
        rec.losers = versions.filter((v) => v.db !== winner);
      }
      setConflictKind(rec, rec.kind === 'insert_insert');
    });
    const keys = p.keys.map((k) => ident(k).text).join(', ');
    for (const [db, keyRows] of wins) {
      await clients.get(db)!.query(
        `INSERT INTO pg_temp.ibex_mine_${p.idx} SELECT ${keys}, ibex_origin FROM pg_temp.ibex_all_${p.idx} a
          WHERE a.ibex_src = $1 AND ${textRow('a', p.keys)} IN (SELECT jsonb_array_elements($2::jsonb))`, [db, JSON.stringify(keyRows)]);
    }
    if (merged.length) {
      const cast = columns.map((col) => `(r->>${lit(col.name)})::${col.type}`).join(', ');
      await together([...clients.values()], (c) => c.query(
        `INSERT INTO pg_temp.ibex_stage_${p.idx} (${p.colList}, ibex_origin) SELECT ${cast}, 'merge' FROM jsonb_array_elements($1::jsonb) r`,
        [JSON.stringify(merged)]));
    }
  }

  /** Sequences: the highest value among the sources wins everywhere. */
  private async syncSequences(clients: Map<string, pg.Client>, sources: SyncDb[], all: SyncDb[]): Promise<void> {
    for (const rel of this.config().relations.filter((r) => r.reltype === 'sequence')) {
      const q = `${ident(rel.schema).text}.${ident(rel.name).text}`;
      let best: bigint | undefined;
      for (const s of sources) {
        const r = await clients.get(s.name)!.query(`SELECT last_value::text AS v, is_called FROM ${q}`);
        const v = BigInt(String(r.rows[0].v)) - (r.rows[0].is_called === 't' ? 0n : 1n);
        if (best === undefined || v > best) best = v;
      }
      if (best === undefined) continue;
      for (const d of all) {
        const c = clients.get(d.name)!;
        const r = await c.query(`SELECT last_value::text AS v, is_called FROM ${q}`);
        const v = BigInt(String(r.rows[0].v)) - (r.rows[0].is_called === 't' ? 0n : 1n);
        if (v < best) await c.query(`SELECT setval($1::regclass, $2::bigint, true)`, [q, best.toString()]);
      }
    }
  }

  /**
   * What is still unconsumed past the new cursors (changes committed since the run's snapshot,
   * and transactions that were open), per source: keys and the time of the oldest change, for
   * `status`. Measured at most every 5 s, outside the run's transactions.
   */
  private async recordBacklog(sources: SyncDb[], clients: Map<string, pg.Client>, snaps: Map<string, string>, skewMs: number): Promise<void> {
    if (Date.now() - this.lastBacklog < 5000) return;
    this.lastBacklog = Date.now();
    const names = sources.map((s) => s.name);
    const backlog: Record<string, { keys: number; oldest: string | null }> = {};
    for (const src of sources) {
      if (this.plans.length === 0) break;
      const parts = this.plans.map((p) => `SELECT ibex_ts FROM ${p.delta} WHERE ${this.windowFilter(names)}`);
      const r = await clients.get(src.name)!.query(`SELECT count(*) AS n, min(ibex_ts)::text AS oldest FROM (${parts.join(' UNION ALL ')}) x`, [snaps.get(src.name)]);
      backlog[src.name] = { keys: Number(r.rows[0].n), oldest: r.rows[0].oldest === null ? null : String(r.rows[0].oldest) };
    }
    await store.recordBacklog(await this.ctl(), this.opts.sync, backlog, skewMs);
  }

  /**
   * Remove delta rows every sync reading a source has consumed (at most every 30 s), and the
   * conflict log and run history past their retention (once every 10 minutes per process).
   */
  private async maybePurge(sources: SyncDb[], clients: Map<string, pg.Client>): Promise<void> {
    if (Date.now() - this.lastPurge < 30_000) return;
    this.lastPurge = Date.now();
    const control = await this.ctl();
    if (Date.now() - historyPurgedAt > 600_000) {
      historyPurgedAt = Date.now();
      try {
        const n = await purgeHistory(control);
        if (n.conflicts + n.runs + n.kicks > 0) this.log.info(n, 'purged the conflict log and run history past their retention');
      } catch (err) {
        this.log.warn({ sync: this.opts.sync }, `could not purge history: ${redact(errorText(err))}`);
      }
    }
    for (const src of sources) {
      const r = await control.query(`SELECT snapshot FROM ibex.cursor WHERE db = $1`, [src.name]);
      if (r.rows.length === 0) continue;
      const c = clients.get(src.name)!;
      const min = await c.query(`SELECT min(pg_snapshot_xmin(s::pg_snapshot))::text AS x FROM unnest($1::text[]) s`, [r.rows.map((x) => x.snapshot)]);
      const xmin = min.rows[0].x;
      if (!xmin) continue;
      for (const p of this.plans) await c.query(`DELETE FROM ${p.delta} WHERE ibex_txid < $1::xid8`, [xmin]);
      await c.query(`DELETE FROM ibex.truncates WHERE ibex_txid < $1::xid8`, [xmin]);
    }
  }

  /** Close every connection. */
  async close(): Promise<void> {
    await this.closeDbs();
    await this.control?.end().catch(() => {});
    this.control = undefined;
  }
}

/** A conflict record while a run resolves it; `text` carries the versions custom code sees. */
type CollectedConflict = store.ConflictRecord & { keyText: Row; text?: Conflict };

/**
 * SQL of a jsonb object mapping each column to its text output, for alias `a` (in chunks:
 * a function takes at most 100 arguments). Text output is exact and reads back with a cast.
 */
function textRow(a: string, cols: readonly string[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cols.length; i += 50) {
    parts.push(`jsonb_build_object(${cols.slice(i, i + 50).map((c) => `${lit(c)}, ${a}.${ident(c).text}::text`).join(', ')})`);
  }
  return `(${parts.join(' || ')})`;
}

/** Fixes for the failures an operator can act on, by SQLSTATE. */
const HINTS: Record<string, string> = {
  '42501': 'grant the role ibex connects as SELECT, INSERT, UPDATE and DELETE on the sync\'s tables there (docs/operations.md, roles)',
  '53100': 'free disk space on that server',
  '57P03': 'the server is starting or shutting down; ibex retries',
  '25006': 'the db is read-only (a standby?): point ibex at the primary with "ibex update db"',
};

/** A database error as one line naming the db it came from, its SQLSTATE and, when known, the fix. */
function withDb(err: unknown): string {
  const text = errorText(err);
  const db = (err as { ibexDb?: string } | undefined)?.ibexDb ?? (((err as { cause?: { ibexDb?: string } } | undefined)?.cause)?.ibexDb);
  const state = sqlstate(err);
  const hint = state ? HINTS[state] : undefined;
  return `${db ? `db ${db}: ` : ''}${text}${state ? ` (SQLSTATE ${state})` : ''}${hint ? `: ${hint}` : ''}`;
}

/** The counts of a run as custom code sees them. */
function runCounts(r: RunResult): RunCounts {
  return { status: r.status, inserted: r.inserted, deleted: r.deleted, conflicts: r.conflicts, truncates: r.truncates, tables: structuredClone(r.tables), ...(r.error ? { error: r.error } : {}) };
}

/**
 * The kind of a conflict from what the winner wrote and what the losers had: insert_insert when
 * every db only inserted the key; delete_delete when nothing of the row survives anywhere;
 * delete_update when the winner deleted a row another db kept; update_delete when a db deleted a
 * row that survives. Without a winner (skip, abort), from the versions alone.
 */
function setConflictKind(rec: store.ConflictRecord, allInserted = false): void {
  const versions = [...(rec.winner === null ? [] : [{ row: rec.winnerRow }]), ...rec.losers];
  const deleted = versions.filter((v) => v.row === null).length;
  if (allInserted) rec.kind = 'insert_insert';
  else if (deleted === versions.length) rec.kind = 'delete_delete';
  else if (rec.winner !== null && rec.winner !== 'merge' && rec.winnerRow === null) rec.kind = 'delete_update';
  else rec.kind = deleted > 0 ? 'update_delete' : 'update_update';
}

/** Say which columns differ between two fingerprints. */
function describeDiff(want: string, got: string): string {
  if (!got) return 'the table is missing';
  const a = new Set(want.split(', '));
  const b = new Set(got.split(', '));
  const missing = [...a].filter((x) => x && !b.has(x));
  const added = [...b].filter((x) => x && !a.has(x));
  const parts = [];
  if (missing.length) parts.push(`expected ${missing.join(', ')}`);
  if (added.length) parts.push(`found ${added.join(', ')}`);
  return parts.join('; ') || 'columns differ';
}

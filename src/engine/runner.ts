/**
 * The runner of one sync: it loads the sync's configuration, keeps a session per database
 * between runs, and runs it again and again — delta runs (run/delta.ts, one file per phase) with
 * their retries and hooks, onetimecopy and fullcopy runs (copy.ts) — recording each run in the
 * control database.
 *
 * A failure anywhere before the commits rolls back every database; the cursors only move after
 * every database committed, so a crash re-applies idempotently.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { connect, errorText, redact } from '../db/connect.js';
import { isConnectionError, isTransient, sqlstate, SqlState } from '../db/sqlstate.js';
import { taggedDb } from '../db/tag.js';
import { IbexError } from '../errors.js';
import { openControl } from '../control/connection.js';
import { loadSyncConfig, type SyncConfig, type SyncDb } from '../control/sync-config.js';
import * as store from '../control/run-store.js';
import { parseStrategy, type Strategy } from '../conflict/strategy.js';
import { upgradeCaptureNames } from '../capture/install.js';
import { CustomCodeError, loadCustomcode } from '../customcode/loader.js';
import { PostgresTarget } from '../targets/postgres/postgres-target.js';
import { PROGRESS_EPOCH_SQL } from '../targets/postgres/postgres-dialect.js';
import { openTarget, targetParams } from '../targets/registry.js';
import { tableSpec } from '../targets/spec.js';
import { keylessTargetProblem, type TableSpec, type Target, type TargetParams } from '../targets/target.js';
import { tableInfo } from '../db/catalog.js';
import { buildPlans, type TablePlan } from './plan.js';
import { copyTables, refill, type CopyContext } from './copy.js';
import { AbortError, isFenced, PauseError, TargetLostError } from './errors.js';
import { anyPendingSql, windowSql } from './sql/gather.js';
import { COLUMN_TYPES_SQL } from './sql/open.js';
import type { RunContext, TooLargeSeen } from './run/context.js';
import { Hooks } from './run/hooks.js';
import { deltaRun, type DeltaOutcome } from './run/delta.js';
import { Housekeeping } from './run/housekeeping.js';
import { Races } from './run/raced.js';
import { TooLargeError, tooLargeKey } from './run/toolarge.js';
import { TempTables } from './run/temp.js';
import type { TypedDb } from './run/context.js';
import type { RunKind, RunResult } from './types.js';

export { AbortError, PauseError } from './errors.js';

/** Options of a runner. */
export interface RunnerOptions {
  controlUrl: string;
  sync: string;
  log: Logger;
  /** Test hooks: called at fixed points of a delta run (e.g. to race a local write against apply). */
  hooks?: { afterGather?: () => Promise<void> };
  /** Added to each db's measured clock, in ms (tests skew a node's clock with it; default none). */
  clockOffsetMs?: (db: string) => number;
  /**
   * The lease epoch the daemon holds the sync at: every commit carries it, and a run finding a
   * newer one (in the control database or a db's progress rows) fails fenced. Absent: no lease.
   */
  epoch?: number;
  /** Opens (and connects) the targets of other kinds; default: the registry's openTarget. */
  openTarget?: (params: TargetParams) => Promise<Target>;
}

/** Counts of a run back at zero (before a repeat). */
const ZERO = { inserted: 0, deleted: 0, conflicts: 0, truncates: 0 } as const;

/**
 * Runs one sync, again and again, on persistent connections. Not re-entrant:
 * the daemon never calls `run` twice at once on one runner.
 */
export class SyncRunner {
  private cfg: SyncConfig | undefined;
  /** Loads in progress (load() may overlap a hasPending() of the wake-up check). */
  private loading = 0;
  private plans: TablePlan[] = [];
  private control: pg.Client | undefined;
  private readonly conns = new Map<string, PostgresTarget>();
  /** Sessions outside the runs, by db name: they read the latest committed rows after a race (run/raced.ts). */
  private readonly peeks = new Map<string, Promise<pg.Client>>();
  /** Open sessions on targets of other kinds, by db name. */
  private readonly typed = new Map<string, Target>();
  /** Each table as targets of other kinds see it (built at load when the sync has such a target). */
  private specs = new Map<TablePlan, TableSpec>();
  /** db -> tables whose applied rows another sync reads there (capture must record them). */
  private downstream = new Map<string, Set<string>>();
  private strategy: Strategy = { kind: 'latest' };
  private fastPathAllowed = true;
  /** Tables, by source, that met a row too large to COPY (run/toolarge.ts). */
  private readonly tooLarge = new Map<string, TooLargeSeen>();
  private statementTimeoutMs = 0;
  private hooks: Hooks;
  /** Columns and types of each table (they cast rows sent as text: custom merges, inlined rows). */
  private columnTypes = new Map<TablePlan, { name: string; type: string }[]>();
  private readonly temps = new TempTables();
  private readonly housekeeping = new Housekeeping();
  /** The inputs read with the run's row, for its first attempt (see inputs()). */
  private firstInputs: store.RunInputValues | undefined;

  constructor(readonly opts: RunnerOptions) {
    this.hooks = this.makeHooks([]);
  }

  private get log(): Logger {
    return this.opts.log;
  }

  private makeHooks(codes: Hooks['codes']): Hooks {
    return new Hooks(this.opts.sync, this.log, codes, () => this.config(), (d) => this.db(d));
  }

  private async ctl(): Promise<pg.Client> {
    if (!this.control) {
      const c = await openControl(this.opts.controlUrl, { applicationName: `ibex/${this.opts.sync}/control` });
      // Run history and cursors need not wait for an fsync of the control cluster on every run: a
      // cursor update lost in a crash is recovered from the progress rows every target wrote durably
      // inside its apply transaction (see run/open.ts recover). Conflict records that must
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
    this.loading++;
    try {
      await this.loadConfig();
    } catch (err) {
      // Never run on half a configuration (say, without the custom code that failed to load).
      this.cfg = undefined;
      throw err;
    } finally {
      this.loading--;
    }
  }

  private async loadConfig(): Promise<void> {
    const control = await this.ctl();
    this.cfg = await loadSyncConfig(control, this.opts.sync);
    this.strategy = parseStrategy(this.cfg.conflictStrategy, this.cfg.dbs.map((d) => d.name));
    this.downstream = await store.downstreamReaders(control, this.opts.sync);
    this.statementTimeoutMs = Number(await store.readSetting(control, 'statement_timeout_ms') ?? 0) || 0;
    const ref = this.cfg.dbs.find((d) => d.role === 'source');
    if (!ref) throw new IbexError('config', `sync ${this.opts.sync} has no source db: add one with ibex update dbgroup`);
    const foreignSource = this.cfg.dbs.find((d) => d.role === 'source' && d.dbtype !== 'postgres');
    if (foreignSource) throw new PauseError(`db ${foreignSource.name} is a ${foreignSource.dbtype} db and only PostgreSQL can be a source: make it a target of sync ${this.opts.sync} with "ibex update dbgroup"`);
    // add sync refuses this; a sync configured before it did would fail (Redis) or fold rows together (MongoDB) at every run.
    const keyless = this.cfg.relations.find((r) => r.reltype === 'table' && r.keyColumns.length === 0);
    const foreignTarget = this.cfg.dbs.find((d) => d.dbtype !== 'postgres');
    if (keyless && foreignTarget) {
      throw new PauseError(keylessTargetProblem(`${keyless.schema}.${keyless.name}`, foreignTarget, true, `sync ${this.opts.sync} ("ibex update dbgroup")`));
    }
    if (this.cfg.applyMode === 'replica') this.checkReplica(this.cfg);
    this.plans = [];
    await this.closeDbs();
    for (const name of [...this.typed.keys()]) await this.closeTyped(name);
    const s = await this.db(ref);
    // Rules and row-level security are read on every PostgreSQL db (they may differ between dbs).
    const others = await Promise.all(this.cfg.dbs.filter((d) => d !== ref && d.dbtype === 'postgres' && d.status === 'active')
      .map(async (d) => ({ db: d.name, client: (await this.db(d)).client })));
    this.plans = await buildPlans(s.client, this.cfg.relations, ref.name, others);
    this.hooks = this.makeHooks(await loadCustomcode(control, this.opts.sync, this.plans.map((p) => p.rel)));
    this.columnTypes.clear();
    for (const p of this.plans) {
      if (this.relStrategy(p).kind === 'custom' && !this.hooks.conflictCodes(p.label).length) {
        throw new PauseError(`table ${p.label} has conflict_strategy=custom but no active conflict customcode is mapped to it or to sync ${this.opts.sync}: add one with "ibex add customcode <name> whenrun=conflict src_code=<file> sync=${this.opts.sync}", then "ibex resume ${this.opts.sync}"`);
      }
      // The column types are the same on every db: the fingerprint compares them at every run.
      const r = await s.query(COLUMN_TYPES_SQL, [p.oid]);
      this.columnTypes.set(p, r.rows.map((x) => ({ name: String(x.name), type: String(x.type) })));
    }
    await this.loadSpecs(s);
  }

  /** The TableSpec of every table, when a target of another kind needs them. */
  private async loadSpecs(s: PostgresTarget): Promise<void> {
    this.specs = new Map();
    if (!this.config().dbs.some((d) => d.dbtype !== 'postgres')) return;
    for (const p of this.plans) {
      const info = await tableInfo(s.client, p.rel.schema, p.rel.name);
      if (!info) throw new IbexError('config', `table ${p.label} is missing on db ${s.name}: create it, or remove it from the sync`);
      this.specs.set(p, tableSpec(info, p.keys));
    }
  }

  /** A session on a db of another kind, opened once and kept between runs. */
  private async target(d: SyncDb): Promise<Target> {
    let t = this.typed.get(d.name);
    if (!t) {
      t = await (this.opts.openTarget ?? openTarget)(targetParams(d));
      this.typed.set(d.name, t);
    }
    return t;
  }

  /** The sync's active targets of other kinds. */
  private async typedDbs(): Promise<TypedDb[]> {
    const out: TypedDb[] = [];
    for (const d of this.config().dbs.filter((x) => x.dbtype !== 'postgres' && x.role === 'target' && x.status === 'active')) {
      out.push({ db: d, target: await this.target(d) });
    }
    return out;
  }

  /** A table as one target sees it: its name there is the db's customname, else its own. */
  private spec(p: TablePlan, db: string): TableSpec {
    const spec = this.specs.get(p);
    if (!spec) throw new IbexError('internal', `table ${p.label} has no target description`);
    const name = p.rel.customnames?.[db];
    return name === undefined || name === spec.targetName ? spec : { ...spec, targetName: name };
  }

  /** apply_mode=replica needs the right role everywhere and no sync reading what it applies. */
  private checkReplica(cfg: SyncConfig): void {
    const cannot = cfg.dbs.filter((d) => d.dbtype === 'postgres' && !d.canReplica).map((d) => d.name);
    if (cannot.length) {
      throw new PauseError(`apply_mode=replica needs a role that may set session_replication_role on ${cannot.join(', ')} (superuser, or GRANT SET ON PARAMETER session_replication_role): grant it and "ibex update db" to re-test, or use apply_mode=upsert`);
    }
    const mine = new Set(cfg.relations.map((r) => `${r.schema}.${r.name}`));
    const cascades = cfg.dbs.filter((d) => [...(this.downstream.get(d.name) ?? [])].some((t) => mine.has(t))).map((d) => d.name);
    if (cascades.length) {
      throw new PauseError(`apply_mode=replica silences capture of applied rows, but other syncs read ${cascades.join(', ')}: use apply_mode=upsert so their changes cascade`);
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
  private async db(d: SyncDb): Promise<PostgresTarget> {
    const known = this.conns.get(d.name);
    if (known) return known;
    // A run never waits long behind an application's lock: 55P03 is transient, the run is retried.
    const s = new PostgresTarget(d.name, d.params, { applicationName: `ibex/${this.opts.sync}`, lockTimeoutMs: 10_000, statementTimeoutMs: this.statementTimeoutMs });
    await s.connect();
    // Only this session: an old one's late error must not discard the one that replaced it.
    s.client.on('error', () => {
      if (this.conns.get(d.name) === s) this.discard(d.name);
    });
    if (this.opts.epoch !== undefined) {
      try {
        await s.query(PROGRESS_EPOCH_SQL);
      } catch (err) {
        await s.close();
        throw err;
      }
    }
    if (d.role === 'source' && this.cfg) {
      // Capture objects an older ibex installed under other names move to today's names before
      // this session reads a delta table (cheap when nothing is old: one query, no locks).
      try {
        await upgradeCaptureNames(s.client, d.name, this.cfg.relations.filter((r) => r.reltype === 'table'),
          (line) => this.log.warn({ db: d.name }, line));
      } catch (err) {
        await s.close();
        throw err;
      }
    }
    this.conns.set(d.name, s);
    return s;
  }

  /** A session outside the runs on a db, opened at its first use and kept (a lost one is opened again). */
  private peek(d: SyncDb): Promise<pg.Client> {
    let p = this.peeks.get(d.name);
    if (!p) {
      p = connect(d.params, { applicationName: `ibex/${this.opts.sync}/peek`, statementTimeoutMs: 10_000 });
      const forget = (): void => {
        if (this.peeks.get(d.name) === p) this.peeks.delete(d.name);
      };
      p.then((c) => {
        c.on('error', forget);
        c.on('end', forget);
      }, forget);
      this.peeks.set(d.name, p);
    }
    return p;
  }

  private discard(name: string): void {
    const s = this.conns.get(name);
    if (!s) return;
    this.conns.delete(name);
    s.destroy();
  }

  private async closeDbs(): Promise<void> {
    for (const name of [...this.conns.keys()]) this.discard(name);
    const peeks = [...this.peeks.values()];
    this.peeks.clear();
    await Promise.all(peeks.map((p) => p.then((c) => c.end(), () => undefined).catch(() => undefined)));
  }

  /** Is there anything past this sync's cursors on any source? Cheap; used after setting idle. */
  async hasPending(): Promise<boolean> {
    // Mid-load the tables are not known yet: not knowing is a reason to run.
    if (this.loading) return true;
    if (!this.cfg) return false;
    const control = await this.ctl();
    const cursors = await store.readCursors(control, this.opts.sync);
    const sources = this.pgDbs(['source']);
    for (const src of sources) {
      const cur = cursors.get(src.name);
      if (!cur) return true;
      const s = await this.db(src);
      const window = windowSql(this.opts.sync, sources.map((x) => x.name), { param: 1 });
      const r = await s.query(anyPendingSql(this.plans, window), [cur]);
      if (r.rows[0].p === 't') return true;
    }
    return false;
  }

  /** Do one run and record it in ibex.run. Never throws for run failures: they are in the result. */
  async run(kind: RunKind = 'delta', opts: { kickId?: number } = {}): Promise<RunResult> {
    const started = Date.now();
    const result: RunResult = { runId: 0, sync: this.opts.sync, kind, status: 'empty', ...ZERO, tables: {}, durationMs: 0 };
    let extra: Record<string, unknown> = {};
    try {
      const control = await this.ctl();
      if (kind === 'delta') {
        // The first attempt's inputs come with the run's row (one round trip); a repeat reads them again.
        const started = await store.startDeltaRun(control, this.opts.sync);
        result.runId = started.id;
        this.firstInputs = started.inputs;
      } else result.runId = await store.startRun(control, this.opts.sync, kind);
      if (opts.kickId !== undefined) await store.takeKick(control, opts.kickId, result.runId);
      if (!this.cfg) await this.load();
      if (kind === 'delta') {
        const skip = await this.hooks.run('before_sync', result.runId);
        const out = skip ? { skip } : await this.deltaRefilling(result);
        if ('skip' in out) {
          await this.rollbackAll(new Error('skipped'));
          Object.assign(result, { status: 'empty', ...ZERO, tables: {} });
          extra = { skipped: out.skip };
          this.log.info({ run: result.runId, reason: out.skip }, 'run skipped');
        } else extra = out.details;
      } else extra = await copyTables(this.copyContext(), kind, result);
    } catch (err) {
      await this.rollbackAll(err);
      this.fail(result, err);
    }
    this.fastPathAllowed = true;
    this.firstInputs = undefined;
    result.durationMs = Date.now() - started;
    if (kind === 'delta' && this.cfg) await this.hooks.runAfter('after_sync', result, extra);
    await this.record(result, extra);
    this.log[result.status === 'empty' ? 'debug' : 'info']({ run: result.runId, kind, status: result.status, inserted: result.inserted, deleted: result.deleted, conflicts: result.conflicts, truncates: result.truncates, ms: result.durationMs }, 'run');
    return result;
  }

  /**
   * A delta run; a target of another kind found emptied (TargetLostError at open) is first
   * refilled by a onetimecopy of that target alone (copy.ts, refill), once per run, and the delta
   * run then goes on in the same run: the operator has nothing to do (docs/targets.md).
   */
  private async deltaRefilling(result: RunResult): Promise<{ details: Record<string, unknown> } | { skip: string }> {
    const refilled: string[] = [];
    for (;;) {
      try {
        const out = await this.deltaWithRetries(result);
        if (refilled.length && 'details' in out) out.details = { ...out.details, refilled };
        return out;
      } catch (err) {
        if (!(err instanceof TargetLostError) || refilled.includes(err.db)) throw err;
        refilled.push(err.db);
        await this.rollbackAll(err);
        const db = this.config().dbs.find((d) => d.name === err.db);
        if (!db) throw err;
        await refill(this.copyContext(), db, result);
      }
    }
  }

  /**
   * A delta run, repeated at once a few times after a local write raced the apply (40001) or a
   * deadlock, with a fresh snapshot, before the failure goes to the daemon's backoff: under steady
   * writes a short retry usually wins, a growing wait only makes the next run longer. A fast-path
   * conflict repeats it through staging; exception customcode may repair and retry (twice), or skip.
   */
  private async deltaWithRetries(result: RunResult): Promise<{ details: Record<string, unknown> } | { skip: string }> {
    let hookRetries = 0;
    let tooLargeRepeats = 0;
    // Rows left out as the largest belong to one run: the next starts from the estimate again.
    for (const seen of this.tooLarge.values()) seen.picked = [];
    for (let attempt = 1; ; attempt++) {
      let out: DeltaOutcome;
      try {
        const ctx = await this.context();
        out = await deltaRun(ctx, result, this.inputs());
      } catch (err) {
        // A row too large to COPY: the attempts that follow leave it out, one more row each time at most.
        if (err instanceof TooLargeError && tooLargeRepeats++ < 3) {
          await this.rollbackAll(err);
          const k = tooLargeKey(err.src, err.table);
          this.tooLarge.set(k, { failed: true, picked: this.tooLarge.get(k)?.picked ?? [] });
          this.log.debug({ run: result.runId, attempt, err: err.message }, 'repeating the run without the row too large');
          Object.assign(result, { ...ZERO, tables: {} });
          continue;
        }
        const raced = sqlstate(err) === SqlState.serializationFailure || sqlstate(err) === SqlState.deadlock;
        const askHooks = hookRetries < 2 && this.hooks.has('exception') && !(err instanceof CustomCodeError) && !(err instanceof AbortError) && !(err instanceof TargetLostError);
        // A failure that ends the run keeps its counts (an abort reports its conflicts).
        if (!(raced && attempt < 4) && !askHooks) throw err;
        await this.rollbackAll(err);
        if (raced && attempt < 4) this.log.debug({ run: result.runId, attempt, code: sqlstate(err), err: redact(errorText(err)) }, 'retrying the run at once');
        else {
          const verdict = await this.hooks.onException(err, result.runId, attempt);
          if (verdict === 'skip') return { skip: `exception customcode skipped the run after: ${redact(errorText(err))}` };
          if (verdict === 'fail') throw err;
          hookRetries++;
        }
        Object.assign(result, { ...ZERO, tables: {} });
        continue;
      }
      if (!('fastPathConflict' in out)) return out;
      this.log.debug({ run: result.runId, attempt, conflict: out.fastPathConflict }, 'a row inserted on its source already exists on a target; repeating the run through staging');
      await this.rollbackAll(new Error('fast path conflict'));
      Object.assign(result, { ...ZERO, tables: {} });
      this.fastPathAllowed = false;
    }
  }

  /** The cursors and downstream readers, read while the dbs open. */
  private inputs(): ReturnType<typeof store.runInputs> | store.RunInputValues {
    const first = this.firstInputs;
    this.firstInputs = undefined;
    if (first) return first;
    const p = this.ctl().then((control) => store.runInputs(control, this.opts.sync));
    // Awaited by the run after its open; an open failing first must not leave it unhandled (its
    // failure, if any, is the control db's and shows at the next use).
    p.catch(() => {});
    return p;
  }

  /** Fill a failed run's result. */
  private fail(result: RunResult, err: unknown): void {
    const msg = redact(err instanceof IbexError ? err.message : withDb(err));
    result.error = msg;
    result.status = err instanceof AbortError ? 'aborted' : 'failed';
    result.transient = !(err instanceof PauseError) && !(err instanceof AbortError) && (isTransient(err) || (err instanceof IbexError && err.code === 'unreachable'));
    result.pause = err instanceof PauseError || err instanceof AbortError;
    if (isFenced(err)) {
      result.fenced = true;
      result.transient = false;
    }
    result.contention = sqlstate(err) === SqlState.serializationFailure || sqlstate(err) === SqlState.deadlock;
    if (err instanceof IbexError && err.code === 'internal' && this.control === undefined) result.transient = true;
    // The daemon logs the failure (once, with what happens next); this line adds the SQLSTATE for debugging.
    this.log.debug({ run: result.runId, code: sqlstate(err) ?? sqlstate((err as { cause?: unknown }).cause), transient: result.transient, err: msg }, 'run error');
    if (!isTransient(err) && !(err instanceof IbexError)) this.log.debug({ err }, 'run failure detail');
  }

  /** Record the run in the control db (a lost control db is logged: the run itself is settled). */
  private async record(result: RunResult, extra: Record<string, unknown>): Promise<void> {
    try {
      const control = await this.ctl();
      if (result.runId) {
        await store.endRun(control, result, extra);
        if (result.pause && result.error) await store.pauseSync(control, this.opts.sync, result.error);
      }
    } catch (err) {
      // The control db went away: the run itself is settled (committed or rolled back); say so and go on.
      this.control?.end().catch(() => {}); // best effort: the session is already broken
      this.control = undefined;
      this.log.warn({ run: result.runId, err: redact(errorText(err)) }, 'could not record the run');
      if (result.status !== 'failed') result.transient = false;
    }
  }

  /** What the phases of one delta run share. */
  private async context(): Promise<RunContext> {
    const cfg = this.config();
    const control = await this.ctl();
    const all = this.pgDbs(['source', 'target']);
    const sessions = new Map<SyncDb, PostgresTarget>();
    for (const d of all) sessions.set(d, await this.db(d));
    const typed = await this.typedDbs();
    return {
      sync: this.opts.sync, cfg, plans: this.plans, log: this.log, control,
      all, sources: all.filter((d) => d.role === 'source'), typed,
      spec: (p, db) => this.spec(p, db),
      pg: (d) => {
        const s = sessions.get(d);
        if (!s) throw new IbexError('internal', `db ${d.name} has no open session`);
        return s;
      },
      temps: this.temps, races: new Races((d) => this.peek(d)), tooLarge: this.tooLarge, housekeeping: this.housekeeping, hooks: this.hooks,
      downstream: this.downstream, strategy: (p) => this.relStrategy(p),
      columnTypes: (p) => this.columnTypes.get(p) ?? [],
      fastPathAllowed: this.fastPathAllowed, replica: cfg.applyMode === 'replica',
      afterGather: this.opts.hooks?.afterGather, clockOffsetMs: this.opts.clockOffsetMs, epoch: this.opts.epoch,
    };
  }

  private copyContext(): CopyContext {
    return {
      sync: this.opts.sync, cfg: this.config(), plans: this.plans, log: this.log, downstream: this.downstream,
      control: () => this.ctl(),
      db: (d) => this.db(d),
      target: (d) => this.target(d),
      spec: (p, db) => this.spec(p, db),
      discard: (name) => this.discard(name),
      epoch: this.opts.epoch,
    };
  }

  /**
   * Roll back every session after a failed run. Sessions stay open after a clean rollback of a
   * statement error (a serialization failure under load should not cost reconnects and new temp
   * tables); they are discarded after a connection error, a broken COPY stream, or a failed ROLLBACK.
   */
  private async rollbackAll(cause?: unknown): Promise<void> {
    const keep = cause !== undefined && !isConnectionError(cause) && !(cause as { ibexCopyStream?: boolean }).ibexCopyStream;
    await Promise.all([...this.conns.entries()].map(async ([name, s]) => {
      // Sessions not kept are closed without a ROLLBACK (closing rolls back), so a session
      // wedged by a broken stream cannot hang the runner; a ROLLBACK that does not answer
      // within 10 s gets the same treatment.
      if (!keep) return this.discard(name);
      // Temp tables created (and analyzed) by the rolled-back run are gone: start afresh.
      this.temps.forget(s.client);
      if (!(await s.rollbackWithin(10_000))) this.discard(name);
    }));
    // Targets of other kinds undo what they can (rollback never throws); after a connection
    // failure they are opened afresh at the next run.
    await Promise.all([...this.typed.entries()].map(async ([name, t]) => {
      await t.rollback();
      if (!keep) await this.closeTyped(name);
    }));
  }

  private async closeTyped(name: string): Promise<void> {
    const t = this.typed.get(name);
    this.typed.delete(name);
    try {
      await t?.close();
    } catch (err) {
      this.log.debug({ db: name, err: errorText(err) }, 'closing a target failed');
    }
  }

  private relStrategy(p: TablePlan): Strategy {
    // A conflict customcode mapped to the table or its sync takes over (Bucardo's rule).
    if (this.hooks.conflictCodes(p.label).length) return { kind: 'custom' };
    if (!p.rel.conflictStrategy) return this.strategy;
    return parseStrategy(p.rel.conflictStrategy, this.config().dbs.map((d) => d.name));
  }

  /** Close every connection. */
  async close(): Promise<void> {
    await this.closeDbs();
    for (const name of [...this.typed.keys()]) await this.closeTyped(name);
    await this.control?.end().catch(() => {}); // best effort: closing a session that may be gone
    this.control = undefined;
  }
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
  const db = taggedDb(err);
  const state = sqlstate(err);
  const hint = state ? HINTS[state] : undefined;
  return `${db ? `db ${db}: ` : ''}${text}${state ? ` (SQLSTATE ${state})` : ''}${hint ? `: ${hint}` : ''}`;
}

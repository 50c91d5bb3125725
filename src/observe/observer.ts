/**
 * What the daemon's HTTP endpoints show, gathered in one place: counters fed
 * by the daemon as runs end, gauges read from the control database at each
 * scrape (state, lag, backlog, last good run), a probe of every PostgreSQL
 * db (reachable, clock skew), and an hour of lag/backlog samples per sync
 * for the dashboard's chart.
 *
 * Lag and backlog are measured live on the sources (engine/backlog-live.ts),
 * whatever the sync is doing, at most every LIVE_MAX_AGE_MS per sync however
 * often the endpoints are read. A source that cannot be measured falls back
 * to the backlog its last run recorded (ibex.sync_state.backlog), aged at
 * read time.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { openControl } from '../control/connection.js';
import * as store from '../control/daemon-store.js';
import { listConflicts, type ConflictRow } from '../control/conflict-store.js';
import { probedDbs, recentRuns, runConflictCounts, type RecentRun } from '../control/observe-store.js';
import { readSetting } from '../control/settings-store.js';
import { connect, errorText, redact } from '../db/connect.js';
import { measureBacklog, type LiveSourceBacklog } from '../engine/backlog-live.js';
import type { RunKind, RunResult } from '../model.js';

/** Default of the `ready_max_age_s` setting: an unpaused sync without a good run for longer is not ready. */
export const READY_MAX_AGE_S_DEFAULT = 300;
/** A live backlog measurement younger than this is reused (each costs a session per source). */
const LIVE_MAX_AGE_MS = 5000;
/** How long the dashboard's chart looks back. */
const HISTORY_MS = 3600_000;

/** What the observer needs to know of a run that ended (the daemon's RunEnd). */
export interface EndedRun {
  kind: RunKind;
  result: RunResult;
}

/** One sync as the endpoints show it. */
export interface SyncView {
  name: string;
  status: string;
  state: string | null;
  stateSince: string | null;
  lagS: number | null;
  backlog: { db: string; keys: number }[];
  lastGood: string | null;
  lastGoodAgeS: number | null;
  lastError: string | null;
  attempts: number;
}

/** The document of /api/state (the dashboard's only source). */
export interface StateDoc {
  now: string;
  control: { reachable: boolean; error: string | null };
  syncs: SyncView[];
  history: Record<string, { t: number; lagS: number | null; backlog: number }[]>;
  runs: (Omit<RecentRun, 'started' | 'ended'> & { started: string; ended: string | null })[];
  conflicts: ConflictRow[];
  dbs: { name: string; up: boolean; skewMs: number | null; error: string | null }[];
}

/** Options of an observer. */
export interface ObserverOptions {
  controlUrl: string;
  log: Logger;
  /** How often lag and backlog are sampled for the chart, and the dbs probed (default 2 s / 10 s). */
  sampleMs?: number;
  probeMs?: number;
  /** Collect Node's process metrics (default true; tests making many observers turn it off). */
  processMetrics?: boolean;
}

/** The readiness verdict. */
export interface Readiness {
  ready: boolean;
  reasons: string[];
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

/** Gathers the facts; the HTTP server (server.ts) formats them. */
export class Observer {
  readonly registry = new Registry();
  private readonly runs: Counter<'sync' | 'result'>;
  private readonly duration: Histogram<'sync' | 'kind'>;
  private readonly rows: Counter<'sync' | 'table' | 'op'>;
  private readonly conflicts: Counter<'sync' | 'kind' | 'strategy'>;
  private readonly quarantined: Counter<'sync' | 'table'>;
  private readonly stateGauge: Gauge<'sync' | 'state'>;
  private readonly lag: Gauge<'sync'>;
  private readonly backlog: Gauge<'sync' | 'db'>;
  private readonly lastGood: Gauge<'sync'>;
  private readonly paused: Gauge<'sync'>;
  private readonly dbUp: Gauge<'db'>;
  private readonly dbSkew: Gauge<'db'>;
  private readonly controlUp: Gauge;
  private session: pg.Client | undefined;
  private opening: Promise<pg.Client> | undefined;
  private readonly live = new Map<string, { at: number; sources: LiveSourceBacklog[] }>();
  private readonly measuring = new Map<string, Promise<void>>();
  private readonly history = new Map<string, { t: number; lagS: number | null; backlog: number }[]>();
  private probes = new Map<string, { up: boolean; skewMs: number | null; error: string | null }>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly pending = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly opts: ObserverOptions) {
    const r = [this.registry];
    this.runs = new Counter({ name: 'ibex_runs_total', help: 'Runs ended, by sync and result (good, empty, failed, aborted)', labelNames: ['sync', 'result'], registers: r });
    this.duration = new Histogram({
      name: 'ibex_run_duration_seconds', help: 'Duration of the runs that did something (not empty), by sync and kind', labelNames: ['sync', 'kind'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: r,
    });
    this.rows = new Counter({ name: 'ibex_rows_applied_total', help: 'Rows applied to the dbs of a sync, by table and operation (insert, delete, truncate)', labelNames: ['sync', 'table', 'op'], registers: r });
    this.conflicts = new Counter({
      name: 'ibex_conflicts_total', help: 'Conflicts resolved, by kind and strategy (kind "unlogged": resolved by the skip strategy, which logs nothing)',
      labelNames: ['sync', 'kind', 'strategy'], registers: r,
    });
    this.quarantined = new Counter({ name: 'ibex_rows_quarantined_total', help: 'Rows a target refused and that were set aside in the conflict log', labelNames: ['sync', 'table'], registers: r });
    this.stateGauge = new Gauge({ name: 'ibex_sync_state', help: 'The live state of each sync: 1 for its current state, 0 for the others', labelNames: ['sync', 'state'], registers: r });
    this.lag = new Gauge({ name: 'ibex_sync_lag_seconds', help: 'Age of the oldest change not yet replicated (0: none waiting), from the backlog each run records', labelNames: ['sync'], registers: r });
    this.backlog = new Gauge({ name: 'ibex_sync_backlog_keys', help: 'Keys waiting to be replicated, per source db, as the last run measured', labelNames: ['sync', 'db'], registers: r });
    this.lastGood = new Gauge({ name: 'ibex_sync_last_good_run_timestamp_seconds', help: 'Unix time of the end of the last good (or empty) run of each sync', labelNames: ['sync'], registers: r });
    this.paused = new Gauge({ name: 'ibex_sync_paused', help: '1 when the sync is paused (by an operator or a run that asked for it)', labelNames: ['sync'], registers: r });
    this.dbUp = new Gauge({ name: 'ibex_db_up', help: '1 when the last probe of the db (a fresh session, SELECT) succeeded', labelNames: ['db'], registers: r });
    this.dbSkew = new Gauge({ name: 'ibex_db_clock_skew_seconds', help: "The db's clock minus the daemon's, at the last probe", labelNames: ['db'], registers: r });
    this.controlUp = new Gauge({ name: 'ibex_control_up', help: '1 when the control database answered this scrape', registers: r });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'ibex_' });
  }

  /** Start sampling lag and backlog, and probing the dbs. */
  start(): void {
    const every = (ms: number, fn: () => Promise<void>): void => {
      const t = setInterval(() => void this.track(fn()), ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.opts.sampleMs ?? 2000, () => this.sample());
    every(this.opts.probeMs ?? 10_000, () => this.probe());
    void this.track(this.sample());
    void this.track(this.probe());
  }

  /** Stop the timers and close the session. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([...this.pending]);
    const s = this.session;
    this.session = undefined;
    if (s) await s.end().catch(() => {}); // best effort: the daemon is going away
  }

  /** Count a run that ended (the daemon calls this for every run). */
  runEnded(sync: string, end: EndedRun): void {
    const r = end.result;
    this.runs.inc({ sync, result: r.status });
    if (r.status !== 'empty') this.duration.observe({ sync, kind: end.kind }, r.durationMs / 1000);
    for (const [table, t] of Object.entries(r.tables)) {
      if (t.inserted) this.rows.inc({ sync, table, op: 'insert' }, t.inserted);
      if (t.deleted) this.rows.inc({ sync, table, op: 'delete' }, t.deleted);
      if (t.truncates) this.rows.inc({ sync, table, op: 'truncate' }, t.truncates);
    }
    // Only runs that can have logged something are looked up: a busy stream makes hundreds of runs a minute.
    if (r.runId && r.status === 'good' && (r.conflicts > 0 || end.kind !== 'delta')) void this.track(this.countConflicts(sync, r));
  }

  /** The conflict log says how each conflict of a run was resolved (kind, strategy) and which rows were quarantined. */
  private async countConflicts(sync: string, r: RunResult): Promise<void> {
    let logged = 0;
    try {
      const counts = await this.query((c) => runConflictCounts(c, r.runId));
      for (const x of counts) {
        if (x.status === 'pending' || x.status === 'aborted') continue;
        logged += x.n;
        if (x.status === 'quarantined') this.quarantined.inc({ sync, table: x.table }, x.n);
        else this.conflicts.inc({ sync, kind: x.kind, strategy: x.strategy }, x.n);
      }
    } catch (err) {
      this.opts.log.warn({ sync, run: r.runId, err: errorText(err) }, 'could not read the conflicts of a run for the metrics');
    }
    if (r.status === 'good' && r.conflicts > logged) this.conflicts.inc({ sync, kind: 'unlogged', strategy: 'skip' }, r.conflicts - logged);
  }

  /** Prometheus text of every metric (reads the control database for the gauges). */
  async metrics(): Promise<{ contentType: string; body: string }> {
    try {
      const views = await this.syncViews();
      this.controlUp.set(1);
      this.stateGauge.reset();
      this.lag.reset();
      this.backlog.reset();
      this.lastGood.reset();
      this.paused.reset();
      for (const s of views) {
        for (const st of ['idle', 'running', 'stalled', 'paused', 'copying']) this.stateGauge.set({ sync: s.name, state: st }, s.state === st ? 1 : 0);
        if (s.lagS !== null) this.lag.set({ sync: s.name }, s.lagS);
        for (const b of s.backlog) this.backlog.set({ sync: s.name, db: b.db }, b.keys);
        if (s.lastGood) this.lastGood.set({ sync: s.name }, Date.parse(s.lastGood) / 1000);
        this.paused.set({ sync: s.name }, s.status === 'paused' ? 1 : 0);
      }
    } catch {
      // The gauges read from the control database stay as they were; ibex_control_up says why.
      this.controlUp.set(0);
    }
    this.dbUp.reset();
    this.dbSkew.reset();
    for (const [db, p] of this.probes) {
      this.dbUp.set({ db }, p.up ? 1 : 0);
      if (p.skewMs !== null) this.dbSkew.set({ db }, p.skewMs / 1000);
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Ready: the control database answers and every unpaused sync had a good run within ready_max_age_s. */
  async readiness(): Promise<Readiness> {
    let views: SyncView[];
    let maxAge = READY_MAX_AGE_S_DEFAULT;
    try {
      views = await this.syncViews();
      const v = await this.query((c) => readSetting(c, 'ready_max_age_s'));
      if (v !== undefined && /^\d+$/.test(v)) maxAge = Number(v);
    } catch (err) {
      return { ready: false, reasons: [`the control database is unreachable: ${redact(errorText(err))}`] };
    }
    const reasons: string[] = [];
    for (const s of views) {
      if (s.status !== 'active') continue;
      if (s.state === 'stalled') reasons.push(`sync ${s.name} is stalled${s.lastError ? `: ${s.lastError}` : ''}`);
      if (s.lastGoodAgeS === null) reasons.push(`sync ${s.name} has had no good run yet`);
      else if (s.lastGoodAgeS > maxAge) reasons.push(`sync ${s.name}: last good run ${Math.round(s.lastGoodAgeS)} s ago, more than ready_max_age_s (${maxAge})`);
    }
    return { ready: reasons.length === 0, reasons };
  }

  /** Everything the dashboard shows. */
  async state(): Promise<StateDoc> {
    const now = new Date();
    const dbs = [...this.probes].map(([name, p]) => ({ name, ...p }));
    try {
      const syncs = await this.syncViews();
      const runs = await this.query((c) => recentRuns(c, 25));
      const conflicts = await this.query((c) => listConflicts(c, { sync: null, schemaLike: null, relLike: null, sinceInterval: null, sinceTime: null, status: null, limit: 25 }));
      const history: StateDoc['history'] = {};
      for (const s of syncs) history[s.name] = this.history.get(s.name) ?? [];
      return {
        now: now.toISOString(), control: { reachable: true, error: null }, syncs, history, dbs, conflicts,
        runs: runs.map((r) => ({ ...r, started: r.started.toISOString(), ended: r.ended?.toISOString() ?? null })),
      };
    } catch (err) {
      return {
        now: now.toISOString(), control: { reachable: false, error: redact(errorText(err)) }, syncs: [], history: Object.fromEntries(this.history), runs: [], conflicts: [], dbs,
      };
    }
  }

  // ---- reads --------------------------------------------------------------------------------

  private async syncViews(): Promise<SyncView[]> {
    const rows = await this.query((c) => store.readStatus(c));
    await this.measureLive(rows.filter((r) => r.status === 'active' || r.status === 'paused').map((r) => r.name));
    return rows.map((r) => {
      const now = r.now.getTime();
      const recorded = new Map(Object.entries(r.backlog ?? {}).map(([db, b]) => [db, {
        keys: Number(b?.keys ?? 0), lagS: Number(b?.keys ?? 0) > 0 && typeof b?.oldest === 'string' ? round1(Math.max(0, (now - Date.parse(b.oldest)) / 1000)) : 0,
      }]));
      // Live where the source answered, else what the last run recorded.
      const measured = new Map<string, { keys: number; lagS: number | null }>();
      for (const x of this.live.get(r.name)?.sources ?? []) if (x.keys !== null) measured.set(x.db, { keys: x.keys, lagS: x.lagS });
      const dbs = [...new Set([...recorded.keys(), ...measured.keys()])].sort();
      const backlog = dbs.map((db) => ({ db, ...(measured.get(db) ?? recorded.get(db)!) }));
      let lagS: number | null = backlog.length ? 0 : null;
      for (const b of backlog) if (b.lagS !== null && !Number.isNaN(b.lagS)) lagS = Math.max(lagS ?? 0, b.lagS);
      return {
        name: r.name, status: r.status, state: r.state, stateSince: r.stateSince?.toISOString() ?? null, lagS,
        backlog: backlog.map((b) => ({ db: b.db, keys: b.keys })),
        lastGood: r.lastGood?.ended.toISOString() ?? null,
        lastGoodAgeS: r.lastGood ? Math.max(0, (now - r.lastGood.ended.getTime()) / 1000) : null,
        lastError: r.lastError ? redact(r.lastError) : null, attempts: r.attempts,
      };
    });
  }

  /** Measure the backlog of these syncs on their sources, unless measured in the last LIVE_MAX_AGE_MS. */
  private async measureLive(syncs: string[]): Promise<void> {
    for (const k of [...this.live.keys()]) if (!syncs.includes(k)) this.live.delete(k);
    const now = Date.now();
    await Promise.all(syncs.map((sync) => {
      const have = this.live.get(sync);
      if (have && now - have.at < LIVE_MAX_AGE_MS) return undefined;
      let p = this.measuring.get(sync);
      if (!p) {
        p = this.query((c) => measureBacklog(c, sync, { timeoutMs: 3000 }))
          .then((sources) => void this.live.set(sync, { at: Date.now(), sources }))
          .catch((err) => this.opts.log.debug({ sync, err: errorText(err) }, 'could not measure the backlog live'))
          .finally(() => this.measuring.delete(sync));
        this.measuring.set(sync, p);
      }
      return p;
    }));
  }

  /** Run `fn` on the observer's own control session, opened on demand and dropped when it fails. */
  private async query<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('the observer is closed');
    const c = this.session ?? (await (this.opening ??= this.open()));
    try {
      return await fn(c);
    } catch (err) {
      if (this.session === c) {
        this.session = undefined;
        await c.end().catch(() => {}); // best effort: the session is being replaced
      }
      throw err;
    }
  }

  private async open(): Promise<pg.Client> {
    try {
      const c = await openControl(this.opts.controlUrl, { applicationName: 'ibex/http', check: false });
      c.on('error', () => {
        if (this.session === c) this.session = undefined;
      });
      if (this.closed) {
        await c.end().catch(() => {}); // best effort: closed while opening
        throw new Error('the observer is closed');
      }
      this.session = c;
      return c;
    } finally {
      this.opening = undefined;
    }
  }

  private track(p: Promise<void>): Promise<void> {
    const q = p.catch((err) => this.opts.log.debug({ err: errorText(err) }, 'observer task failed'));
    this.pending.add(q);
    void q.finally(() => this.pending.delete(q));
    return q;
  }

  private async sample(): Promise<void> {
    if (this.closed) return;
    let views: SyncView[];
    try {
      views = await this.syncViews();
    } catch {
      return; // the control database is away: a gap in the chart says so
    }
    const t = Date.now();
    const names = new Set(views.map((v) => v.name));
    for (const k of [...this.history.keys()]) if (!names.has(k)) this.history.delete(k);
    for (const v of views) {
      const h = this.history.get(v.name) ?? [];
      h.push({ t, lagS: v.lagS, backlog: v.backlog.reduce((n, b) => n + b.keys, 0) });
      while (h.length && h[0]!.t < t - HISTORY_MS) h.shift();
      this.history.set(v.name, h);
    }
  }

  /** Open a fresh session on every PostgreSQL db of a sync: reachable, and how far its clock is from ours. */
  private async probe(): Promise<void> {
    if (this.closed) return;
    let dbs: Awaited<ReturnType<typeof probedDbs>>;
    try {
      dbs = await this.query((c) => probedDbs(c));
    } catch {
      return;
    }
    const next = new Map<string, { up: boolean; skewMs: number | null; error: string | null }>();
    await Promise.all(dbs.map(async (d) => {
      let s: pg.Client | undefined;
      try {
        s = await connect(d.params, { applicationName: 'ibex/probe', connectTimeoutS: 5 });
        const before = Date.now();
        const r = await s.query(`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms`);
        const after = Date.now();
        next.set(d.name, { up: true, skewMs: Math.round(Number(r.rows[0].ms) - (before + after) / 2), error: null });
      } catch (err) {
        next.set(d.name, { up: false, skewMs: null, error: redact(errorText(err), d.params.password) });
      } finally {
        if (s) await s.end().catch(() => {}); // best effort: a one-off session
      }
    }));
    this.probes = next;
  }
}

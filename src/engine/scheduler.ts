/**
 * When each sync runs. The daemon feeds the scheduler requests (a wake-up, a
 * kick, the periodic check, a catch-up after a reconnect); the scheduler turns
 * them into runs, one at a time per sync, concurrently across syncs:
 *
 * - bursts coalesce: requests that arrive while a sync runs (or in the same
 *   tick) become exactly one follow-up run;
 * - a run that did something is followed by another at once (poll while busy,
 *   so triggers need not notify while the daemon works);
 * - a transient failure is retried with exponential backoff and jitter, any
 *   other failure on the slower periodic schedule; either way the sync is
 *   `stalled` until a run succeeds, and no other sync is affected;
 * - a run that asks for it pauses its sync.
 *
 * It does no I/O of its own: the runner does the work and the hooks persist
 * state, so tests drive it with a fake runner and a manual clock.
 */
import type { Logger } from 'pino';
import { errorText } from '../db/connect.js';
import { isTransient } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { Backoff } from './backoff.js';
import type { RunKind, RunResult, SyncState } from '../model.js';

/** The clock and timers the scheduler uses; tests inject a manual one. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The process clock. */
export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** What the scheduler needs of a runner: one run at a time, never throwing by contract. */
export interface ScheduledRunner {
  run(kind: RunKind, opts: { kickId?: number }): Promise<RunResult>;
}

/** How a sync is scheduled (from its ibex.sync row). */
export interface SyncPlan {
  /** Run on wake-ups, after busy runs and on the periodic check; false: only when kicked. */
  autokick: boolean;
  /** Only fullcopy targets: refreshed on kick or on `fullcopyIntervalMs`, never on changes. */
  fullcopyOnly: boolean;
  /** The periodic check (and the retry interval of non-transient failures), in ms. */
  checktimeMs: number;
  /** Refresh fullcopy targets this often (undefined: on kick only). */
  fullcopyIntervalMs: number | undefined;
  /** Above 0, the next delta run is a onetimecopy instead (the runner resets it when done). */
  onetimecopy: number;
  /** A paused sync is loaded but never run. */
  paused: boolean;
  /** After a run that moved PACE_ROWS rows or more, the next waits as long as it took, at most this long (0: never). */
  pauseMaxMs: number;
}

export type { SyncState, SyncStateName } from '../model.js';

/** Why a run was asked for. */
export type Reason =
  /** A capture trigger notified. */
  | 'wake'
  /** The periodic check. */
  | 'check'
  /** The previous run did something: poll again. */
  | 'busy'
  /** Start, a LISTEN session (re)connected, a resume: changes may have been missed. */
  | 'catchup'
  /** `ibex kick`. */
  | 'kick'
  /** A failed run, again after its backoff. */
  | 'retry'
  /** The fullcopy interval elapsed. */
  | 'fullcopy'
  /** The delta run that follows a onetimecopy. */
  | 'followup';

/** A request for a run. */
export interface RunRequest {
  reason: Reason;
  /** delta (default; becomes onetimecopy while the sync has one to do) or fullcopy. */
  kind?: 'delta' | 'fullcopy';
  /** The ibex.kick row this run answers. */
  kickId?: number;
}

/** What the hooks learn when a run ends. */
export interface RunEnd {
  kind: RunKind;
  result: RunResult;
  /** Every kick this run answers (kicks coalesce like any request). */
  kickIds: number[];
  reasons: Reason[];
  /** When the sync will retry after a failure (undefined: no retry scheduled). */
  retryInMs: number | undefined;
}

/** How the scheduler reports to the daemon. Hooks must not throw; rejections are logged. */
export interface SchedulerHooks {
  /** A run is about to start. */
  runStarting?(sync: string, kind: RunKind): void;
  /** A run ended (its result is already recorded in ibex.run by the runner). */
  runEnded?(sync: string, end: RunEnd): void | Promise<void>;
  /** The sync's live state changed. */
  stateChanged?(sync: string, state: SyncState): void | Promise<void>;
  /** A run asked for its sync to be paused: persist ibex.sync.status. */
  pauseRequested?(sync: string, reason: string): void | Promise<void>;
  /** Nothing is running or scheduled for the sync any more. */
  quiescent?(sync: string): void;
}

/** Options of a scheduler. */
export interface SchedulerOptions {
  log: Logger;
  hooks?: SchedulerHooks;
  timers?: Timers;
  /** Backoff of transient failures (default 0.2 s doubling to 30 s, with jitter). */
  backoff?: Backoff;
  /** Backoff of runs that lost to local writes (40001, 40P01): 50 ms doubling to 2 s. Nothing is
   *  down, so waiting long only lets the lag grow on a hot table. */
  contentionBackoff?: Backoff;
}

type Slot = 'delta' | 'fullcopy';

interface Pending {
  reasons: Set<Reason>;
  kickIds: number[];
}

interface Task {
  fn: () => Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** A run that moved at least this many rows is followed by a pause (see settleOutcome). */
const PACE_ROWS = 20;
/** After a run that moved fewer rows (but some), the next waits this share of its time (see settleOutcome). */
const LIGHT_PACE = 0.5;
/** The default of the run_pause_max_ms setting: the longest pause after a busy run. */
export const RUN_PAUSE_MAX_MS_DEFAULT = 100;

interface Entry {
  name: string;
  runner: ScheduledRunner;
  plan: SyncPlan;
  state: SyncState;
  /** A run or a maintenance task is in progress. */
  active: boolean;
  pending: Map<Slot, Pending>;
  tasks: Task[];
  retryTimer: unknown;
  checkTimer: unknown;
  fullcopyTimer: unknown;
  dispatchQueued: boolean;
  /** Runs are held (the lease is in doubt); requests still accumulate. */
  held: boolean;
  removed: boolean;
  /** The quiescent hook was called and nothing happened since. */
  quiet: boolean;
  waiters: Array<() => void>;
}

/** Requests that may run a sync that is neither autokick nor kicked. */
const ALWAYS: ReadonlySet<Reason> = new Set(['kick', 'retry', 'fullcopy', 'followup']);
/** Requests that end a backoff wait at once: someone asked, or the db is back. */
const URGENT: ReadonlySet<Reason> = new Set(['kick', 'catchup', 'followup']);

/** Does this sync run on changes (wake-ups, busy polling, periodic check)? */
export function wakeDriven(plan: SyncPlan): boolean {
  return plan.autokick && !plan.fullcopyOnly;
}

/** Schedules the runs of every sync of one daemon. */
export class Scheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly log: Logger;
  private readonly hooks: SchedulerHooks;
  private readonly timers: Timers;
  private readonly backoff: Backoff;
  private readonly contentionBackoff: Backoff;
  private stopping = false;

  constructor(opts: SchedulerOptions) {
    this.log = opts.log;
    this.hooks = opts.hooks ?? {};
    this.timers = opts.timers ?? realTimers;
    this.backoff = opts.backoff ?? new Backoff();
    this.contentionBackoff = opts.contentionBackoff ?? new Backoff({ minMs: 50, maxMs: 2000 });
  }

  /** Start scheduling a sync. Nothing runs until something requests it. */
  add(sync: string, runner: ScheduledRunner, plan: SyncPlan, initial?: Partial<SyncState>): void {
    if (this.entries.has(sync)) throw new IbexError('internal', `sync "${sync}" is already scheduled`);
    const e: Entry = {
      name: sync, runner, plan: { ...plan },
      state: { state: plan.paused ? 'paused' : 'idle', since: new Date(this.timers.now()), lastError: undefined, lastErrorAt: undefined, attempts: 0, ...initial },
      active: false, pending: new Map(), tasks: [], retryTimer: undefined, checkTimer: undefined, fullcopyTimer: undefined,
      dispatchQueued: false, held: false, removed: false, quiet: false, waiters: [],
    };
    this.entries.set(sync, e);
    this.emitState(e);
    this.armCheck(e);
    this.armFullcopy(e);
    this.dispatch(e);
  }

  /** The syncs being scheduled. */
  syncs(): string[] {
    return [...this.entries.keys()];
  }

  /** Is the sync scheduled here? */
  has(sync: string): boolean {
    return this.entries.has(sync);
  }

  /** The sync's plan (a copy). */
  plan(sync: string): SyncPlan | undefined {
    const e = this.entries.get(sync);
    return e ? { ...e.plan } : undefined;
  }

  /** The sync's live state (a copy). */
  state(sync: string): SyncState | undefined {
    const e = this.entries.get(sync);
    return e ? { ...e.state } : undefined;
  }

  /** Is a run (or maintenance) of the sync in progress? */
  isRunning(sync: string): boolean {
    return this.entries.get(sync)?.active ?? false;
  }

  /** Nothing is running or will run without a new request (a paused sync is always quiescent when not running). */
  isQuiescent(sync: string): boolean {
    const e = this.entries.get(sync);
    if (!e) return true;
    return this.quiescent(e);
  }

  /**
   * Ask for a run. Returns false when the request is ignored: unknown or
   * paused sync, stopping, or a change-driven request for a sync that runs
   * only when kicked.
   */
  request(sync: string, req: RunRequest): boolean {
    const e = this.entries.get(sync);
    if (!e || e.removed || this.stopping) return false;
    if (e.plan.paused && req.reason !== 'kick') return false;
    if (!ALWAYS.has(req.reason) && !wakeDriven(e.plan)) return false;
    const slot: Slot = req.kind ?? 'delta';
    let p = e.pending.get(slot);
    if (!p) {
      p = { reasons: new Set(), kickIds: [] };
      e.pending.set(slot, p);
    }
    p.reasons.add(req.reason);
    if (req.kickId !== undefined && !p.kickIds.includes(req.kickId)) p.kickIds.push(req.kickId);
    e.quiet = false;
    if (URGENT.has(req.reason) && e.retryTimer !== undefined) {
      this.timers.clearTimeout(e.retryTimer);
      e.retryTimer = undefined;
    }
    this.dispatch(e);
    return true;
  }

  /** Change how a sync is scheduled (a reload); handles pause and resume. */
  update(sync: string, plan: SyncPlan): void {
    const e = this.entries.get(sync);
    if (!e || e.removed) return;
    const was = e.plan;
    e.plan = { ...plan };
    if (!was.paused && plan.paused) {
      this.clearTimers(e);
      this.dropUnkicked(e);
      this.setState(e, { state: 'paused' });
    } else if (was.paused && !plan.paused) {
      this.setState(e, { state: 'idle', attempts: 0 });
      this.armCheck(e);
      this.armFullcopy(e);
      this.request(sync, { reason: 'catchup' });
    } else {
      if (was.checktimeMs !== plan.checktimeMs || was.autokick !== plan.autokick || was.fullcopyOnly !== plan.fullcopyOnly) this.armCheck(e);
      if (was.fullcopyIntervalMs !== plan.fullcopyIntervalMs) this.armFullcopy(e);
    }
    this.dispatch(e);
  }

  /** Hold (true) or release (false) a sync's runs without changing its state: its lease is in doubt. */
  hold(sync: string, held: boolean): void {
    const e = this.entries.get(sync);
    if (!e) return;
    e.held = held;
    if (!held) this.dispatch(e);
  }

  /**
   * Run `fn` while the sync is not running (e.g. reload its runner): after
   * the run in progress, before the next one.
   */
  maintain(sync: string, fn: () => Promise<void>): Promise<void> {
    const e = this.entries.get(sync);
    if (!e || e.removed) return Promise.reject(new IbexError('internal', `sync "${sync}" is not scheduled`));
    return new Promise((resolve, reject) => {
      e.tasks.push({ fn, resolve, reject });
      this.dispatch(e);
    });
  }

  /** Stop scheduling a sync; resolves after its run in progress, with the kicks it will not answer. */
  async remove(sync: string): Promise<number[]> {
    const e = this.entries.get(sync);
    if (!e) return [];
    e.removed = true;
    const kicks = this.abandon(e);
    await this.settle(e);
    this.entries.delete(sync);
    return kicks;
  }

  /** Stop scheduling: no new runs; resolves when every run in progress ended, with the unanswered kicks. */
  async stop(): Promise<number[]> {
    this.stopping = true;
    const kicks = [...this.entries.values()].flatMap((e) => this.abandon(e));
    await Promise.all([...this.entries.values()].map((e) => this.settle(e)));
    return kicks;
  }

  // ---------------------------------------------------------------------------------------

  private quiescent(e: Entry): boolean {
    return !e.active && e.tasks.length === 0 && (e.plan.paused || (e.pending.size === 0 && e.retryTimer === undefined));
  }

  /** Start what is due on the next microtask, so requests of one tick coalesce. */
  private dispatch(e: Entry): void {
    if (e.dispatchQueued) return;
    e.dispatchQueued = true;
    queueMicrotask(() => {
      e.dispatchQueued = false;
      this.next(e);
    });
  }

  private next(e: Entry): void {
    if (e.active) return;
    const task = e.tasks.shift();
    if (task) {
      e.active = true;
      // Busy too: the quiescent hook is owed again once it is done (a wake-up check may have
      // stopped at this sync while it ran).
      e.quiet = false;
      void (async () => {
        try {
          await task.fn();
          task.resolve();
        } catch (err) {
          task.reject(err);
        } finally {
          e.active = false;
          this.dispatch(e);
        }
      })();
      return;
    }
    const blocked = e.removed || this.stopping || e.held || e.plan.paused || e.retryTimer !== undefined;
    const slot: Slot | undefined = blocked ? undefined : e.pending.has('delta') ? 'delta' : e.pending.has('fullcopy') ? 'fullcopy' : undefined;
    if (slot) {
      void this.execute(e, slot);
      return;
    }
    for (const w of e.waiters.splice(0)) w();
    if (!e.quiet && !e.removed && !this.stopping && this.quiescent(e)) {
      e.quiet = true;
      this.hooks.quiescent?.(e.name);
    }
  }

  private async execute(e: Entry, slot: Slot): Promise<void> {
    const req = e.pending.get(slot)!;
    e.pending.delete(slot);
    const kind: RunKind = slot === 'delta' && e.plan.onetimecopy > 0 ? 'onetimecopy' : slot;
    e.active = true;
    e.quiet = false;
    if (e.checkTimer !== undefined) {
      this.timers.clearTimeout(e.checkTimer);
      e.checkTimer = undefined;
    }
    this.setState(e, { state: kind === 'delta' ? 'running' : 'copying' });
    this.hooks.runStarting?.(e.name, kind);
    const started = this.timers.now();
    let result: RunResult;
    try {
      result = await e.runner.run(kind, req.kickIds.length ? { kickId: req.kickIds[0]! } : {});
      if (!result || typeof result !== 'object' || typeof result.status !== 'string') throw new IbexError('internal', 'the runner returned no result');
    } catch (err) {
      // run() never throws by contract; a bug there must not take the scheduler down.
      this.log.error({ sync: e.name, kind, err: errorText(err) }, 'the runner threw; counting the run as failed');
      result = {
        runId: 0, sync: e.name, kind, status: 'failed', inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {},
        error: errorText(err), transient: isTransient(err), durationMs: this.timers.now() - started,
      };
    }
    e.active = false;
    const retryInMs = this.settleOutcome(e, slot, kind, result);
    this.armCheck(e);
    if (kind === 'fullcopy') this.armFullcopy(e);
    try {
      const r = this.hooks.runEnded?.(e.name, { kind, result, kickIds: req.kickIds, reasons: [...req.reasons], retryInMs });
      if (r) r.catch((err) => this.log.error({ sync: e.name, err: errorText(err) }, 'recording the end of a run failed'));
    } catch (err) {
      this.log.error({ sync: e.name, err: errorText(err) }, 'recording the end of a run failed');
    }
    this.dispatch(e);
  }

  /** Apply a run's outcome to the sync; returns the retry delay when one was scheduled. */
  private settleOutcome(e: Entry, slot: Slot, kind: RunKind, result: RunResult): number | undefined {
    if (result.status === 'good' || result.status === 'empty') {
      this.setState(e, { state: e.plan.paused ? 'paused' : 'idle', attempts: 0 });
      if (kind === 'onetimecopy') {
        // The runner reset ibex.sync.onetimecopy; the changes captured since the copy began follow now.
        e.plan.onetimecopy = 0;
        this.request(e.name, { reason: 'followup' });
      } else if (kind === 'delta' && result.status === 'good') {
        // A run that moved many rows means a heavy, continuous load: the next run waits as long as
        // this one took (at most the run_pause_max_ms setting), so each run carries more rows and
        // its fixed cost (round trips, commits, bookkeeping) is paid half as often, on the same
        // cores as the application. A light stream (a few rows a run) waits half the run's time:
        // a steady trickle of changes coalesces into fewer runs (about half the daemon's CPU per
        // change, docs/performance.md) for a few ms of lag. An empty run, and the wake-up of an
        // idle sync, never wait; nor does a kick (urgent requests clear the timer).
        const rows = result.inserted + result.deleted;
        const pace = rows >= PACE_ROWS ? Math.min(result.durationMs, e.plan.pauseMaxMs) : rows > 0 ? Math.min(Math.floor(result.durationMs * LIGHT_PACE), e.plan.pauseMaxMs) : 0;
        // Only syncs that run on changes poll while busy (as request() decides for 'busy').
        if (pace >= 1 && !e.removed && !this.stopping && !e.plan.paused && wakeDriven(e.plan)) {
          const p = e.pending.get('delta') ?? { reasons: new Set<Reason>(), kickIds: [] };
          p.reasons.add('busy');
          e.pending.set('delta', p);
          e.retryTimer = this.timers.setTimeout(() => {
            e.retryTimer = undefined;
            this.dispatch(e);
          }, pace);
        } else this.request(e.name, { reason: 'busy' });
      }
      return undefined;
    }
    const error = result.error ?? `the ${kind} run ended ${result.status}`;
    const attempts = e.state.attempts + 1;
    const at = new Date(this.timers.now());
    if (result.pause) {
      e.plan.paused = true;
      this.clearTimers(e);
      this.dropUnkicked(e);
      this.setState(e, { state: 'paused', lastError: error, lastErrorAt: at, attempts });
      try {
        const r = this.hooks.pauseRequested?.(e.name, error);
        if (r) r.catch((err) => this.log.error({ sync: e.name, err: errorText(err) }, 'pausing the sync failed'));
      } catch (err) {
        this.log.error({ sync: e.name, err: errorText(err) }, 'pausing the sync failed');
      }
      return undefined;
    }
    if (e.plan.paused) {
      // Paused while this run was in progress: no retry until resumed.
      this.setState(e, { state: 'paused', lastError: error, lastErrorAt: at, attempts });
      return undefined;
    }
    this.setState(e, { state: 'stalled', lastError: error, lastErrorAt: at, attempts });
    // Transient failures (a db away, a serialization failure) retry soon and ever more slowly
    // (contention with local writes at most every 2 s, an outage up to every 30 s);
    // others (configuration, bugs) on the periodic schedule, and only for syncs that run by themselves.
    const delay = result.transient ? (result.contention ? this.contentionBackoff : this.backoff).delay(attempts)
      : wakeDriven(e.plan) ? e.plan.checktimeMs : undefined;
    if (delay === undefined || e.removed || this.stopping) return undefined;
    const p = e.pending.get(slot) ?? { reasons: new Set<Reason>(), kickIds: [] };
    p.reasons.add('retry');
    e.pending.set(slot, p);
    e.retryTimer = this.timers.setTimeout(() => {
      e.retryTimer = undefined;
      this.dispatch(e);
    }, delay);
    return delay;
  }

  private setState(e: Entry, patch: Partial<SyncState>): void {
    const before = e.state;
    const next: SyncState = { ...before, ...patch };
    if (next.state !== before.state) next.since = new Date(this.timers.now());
    if (next.state === before.state && next.lastError === before.lastError && next.attempts === before.attempts && next.lastErrorAt === before.lastErrorAt) return;
    e.state = next;
    this.emitState(e);
  }

  private emitState(e: Entry): void {
    try {
      const r = this.hooks.stateChanged?.(e.name, { ...e.state });
      if (r) r.catch((err) => this.log.error({ sync: e.name, err: errorText(err) }, 'recording the state of a sync failed'));
    } catch (err) {
      this.log.error({ sync: e.name, err: errorText(err) }, 'recording the state of a sync failed');
    }
  }

  /** The periodic check fires `checktime` after the last run ended (it never interrupts a run). */
  private armCheck(e: Entry): void {
    if (e.checkTimer !== undefined) this.timers.clearTimeout(e.checkTimer);
    e.checkTimer = undefined;
    if (e.removed || this.stopping || e.plan.paused || !wakeDriven(e.plan) || e.active) return;
    e.checkTimer = this.timers.setTimeout(() => {
      e.checkTimer = undefined;
      if (!this.request(e.name, { reason: 'check' })) this.armCheck(e);
    }, e.plan.checktimeMs);
  }

  private armFullcopy(e: Entry): void {
    if (e.fullcopyTimer !== undefined) this.timers.clearTimeout(e.fullcopyTimer);
    e.fullcopyTimer = undefined;
    const every = e.plan.fullcopyIntervalMs;
    if (e.removed || this.stopping || e.plan.paused || every === undefined || every <= 0) return;
    e.fullcopyTimer = this.timers.setTimeout(() => {
      e.fullcopyTimer = undefined;
      if (!this.request(e.name, { reason: 'fullcopy', kind: 'fullcopy' })) this.armFullcopy(e);
    }, every);
  }

  private clearTimers(e: Entry): void {
    for (const t of [e.retryTimer, e.checkTimer, e.fullcopyTimer]) if (t !== undefined) this.timers.clearTimeout(t);
    e.retryTimer = e.checkTimer = e.fullcopyTimer = undefined;
  }

  /** A paused sync keeps the kicks it took (they run on resume) and forgets the rest. */
  private dropUnkicked(e: Entry): void {
    for (const [slot, p] of e.pending) {
      if (p.kickIds.length === 0) e.pending.delete(slot);
      else p.reasons = new Set(['kick']);
    }
  }

  /** Forget everything scheduled; returns the kicks that will not be answered. */
  private abandon(e: Entry): number[] {
    this.clearTimers(e);
    const kicks = [...e.pending.values()].flatMap((p) => p.kickIds);
    e.pending.clear();
    for (const t of e.tasks.splice(0)) t.resolve();
    return kicks;
  }

  private settle(e: Entry): Promise<void> {
    if (!e.active && e.tasks.length === 0) return Promise.resolve();
    return new Promise((resolve) => e.waiters.push(resolve));
  }
}

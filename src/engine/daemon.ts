/**
 * The daemon: one Node process that runs every sync it holds the lease of
 * (DESIGN, "The daemon", "One daemon per sync"). All I/O is asynchronous; no
 * process is spawned per run.
 *
 * - The control session registers the daemon, holds its liveness lock (an
 *   advisory lock that dies with the session: a daemon killed with -9 is seen
 *   dead at once), beats its heartbeat, which renews the leases of the syncs it
 *   runs (ibex.sync_lease, with an epoch raised at every change of hands: the
 *   fencing token of every apply), and LISTENs for control messages
 *   (`kick:<sync>`, `reload`, `stop`, `stop:<id>`, `daemons`, `lease`). Kicks
 *   are also polled, since a NOTIFY sent while the session was being reopened
 *   is lost.
 * - Several daemons share one control database: each sync goes to the live
 *   daemon that rendezvous hashing picks among those whose --syncs filter
 *   admits it. A daemon that starts or stops says so (`daemons`); the owners of
 *   syncs that should move hand them over between runs (`lease`), and every
 *   heartbeat looks for leases left by daemons that died or froze.
 * - One LISTEN session per source db (shared by every sync reading it) turns
 *   capture wake-ups into run requests; the wake coordinator keeps each db's
 *   idle flag (src/engine/wake.ts).
 * - The scheduler (src/engine/scheduler.ts) decides when each sync runs.
 * - A lost session is reopened with backoff, and whatever it may have missed
 *   is caught up: a LISTEN session by a catch-up run of its syncs, the control
 *   session by re-taking every lease (runs are held meanwhile, since another
 *   daemon could take a lease that lapsed) and re-reading configuration and
 *   kicks.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { Logger } from 'pino';
import { listenWake, setIdle } from '../capture/wakeup.js';
import { openControl } from '../control/connection.js';
import { ibexVersion } from '../version.js';
import * as store from '../control/daemon-store.js';
import { readSetting } from '../control/settings-store.js';
import { connect, errorText, redact, type PgParams } from '../db/connect.js';
import { isConnectionError, isTransient } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import type { Backoff } from './backoff.js';
import { SyncRunner, type RunnerOptions } from './runner.js';
import { RUN_PAUSE_MAX_MS_DEFAULT, Scheduler, realTimers, wakeDriven, type Reason, type RunEnd, type ScheduledRunner, type SyncPlan, type SyncState, type Timers } from './scheduler.js';
import { KeptSession } from './session.js';
import type { RunKind, RunResult } from './types.js';
import { WakeCoordinator } from './wake.js';

/** What the daemon needs of a runner (SyncRunner's contract). */
export interface DaemonRunner {
  load(): Promise<void>;
  hasPending(): Promise<boolean>;
  run(kind: RunKind, opts: { kickId?: number }): Promise<RunResult>;
  close(): Promise<void>;
}

/** Options of a daemon. */
export interface DaemonOptions {
  controlUrl: string;
  log: Logger;
  /** Makes the runner of a sync. Default: the real SyncRunner. */
  runnerFactory?: (opts: RunnerOptions) => DaemonRunner;
  /** Overrides every sync's checktime, in ms (IBEX_CHECKTIME_MS, for tests). */
  checktimeMs?: number;
  /** Checktime of syncs that set none (default 60 s). */
  defaultChecktimeMs?: number;
  /** Heartbeat period (default 5 s). */
  heartbeatMs?: number;
  /** Kick polling period, the fallback of the kick NOTIFY (default 1 s). */
  kickPollMs?: number;
  /** Re-read ibex.sync this often for new syncs and leases freed by other daemons (default 30 s). */
  rescanMs?: number;
  /** Refuse to start when another live daemon serves this control database (default: share it). */
  exclusive?: boolean;
  /** Run only the syncs these patterns match (`*` any characters); default all. */
  syncs?: readonly string[];
  timers?: Timers;
  backoff?: Backoff;
  /** Told of every run that ended, after the daemon's own bookkeeping (metrics). Must not throw. */
  onRunEnded?: (sync: string, end: RunEnd) => void;
}

interface Managed {
  row: store.DaemonSyncRow;
  /** The lease epoch this daemon took the sync at: its runs commit only while it is current. */
  epoch: number;
  runner: DaemonRunner;
  loaded: boolean;
  log: Logger;
}

export { ibexVersion };

/** One daemon process. */
export class Daemon {
  private readonly log: Logger;
  private readonly timers: Timers;
  private readonly scheduler: Scheduler;
  private readonly wake: WakeCoordinator;
  private readonly control: KeptSession;
  private readonly managed = new Map<string, Managed>();
  private readonly listeners = new Map<string, KeptSession>();
  /** The row digest of each listened db when its listener was opened. */
  private readonly listenerDigest = new Map<string, string | undefined>();
  private readonly params = new Map<string, PgParams>();
  private readonly states: StateWriter;
  /** Syncs seen leased by another daemon (logged once). */
  private readonly elsewhere = new Set<string>();
  /** Syncs that may have a run left open in ibex.run: its runner could not record the end (see sweepRuns). */
  private readonly unrecorded = new Set<string>();
  private sweeping = false;
  /** start() has requested the first runs: syncs adopted later are asked to run when adopted. */
  private started = false;
  /** Bookkeeping after runs (answering kicks, pausing) that shutdown must let finish. */
  private readonly inflight = new Set<Promise<void>>();
  private daemonId: number | undefined;
  /** The lease_seconds setting, read at every reconcile. */
  private leaseSeconds = store.LEASE_SECONDS_DEFAULT;
  /** When the leases were last renewed (local clock): past the lease time, runs wait for a renewal. */
  private renewedAt = 0;
  /** Syncs being retired (waiting for their run in progress). */
  private readonly retiring = new Set<Managed>();
  /** Syncs being handed over to another daemon (after their run in progress). */
  private readonly handingOver = new Set<string>();
  /** The live daemons at the last look (ids), to see one start or stop. */
  private liveSeen = '';
  private reconciling: Promise<void> = Promise.resolve();
  /** The run_pause_max_ms setting, read at every reconcile. */
  private pauseMaxMs = RUN_PAUSE_MAX_MS_DEFAULT;
  private servingKicks: Promise<void> | undefined;
  private kicksAgain = false;
  private readonly loops: { handle: unknown }[] = [];
  /** The session opened by start(), handed to the kept control session as its first. */
  private firstControl: pg.Client | undefined;
  private stopping: Promise<void> | undefined;
  private resolveDone!: () => void;
  /** Resolves once the daemon has stopped. */
  readonly done: Promise<void>;

  constructor(private readonly opts: DaemonOptions) {
    this.log = opts.log;
    this.timers = opts.timers ?? realTimers;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.scheduler = new Scheduler({
      log: this.log,
      timers: this.timers,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      hooks: {
        runStarting: (sync) => this.wake.runStarting(sync),
        runEnded: (sync, end) => this.track(this.runEnded(sync, end)),
        stateChanged: (sync, state) => this.states.set(sync, state),
        pauseRequested: (sync, reason) => this.track(this.pauseForRun(sync, reason)),
        quiescent: (sync) => this.wake.quiescent(sync),
      },
    });
    this.wake = new WakeCoordinator({
      log: this.log,
      syncsOf: (db) => [...this.managed.keys()].filter((s) => this.wakeDbs(s).includes(db)),
      dbsOf: (sync) => this.wakeDbs(sync),
      isQuiescent: (sync) => this.scheduler.isQuiescent(sync),
      hasPending: (sync) => this.hasPending(sync),
      request: (sync, reason: Reason) => void this.scheduler.request(sync, { reason }),
      setIdle: (db, idle) => this.setDbIdle(db, idle),
    });
    this.states = new StateWriter(() => this.control.client(), this.log);
    this.control = new KeptSession({
      name: 'control',
      log: this.log,
      timers: this.timers,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      open: async () => {
        const c = this.firstControl;
        this.firstControl = undefined;
        return c ?? openControl(opts.controlUrl, { applicationName: 'ibex/daemon', check: false });
      },
      onUp: (c, reconnect) => this.controlUp(c, reconnect),
      onDown: () => {
        // The leases died with the session: hold every run until they are ours again.
        for (const s of this.managed.keys()) {
          this.scheduler.hold(s, true);
          // The runner's own control session likely went too: a run ending now cannot record its end.
          this.unrecorded.add(s);
        }
      },
    });
  }

  /** The syncs this daemon runs now. */
  syncs(): string[] {
    return [...this.managed.keys()];
  }

  /**
   * Start: register, take the leases of the active and paused syncs, end the
   * sessions a previous daemon left behind, load the runners, listen. Resolves
   * when the daemon is ready; throws when the control database is unusable or
   * another daemon serves it.
   */
  async start(): Promise<void> {
    // The first session is opened here, so a missing schema or an unreachable server fails the start clearly.
    this.firstControl = await openControl(this.opts.controlUrl, { applicationName: 'ibex/daemon' });
    await this.control.start();
    const c = this.control.client();
    if (!c) {
      await this.control.close();
      throw new IbexError('unreachable', 'lost the control database while starting: check that its server runs, then start again');
    }
    try {
      await this.readLeaseSeconds(c);
      const reg = await store.registerDaemon(c, { pid: process.pid, host: hostname(), version: ibexVersion(), syncs: this.opts.syncs },
        { exclusive: this.opts.exclusive === true, leaseSeconds: this.leaseSeconds });
      if ('other' in reg) {
        throw new IbexError('daemon', `an ibex daemon already serves this control database (pid ${reg.other.pid} on ${reg.other.host}): stop it first with "ibex stop"`);
      }
      this.daemonId = reg.id;
      await store.lockDaemon(c, reg.id);
      this.renewedAt = Date.now();
    } catch (err) {
      await this.control.close();
      throw err;
    }
    this.log.info({ daemon: this.daemonId, version: ibexVersion() }, 'daemon starting');
    try {
      await this.reconcile(false);
      await this.serveKicks();
      // The other daemons rebalance: some of their syncs may be this one's now.
      await store.notifyControl(c, 'daemons');
    } catch (err) {
      await this.stop('the start failed');
      throw err;
    }
    this.every(this.opts.heartbeatMs ?? Math.min(store.HEARTBEAT_MS, Math.max(500, (this.leaseSeconds * 1000) / 6)), () => this.beat());
    this.every(this.opts.kickPollMs ?? 1000, () => this.serveKicks());
    this.every(this.opts.rescanMs ?? 30_000, async () => {
      await this.reconcile(false);
      await this.sweepRuns();
    });
    // Changes made while no daemon ran notified nobody.
    for (const s of this.managed.keys()) this.scheduler.request(s, { reason: 'catchup' });
    this.started = true;
    this.log.info({ daemon: this.daemonId, syncs: this.syncs() }, 'ready');
  }

  /**
   * Stop gracefully: no new runs, wait for the runs in progress, close runners
   * and sessions (releasing the leases), mark the daemon stopped. Idempotent.
   */
  stop(reason = 'stop requested'): Promise<void> {
    if (!this.stopping) this.stopping = this.shutdown(reason);
    return this.stopping;
  }

  /** Is the daemon stopping (or stopped)? */
  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /** Re-read the configuration now (what `reload` does). */
  reload(): Promise<void> {
    return this.reconcile(true);
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  private async shutdown(reason: string): Promise<void> {
    try {
      await this.shutdownSteps(reason);
    } finally {
      this.resolveDone();
    }
  }

  private async shutdownSteps(reason: string): Promise<void> {
    this.log.info({ reason }, 'daemon stopping: waiting for the runs in progress');
    for (const l of this.loops) this.timers.clearTimeout(l.handle);
    await this.reconciling.catch(() => {}); // best effort: a failed reconcile was logged where it ran; stopping goes on
    const unanswered = await this.scheduler.stop();
    await this.servingKicks?.catch(() => {}); // best effort: kick serving logs its own failures; stopping goes on
    await Promise.allSettled([...this.inflight]);
    const c = this.control.client();
    if (c && unanswered.length) await store.releaseKicks(c, unanswered).catch((err) => this.log.warn({ err: errorText(err) }, 'could not hand back kicks'));
    await this.states.flush();
    // Nobody will listen: stop the triggers from notifying.
    await Promise.all([...this.listeners.entries()].map(async ([db, l]) => {
      const lc = l.client();
      if (lc) await setIdle(lc, false).catch(() => {}); // best effort: a lost listener session has nothing left to flag
      await l.close();
      this.wake.forget(db);
    }));
    this.listeners.clear();
    await Promise.all([...this.managed.values()].map((m) => m.runner.close().catch((err) => m.log.warn({ err: errorText(err) }, 'closing the runner failed'))));
    const held = this.heldEpochs();
    this.managed.clear();
    const cc = this.control.client();
    if (cc && this.daemonId !== undefined) {
      try {
        // Given back only now, after the last run: the next owner starts where this one ended.
        await store.releaseLeases(cc, this.daemonId, held);
        await store.markStopped(cc, this.daemonId);
        await store.notifyControl(cc, 'daemons');
      } catch (err) {
        this.log.warn({ err: errorText(err) }, 'could not mark the daemon stopped (its leases expire by themselves)');
      }
    }
    // Ending the session releases every lease.
    await this.control.close();
    this.log.info({ daemon: this.daemonId }, 'daemon stopped');
  }

  /** Remember a piece of bookkeeping until it settles (errors are the caller's to log). */
  private track(p: Promise<void>): Promise<void> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => {});
    return p;
  }

  /** Call `fn` every `ms`, never overlapping itself. */
  private every(ms: number, fn: () => Promise<void>): void {
    const loop: { handle: unknown } = { handle: undefined };
    this.loops.push(loop);
    const arm = (): void => {
      loop.handle = this.timers.setTimeout(async () => {
        try {
          await fn();
        } catch (err) {
          this.log.warn({ err: errorText(err) }, 'periodic task failed');
        }
        if (!this.stopping) arm();
      }, ms);
    };
    arm();
  }

  /** The epochs of the leases this daemon holds. */
  private heldEpochs(): Map<string, number> {
    return new Map([...this.managed.values()].map((m) => [m.row.name, m.epoch]));
  }

  /**
   * The heartbeat: renew the leases (a sync whose lease went to another
   * daemon meanwhile is dropped at once, without giving anything back), then
   * look for leases nobody holds and daemons that came or went.
   */
  private async beat(): Promise<void> {
    const c = this.control.client();
    if (!c || this.daemonId === undefined || this.stopping) return;
    try {
      await this.renew(c);
      const [leases, live] = await Promise.all([store.readLeases(c), store.liveDaemons(c, { leaseSeconds: this.leaseSeconds })]);
      const seen = live.map((d) => d.id).join(',');
      const orphaned = [...leases.values()].some((l) => l.orphaned && this.knownSyncs.has(l.sync) && !this.managed.has(l.sync));
      const missing = [...this.knownSyncs].some((s) => !leases.has(s));
      if (orphaned || missing || seen !== this.liveSeen) void this.reconcile(false);
    } catch (err) {
      this.log.warn({ err: errorText(err) }, 'heartbeat failed');
      if (isConnectionError(err)) this.control.drop();
    }
  }

  /** Renew the leases; drop the syncs whose lease another daemon took. */
  private async renew(c: pg.Client): Promise<void> {
    if (this.daemonId === undefined) return;
    const held = this.heldEpochs();
    const asked = Date.now();
    const renewed = await store.renewLeases(c, this.daemonId, held, this.leaseSeconds);
    this.renewedAt = asked;
    for (const name of held.keys()) {
      if (renewed.has(name) || !this.managed.has(name)) continue;
      this.log.warn({ sync: name }, 'another daemon took the lease of this sync (this one was frozen or cut off); no longer running it');
      void this.track(this.retire(name, false));
    }
  }

  /** The syncs this daemon may run, at the last reconcile (a lease of theirs lying free makes the heartbeat reconcile). */
  private knownSyncs = new Set<string>();

  private async readLeaseSeconds(c: pg.Client): Promise<void> {
    const v = await readSetting(c, 'lease_seconds');
    const n = v === undefined ? store.LEASE_SECONDS_DEFAULT : Number(v);
    if (!Number.isInteger(n) || n < 2) this.log.warn({ value: v }, `bad lease_seconds in ibex.config: using ${store.LEASE_SECONDS_DEFAULT}; fix it with "ibex set lease_seconds=${store.LEASE_SECONDS_DEFAULT}"`);
    this.leaseSeconds = Number.isInteger(n) && n >= 2 ? n : store.LEASE_SECONDS_DEFAULT;
  }

  private async controlUp(c: pg.Client, reconnect: boolean): Promise<void> {
    await store.listenControl(c, (message) => this.message(message));
    if (!reconnect || this.stopping || this.daemonId === undefined) return;
    await store.lockDaemon(c, this.daemonId);
    // Renewed only where the epoch is still ours: nobody else ran the sync meanwhile.
    const held = this.heldEpochs();
    const renewed = await store.renewLeases(c, this.daemonId, held, this.leaseSeconds);
    this.renewedAt = Date.now();
    for (const name of held.keys()) {
      if (renewed.has(name)) this.scheduler.hold(name, false);
      else {
        this.log.warn({ sync: name }, 'lost the lease of this sync to another daemon while the control session was away; no longer running it');
        await this.retire(name, false);
      }
    }
    this.states.kick();
    void this.reconcile(false);
    void this.serveKicks();
    void this.sweepRuns();
  }

  private message(payload: string): void {
    if (this.stopping) return;
    if (payload === 'stop') void this.stop('stop message');
    else if (payload === `stop:${this.daemonId}`) void this.stop('stop message for this daemon');
    else if (payload === 'daemons' || payload === 'lease') void this.reconcile(false);
    else if (payload === 'reload') {
      this.log.info('reloading the configuration');
      void this.reconcile(true);
    } else if (payload.startsWith('config:')) {
      // A sync was added, changed or removed: adopt or retire it now, not at the next rescan.
      void this.reconcile(false).then(() => this.serveKicks()).catch(() => {}); // both log their own failures
    } else if (payload.startsWith('kick:')) void this.serveKicks();
    else this.log.debug({ payload }, 'unknown control message');
  }

  // ---- configuration ------------------------------------------------------------------------

  /** Re-read ibex.sync and bring the managed syncs in line (serialized). */
  private reconcile(full: boolean): Promise<void> {
    const next = this.reconciling.then(() => this.reconcileNow(full));
    this.reconciling = next.catch((err) => this.log.warn({ err: errorText(err) }, 'reading the configuration failed'));
    return next;
  }

  private async reconcileNow(full: boolean): Promise<void> {
    if (this.stopping) return;
    const c = this.control.client();
    if (!c) return;
    const rows = await store.readDaemonSyncs(c);
    // The pause after busy runs (a global setting; see the scheduler's settleOutcome).
    const setting = await readSetting(c, 'run_pause_max_ms');
    const ms = setting === undefined ? RUN_PAUSE_MAX_MS_DEFAULT : Number(setting);
    if (!Number.isInteger(ms) || ms < 0) this.log.warn({ value: setting }, `bad run_pause_max_ms in ibex.config: using ${RUN_PAUSE_MAX_MS_DEFAULT}; fix it with "ibex set run_pause_max_ms=${RUN_PAUSE_MAX_MS_DEFAULT}"`);
    this.pauseMaxMs = Number.isInteger(ms) && ms >= 0 ? ms : RUN_PAUSE_MAX_MS_DEFAULT;
    const byName = new Map(rows.map((r) => [r.name, r]));
    for (const name of [...this.managed.keys()]) {
      if (!byName.has(name)) {
        this.log.info({ sync: name }, 'sync removed or deactivated; no longer running it');
        await this.retire(name, true);
      }
    }
    const me = this.daemonId;
    if (me === undefined) return;
    await this.readLeaseSeconds(c);
    const [live, leases] = await Promise.all([store.liveDaemons(c, { leaseSeconds: this.leaseSeconds }), store.readLeases(c)]);
    this.liveSeen = live.map((d) => d.id).join(',');
    this.knownSyncs = new Set(rows.map((r) => r.name).filter((n) => admits(this.opts.syncs, n)));
    const leased: { row: store.DaemonSyncRow; epoch: number }[] = [];
    for (const r of rows) {
      const owner = preferredDaemon(r.name, live);
      if (this.managed.has(r.name)) {
        if (owner !== undefined && owner.id !== me) this.handOver(r.name, owner);
        continue;
      }
      if (!admits(this.opts.syncs, r.name)) continue;
      const l = leases.get(r.name);
      if (l && !l.orphaned) {
        if (!this.elsewhere.has(r.name)) {
          this.elsewhere.add(r.name);
          this.log.info({ sync: r.name, daemon: l.daemon }, 'another daemon runs this sync; skipping it');
        }
        continue;
      }
      // The daemon the hashing picks takes a free lease; any other takes one left lying past its
      // expiry a few seconds (the pick may be frozen without knowing it yet).
      if (owner?.id !== me && !(l && l.expiredS > 5)) continue;
      const epoch = await store.claimLease(c, r.name, me, this.leaseSeconds);
      if (epoch === undefined) continue;
      leased.push({ row: r, epoch });
      this.elsewhere.delete(r.name);
    }
    if (leased.length) {
      try {
        await this.adopt(c, leased);
        // A sync adopted while running (added since the start) runs now: its onetimecopy, or what it missed.
        if (this.started) for (const { row: r } of leased) if (this.managed.has(r.name)) this.scheduler.request(r.name, { reason: 'catchup' });
      } catch (err) {
        const lost = new Map(leased.filter((l) => !this.managed.has(l.row.name)).map((l) => [l.row.name, l.epoch]));
        await store.releaseLeases(c, me, lost).catch(() => {}); // best effort: a lease not given back expires by itself
        throw err;
      }
    }
    for (const r of rows) {
      const m = this.managed.get(r.name);
      if (!m || leased.some((l) => l.row === r)) continue;
      const changed = m.row.fingerprint !== r.fingerprint || m.row.status !== r.status || m.row.onetimecopy !== r.onetimecopy;
      if (!changed && !full) continue;
      m.row = r;
      this.scheduler.update(r.name, this.plan(r));
      if (full || changed) {
        void this.scheduler.maintain(r.name, async () => {
          await this.load(m);
        }).catch(() => {}); // load() records its failure in the scheduler state
        // Changed (a table, a db, a onetimecopy asked for): run under the new configuration at once.
        if (changed) this.scheduler.request(r.name, { reason: 'catchup' });
      }
    }
    this.refreshListeners();
  }

  /**
   * Give a sync to the daemon that should run it: after the run in progress
   * (never interrupting it), give the lease back and tell the others.
   */
  private handOver(name: string, to: store.DaemonRow): void {
    if (this.handingOver.has(name) || this.stopping) return;
    this.handingOver.add(name);
    this.log.info({ sync: name, to: { daemon: to.id, pid: to.pid, host: to.host } }, 'handing this sync over to another daemon after its run in progress');
    void this.track((async () => {
      try {
        await this.retire(name, true);
        const c = this.control.client();
        if (c) await store.notifyControl(c, 'lease');
      } finally {
        this.handingOver.delete(name);
      }
    })()).catch((err) => this.log.warn({ sync: name, err: errorText(err) }, 'handing the sync over failed; its lease expires by itself'));
  }

  /** Start running syncs whose leases were just taken. */
  private async adopt(c: pg.Client, taken: { row: store.DaemonSyncRow; epoch: number }[]): Promise<void> {
    const rows = taken.map((t) => t.row);
    const epochs = new Map(taken.map((t) => [t.row.name, t.epoch]));
    // The previous owner's sessions end first: a frozen owner's open transactions roll back.
    await this.endStaleSessions(c, rows);
    const seeds = await store.readSyncStates(c);
    for (const r of rows) {
      const rec = await store.recoverSync(c, r.name, process.pid);
      if (rec.runsEnded || rec.kicksReset) this.log.info({ sync: r.name, ...rec }, 'cleaned up after the previous daemon');
    }
    await Promise.all(rows.map(async (r) => {
      const log = this.log.child({ sync: r.name });
      let runner: DaemonRunner;
      try {
        runner = (this.opts.runnerFactory ?? ((o) => new SyncRunner(o)))({ controlUrl: this.opts.controlUrl, sync: r.name, log, epoch: epochs.get(r.name)! });
      } catch (err) {
        log.error({ err: redact(errorText(err)) }, 'cannot create the runner of this sync; not running it');
        await store.releaseLeases(c, this.daemonId!, new Map([[r.name, epochs.get(r.name)!]])).catch(() => {}); // best effort: the lease expires by itself
        return;
      }
      const m: Managed = { row: r, runner, loaded: false, log, epoch: epochs.get(r.name)! };
      this.managed.set(r.name, m);
      const seed = seeds.get(r.name);
      this.scheduler.add(r.name, this.runnerOf(m), this.plan(r), seed ? {
        lastError: seed.lastError ?? undefined, lastErrorAt: seed.lastErrorAt ?? undefined, attempts: seed.attempts,
      } : {});
      // Loading may wait on an unreachable db: do it before the first run, not before the daemon is ready.
      void this.scheduler.maintain(r.name, () => this.load(m)).catch(() => {}); // load() records its failure in the scheduler state
      log.info({ status: r.status, sources: r.sources, autokick: r.autokick, epoch: m.epoch }, 'running sync');
    }));
  }

  /** Stop running a sync; `release`: give its lease back (false when the lease is already gone). */
  private async retire(name: string, release: boolean): Promise<void> {
    const m = this.managed.get(name);
    // Several reasons may retire a sync at once (lease lost, fenced run, hand-over): once is enough.
    if (!m || this.retiring.has(m)) return;
    this.retiring.add(m);
    let kicks: number[];
    try {
      kicks = await this.scheduler.remove(name);
    } finally {
      this.retiring.delete(m);
    }
    if (this.managed.get(name) === m) this.managed.delete(name);
    await m.runner.close().catch((err) => m.log.warn({ err: errorText(err) }, 'closing the runner failed'));
    const c = this.control.client();
    if (c) {
      if (kicks.length) await store.releaseKicks(c, kicks).catch(() => {}); // best effort: kicks not released are taken again when the sync next runs
      if (release && this.daemonId !== undefined) await store.releaseLeases(c, this.daemonId, new Map([[name, m.epoch]])).catch(() => {}); // best effort: the lease expires by itself
    }
    this.refreshListeners();
  }

  private async load(m: Managed): Promise<void> {
    try {
      await m.runner.load();
      m.loaded = true;
    } catch (err) {
      m.loaded = false;
      m.log.warn({ err: redact(errorText(err)) }, 'cannot load the sync; its runs will fail until this is fixed');
    }
  }

  /**
   * End sessions that a previous daemon left on the dbs of these syncs (by
   * application_name), before this daemon creates its own.
   */
  private async endStaleSessions(c: pg.Client, rows: store.DaemonSyncRow[]): Promise<void> {
    const byDb = new Map<string, string[]>();
    for (const r of rows) {
      for (const d of r.dbs) {
        if (d.dbtype !== 'postgres') continue;
        byDb.set(d.name, [...(byDb.get(d.name) ?? []), r.name]);
      }
    }
    const params = await store.readDbParams(c, [...byDb.keys()]);
    const names = rows.map((r) => r.name);
    const onControl = await store.terminateSyncSessions(c, names).catch((err) => {
      this.log.warn({ err: errorText(err) }, 'could not end stale sessions on the control database');
      return 0;
    });
    if (onControl) this.log.info({ sessions: onControl }, 'ended stale ibex sessions on the control database');
    await Promise.all([...byDb].map(async ([db, syncs]) => {
      const p = params.get(db);
      if (!p) return;
      this.params.set(db, p.params);
      try {
        const s = await connect(p.params, { applicationName: 'ibex/daemon', connectTimeoutS: 5 });
        try {
          const n = await store.terminateSyncSessions(s, syncs);
          if (n) this.log.info({ db, sessions: n }, 'ended stale ibex sessions');
        } finally {
          await s.end().catch(() => {}); // best effort: closing a one-off session
        }
      } catch (err) {
        this.log.warn({ db, err: redact(errorText(err), p.params.password) }, 'could not end stale ibex sessions on this db');
      }
    }));
  }

  private plan(r: store.DaemonSyncRow): SyncPlan {
    return {
      autokick: r.autokick,
      fullcopyOnly: r.fullcopyOnly,
      checktimeMs: this.opts.checktimeMs ?? r.checktimeMs ?? this.opts.defaultChecktimeMs ?? 60_000,
      fullcopyIntervalMs: r.fullcopyIntervalMs ?? undefined,
      onetimecopy: r.onetimecopy,
      paused: r.status === 'paused',
      pauseMaxMs: this.pauseMaxMs,
    };
  }

  // ---- runs ---------------------------------------------------------------------------------

  /** The scheduler's view of a runner: load on demand, never throw. */
  private runnerOf(m: Managed): ScheduledRunner {
    return {
      run: async (kind, opts) => {
        const started = new Date();
        if (Date.now() - this.renewedAt > this.leaseSeconds * 1000) {
          // Not renewed for the lease time (frozen, or cut from the control database): the lease may be
          // another daemon's now. Renew first; a sync lost meanwhile is dropped by the renewal.
          const c = this.control.client();
          if (c) await this.renew(c).catch(() => {}); // a failure shows below: the lease stays unrenewed
          if (Date.now() - this.renewedAt > this.leaseSeconds * 1000 || !this.managed.has(m.row.name)) {
            return this.failedRun(m, kind, started, new IbexError('unreachable', 'the lease of this sync could not be renewed: waiting for the control database'));
          }
        }
        if (!m.loaded) {
          try {
            await m.runner.load();
            m.loaded = true;
          } catch (err) {
            return this.failedRun(m, kind, started, err);
          }
        }
        try {
          const result = await m.runner.run(kind, opts);
          if (result.fenced) {
            // Another daemon owns the sync now: step back (the lease is not ours to give back).
            m.log.warn({ kind, epoch: m.epoch }, 'a newer owner of this sync exists: this daemon stops running it');
            void this.track(this.retire(m.row.name, false));
            return result;
          }
          if (result.status === 'failed' && result.runId === 0) {
            // The run could not even be recorded: the runner's control session is gone (the control
            // database restarted, or its session was ended). Reopen every session of this sync before
            // the next run instead of trusting the runner to notice: an idle runner may hold a dead
            // session that fails every retry at once.
            m.log.info({ kind, err: result.error }, 'the run could not be recorded; reopening the sessions of this sync');
            m.loaded = false;
            await m.runner.close().catch((err) => m.log.warn({ err: redact(errorText(err)) }, 'closing the runner failed'));
          }
          return result;
        } catch (err) {
          m.log.error({ kind, err: redact(errorText(err)) }, 'the runner threw instead of returning a failed result');
          return this.failedRun(m, kind, started, err);
        }
      },
    };
  }

  /** A run that never reached the runner's bookkeeping: record it, so a waiting kick learns of it. */
  private async failedRun(m: Managed, kind: RunKind, started: Date, err: unknown): Promise<RunResult> {
    const error = redact(errorText(err));
    let runId = 0;
    const c = this.control.client();
    if (c) {
      try {
        runId = await store.recordFailedRun(c, m.row.name, kind, started, error);
      } catch (e) {
        m.log.warn({ err: errorText(e) }, 'could not record the failed run');
      }
    }
    return {
      runId, sync: m.row.name, kind, status: 'failed', inserted: 0, deleted: 0, conflicts: 0, truncates: 0, tables: {}, error,
      transient: isTransient(err) || (err instanceof IbexError && err.code === 'unreachable'), durationMs: Date.now() - started.getTime(),
    };
  }

  private async runEnded(sync: string, end: RunEnd): Promise<void> {
    const r = end.result;
    this.opts.onRunEnded?.(sync, end);
    // The runner logs each run with its counts; this line says why it ran and what happens next.
    const line = { sync, run: r.runId, kind: end.kind, status: r.status, reasons: end.reasons, ...(end.kickIds.length ? { kicks: end.kickIds } : {}) };
    if (r.status === 'good' || r.status === 'empty') this.log.debug(line, 'run ended');
    else {
      const next = r.pause ? 'pause' : end.retryInMs !== undefined ? 'retry' : 'wait_for_kick';
      this.log.warn({
        ...line, err: r.error, transient: r.transient ?? false, attempts: this.scheduler.state(sync)?.attempts, next,
        ...(end.retryInMs !== undefined ? { retry_ms: end.retryInMs } : {}),
      }, 'run failed');
    }
    if (end.kickIds.length && r.runId) {
      const c = this.control.client();
      if (c) await store.answerKicks(c, end.kickIds, r.runId);
    }
    if (r.status !== 'good' && r.status !== 'empty') this.unrecorded.add(sync);
    await this.sweepRuns();
  }

  /**
   * Close the runs left open in ibex.run by runners that could not record
   * their end (the control database was away), so `status` does not show them
   * running forever. Only syncs with no run in progress are swept, up to the
   * newest run id read first: a run that starts later gets a higher id.
   */
  private async sweepRuns(): Promise<void> {
    const c = this.control.client();
    if (!c || this.unrecorded.size === 0 || this.sweeping || this.stopping) return;
    this.sweeping = true;
    try {
      const upTo = await store.maxRunId(c);
      // A sync retired meanwhile may run under another daemon now: not ours to close.
      for (const s of [...this.unrecorded]) if (!this.managed.has(s)) this.unrecorded.delete(s);
      const idle = [...this.unrecorded].filter((s) => !this.scheduler.isRunning(s));
      if (idle.length === 0) return;
      const n = await store.closeOrphanRuns(c, idle, upTo);
      for (const s of idle) this.unrecorded.delete(s);
      if (n) this.log.info({ syncs: idle, runs: n }, 'closed runs whose end could not be recorded');
    } catch (err) {
      this.log.debug({ err: errorText(err) }, 'could not close runs left open; trying again later');
    } finally {
      this.sweeping = false;
    }
  }

  private async pauseForRun(sync: string, reason: string): Promise<void> {
    const m = this.managed.get(sync);
    if (m) m.row = { ...m.row, status: 'paused' };
    this.log.warn({ sync, reason }, 'sync paused');
    const c = this.control.client();
    if (c) await store.pauseSyncForRun(c, sync, reason);
    this.refreshListeners();
  }

  private async hasPending(sync: string): Promise<boolean> {
    const m = this.managed.get(sync);
    if (!m || !m.loaded) return false;
    return m.runner.hasPending();
  }

  // ---- kicks --------------------------------------------------------------------------------

  /** Take unserved kicks of the syncs this daemon runs and schedule them (serialized). */
  private serveKicks(): Promise<void> {
    if (this.servingKicks) {
      this.kicksAgain = true;
      return this.servingKicks;
    }
    this.servingKicks = (async () => {
      try {
        do {
          this.kicksAgain = false;
          await this.serveKicksOnce();
        } while (this.kicksAgain && !this.stopping);
      } finally {
        this.servingKicks = undefined;
      }
    })();
    return this.servingKicks;
  }

  private async serveKicksOnce(): Promise<void> {
    const c = this.control.client();
    if (!c || this.stopping) return;
    // A paused sync's kicks wait (the CLI refuses them; one that raced a pause runs on resume).
    const eligible = [...this.managed.values()].filter((m) => m.row.status === 'active' && !this.scheduler.plan(m.row.name)?.paused).map((m) => m.row.name);
    const kicks = await store.takeKicks(c, eligible);
    const refused: number[] = [];
    for (const k of kicks) {
      const m = this.managed.get(k.sync);
      const kind = m?.row.fullcopyOnly ? 'fullcopy' : 'delta';
      if (this.scheduler.request(k.sync, { reason: 'kick', kind, kickId: k.id })) m?.log.info({ kick: k.id, kind }, 'kicked');
      else refused.push(k.id);
    }
    if (refused.length) await store.releaseKicks(c, refused);
  }

  // ---- wake-ups -----------------------------------------------------------------------------

  /** The source dbs of a sync that runs on changes (postgres, active, not paused). */
  private wakeDbs(sync: string): string[] {
    const m = this.managed.get(sync);
    if (!m || m.row.status !== 'active') return [];
    const plan = this.scheduler.plan(sync);
    if (!plan || plan.paused || !wakeDriven(plan)) return [];
    return m.row.dbs.filter((d) => d.role === 'source' && d.dbtype === 'postgres').map((d) => d.name);
  }

  /** Open a LISTEN session for every db a running sync reads; close the others. */
  private refreshListeners(): void {
    if (this.stopping) return;
    const wanted = new Set([...this.managed.keys()].flatMap((s) => this.wakeDbs(s)));
    // A db whose row changed (moved to another host, say) is listened to anew, on its new connection.
    const digests = new Map([...this.managed.values()].flatMap((m) => m.row.dbs.map((d) => [d.name, d.digest] as const)));
    for (const [db, l] of [...this.listeners]) {
      if (wanted.has(db) && this.listenerDigest.get(db) === digests.get(db)) continue;
      this.listeners.delete(db);
      this.wake.forget(db);
      void (async () => {
        const c = l.client();
        if (c) await setIdle(c, false).catch(() => {}); // best effort: a lost listener session has nothing left to flag
        await l.close();
      })();
    }
    for (const db of wanted) {
      if (this.listeners.has(db)) continue;
      this.listenerDigest.set(db, digests.get(db));
      const l = new KeptSession({
        name: db,
        log: this.log.child({ db }),
        timers: this.timers,
        ...(this.opts.backoff ? { backoff: this.opts.backoff } : {}),
        open: async () => {
          const c = await connect(await this.dbParams(db), { applicationName: 'ibex/listen' });
          try {
            await listenWake(c, () => this.wake.wake(db));
          } catch (err) {
            await c.end().catch(() => {}); // best effort: the session failed already; it is replaced
            throw err;
          }
          return c;
        },
        onUp: () => this.wake.connected(db),
        onDown: () => this.wake.lost(db),
      });
      this.listeners.set(db, l);
      void l.start();
    }
    // The syncs reading some db changed: one that kept it busy may be gone.
    this.wake.recheck();
  }

  /** A db's connection parameters: fresh from the control database, else the last known. */
  private async dbParams(db: string): Promise<PgParams> {
    const c = this.control.client();
    if (c) {
      try {
        const p = (await store.readDbParams(c, [db])).get(db);
        if (p) this.params.set(db, p.params);
      } catch (err) {
        this.log.debug({ db, err: errorText(err) }, 'could not read the db parameters; using the last known');
      }
    }
    const p = this.params.get(db);
    if (!p) throw new IbexError('not_found', `db "${db}" is not in the control database`);
    return p;
  }

  private async setDbIdle(db: string, idle: boolean): Promise<void> {
    const c = this.listeners.get(db)?.client();
    if (!c) throw new IbexError('unreachable', `no session on db ${db}`);
    await setIdle(c, idle);
  }
}

/** A sync going between running and idle has its state written at most this often (ms). */
export const ROUTINE_STATE_MS = 250;

/** Running or idle, with no failure to report: the states a busy sync goes through run after run. */
function routineState(s: SyncState): boolean {
  return (s.state === 'running' || s.state === 'idle') && s.attempts === 0;
}

/**
 * Writes sync states to the control database in order, latest first-class:
 * while one write is in flight, later states of a sync replace earlier ones
 * not yet written. A sync going between running and idle run after run is
 * written at most every ROUTINE_STATE_MS (the latest state then), so a busy
 * sync costs a few writes a second, not two per run; a failure, a pause or a
 * copy is written at once.
 */
class StateWriter {
  private readonly desired = new Map<string, SyncState>();
  private running: Promise<void> | undefined;
  /** When each sync's state was last written, and whether it was running or idle with no failure. */
  private readonly written = new Map<string, { at: number; routine: boolean }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly client: () => pg.Client | undefined, private readonly log: Logger) {}

  set(sync: string, s: SyncState): void {
    const before = this.desired.get(sync);
    this.desired.delete(sync);
    this.desired.set(sync, s);
    const last = this.written.get(sync);
    const wait = last ? last.at + ROUTINE_STATE_MS - Date.now() : 0;
    if (wait > 0 && last!.routine && routineState(s) && (before === undefined || routineState(before))) {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.kick();
      }, wait).unref();
      return;
    }
    this.kick();
  }

  /** Write what is waiting (e.g. after the control session came back). */
  kick(): void {
    if (this.running || this.desired.size === 0) return;
    this.running = this.drain().then((ok) => {
      this.running = undefined;
      // A state set while the last write was in flight; after a failure, wait for the next kick.
      if (ok && this.desired.size) this.kick();
    });
  }

  /** Resolves when nothing is waiting that can be written now. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.kick();
    while (this.running) await this.running;
  }

  private async drain(): Promise<boolean> {
    for (;;) {
      const first = this.desired.entries().next();
      if (first.done) return true;
      const c = this.client();
      if (!c) return false;
      const [sync, s] = first.value;
      this.desired.delete(sync);
      try {
        this.written.set(sync, { at: Date.now(), routine: routineState(s) });
        await store.writeSyncState(c, sync, s);
      } catch (err) {
        if (!this.desired.has(sync)) this.desired.set(sync, s);
        this.log.warn({ sync, err: errorText(err) }, 'could not record the state of a sync');
        return false;
      }
    }
  }
}

/** Does a --syncs filter admit this sync? (`*` matches any characters; no filter admits all.) */
export function admits(patterns: readonly string[] | null | undefined, sync: string): boolean {
  if (!patterns || patterns.length === 0) return true;
  return patterns.some((p) => new RegExp(`^${p.split('*').map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(sync));
}

/**
 * The daemon that should run a sync: rendezvous hashing over the live
 * daemons that admit it, so every daemon computes the same answer and a
 * daemon that comes or goes moves only its share of the syncs.
 */
export function preferredDaemon<D extends { id: number; syncs: string[] | null }>(sync: string, live: readonly D[]): D | undefined {
  let best: D | undefined;
  let bestScore = -1n;
  for (const d of live) {
    if (!admits(d.syncs, sync)) continue;
    const score = createHash('sha256').update(`${sync}\0${d.id}`).digest().readBigUInt64BE(0);
    if (score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  return best;
}

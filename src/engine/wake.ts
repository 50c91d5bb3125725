/**
 * The daemon's half of the wake-up protocol (src/capture/wakeup.ts) for every
 * source db: the db is marked busy as soon as a sync that reads it is woken or
 * starts a run (so triggers stop notifying and the application's commits do
 * not queue on the notify lock), and idle again only when no sync reading it
 * is running or scheduled. Right after marking a db idle it asks each of
 * those syncs once more whether anything is pending, because a commit between
 * their last run and the flag did not notify.
 */
import type { Logger } from 'pino';
import { errorText } from '../db/connect.js';
import type { Reason } from './scheduler.js';

/** What the coordinator needs from the daemon. */
export interface WakeDeps {
  /** The syncs that read this db and run on changes. */
  syncsOf(db: string): string[];
  /** The source dbs of a sync that runs on changes ([] for the others). */
  dbsOf(sync: string): string[];
  isQuiescent(sync: string): boolean;
  hasPending(sync: string): Promise<boolean>;
  request(sync: string, reason: Reason): void;
  /** Set the db's idle flag; rejects when the db's session is gone. */
  setIdle(db: string, idle: boolean): Promise<void>;
  log: Logger;
}

interface Flag {
  /** What the db holds, as far as we know (undefined: unknown, e.g. just reconnected). */
  applied: boolean | undefined;
  /** Flag writes of one db are applied in the order they were decided. */
  chain: Promise<boolean>;
}

/** Keeps each source db's idle flag right. */
export class WakeCoordinator {
  private readonly flags = new Map<string, Flag>();
  private readonly checking = new Set<string>();
  private readonly again = new Set<string>();

  constructor(private readonly deps: WakeDeps) {}

  /** A capture trigger on `db` notified. */
  wake(db: string): void {
    void this.mark(db, false);
    for (const s of this.deps.syncsOf(db)) this.deps.request(s, 'wake');
  }

  /** The LISTEN session of `db` (re)connected: what happened meanwhile is unknown, so catch up. */
  connected(db: string): void {
    this.flag(db).applied = undefined;
    void this.mark(db, false);
    for (const s of this.deps.syncsOf(db)) this.deps.request(s, 'catchup');
  }

  /** The LISTEN session of `db` is gone. */
  lost(db: string): void {
    this.flag(db).applied = undefined;
  }

  /** Forget a db nobody listens on any more. */
  forget(db: string): void {
    this.flags.delete(db);
  }

  /** A run of `sync` is starting: its dbs are busy. */
  runStarting(sync: string): void {
    for (const db of this.deps.dbsOf(sync)) void this.mark(db, false);
  }

  /**
   * `sync` has nothing running or scheduled: maybe its dbs can go idle. Every
   * other db is looked at too: a sync paused, removed or changed while it ran
   * no longer lists the dbs it kept busy, and a look that found it running
   * stopped there; a db already idle costs no I/O.
   */
  quiescent(sync: string): void {
    for (const db of new Set([...this.deps.dbsOf(sync), ...this.flags.keys()])) void this.check(db);
  }

  /** The syncs reading the dbs changed (a sync paused, removed, reloaded): the dbs may go idle now. */
  recheck(): void {
    for (const db of [...this.flags.keys()]) void this.check(db);
  }

  /** What we believe the db's flag is (tests). */
  applied(db: string): boolean | undefined {
    return this.flags.get(db)?.applied;
  }

  /** Resolves once every flag write decided so far is done. */
  async settled(): Promise<void> {
    await Promise.all([...this.flags.values()].map((f) => f.chain));
  }

  private flag(db: string): Flag {
    let f = this.flags.get(db);
    if (!f) {
      f = { applied: undefined, chain: Promise.resolve(false) };
      this.flags.set(db, f);
    }
    return f;
  }

  /** Queue a flag write; resolves to true when this write changed the flag. */
  private mark(db: string, idle: boolean): Promise<boolean> {
    const f = this.flag(db);
    f.chain = f.chain.then(async () => {
      if (f.applied === idle) return false;
      try {
        await this.deps.setIdle(db, idle);
        f.applied = idle;
        return true;
      } catch (err) {
        // The session is gone or the db has no wake-up table yet: periodic checks cover it.
        f.applied = undefined;
        this.deps.log.debug({ db, idle, err: errorText(err) }, 'could not set the wake-up flag');
        return false;
      }
    });
    return f.chain;
  }

  private async check(db: string): Promise<void> {
    if (this.checking.has(db)) {
      this.again.add(db);
      return;
    }
    this.checking.add(db);
    try {
      do {
        this.again.delete(db);
        const syncs = this.deps.syncsOf(db);
        if (syncs.some((s) => !this.deps.isQuiescent(s))) break;
        const changed = await this.mark(db, true);
        if (!changed) continue;
        // A commit between the last run and the flag did not notify: look once more.
        for (const s of syncs) {
          let pending: boolean;
          try {
            pending = await this.deps.hasPending(s);
          } catch (err) {
            // Not knowing is a reason to look: a run settles it (and backs off if the db is away).
            this.deps.log.debug({ sync: s, db, err: errorText(err) }, 'could not check for pending changes');
            pending = true;
          }
          if (pending) this.deps.request(s, 'wake');
        }
      } while (this.again.has(db));
    } finally {
      this.checking.delete(db);
    }
  }
}

/** After a run committed: the backlog for `status` (every 5 s at most) and purges (every 30 s; history every 10 min per process). */
import { recordBacklog } from './backlog.js';
import { purgeControlHistory, purgeDeltas } from './purge.js';
import type { RunContext } from './context.js';
import type { RunState } from './state.js';

/** When this process last purged the control database's history (shared by every runner). */
let historyPurgedAt = 0;

/** The timers of one runner's housekeeping. */
export class Housekeeping {
  private lastBacklog = 0;
  private lastPurge = 0;
  /**
   * Set-aside rows (run/aside.ts) may wait for this runner: it has not yet found none, or set some
   * aside since. Rows `ibex quarantine retry` re-queued are forgotten at the check every 10 s.
   */
  private asideDirty = true;
  private lastAsideCheck = 0;

  /** Is the set-aside check due after this good run? */
  asideDue(): boolean {
    return this.asideDirty || Date.now() - this.lastAsideCheck >= 10_000;
  }

  /** The check ran; `clean`: nothing was left for a later run. */
  asideChecked(clean: boolean): void {
    this.lastAsideCheck = Date.now();
    this.asideDirty = !clean;
  }

  /** A run recorded set-aside rows: the next good run checks. */
  asideRecorded(): void {
    this.asideDirty = true;
  }

  /** Do what is due. */
  async after(ctx: RunContext, st: RunState, skewMs: number): Promise<void> {
    if (Date.now() - this.lastBacklog >= 5000) {
      this.lastBacklog = Date.now();
      await recordBacklog(ctx, st, skewMs);
    }
    if (Date.now() - this.lastPurge < 30_000) return;
    this.lastPurge = Date.now();
    if (Date.now() - historyPurgedAt > 600_000) {
      historyPurgedAt = Date.now();
      await purgeControlHistory(ctx);
    }
    await purgeDeltas(ctx);
  }
}

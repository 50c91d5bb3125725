/**
 * The temp tables each session keeps between runs (see sql/temp.ts).
 *
 * They are plain temp tables emptied before use, not ON COMMIT DELETE ROWS: PostgreSQL
 * truncates every such table of a session at every commit that touched any temp table, ~0.3 ms
 * each, i.e. five per replicated table at every commit of every db — 1.5 ms a run with one
 * table, half a second with a hundred. A DELETE of the few rows a run left costs almost nothing;
 * the dead rows it leaves (temp tables are never autovacuumed) are cleared by a TRUNCATE once
 * TRUNCATE_AFTER_ROWS rows went through a table.
 */
import type pg from 'pg';
import type { TablePlan } from '../plan.js';
import { tempTablesSql, type TempStep } from '../sql/temp.js';

/** Rows through a session's temp tables of one table after which they are truncated, not deleted from. */
const TRUNCATE_AFTER_ROWS = 1_000;

/** Per session, per table index: rows through its temp tables since their last TRUNCATE. */
export class TempTables {
  private readonly used = new WeakMap<pg.Client, Map<number, number>>();

  /**
   * The statements that create (the first time) and empty the temp tables of some tables on a
   * session, and note that they exist. A session's tables created in a run that committed need no
   * CREATE; `forget` drops that belief when a run rolls back.
   */
  prepareSql(c: pg.Client, plans: readonly TablePlan[]): string {
    let used = this.used.get(c);
    if (!used) this.used.set(c, (used = new Map()));
    const steps = plans.map((p) => {
      const known = used.has(p.idx);
      const big = (used.get(p.idx) ?? 0) >= TRUNCATE_AFTER_ROWS;
      // New to this session, or new storage after a TRUNCATE: ANALYZE them once, empty. A temp
      // table never analyzed is planned as if it held ten pages of rows (~1,000), so a join of a
      // few pending keys with a big table became a hash join over all of it (4 ms at 13k rows,
      // seconds at millions); analyzed, it is planned from its real size at every statement.
      const step: TempStep = { create: !known, truncate: big, analyze: big || !known };
      if (step.analyze) used.set(p.idx, 0);
      return { p, step };
    });
    return tempTablesSql(steps);
  }

  /** Count rows that went through the temp tables of a table on some sessions. */
  note(sessions: Iterable<pg.Client>, idx: number, rows: number): void {
    for (const c of sessions) {
      const used = this.used.get(c);
      if (used) used.set(idx, (used.get(idx) ?? 0) + rows);
    }
  }

  /** A rolled-back run took the temp tables it created with it. */
  forget(c: pg.Client): void {
    this.used.delete(c);
  }
}

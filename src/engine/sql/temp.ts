/**
 * The per-session temp tables of a run (pure SQL text). Per table `i`: ibex_pend_i (this source's
 * pending keys), ibex_all_i (every source's), ibex_mine_i (keys this db won), ibex_del_i (keys to
 * delete here), ibex_stage_i (rows to upsert here). See run/temp.ts for when each part is sent.
 */
import type { TablePlan } from '../plan.js';

/** The temp tables of one table, qualified with pg_temp. */
export function tempNames(p: TablePlan): { pend: string; all: string; mine: string; del: string; stage: string; keep: string } {
  const i = p.idx;
  return {
    pend: `pg_temp.ibex_pend_${i}`, all: `pg_temp.ibex_all_${i}`, mine: `pg_temp.ibex_mine_${i}`,
    del: `pg_temp.ibex_del_${i}`, stage: `pg_temp.ibex_stage_${i}`, keep: `pg_temp.ibex_keep_${i}`,
  };
}

/** What one table's temp tables need on a session before a run uses them. */
export interface TempStep {
  /** The session never created them (or forgot them with a rolled-back run). */
  create: boolean;
  /** Enough rows went through them: TRUNCATE (new storage) instead of DELETE. */
  truncate: boolean;
  /** New or new storage: ANALYZE them once, empty. */
  analyze: boolean;
}

/** Create (if needed) and empty the temp tables of some tables, as one text. */
export function tempTablesSql(steps: readonly { p: TablePlan; step: TempStep }[]): string {
  const meta = `NULL::timestamptz AS ibex_ts, NULL::boolean AS ibex_insonly, NULL::text AS ibex_origin`;
  return `SET LOCAL client_min_messages = warning;
      ${steps.map(({ p, step }) => {
        const keyOnly = p.keyList;
        const i = p.idx;
        const n = tempNames(p);
        const tables = [n.pend, n.all, n.mine, n.del, n.stage];
        return `
      ${step.create ? `
      CREATE TEMP TABLE IF NOT EXISTS ibex_pend_${i} AS SELECT ${keyOnly}, ${meta} FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_all_${i} AS SELECT NULL::text AS ibex_src, ${keyOnly}, ${meta} FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_mine_${i} AS SELECT ${keyOnly}, NULL::text AS ibex_origin FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_del_${i} AS SELECT ${keyOnly}, NULL::text AS ibex_origin FROM ${p.q} WITH NO DATA;
      CREATE TEMP TABLE IF NOT EXISTS ibex_stage_${i} AS SELECT ${p.colList}, NULL::text AS ibex_origin FROM ${p.q} WITH NO DATA;` : ''}
      ${step.truncate ? `TRUNCATE ${tables.join(', ')};` : tables.map((t) => `DELETE FROM ${t};`).join(' ')}
      ${step.analyze ? `ANALYZE ${tables.join(', ')};` : ''}`;
      }).join('')}`;
}

/** The keep-set of a truncated table on a db: the keys the truncating source still holds. */
export function keepTableSql(p: TablePlan): string {
  return `SET LOCAL client_min_messages = warning;
           CREATE TEMP TABLE IF NOT EXISTS ibex_keep_${p.idx} AS SELECT ${p.keyList} FROM ${p.q} WITH NO DATA;
           TRUNCATE ${tempNames(p).keep}`;
}

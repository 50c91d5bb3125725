/**
 * What the fault-injection tests share: queries on fresh sessions (pooled ones would not survive
 * a cluster restart), equality by checksum, a writer that goes on through connection losses, and
 * probes of ibex's runs and COPYs in progress. Tables are compared by key `id`.
 */
import type pg from 'pg';
import { connect } from '../../src/db/connect.js';
import { waitFor, type TestEnv } from './env.js';

/** Where a table lives: [cluster, database]. */
export type Place = [number, string];

/** A writer started by `writer`: ids it saw committed, and its stop. */
export interface Writer {
  stop: () => Promise<number[]>;
  acked: () => number;
}

export interface FaultKit {
  /** Rows of a query on cluster i (default database `app`), on a fresh session. */
  q(i: number, text: string, values?: unknown[], dbname?: string): Promise<Record<string, unknown>[]>;
  /** Rows of a query on the control database. */
  ctl(text: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  /** Count and md5 of a table's rows in key order, columns named (column order may differ between dbs). */
  checksum(place: Place, table: string, cols: string): Promise<string>;
  /** Wait until every place holds the same rows; returns their checksum. */
  converged(table: string, cols: string, places: Place[], timeoutMs?: number): Promise<string>;
  /** The largest number of rows an ibex COPY on cluster i has processed right now (undefined: none running). */
  copyProgress(i: number, dbname?: string): Promise<number | undefined>;
  /** Wait until an ibex COPY on cluster i has processed at least `rows` rows. */
  copyReaches(i: number, rows: number, what: string): Promise<number>;
  /** Is a run of `sync` in progress now (in the control database)? */
  runningRun(sync: string): Promise<boolean>;
  /**
   * Insert into `item (id, grp, payload)` on cluster i in small autocommit transactions until
   * stopped, through connection losses: ids it saw committed are acked; a statement whose outcome
   * is unknown (the connection broke) is left to the equality check.
   */
  writer(i: number, firstId: number): Writer;
}

export function faultKit(env: TestEnv, ctlCluster = 0): FaultKit {
  const q: FaultKit['q'] = async (i, text, values = [], dbname = 'app') => {
    const c = await connect(env.params(i, dbname), { applicationName: 'ibex-test', connectTimeoutS: 3 });
    try {
      return (await c.query(text, values)).rows;
    } finally {
      await c.end().catch(() => {});
    }
  };
  const ctl: FaultKit['ctl'] = (text, values = []) => q(ctlCluster, text, values, 'ibexctl');
  const checksum: FaultKit['checksum'] = async ([i, db], table, cols) => {
    const r = await q(i, `SELECT count(*) || ':' || coalesce(md5(string_agg((${cols})::text, '|' ORDER BY id)), '') AS s FROM ${table}`, [], db);
    return String(r[0]!.s);
  };
  const copyProgress: FaultKit['copyProgress'] = async (i, dbname = 'app') => {
    const r = await q(i, `SELECT max(p.tuples_processed) AS n FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)
                           WHERE a.application_name LIKE 'ibex/%'`, [], dbname);
    return r[0]!.n === null ? undefined : Number(r[0]!.n);
  };
  return {
    q, ctl, checksum, copyProgress,
    async converged(table, cols, places, timeoutMs = 90_000) {
      let last: string[] = [];
      try {
        return await waitFor(`${table} to converge`, async () => {
          last = await Promise.all(places.map((p) => checksum(p, table, cols)));
          return last.every((s) => s === last[0]) ? last[0] : undefined;
        }, timeoutMs, 300);
      } catch (err) {
        (err as Error).message += ` (last checksums: ${last.join(' / ')})`;
        throw err;
      }
    },
    copyReaches(i, rows, what) {
      return waitFor(`${what}: an ibex COPY past ${rows} rows on cluster ${i}`, async () => {
        const n = await copyProgress(i);
        return n !== undefined && n >= rows ? n : undefined;
      }, 90_000, 5);
    },
    async runningRun(sync) {
      return (await ctl(`SELECT 1 FROM ibex.run WHERE sync = $1 AND ended IS NULL`, [sync])).length > 0;
    },
    writer(i, firstId) {
      const acked: number[] = [];
      let stopped = false;
      let next = firstId;
      const loop = (async () => {
        let c: pg.Client | undefined;
        while (!stopped) {
          try {
            c ??= await connect(env.params(i), { applicationName: 'ibex-test-writer', connectTimeoutS: 2 });
            const ids = Array.from({ length: 20 }, () => next++);
            await c.query(`INSERT INTO item (id, grp, payload) SELECT g, ${i}, 'written during the fault' FROM unnest($1::bigint[]) g`, [ids]);
            acked.push(...ids);
          } catch {
            await c?.end().catch(() => {});
            c = undefined;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        await c?.end().catch(() => {});
      })();
      return {
        acked: () => acked.length,
        stop: async () => {
          stopped = true;
          await loop;
          return acked;
        },
      };
    },
  };
}

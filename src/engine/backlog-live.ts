/**
 * A sync's backlog measured now, on its sources, whatever the sync is doing (running, stalled,
 * paused, or its daemon frozen): per source the delta rows past the sync's cursor in the sync's
 * window (window.ts, the rule every run reads with), the time of the oldest, and the oldest
 * transaction that holds the window and the delta purge back. One query per source, under a
 * statement timeout; a source that cannot be reached says so. `ibex status` asks for it; a
 * metrics endpoint can too.
 */
import type pg from 'pg';
import { captureNames } from '../capture/objects.js';
import { readCursors } from '../control/run-store.js';
import { loadSyncConfig, type SyncDb } from '../control/sync-config.js';
import { connect, errorText, redact } from '../db/connect.js';
import { literal, qualified } from '../db/ident.js';
import { IbexError } from '../errors.js';
import { backlogSql, windowSql } from './sql/gather.js';

/** A transaction on a source that started before the sync's cursor was taken and is still open. */
export interface XminHolder {
  pid: number;
  application: string;
  /** Seconds since the transaction began. */
  ageS: number;
  state: string;
}

/** One source's backlog. */
export interface LiveSourceBacklog {
  db: string;
  /** Unconsumed delta rows past the cursor (null: not measured, see `error`). */
  keys: number | null;
  /** The change time of the oldest of them. */
  oldest: string | null;
  /** Its age on the source's clock, in seconds (0 when nothing is pending). */
  lagS: number | null;
  /** The oldest transaction holding the window and the purge back, if any. */
  holder: XminHolder | null;
  /** Why it was not measured (unreachable, timed out). */
  error?: string;
}

/** Options of a measurement. */
export interface LiveOptions {
  /** Per source: connect and statement timeout, in ms (default 5,000). */
  timeoutMs?: number;
}

/**
 * The SQL of one source's measurement (`deltas`: quoted delta tables; `cursor`: the sync's
 * cursor there, or null before its first run). One statement, one row.
 */
export function liveBacklogSql(sync: string, sourceNames: readonly string[], deltas: readonly string[], cursor: string | null): string {
  // Before its first run a sync has no cursor: everything in its window counts.
  const window = cursor === null ? `ibex_by IS DISTINCT FROM ${literal(sync)}` : windowSql(sync, sourceNames, { text: cursor });
  const backlog = deltas.length
    ? backlogSql(deltas.map((delta) => ({ delta })), window)
    : `SELECT 0 AS n, NULL::text AS oldest`;
  // A transaction holds the window back when it was already running (its xid or snapshot at or
  // before the cursor's xmin): its changes, and everything after, stay in the window and the
  // delta purge keeps them. Compared by age: pg_stat_activity shows 32-bit ids.
  const cutoff = cursor === null ? null : `age(((pg_snapshot_xmin(${literal(cursor)}::pg_snapshot)::text::bigint % 4294967296)::text)::xid)`;
  const holder = cutoff === null ? `NULL::text` : `(SELECT json_build_array(pid, application_name, extract(epoch FROM clock_timestamp() - xact_start), state)::text
        FROM pg_stat_activity
       WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL AND application_name NOT LIKE 'ibex/%'
         AND (age(backend_xid) >= ${cutoff} OR age(backend_xmin) >= ${cutoff})
       ORDER BY xact_start LIMIT 1)`;
  return `SELECT b.n, b.oldest, extract(epoch FROM clock_timestamp() - b.oldest::timestamptz) AS lag_s, ${holder} AS holder
            FROM (${backlog}) b`;
}

/** Measure one sync's backlog on each of its sources, at once. `control`: a session on the control db. */
export async function measureBacklog(control: pg.Client, sync: string, opts: LiveOptions = {}): Promise<LiveSourceBacklog[]> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const cfg = await loadSyncConfig(control, sync);
  const cursors = await readCursors(control, sync);
  const sources = cfg.dbs.filter((d) => d.role === 'source' && d.dbtype === 'postgres' && d.status === 'active');
  const deltas = cfg.relations.filter((r) => r.reltype === 'table').map((r) => qualified('ibex', captureNames(r.schema, r.name).delta).text);
  const names = sources.map((s) => s.name);
  const out = await Promise.all(sources.map((src) => measureOne(sync, src, names, deltas, cursors.get(src.name) ?? null, timeoutMs)));
  return out.sort((a, b) => a.db.localeCompare(b.db));
}

async function measureOne(sync: string, src: SyncDb, names: string[], deltas: string[], cursor: string | null, timeoutMs: number): Promise<LiveSourceBacklog> {
  let c: pg.Client | undefined;
  try {
    c = await connect(src.params, { applicationName: `ibex/${sync}/status`, statementTimeoutMs: timeoutMs, lockTimeoutMs: timeoutMs, connectTimeoutS: Math.max(1, Math.ceil(timeoutMs / 1000)) });
    const r = (await c.query(liveBacklogSql(sync, names, deltas, cursor))).rows[0];
    const keys = Number(r.n);
    const h = r.holder === null ? null : (JSON.parse(String(r.holder)) as [number, string, number, string]);
    return {
      db: src.name, keys, oldest: r.oldest === null ? null : String(r.oldest),
      lagS: keys > 0 && r.lag_s !== null ? Math.max(0, Math.round(Number(r.lag_s) * 10) / 10) : 0,
      holder: h ? { pid: Number(h[0]), application: String(h[1] ?? ''), ageS: Math.round(Number(h[2]) * 10) / 10, state: String(h[3] ?? '') } : null,
    };
  } catch (err) {
    const why = err instanceof IbexError && err.code === 'unreachable' ? 'unreachable' : 'not measured';
    return { db: src.name, keys: null, oldest: null, lagS: null, holder: null, error: `${why}: ${redact(errorText(err), src.params.password)}` };
  } finally {
    await c?.end().catch(() => {}); // best effort: the session may be gone
  }
}

/**
 * The engine's writes to the control database: run history, cursors, the
 * conflict log and the backlog figures of `status`.
 */
import type pg from 'pg';
import type { RunKind, RunResult } from '../model.js';
import { literal } from '../db/ident.js';
import { IbexError } from '../errors.js';
import { stringifyExactJson } from '../db/json.js';

/** Open a run row; returns its id. */
export async function startRun(control: pg.Client, sync: string, kind: RunKind): Promise<number> {
  const r = await control.query(
    `INSERT INTO ibex.run (sync, kind, started, status) VALUES ($1, $2, clock_timestamp(), 'running') RETURNING id`, [sync, kind]);
  return Number(r.rows[0].id);
}

/** Close a run row with its outcome. */
export async function endRun(control: pg.Client, result: RunResult, extra: Record<string, unknown> = {}): Promise<void> {
  await control.query(
    `UPDATE ibex.run SET ended = clock_timestamp(), status = $2, inserted = $3, deleted = $4, conflicts = $5, truncates = $6,
            details = $7::jsonb, error = $8 WHERE id = $1`,
    [result.runId, result.status, result.inserted, result.deleted, result.conflicts, result.truncates,
      JSON.stringify({ tables: result.tables, ...extra }), result.error ?? null],
  );
}

/** The cursors (snapshots) of a sync, by source db. */
export async function readCursors(control: pg.Client, sync: string): Promise<Map<string, string>> {
  const r = await control.query(`SELECT db, snapshot FROM ibex.cursor WHERE sync = $1`, [sync]);
  return new Map(r.rows.map((row) => [String(row.db), String(row.snapshot)]));
}

/** The sync's lease epoch now (a run compares it with its own before it commits anywhere). */
export async function leaseEpoch(c: pg.Client, sync: string): Promise<number | undefined> {
  const r = await c.query(`SELECT epoch FROM ibex.sync_lease WHERE sync = $1`, [sync]);
  return r.rows[0] ? Number(r.rows[0].epoch) : undefined;
}

/** Advance cursors after every database committed; false when the lease is no longer at `epoch`. */
export async function advanceCursors(control: pg.Client, sync: string, snaps: Map<string, string>, epoch?: number): Promise<boolean> {
  if (snaps.size === 0) return true;
  // With an epoch, only while the sync's lease is still at it (the row lock orders this against a new owner's claim).
  const r = await control.query(
    `INSERT INTO ibex.cursor (sync, db, snapshot, updated)
       SELECT $1, d, s, now() FROM unnest($2::text[], $3::text[]) AS u(d, s)
        WHERE $4::bigint IS NULL OR EXISTS (SELECT 1 FROM ibex.sync_lease l WHERE l.sync = $1 AND l.epoch = $4 FOR SHARE)
     ON CONFLICT (sync, db) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated = now()`,
    [sync, [...snaps.keys()], [...snaps.values()], epoch ?? null],
  );
  return (r.rowCount ?? 0) > 0;
}

/** One conflict to log. */
export interface ConflictRecord {
  schema: string;
  table: string;
  key: Record<string, unknown>;
  kind: string;
  strategy: string;
  winner: string | null;
  winnerRow: unknown;
  winnerTime: string | null;
  losers: { db: string; row: unknown; changed_at: string | null; constraint?: string }[];
  /** A merged row: each column -> the db it came from ('sum' for a counter column). */
  columns?: Record<string, string>;
}

/** Log conflicts as pending (before the targets commit). */
export async function logConflicts(control: pg.Client, sync: string, run: number | null, conflicts: ConflictRecord[], status = 'pending'): Promise<void> {
  if (conflicts.length === 0) return;
  // Durable before the targets commit, whatever the session's synchronous_commit.
  await control.query('BEGIN');
  try {
    await control.query(`SET LOCAL synchronous_commit = on`);
    await insertConflicts(control, sync, run, conflicts, status);
    await control.query('COMMIT');
  } catch (err) {
    // Best effort: the error being thrown is the one that matters; a failed ROLLBACK means the session is gone, and its transaction with it.
    await control.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function insertConflicts(control: pg.Client, sync: string, run: number | null, conflicts: ConflictRecord[], status: string): Promise<void> {
  await control.query(
    `INSERT INTO ibex.conflict (sync, run, schemaname, relname, key, kind, strategy, winner, winner_row, winner_time, losers, status, columns)
     SELECT $1, $2, c->>'schema', c->>'table', c->'key', c->>'kind', c->>'strategy', c->>'winner', c->'winnerRow',
            (c->>'winnerTime')::timestamptz, c->'losers', $4, c->'columns'
       FROM jsonb_array_elements($3::jsonb) AS c`,
    [sync, run, stringifyExactJson(conflicts), status],
  );
}

/** Mark the pending conflicts of a run as applied (after every db committed) or drop them (run rolled back). */
export async function settleConflicts(control: pg.Client, run: number, applied: boolean): Promise<void> {
  if (applied) {
    await control.query(
      `UPDATE ibex.conflict SET status = CASE WHEN strategy = 'quarantine' THEN 'quarantined' ELSE 'applied' END
        WHERE run = $1 AND status = 'pending'`, [run]);
  }
  else await control.query(`DELETE FROM ibex.conflict WHERE run = $1 AND status = 'pending'`, [run]);
}

/** Record backlog and clock skew for `status`. */
export async function recordBacklog(control: pg.Client, sync: string, backlog: Record<string, { keys: number; oldest: string | null }>, skewMs: number | null): Promise<void> {
  await control.query(
    `INSERT INTO ibex.sync_state (sync, backlog, clock_skew_ms, updated) VALUES ($1, $2::jsonb, $3, now())
     ON CONFLICT (sync) DO UPDATE SET backlog = EXCLUDED.backlog, clock_skew_ms = coalesce(EXCLUDED.clock_skew_ms, ibex.sync_state.clock_skew_ms), updated = now()`,
    [sync, JSON.stringify(backlog), skewMs],
  );
}

/** Pause a sync with a one-line reason (schema mismatch, conflict abort). */
export async function pauseSync(control: pg.Client, sync: string, reason: string): Promise<void> {
  await control.query(`UPDATE ibex.sync SET status = 'paused', status_reason = $2, updated = now() WHERE name = $1`, [sync, reason]);
}

/** Set a sync's onetimecopy back to 0 once its copy is done. */
export async function finishOnetimecopy(control: pg.Client, sync: string, epoch?: number): Promise<void> {
  await control.query('BEGIN');
  try {
    if (!await holdsLease(control, sync, epoch)) throw new LeaseLost(sync, epoch);
    await control.query(`UPDATE ibex.sync SET onetimecopy = 0, updated = now() WHERE name = $1`, [sync]);
    await control.query(`DELETE FROM ibex.copy_progress WHERE sync = $1`, [sync]);
    await control.query('COMMIT');
  } catch (err) {
    await control.query('ROLLBACK').catch(() => {}); // the session may be gone: then nothing was done
    throw err;
  }
}

/** Forget the copy progress of one db of a sync (its refill is done). */
export async function clearCopyProgress(control: pg.Client, sync: string, db: string, epoch?: number): Promise<void> {
  const r = await control.query(`DELETE FROM ibex.copy_progress WHERE sync = $1 AND db = $2 AND ${leaseHeld('$1', '$3')}`, [sync, db, epoch ?? null]);
  if ((r.rowCount ?? 0) === 0 && !await holdsLease(control, sync, epoch)) throw new LeaseLost(sync, epoch);
}

/**
 * The condition that the sync's lease is still at an epoch (always true for NULL: no lease);
 * the row lock orders the write against a new owner's claim of the lease.
 */
function leaseHeld(syncParam: string, epochParam: string): string {
  return `(${epochParam}::bigint IS NULL OR EXISTS (SELECT 1 FROM ibex.sync_lease l WHERE l.sync = ${syncParam} AND l.epoch = ${epochParam} FOR SHARE))`;
}

/** Is the sync's lease still at this epoch (or is there none to hold)? Locks the lease row while a transaction lasts. */
async function holdsLease(control: pg.Client, sync: string, epoch: number | undefined): Promise<boolean> {
  if (epoch === undefined) return true;
  const r = await control.query(`SELECT 1 FROM ibex.sync_lease WHERE sync = $1 AND epoch = $2 FOR SHARE`, [sync, epoch]);
  return (r.rowCount ?? 0) > 0;
}

/** A copy's write to the control db refused: another daemon holds the sync's lease now (engine/errors.ts isFenced). */
export class LeaseLost extends IbexError {
  constructor(sync: string, epoch: number | undefined) {
    super('daemon', `sync ${sync} is run by another daemon now (this copy's lease epoch ${epoch}): it stops here`);
  }
}

/** Record that a sync wrote its progress to a target of another kind (once; see 0009_target_applied.sql). */
export async function markTargetApplied(control: pg.Client, sync: string, db: string): Promise<void> {
  await control.query(`INSERT INTO ibex.target_applied (sync, db) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [sync, db]);
}

/** Has this sync ever written its progress to this target of another kind? */
export async function targetApplied(control: pg.Client, sync: string, db: string): Promise<boolean> {
  const r = await control.query(`SELECT 1 FROM ibex.target_applied WHERE sync = $1 AND db = $2`, [sync, db]);
  return r.rows.length > 0;
}

/** Resumable copy progress of one table to one db. */
export async function readCopyProgress(control: pg.Client, sync: string, relation: number, db: string): Promise<{ lastKey: string[] | null; rows: number; done: boolean } | undefined> {
  const r = await control.query(`SELECT last_key, rows_copied, done FROM ibex.copy_progress WHERE sync = $1 AND relation = $2 AND db = $3`, [sync, relation, db]);
  const row = r.rows[0];
  return row ? { lastKey: row.last_key, rows: Number(row.rows_copied), done: row.done } : undefined;
}

/** Save copy progress after a chunk committed on the target; refused (LeaseLost) once the lease is no longer at `epoch`. */
export async function saveCopyProgress(control: pg.Client, sync: string, relation: number, db: string, lastKey: string[] | null, rows: number, done: boolean, epoch?: number): Promise<void> {
  const r = await control.query(
    `INSERT INTO ibex.copy_progress (sync, relation, db, last_key, rows_copied, done, updated)
       SELECT $1, $2, $3, $4, $5, $6, now() WHERE ${leaseHeld('$1', '$7')}
     ON CONFLICT (sync, relation, db) DO UPDATE SET last_key = EXCLUDED.last_key, rows_copied = EXCLUDED.rows_copied, done = EXCLUDED.done, updated = now()`,
    [sync, relation, db, lastKey, rows, done, epoch ?? null],
  );
  if ((r.rowCount ?? 0) === 0) throw new LeaseLost(sync, epoch);
}

/** Syncs other than `sync` that read `schema.table` from db `db` (their capture needs ibex's applied rows). */
export async function downstreamReaders(control: pg.Client, sync: string): Promise<Map<string, Set<string>>> {
  return readersByDb((await control.query(downstreamSql(sync))).rows);
}

/** What a delta run reads from the control db before it starts (runInputs). */
export interface RunInputValues {
  downstream: Map<string, Set<string>>;
  cursors: Map<string, string>;
  /** The setting row_lock_timeout_ms as stored (undefined: no row). */
  rowLockTimeoutMs: string | undefined;
}

/**
 * What a delta run reads from the control db before it starts: the downstream readers (as
 * downstreamReaders), the cursors (as readCursors) and row_lock_timeout_ms, in one round trip.
 */
export async function runInputs(control: pg.Client, sync: string): Promise<RunInputValues> {
  return inputsOf((await control.query(runInputsSql(sync))) as unknown as pg.QueryResult[]);
}

function runInputsSql(sync: string): string {
  return `${downstreamSql(sync)};
    SELECT db, snapshot FROM ibex.cursor WHERE sync = ${literal(sync)};
    SELECT value FROM ibex.config WHERE name = 'row_lock_timeout_ms'`;
}

function inputsOf([d, c, s]: pg.QueryResult[]): RunInputValues {
  return {
    downstream: readersByDb(d!.rows), cursors: new Map(c!.rows.map((row) => [String(row.db), String(row.snapshot)])),
    rowLockTimeoutMs: s!.rows.length ? String(s!.rows[0].value) : undefined,
  };
}

/** Open a delta run's row and read its inputs (as runInputs), in one round trip. */
export async function startDeltaRun(control: pg.Client, sync: string): Promise<{ id: number; inputs: RunInputValues }> {
  const [r, ...rest] = (await control.query(`INSERT INTO ibex.run (sync, kind, started, status) VALUES (${literal(sync)}, 'delta', clock_timestamp(), 'running') RETURNING id;
    ${runInputsSql(sync)}`)) as unknown as pg.QueryResult[];
  return { id: Number(r!.rows[0].id), inputs: inputsOf(rest) };
}

function downstreamSql(sync: string): string {
  return `SELECT m.db, r.schemaname || '.' || r.relname AS rel
       FROM ibex.sync s JOIN ibex.dbgroup_member m ON m.dbgroup = s.dbgroup AND m.role = 'source'
       JOIN ibex.relgroup_member rm ON rm.relgroup = s.relgroup JOIN ibex.relation r ON r.id = rm.relation
      WHERE s.name <> ${literal(sync)} AND s.status <> 'inactive'`;
}

function readersByDb(rows: Record<string, unknown>[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const row of rows) {
    const db = String(row.db);
    let set = out.get(db);
    if (!set) out.set(db, (set = new Set()));
    set.add(String(row.rel));
  }
  return out;
}

/** Tie a kick to the run that serves it. */
export async function takeKick(control: pg.Client, kickId: number, runId: number): Promise<void> {
  await control.query(`UPDATE ibex.kick SET run = $1, taken = coalesce(taken, now()) WHERE id = $2`, [runId, kickId]);
}

/** A global setting's value; settings-store.ts is where settings are read and written. */
export { readSetting } from './settings-store.js';

/** Every sync's cursor snapshot on one db (the oldest decides what may be purged there). */
export async function cursorsOnDb(control: pg.Client, db: string): Promise<string[]> {
  const r = await control.query(`SELECT snapshot FROM ibex.cursor WHERE db = $1`, [db]);
  return r.rows.map((x) => String(x.snapshot));
}

/** A copy in progress, as `ibex kick` shows it: the running copy run's kind and the rows copied so far. */
export interface CopyTotals {
  kind: 'onetimecopy' | 'fullcopy';
  started: Date;
  rows: number;
  /** (table, target) pairs done, of those begun. */
  done: number;
  begun: number;
  /** Targets with progress rows. */
  targets: number;
}

/** The copy a sync is running now, if any (copy_progress rows are written after each chunk). */
export async function readCopyTotals(control: pg.Client, sync: string): Promise<CopyTotals | undefined> {
  const run = await control.query(
    `SELECT kind, started FROM ibex.run WHERE sync = $1 AND status = 'running' AND kind IN ('onetimecopy', 'fullcopy') ORDER BY id DESC LIMIT 1`, [sync]);
  const r = run.rows[0];
  if (!r) return undefined;
  const p = await control.query(
    `SELECT coalesce(sum(rows_copied), 0) AS rows, count(*) FILTER (WHERE done) AS done, count(*) AS begun, count(DISTINCT db) AS targets
       FROM ibex.copy_progress WHERE sync = $1`, [sync]);
  const t = p.rows[0];
  return { kind: r.kind, started: r.started, rows: Number(t.rows), done: Number(t.done), begun: Number(t.begun), targets: Number(t.targets) };
}

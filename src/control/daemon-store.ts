/**
 * The daemon's bookkeeping in the control database: daemon registration and
 * heartbeat, sync leases (session advisory locks), live sync state, kicks,
 * control messages, and the reads behind `ibex status`. Every statement on
 * ibex.daemon, ibex.sync_state (state columns) and ibex.kick lives here.
 */
import { hostname } from 'node:os';
import type pg from 'pg';
import type { PgParams } from '../db/connect.js';
import type { RunKind, SyncState } from '../model.js';
import { dbParams } from './sync-config.js';

/** The channel of control messages: `kick:<sync>`, `reload`, `stop`. */
export const CONTROL_CHANNEL = 'ibex_control';

/** The first key of the advisory lock each daemon holds on its control session: "ibex" in ASCII, so ibex's locks are recognisable in pg_locks. */
export const LEASE_CLASS = 0x69626578;

/** Heartbeat period when the lease time allows it (the lease is renewed with every beat). */
export const HEARTBEAT_MS = 3_000;
/** The default lease time (setting lease_seconds). */
export const LEASE_SECONDS_DEFAULT = 30;

// ---- daemons ------------------------------------------------------------------------------

/** The advisory lock (with LEASE_CLASS) that serializes daemon registrations. */
const REGISTRATION_LOCK = -1;

/**
 * Register this process; returns the daemon id. With `exclusive`, refuses
 * (returning the other daemon) when a live daemon serves this control
 * database: the check and the insert happen under one lock, so two daemons
 * started at once cannot both pass it. `syncs`: the patterns of the syncs it
 * may run (undefined: all).
 */
export async function registerDaemon(
  c: pg.Client, d: { pid: number; host: string; version: string; syncs?: readonly string[] | undefined }, opts: { exclusive: boolean; leaseSeconds?: number },
): Promise<{ id: number } | { other: DaemonRow }> {
  await c.query('BEGIN');
  try {
    await c.query(`SELECT pg_advisory_xact_lock($1, $2)`, [LEASE_CLASS, REGISTRATION_LOCK]);
    const other = opts.exclusive ? (await liveDaemons(c, { leaseSeconds: opts.leaseSeconds ?? LEASE_SECONDS_DEFAULT }))[0] : undefined;
    if (other) {
      await c.query('ROLLBACK');
      return { other };
    }
    // Rows of daemons long gone are history nobody reads: keep a week.
    await c.query(`DELETE FROM ibex.daemon WHERE coalesce(stopped, heartbeat) < now() - interval '7 days'`);
    const r = await c.query(`INSERT INTO ibex.daemon (pid, host, version, syncs) VALUES ($1, $2, $3, $4) RETURNING id`, [d.pid, d.host, d.version, d.syncs ?? null]);
    await c.query('COMMIT');
    return { id: Number(r.rows[0].id) };
  } catch (err) {
    // Best effort: the error being thrown is the one that matters; a failed ROLLBACK means the session is gone, and its transaction with it.
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Hold this daemon's liveness lock on the control session: while the session
 * lives, other daemons see the daemon alive; a daemon killed with -9 loses it
 * the moment its session ends, and its leases can be taken at once.
 */
export async function lockDaemon(c: pg.Client, id: number): Promise<void> {
  await c.query(`SELECT pg_advisory_lock($1, $2::int)`, [LEASE_CLASS, id]);
}

/** Prove this daemon is alive. */
export async function heartbeat(c: pg.Client, id: number): Promise<void> {
  await c.query(`UPDATE ibex.daemon SET heartbeat = now() WHERE id = $1`, [id]);
}

/** Mark this daemon stopped. */
export async function markStopped(c: pg.Client, id: number): Promise<void> {
  await c.query(`UPDATE ibex.daemon SET stopped = now(), heartbeat = now() WHERE id = $1`, [id]);
}

/** A daemon registered in the control database. */
export interface DaemonRow {
  id: number;
  pid: number;
  host: string;
  version: string;
  started: Date;
  heartbeat: Date;
  /** Seconds since the last heartbeat, by the control database's clock. */
  heartbeatAgeS: number;
  stopped: Date | null;
  /** The patterns of the syncs it may run; null: all. */
  syncs: string[] | null;
}

/** Is a process with this pid running on this host? (EPERM: it exists, owned by someone else.) */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const DAEMON_COLUMNS = `d.id, d.pid, d.host, d.version, d.started, d.heartbeat, d.stopped, d.syncs, extract(epoch FROM now() - d.heartbeat)::float8 AS age`;

/** Is the daemon's liveness lock held (its control session is up)? */
const HOLDS_LOCK = `EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = ${LEASE_CLASS}::oid AND l.objid = d.id::oid
                           AND l.objsubid = 2 AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`;

function daemonRow(row: Record<string, unknown>): DaemonRow {
  return {
    id: Number(row.id), pid: Number(row.pid), host: String(row.host), version: String(row.version), started: row.started as Date,
    heartbeat: row.heartbeat as Date, heartbeatAgeS: Number(row.age), stopped: (row.stopped as Date | null) ?? null,
    syncs: (row.syncs as string[] | null) ?? null,
  };
}

/**
 * Daemons that are alive: not stopped, a heartbeat younger than the lease
 * time, their control session up (the liveness lock is held), and — on this
 * host — a process that still exists.
 */
export async function liveDaemons(c: pg.Client, opts: { exceptId?: number; leaseSeconds?: number } = {}): Promise<DaemonRow[]> {
  const r = await c.query(
    `SELECT ${DAEMON_COLUMNS}
       FROM ibex.daemon d
      WHERE d.stopped IS NULL AND d.heartbeat > now() - make_interval(secs => $1) AND d.id IS DISTINCT FROM $2::bigint AND ${HOLDS_LOCK}
      ORDER BY d.id`,
    [opts.leaseSeconds ?? LEASE_SECONDS_DEFAULT, opts.exceptId ?? null],
  );
  const here = hostname();
  return r.rows.map(daemonRow).filter((d) => d.host !== here || processAlive(d.pid));
}

/** The most recently started daemon, alive or not (for `status`). */
export async function lastDaemon(c: pg.Client): Promise<DaemonRow | undefined> {
  const r = await c.query(`SELECT ${DAEMON_COLUMNS} FROM ibex.daemon d ORDER BY d.started DESC, d.id DESC LIMIT 1`);
  const row = r.rows[0];
  return row ? daemonRow(row) : undefined;
}

/** Send a control message to every daemon of this control database (delivered at commit). */
export async function notifyControl(c: pg.Client, message: string): Promise<void> {
  await c.query(`SELECT pg_notify($1, $2)`, [CONTROL_CHANNEL, message]);
}

/**
 * Tell running daemons that the configuration changed (a sync, or a db, relgroup, dbgroup, table,
 * custom code or setting it uses), so they adopt, retire or reload the syncs concerned at once.
 * Sent after the change committed (inside a transaction it would go at commit).
 */
export async function notifyConfigChanged(c: pg.Client): Promise<void> {
  await notifyControl(c, 'config:');
}

/** Receive control messages on this session: `onMessage` gets each payload. */
export async function listenControl(c: pg.Client, onMessage: (message: string) => void): Promise<void> {
  c.on('notification', (msg) => {
    if (msg.channel === CONTROL_CHANNEL) onMessage(msg.payload ?? '');
  });
  // CONTROL_CHANNEL is a fixed lower-case word, so it needs no quoting.
  await c.query(`LISTEN ${CONTROL_CHANNEL}`);
}

// ---- leases -------------------------------------------------------------------------------

/** Where a sync's lease stands. */
export interface LeaseRow {
  sync: string;
  daemon: number | null;
  epoch: number;
  /** Nobody may run it now: free, expired, or its owner's control session is gone. */
  orphaned: boolean;
  /** Seconds since it became takeable by expiry (negative: not yet). */
  expiredS: number;
}

/** Every lease. */
export async function readLeases(c: pg.Client): Promise<Map<string, LeaseRow>> {
  const r = await c.query(
    `SELECT s.sync, s.daemon, s.epoch, extract(epoch FROM now() - s.expires)::float8 AS expired,
            s.daemon IS NULL OR s.expires < now() OR NOT EXISTS (SELECT 1 FROM ibex.daemon d WHERE d.id = s.daemon AND d.stopped IS NULL AND ${HOLDS_LOCK}) AS orphaned
       FROM ibex.sync_lease s`,
  );
  return new Map(r.rows.map((row) => [String(row.sync), {
    sync: String(row.sync), daemon: row.daemon === null ? null : Number(row.daemon), epoch: Number(row.epoch),
    orphaned: row.orphaned === true, expiredS: Number(row.expired),
  }]));
}

/**
 * Take a sync's lease when nobody may run it (free, expired, or its owner's
 * control session is gone), raising the epoch. Returns the new epoch, or
 * undefined when another daemon holds it.
 */
export async function claimLease(c: pg.Client, sync: string, daemon: number, leaseSeconds: number): Promise<number | undefined> {
  const r = await c.query(
    `INSERT INTO ibex.sync_lease AS s (sync, daemon, epoch, expires, acquired)
          SELECT $1, $2, 1, now() + make_interval(secs => $3), now() WHERE EXISTS (SELECT 1 FROM ibex.sync WHERE name = $1)
     ON CONFLICT (sync) DO UPDATE SET daemon = EXCLUDED.daemon, epoch = s.epoch + 1, expires = EXCLUDED.expires, acquired = now()
      WHERE s.daemon IS NULL OR s.expires < now()
         OR NOT EXISTS (SELECT 1 FROM ibex.daemon d WHERE d.id = s.daemon AND d.stopped IS NULL AND ${HOLDS_LOCK})
     RETURNING s.epoch`,
    [sync, daemon, leaseSeconds],
  );
  return r.rows[0] ? Number(r.rows[0].epoch) : undefined;
}

/**
 * Renew this daemon's leases (those still at the epochs it took them at) and
 * its heartbeat, in one statement. Returns the syncs renewed: a sync missing
 * from it was taken by another daemon.
 */
export async function renewLeases(c: pg.Client, daemon: number, held: ReadonlyMap<string, number>, leaseSeconds: number): Promise<Set<string>> {
  const r = await c.query(
    `WITH beat AS (UPDATE ibex.daemon SET heartbeat = now() WHERE id = $1)
     UPDATE ibex.sync_lease s SET expires = now() + make_interval(secs => $4)
       FROM unnest($2::text[], $3::bigint[]) AS h(sync, epoch)
      WHERE s.sync = h.sync AND s.epoch = h.epoch AND s.daemon = $1
     RETURNING s.sync`,
    [daemon, [...held.keys()], [...held.values()], leaseSeconds],
  );
  return new Set(r.rows.map((row) => String(row.sync)));
}

/** Give leases back (between runs): the next owner takes them at once. */
export async function releaseLeases(c: pg.Client, daemon: number, held: ReadonlyMap<string, number>): Promise<void> {
  if (held.size === 0) return;
  await c.query(
    `UPDATE ibex.sync_lease s SET daemon = NULL, expires = now()
       FROM unnest($2::text[], $3::bigint[]) AS h(sync, epoch)
      WHERE s.sync = h.sync AND s.epoch = h.epoch AND s.daemon = $1`,
    [daemon, [...held.keys()], [...held.values()]],
  );
}

/** The owner of each sync that has a live one (for `status`). */
export async function leaseOwners(c: pg.Client): Promise<Map<string, { daemon: number; pid: number; host: string; started: Date; epoch: number }>> {
  const r = await c.query(
    `SELECT s.sync, s.epoch, d.id, d.pid, d.host, d.started FROM ibex.sync_lease s JOIN ibex.daemon d ON d.id = s.daemon
      WHERE s.expires > now() AND d.stopped IS NULL AND ${HOLDS_LOCK}`,
  );
  return new Map(r.rows.map((row) => [String(row.sync), {
    daemon: Number(row.id), pid: Number(row.pid), host: String(row.host), started: row.started as Date, epoch: Number(row.epoch),
  }]));
}

/**
 * Clean up after a daemon that died holding this sync: close its open runs
 * (a kick waiting on one learns it failed) and hand back kicks it had taken
 * but not answered, so they are served again.
 */
export async function recoverSync(c: pg.Client, sync: string, pid: number): Promise<{ runsEnded: number; kicksReset: number }> {
  const runs = await c.query(
    `UPDATE ibex.run SET ended = now(), status = 'failed', error = $2
      WHERE sync = $1 AND ended IS NULL`,
    [sync, `the daemon running this ended before the run did (cleaned up by daemon pid ${pid})`],
  );
  const kicks = await c.query(`UPDATE ibex.kick SET taken = NULL WHERE sync = $1 AND taken IS NOT NULL AND run IS NULL`, [sync]);
  return { runsEnded: runs.rowCount ?? 0, kicksReset: kicks.rowCount ?? 0 };
}

/** The newest run id (0 when there is none). */
export async function maxRunId(c: pg.Client): Promise<number> {
  const r = await c.query(`SELECT coalesce(max(id), 0) AS id FROM ibex.run`);
  return Number(r.rows[0].id);
}

/**
 * Close runs of these syncs that are still open although no run of theirs is
 * in progress (their runner could not record the end: the control database
 * went away meanwhile), up to run id `upTo`. Returns how many.
 */
export async function closeOrphanRuns(c: pg.Client, syncs: readonly string[], upTo: number): Promise<number> {
  if (syncs.length === 0) return 0;
  const r = await c.query(
    `UPDATE ibex.run SET ended = now(), status = 'failed',
            error = 'the end of this run was not recorded (the control database was unreachable): its changes were committed everywhere or rolled back everywhere, and the next runs went on from there'
      WHERE sync = ANY($1) AND ended IS NULL AND id <= $2`,
    [syncs, upTo],
  );
  return r.rowCount ?? 0;
}

/**
 * End the sessions a previous daemon left behind for these syncs on the
 * database `c` is connected to (application_name `ibex/<sync>` and
 * `ibex/<sync>/control`), other than `c` itself. Returns how many.
 */
export async function terminateSyncSessions(c: pg.Client, syncs: readonly string[]): Promise<number> {
  if (syncs.length === 0) return 0;
  // application_name is cut at 63 bytes (sync names are ASCII).
  const names = syncs.flatMap((s) => [`ibex/${s}`, `ibex/${s}/control`]).map((n) => n.slice(0, 63));
  const r = await c.query(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity
      WHERE application_name = ANY($1) AND pid <> pg_backend_pid() AND datname = current_database()`,
    [names],
  );
  return Number(r.rows[0].n);
}

// ---- syncs --------------------------------------------------------------------------------

/** A sync as the daemon schedules it. */
export interface DaemonSyncRow {
  name: string;
  status: 'active' | 'paused';
  statusReason: string | null;
  autokick: boolean;
  /** NULL in the row: the daemon's default. */
  checktimeMs: number | null;
  fullcopyIntervalMs: number | null;
  onetimecopy: number;
  /** Source dbs (postgres), sorted. */
  sources: string[];
  /** Every db of the sync, with its type. */
  dbs: { name: string; dbtype: string; role: string; /** Changes with the db's row (its connection). */ digest: string }[];
  /** Only fullcopy targets: no 'target' member and one source. */
  fullcopyOnly: boolean;
  /** Changes when anything the daemon schedules by changes. */
  fingerprint: string;
}

/**
 * A digest of what a sync's runner loads besides its own row: its dbs (connection, status, facts),
 * its relgroup's members and their relations, their custom names, and the custom code mapped to
 * the sync or its tables. A change to any of them reloads the sync (passwords go in hashed only).
 */
const CONFIG_DIGEST = `encode(sha256(convert_to(concat_ws('|',
  (SELECT string_agg(row_to_json(m)::text || row_to_json(d)::text, ',' ORDER BY d.name)
     FROM ibex.dbgroup_member m JOIN ibex.db d ON d.name = m.db WHERE m.dbgroup = s.dbgroup),
  (SELECT string_agg(row_to_json(rm)::text || row_to_json(r)::text, ',' ORDER BY r.id)
     FROM ibex.relgroup_member rm JOIN ibex.relation r ON r.id = rm.relation WHERE rm.relgroup = s.relgroup),
  (SELECT string_agg(row_to_json(cn)::text, ',' ORDER BY cn.relation, cn.db)
     FROM ibex.customname cn JOIN ibex.relgroup_member rm ON rm.relation = cn.relation WHERE rm.relgroup = s.relgroup),
  (SELECT string_agg(row_to_json(cm)::text || row_to_json(cc)::text, ',' ORDER BY cc.id, cm.relation)
     FROM ibex.customcode_map cm JOIN ibex.customcode cc ON cc.id = cm.code
    WHERE cm.sync = s.name OR cm.relation IN (SELECT relation FROM ibex.relgroup_member WHERE relgroup = s.relgroup))), 'UTF8')), 'hex')`;

/** The syncs a daemon runs (active) or keeps loaded (paused); `installing` and `inactive` are ignored. */
export async function readDaemonSyncs(c: pg.Client): Promise<DaemonSyncRow[]> {
  const r = await c.query(
    `SELECT s.name, s.status, s.status_reason, s.autokick, s.onetimecopy, s.updated,
            extract(epoch FROM s.checktime) * 1000 AS checktime_ms, extract(epoch FROM s.fullcopy_interval) * 1000 AS fullcopy_ms,
            coalesce((SELECT jsonb_agg(jsonb_build_object('name', d.name, 'dbtype', d.dbtype, 'role', m.role,
                                                   'digest', encode(sha256(convert_to(row_to_json(d)::text, 'UTF8')), 'hex')) ORDER BY d.name)
                        FROM ibex.dbgroup_member m JOIN ibex.db d ON d.name = m.db WHERE m.dbgroup = s.dbgroup), '[]') AS dbs,
            ${CONFIG_DIGEST} AS config_digest
       FROM ibex.sync s WHERE s.status IN ('active', 'paused') ORDER BY s.name`,
  );
  return r.rows.map((row) => {
    const dbs = (row.dbs as DaemonSyncRow['dbs']).map((d) => ({ name: d.name, dbtype: d.dbtype, role: d.role, digest: d.digest }));
    const sources = dbs.filter((d) => d.role === 'source').map((d) => d.name);
    const out: Omit<DaemonSyncRow, 'fingerprint'> = {
      name: String(row.name),
      status: row.status === 'paused' ? 'paused' : 'active',
      statusReason: row.status_reason === null ? null : String(row.status_reason),
      autokick: row.autokick === true,
      checktimeMs: row.checktime_ms === null ? null : Number(row.checktime_ms),
      fullcopyIntervalMs: row.fullcopy_ms === null ? null : Number(row.fullcopy_ms),
      onetimecopy: Number(row.onetimecopy),
      sources,
      dbs,
      fullcopyOnly: sources.length === 1 && !dbs.some((d) => d.role === 'target') && dbs.some((d) => d.role === 'fullcopy'),
    };
    const updated = row.updated instanceof Date ? row.updated.toISOString() : String(row.updated);
    return { ...out, fingerprint: JSON.stringify([updated, out.autokick, out.checktimeMs, out.fullcopyIntervalMs, dbs, String(row.config_digest)]) };
  });
}

/** Connection parameters and types of dbs, by name. Never log the result: it holds passwords. */
export async function readDbParams(c: pg.Client, names: readonly string[]): Promise<Map<string, { dbtype: string; params: PgParams }>> {
  const r = await c.query(`SELECT name, dbtype, host, port, dbname, dbuser, dbpass, dbpass_ref, conn, service FROM ibex.db WHERE name = ANY($1)`, [names]);
  return new Map(r.rows.map((row) => [String(row.name), { dbtype: String(row.dbtype), params: dbParams(row) }]));
}

/** Pause a sync on behalf of a run that asked for it (idempotent: the runner may have done it). */
export async function pauseSyncForRun(c: pg.Client, sync: string, reason: string): Promise<void> {
  await c.query(
    `UPDATE ibex.sync SET status = 'paused', status_reason = $2, updated = now() WHERE name = $1 AND status = 'active'`,
    [sync, reason],
  );
}

/** Write the live state of a sync (backlog and clock skew are the runner's and left alone). */
export async function writeSyncState(c: pg.Client, sync: string, s: SyncState): Promise<void> {
  await c.query(
    `INSERT INTO ibex.sync_state AS st (sync, state, since, last_error, last_error_at, attempts, updated)
          SELECT $1, $2, $3, $4, $5, $6, now() WHERE EXISTS (SELECT 1 FROM ibex.sync WHERE name = $1)
     ON CONFLICT (sync) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since, last_error = EXCLUDED.last_error,
            last_error_at = EXCLUDED.last_error_at, attempts = EXCLUDED.attempts, updated = now()`,
    [sync, s.state, s.since, s.lastError ?? null, s.lastErrorAt ?? null, s.attempts],
  );
}

/** The last error the daemon recorded for a sync (so a restart does not forget a stall). */
export async function readSyncStates(c: pg.Client): Promise<Map<string, { lastError: string | null; lastErrorAt: Date | null; attempts: number }>> {
  const r = await c.query(`SELECT sync, last_error, last_error_at, attempts FROM ibex.sync_state`);
  return new Map(r.rows.map((row) => [String(row.sync), {
    lastError: row.last_error === null ? null : String(row.last_error), lastErrorAt: (row.last_error_at as Date | null) ?? null, attempts: Number(row.attempts),
  }]));
}

/**
 * Record a run that never reached the runner's own bookkeeping (the runner
 * threw, or could not be loaded), so a kick waiting on it gets an answer.
 */
export async function recordFailedRun(c: pg.Client, sync: string, kind: RunKind, started: Date, error: string): Promise<number> {
  const r = await c.query(
    `INSERT INTO ibex.run (sync, kind, started, ended, status, error) VALUES ($1, $2, $3, clock_timestamp(), 'failed', $4) RETURNING id`,
    [sync, kind, started, error],
  );
  return Number(r.rows[0].id);
}

// ---- kicks --------------------------------------------------------------------------------

/** Take the unserved kicks of these syncs (oldest first). */
export async function takeKicks(c: pg.Client, syncs: readonly string[]): Promise<{ id: number; sync: string }[]> {
  if (syncs.length === 0) return [];
  const r = await c.query(
    `UPDATE ibex.kick SET taken = now() WHERE taken IS NULL AND sync = ANY($1) RETURNING id, sync`,
    [syncs],
  );
  return r.rows.map((row) => ({ id: Number(row.id), sync: String(row.sync) })).sort((a, b) => a.id - b.id);
}

/** Name the run that answered these kicks. */
export async function answerKicks(c: pg.Client, ids: readonly number[], run: number): Promise<void> {
  if (ids.length === 0) return;
  await c.query(`UPDATE ibex.kick SET run = $2, taken = coalesce(taken, now()) WHERE id = ANY($1::bigint[])`, [ids, run]);
}

/** Hand kicks back unserved (the daemon stops before running them). */
export async function releaseKicks(c: pg.Client, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await c.query(`UPDATE ibex.kick SET taken = NULL WHERE id = ANY($1::bigint[]) AND run IS NULL`, [ids]);
}

/** Ask for a run of a sync: insert the kick and notify the daemon, in one transaction. */
export async function insertKick(c: pg.Client, sync: string): Promise<number> {
  await c.query('BEGIN');
  try {
    const r = await c.query(`INSERT INTO ibex.kick (sync) VALUES ($1) RETURNING id`, [sync]);
    await notifyControl(c, `kick:${sync}`);
    await c.query('COMMIT');
    return Number(r.rows[0].id);
  } catch (err) {
    // Best effort: the error being thrown is the one that matters; a failed ROLLBACK means the session is gone, and its transaction with it.
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Where a kick stands, with its run once it ended. */
export interface KickProgress {
  taken: boolean;
  run?: RunRow;
}

/** One row of ibex.run, as `status` and `kick` show it. */
export interface RunRow {
  id: number;
  kind: string;
  status: string;
  started: Date;
  ended: Date | null;
  inserted: number;
  deleted: number;
  conflicts: number;
  truncates: number;
  details: Record<string, unknown>;
  error: string | null;
}

const RUN_COLUMNS = `r.id, r.kind, r.status, r.started, r.ended, r.inserted, r.deleted, r.conflicts, r.truncates, r.details, r.error`;

function runRow(row: Record<string, unknown>, prefix = ''): RunRow {
  const g = (k: string): unknown => row[prefix + k];
  return {
    id: Number(g('id')), kind: String(g('kind')), status: String(g('status')), started: g('started') as Date, ended: (g('ended') as Date | null) ?? null,
    inserted: Number(g('inserted')), deleted: Number(g('deleted')), conflicts: Number(g('conflicts')), truncates: Number(g('truncates')),
    details: (g('details') as Record<string, unknown> | null) ?? {}, error: g('error') === null || g('error') === undefined ? null : String(g('error')),
  };
}

/** The progress of one kick; `run` only once that run has ended. */
export async function kickProgress(c: pg.Client, id: number): Promise<KickProgress | undefined> {
  const r = await c.query(
    `SELECT k.taken IS NOT NULL AS taken, ${RUN_COLUMNS} FROM ibex.kick k LEFT JOIN ibex.run r ON r.id = k.run WHERE k.id = $1`,
    [id],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return { taken: row.taken === true, ...(row.id !== null && row.ended !== null ? { run: runRow(row) } : {}) };
}

// ---- the CLI's reads and writes -----------------------------------------------------------

/** A sync's name and status, or undefined. */
export async function syncStatus(c: pg.Client, name: string): Promise<{ status: string; reason: string | null } | undefined> {
  const r = await c.query(`SELECT status, status_reason FROM ibex.sync WHERE name = $1`, [name]);
  const row = r.rows[0];
  return row ? { status: String(row.status), reason: row.status_reason === null ? null : String(row.status_reason) } : undefined;
}

/** The statuses of several syncs (unknown names are absent). */
export async function syncStatuses(c: pg.Client, names: readonly string[]): Promise<Map<string, string>> {
  const r = await c.query(`SELECT name, status FROM ibex.sync WHERE name = ANY($1)`, [names]);
  return new Map(r.rows.map((row) => [String(row.name), String(row.status)]));
}

/** Pause or resume syncs and tell the daemon, in one transaction; returns the syncs that changed. */
export async function setSyncsStatus(c: pg.Client, names: readonly string[], to: 'paused' | 'active', reason: string | null): Promise<string[]> {
  await c.query('BEGIN');
  try {
    const from = to === 'paused' ? 'active' : 'paused';
    const r = await c.query(
      `UPDATE ibex.sync SET status = $2, status_reason = $3, updated = now() WHERE name = ANY($1) AND status = $4 RETURNING name`,
      [names, to, reason, from],
    );
    if (to === 'active') {
      // A resumed sync starts with a clean slate of attempts; its last error stays as history.
      await c.query(`UPDATE ibex.sync_state SET attempts = 0 WHERE sync = ANY($1)`, [names]);
    }
    if ((r.rowCount ?? 0) > 0) await notifyControl(c, 'reload');
    await c.query('COMMIT');
    return r.rows.map((row) => String(row.name));
  } catch (err) {
    // Best effort: the error being thrown is the one that matters; a failed ROLLBACK means the session is gone, and its transaction with it.
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Everything `ibex status` shows about one sync. */
export interface SyncStatusRow {
  name: string;
  status: string;
  statusReason: string | null;
  relgroup: string;
  dbgroup: string;
  autokick: boolean;
  state: string | null;
  stateSince: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  attempts: number;
  clockSkewMs: number | null;
  backlog: Record<string, { keys?: unknown; oldest?: unknown }> | null;
  /** The newest good or empty run. */
  lastGood: { id: number; ended: Date } | undefined;
  /** The newest ended run that was not empty (so busy polling does not hide what the last real work did). */
  lastRun: RunRow | undefined;
  /** The run in progress. */
  running: { id: number; kind: string; started: Date } | undefined;
  /** The control database's clock, for ages. */
  now: Date;
}

/** The status rows of every sync, or of one. */
export async function readStatus(c: pg.Client, sync?: string): Promise<SyncStatusRow[]> {
  const r = await c.query(
    `SELECT s.name, s.status, s.status_reason, s.relgroup, s.dbgroup, s.autokick, now() AS now,
            st.state, st.since, st.last_error, st.last_error_at, coalesce(st.attempts, 0) AS attempts, st.clock_skew_ms, st.backlog,
            g.id AS g_id, g.ended AS g_ended,
            l.id AS l_id, l.kind AS l_kind, l.status AS l_status, l.started AS l_started, l.ended AS l_ended, l.inserted AS l_inserted,
            l.deleted AS l_deleted, l.conflicts AS l_conflicts, l.truncates AS l_truncates, l.details AS l_details, l.error AS l_error,
            c.id AS c_id, c.kind AS c_kind, c.started AS c_started
       FROM ibex.sync s
       LEFT JOIN ibex.sync_state st ON st.sync = s.name
       LEFT JOIN LATERAL (SELECT r.id, r.ended FROM ibex.run r WHERE r.sync = s.name AND r.status IN ('good', 'empty') AND r.ended IS NOT NULL
                           ORDER BY r.started DESC LIMIT 1) g ON true
       LEFT JOIN LATERAL (SELECT ${RUN_COLUMNS} FROM ibex.run r WHERE r.sync = s.name AND r.status <> 'empty' AND r.ended IS NOT NULL
                           ORDER BY r.started DESC LIMIT 1) l ON true
       LEFT JOIN LATERAL (SELECT r.id, r.kind, r.started FROM ibex.run r WHERE r.sync = s.name AND r.ended IS NULL
                           ORDER BY r.started DESC LIMIT 1) c ON true
      WHERE $1::text IS NULL OR s.name = $1
      ORDER BY s.name`,
    [sync ?? null],
  );
  return r.rows.map((row) => ({
    name: String(row.name), status: String(row.status), statusReason: row.status_reason ?? null, relgroup: String(row.relgroup), dbgroup: String(row.dbgroup),
    autokick: row.autokick === true, state: row.state ?? null, stateSince: row.since ?? null, lastError: row.last_error ?? null,
    lastErrorAt: row.last_error_at ?? null, attempts: Number(row.attempts), clockSkewMs: row.clock_skew_ms === null ? null : Number(row.clock_skew_ms),
    backlog: (row.backlog as SyncStatusRow['backlog']) ?? null,
    lastGood: row.g_id === null ? undefined : { id: Number(row.g_id), ended: row.g_ended as Date },
    lastRun: row.l_id === null ? undefined : runRow(row, 'l_'),
    running: row.c_id === null ? undefined : { id: Number(row.c_id), kind: String(row.c_kind), started: row.c_started as Date },
    now: row.now as Date,
  }));
}

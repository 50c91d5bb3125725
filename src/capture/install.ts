/**
 * Install and remove the capture objects of a sync on its databases.
 *
 * Every DDL step runs with a short lock_timeout and is retried with backoff,
 * naming the session that blocks it, so `ibex add sync` never queues behind a
 * long transaction while holding up the application's writers. A sync stays
 * `installing` until every db is done; a failed install is rolled back.
 */
import type pg from 'pg';
import { connect, describeParams, errorText } from '../db/connect.js';
import { tableInfo, serverInfo } from '../db/catalog.js';
import { withRetry } from '../db/retry.js';
import { SqlState, sqlstate, isTransient } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { loadSyncConfig, type SyncDb } from '../control/sync-config.js';
import { qualified } from '../db/ident.js';
import { baseDdl, sourceBaseDdl, tableDdl, dropTableDdl, captureNames, CAPTURE_VERSION, META_COLUMNS, RESERVED_COLUMNS } from './objects.js';

/** Options of an install or removal. */
export interface CaptureOptions {
  /** Report what would be done, change nothing. */
  dryRun?: boolean;
  /** Progress lines for the user. */
  say?: (line: string) => void;
  /** On removal: skip dbs that cannot be reached (their objects stay; say so). */
  force?: boolean;
  /** lock_timeout of each DDL attempt in ms (default: control config lock_timeout_ms, else 2000). */
  lockTimeoutMs?: number;
}

async function lockTimeout(control: pg.Client, opts: CaptureOptions): Promise<number> {
  if (opts.lockTimeoutMs !== undefined) return opts.lockTimeoutMs;
  const r = await control.query(`SELECT value FROM ibex.config WHERE name = 'lock_timeout_ms'`);
  return r.rows[0] ? Number(r.rows[0].value) : 2000;
}

/** Run one DDL transaction with lock_timeout, retrying lock timeouts and naming the blocker. */
async function ddlTransaction(client: pg.Client, db: string, say: (l: string) => void, body: () => Promise<void>): Promise<void> {
  await withRetry(
    async () => {
      await client.query('BEGIN');
      try {
        await body();
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    },
    {
      attempts: 10,
      baseMs: 200,
      maxMs: 5000,
      retryable: (err) => sqlstate(err) === SqlState.lockNotAvailable || sqlstate(err) === SqlState.deadlock,
      onRetry: async (_err, attempt, delay) => {
        const r = await client.query(
          `SELECT a.pid, coalesce(a.application_name, '') AS app, a.state, now() - a.xact_start AS age
             FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
              AND a.xact_start IS NOT NULL ORDER BY a.xact_start LIMIT 1`,
        ).catch(() => ({ rows: [] as Record<string, unknown>[] }));
        const b = r.rows[0];
        say(`db ${db}: a lock is held${b ? ` by pid ${b.pid} (${b.app || 'no application_name'}, ${b.state}, in transaction for ${b.age})` : ''}; retry ${attempt} in ${delay} ms`);
      },
    },
  ).catch((err) => {
    if (sqlstate(err) === SqlState.lockNotAvailable) {
      throw new IbexError('config', `db ${db}: could not take the locks to install capture (a long transaction holds them): end it, or retry later`, { cause: err });
    }
    throw err;
  });
}

async function open(db: SyncDb, lockMs: number): Promise<pg.Client> {
  return connect(db.params, { applicationName: 'ibex/install', lockTimeoutMs: lockMs });
}

/**
 * Install (or upgrade in place) capture for every table of `sync` on each of
 * its source dbs and the progress table on every PostgreSQL db, record each
 * source's starting cursor, then mark the sync active. On failure what this
 * call added is removed again and the error is thrown.
 */
export async function installCapture(control: pg.Client, sync: string, opts: CaptureOptions = {}): Promise<void> {
  const say = opts.say ?? (() => {});
  const cfg = await loadSyncConfig(control, sync);
  const lockMs = await lockTimeout(control, opts);
  const pgDbs = cfg.dbs.filter((d) => d.dbtype === 'postgres');
  const tables = cfg.relations.filter((r) => r.reltype === 'table');
  const fullcopyOnly = !cfg.dbs.some((d) => d.role === 'target') && cfg.dbs.filter((d) => d.role === 'source').length === 1
    && cfg.dbs.some((d) => d.role === 'fullcopy');
  for (const t of tables) {
    const clash = t.keyColumns.find((c) => (META_COLUMNS as readonly string[]).includes(c));
    if (clash) throw new IbexError('config', `table ${t.schema}.${t.name} has a key column named "${clash}", a name ibex reserves in delta tables: rename the column`);
    if (!fullcopyOnly && t.keyColumns.length === 0) {
      throw new IbexError('config', `table ${t.schema}.${t.name} has no usable key: add a primary key, or carry it in a sync whose only targets are fullcopy`);
    }
  }
  const touched: SyncDb[] = [];
  const clients = new Map<string, pg.Client>();
  try {
    for (const db of pgDbs) {
      if (opts.dryRun) {
        say(`would install ${db.role === 'source' && !fullcopyOnly ? `capture for ${tables.length} table(s) and ` : ''}the progress table on db ${db.name}`);
        continue;
      }
      const client = await open(db, lockMs);
      clients.set(db.name, client);
      const info = await serverInfo(client);
      const isSource = db.role === 'source' && !fullcopyOnly;
      touched.push(db);
      await ddlTransaction(client, db.name, say, async () => {
        await client.query(baseDdl());
        if (!isSource) return;
        await client.query(sourceBaseDdl(info.user));
        for (const t of tables) {
          const ti = await tableInfo(client, t.schema, t.name);
          if (!ti) throw new IbexError('config', `table ${t.schema}.${t.name} is missing on db ${db.name}: create it there, or remove it from the sync`);
          const reserved = ti.columns.find((c) => (RESERVED_COLUMNS as readonly string[]).includes(c.name));
          if (reserved) throw new IbexError('config', `table ${t.schema}.${t.name} has a column named "${reserved.name}", a name ibex reserves for its staging tables: rename the column`);
          await client.query(tableDdl({ schema: t.schema, name: t.name, keyColumns: t.keyColumns, keyTypes: t.keyTypes, partitioned: ti.relkind === 'p' }, info.user));
          const names = captureNames(t.schema, t.name);
          await client.query(
            `INSERT INTO ibex.captured (schemaname, relname, delta, fn, syncs, version) VALUES ($1, $2, $3, $4, ARRAY[$5], $6)
             ON CONFLICT (schemaname, relname) DO UPDATE SET version = EXCLUDED.version,
               syncs = CASE WHEN $5 = ANY(ibex.captured.syncs) THEN ibex.captured.syncs ELSE ibex.captured.syncs || $5 END`,
            [t.schema, t.name, names.delta, names.fn, sync, CAPTURE_VERSION],
          );
        }
        await client.query(`INSERT INTO ibex.meta (key, value) VALUES ('capture_version', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [String(CAPTURE_VERSION)]);
      });
      say(isSource ? `installed capture for ${tables.length} table(s) on db ${db.name}` : `prepared db ${db.name} as a target`);
    }
    if (opts.dryRun) return;
    // Cursors start after capture committed: every later transaction is captured, and one still
    // open is in the snapshot's xip list, so it is consumed when it commits.
    for (const db of pgDbs.filter((d) => d.role === 'source')) {
      const r = await clients.get(db.name)!.query(`SELECT pg_current_snapshot()::text AS snap`);
      await control.query(`INSERT INTO ibex.cursor (sync, db, snapshot) VALUES ($1, $2, $3) ON CONFLICT (sync, db) DO NOTHING`, [sync, db.name, r.rows[0].snap]);
    }
    await control.query(`UPDATE ibex.sync SET status = 'active', status_reason = NULL, updated = now() WHERE name = $1 AND status = 'installing'`, [sync]);
  } catch (err) {
    // Roll back what this call added on the dbs it reached.
    for (const db of touched) {
      const c = clients.get(db.name);
      if (c) await removeFromDb(c, db, sync, say).catch(() => {});
    }
    if (err instanceof IbexError) throw err;
    throw new IbexError(isTransient(err) ? 'unreachable' : 'config', `installing capture for sync ${sync} failed: ${errorText(err)}`, { cause: err });
  } finally {
    await Promise.all([...clients.values()].map((c) => c.end().catch(() => {})));
  }
}

async function removeFromDb(client: pg.Client, db: SyncDb, sync: string, say: (l: string) => void): Promise<void> {
  await ddlTransaction(client, db.name, say, async () => {
    const hasSchema = await client.query(`SELECT to_regclass('ibex.progress') IS NOT NULL AS p, to_regclass('ibex.captured') IS NOT NULL AS c`);
    if (hasSchema.rows[0].p === 't') await client.query(`DELETE FROM ibex.progress WHERE sync = $1`, [sync]);
    if (hasSchema.rows[0].c === 't') {
      const r = await client.query(
        `UPDATE ibex.captured SET syncs = array_remove(syncs, $1) WHERE $1 = ANY(syncs) RETURNING schemaname, relname, syncs`, [sync]);
      for (const row of r.rows) {
        if (row.syncs !== '{}') continue;
        const exists = await client.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [qualified(row.schemaname, row.relname).text]);
        await client.query(dropTableDdl(row.schemaname, row.relname, exists.rows[0].e === 't'));
        await client.query(`DELETE FROM ibex.captured WHERE schemaname = $1 AND relname = $2`, [row.schemaname, row.relname]);
      }
    }
    // Nothing left of ibex on this db: remove the schema. (Each count runs only if its table exists:
    // a query naming a missing table would fail and abort this transaction.)
    let left = 0;
    if (hasSchema.rows[0].p === 't') left += Number((await client.query(`SELECT count(*) AS n FROM ibex.progress`)).rows[0].n);
    if (hasSchema.rows[0].c === 't') left += Number((await client.query(`SELECT count(*) AS n FROM ibex.captured`)).rows[0].n);
    if (left === 0) await client.query(`DROP SCHEMA ibex CASCADE`);
  });
}

/** Remove what `installCapture` installed for `sync`, keeping objects other syncs still use. */
export async function removeCapture(control: pg.Client, sync: string, opts: CaptureOptions = {}): Promise<void> {
  const say = opts.say ?? (() => {});
  const cfg = await loadSyncConfig(control, sync);
  const lockMs = await lockTimeout(control, opts);
  for (const db of cfg.dbs.filter((d) => d.dbtype === 'postgres')) {
    if (opts.dryRun) {
      say(`would remove the capture objects of sync ${sync} from db ${db.name}`);
      continue;
    }
    let client: pg.Client;
    try {
      client = await open(db, lockMs);
    } catch (err) {
      if (opts.force) {
        say(`db ${db.name} (${describeParams(db.params)}) is unreachable: its ibex objects for sync ${sync} were left in place`);
        continue;
      }
      throw new IbexError('unreachable', `cannot remove sync ${sync}: ${errorText(err)} (use --force to remove it from the configuration anyway)`, { cause: err });
    }
    try {
      const has = await client.query(`SELECT to_regnamespace('ibex') IS NOT NULL AS s`);
      if (has.rows[0].s === 't') await removeFromDb(client, db, sync, say);
      say(`removed the capture objects of sync ${sync} from db ${db.name}`);
    } finally {
      await client.end().catch(() => {});
    }
  }
}

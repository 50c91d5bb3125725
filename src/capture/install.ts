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
import { tableInfo, serverInfo, type TableInfo } from '../db/catalog.js';
import { withRetry } from '../db/retry.js';
import { SqlState, sqlstate, isTransient } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { loadSyncConfig, type SyncConfig, type SyncDb } from '../control/sync-config.js';
import { ident, qualified } from '../db/ident.js';
import { baseDdl, sourceBaseDdl, tableDdl, dropTableDdl, captureNames, findNameClash, CAPTURE_VERSION, META_COLUMNS, RESERVED_COLUMNS,
  type CaptureTable } from './objects.js';

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
  /** Re-install the objects of a sync already running (new delta_columns): a failure removes nothing. */
  upgrade?: boolean;
  /**
   * Run in each source db's install transaction, after capture is in place (a cut-over from
   * another replication system drops its triggers here, so each write is captured by exactly one).
   */
  inSourceTransaction?: (client: pg.Client, db: string, tables: readonly { schema: string; name: string }[]) => Promise<void>;
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

/** The columns of a table in attnum order, and whether each type has an `=` operator (see maskSql). */
async function columnEquality(client: pg.Client, oid: number): Promise<{ name: string; eq: boolean }[]> {
  const r = await client.query(
    `SELECT a.attname AS name, EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '=' AND o.oprleft = a.atttypid AND o.oprright = a.atttypid) AS eq
       FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, [oid]);
  return r.rows.map((x) => ({ name: String(x.name), eq: x.eq === true || x.eq === 't' }));
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
  const clash = findNameClash(tables);
  if (clash) throw nameClashError(clash.a, clash.b, clash.name);
  const touched: SyncDb[] = [];
  const clients = new Map<string, pg.Client>();
  const snapshots = new Map<string, string>();
  try {
    // Every source is checked before any is changed: each db's DDL commits on its own, so a
    // table or counter column wrong on the third source must not leave the first two upgraded.
    // An upgrade is checked in a dry run too (it changes triggers that run now).
    if (!opts.dryRun || opts.upgrade) {
      for (const db of fullcopyOnly ? [] : pgDbs.filter((d) => d.role === 'source')) {
        const client = await open(db, lockMs);
        clients.set(db.name, client);
        await checkSourceTables(client, db.name, tables);
      }
    }
    for (const db of pgDbs) {
      if (opts.dryRun) {
        say(`would install ${db.role === 'source' && !fullcopyOnly ? `capture for ${tables.length} table(s) and ` : ''}the progress table on db ${db.name}`);
        continue;
      }
      const client = clients.get(db.name) ?? await open(db, lockMs);
      clients.set(db.name, client);
      const info = await serverInfo(client);
      const isSource = db.role === 'source' && !fullcopyOnly;
      touched.push(db);
      await ddlTransaction(client, db.name, say, async () => {
        await client.query(baseDdl());
        if (!isSource) return;
        await client.query(sourceBaseDdl(info.user));
        for (const t of tables) {
          const ti = (await checkSourceTables(client, db.name, [t]))[0]!;
          const deltaColumns = t.deltaColumns ?? [];
          const ct: CaptureTable = {
            schema: t.schema, name: t.name, keyColumns: t.keyColumns, keyTypes: t.keyTypes, partitioned: ti.relkind === 'p',
            columns: await columnEquality(client, ti.oid), deltaColumns,
          };
          await checkInstalledClash(client, db.name, ct);
          await renameOldObjects(client, db.name, ct, info.user, say);
          await client.query(tableDdl(ct, info.user));
          const names = captureNames(t.schema, t.name);
          await client.query(
            `INSERT INTO ibex.captured (schemaname, relname, delta, fn, syncs, version, cols) VALUES ($1, $2, $3, $4, ARRAY[$5], $6, $7)
             ON CONFLICT (schemaname, relname) DO UPDATE SET version = EXCLUDED.version, cols = EXCLUDED.cols,
               syncs = CASE WHEN $5 = ANY(ibex.captured.syncs) THEN ibex.captured.syncs ELSE ibex.captured.syncs || $5 END`,
            [t.schema, t.name, names.delta, names.fn, sync, CAPTURE_VERSION, ct.columns!.map((c) => c.name)],
          );
        }
        await client.query(`INSERT INTO ibex.meta (key, value) VALUES ('capture_version', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [String(CAPTURE_VERSION)]);
        if (opts.inSourceTransaction) await opts.inSourceTransaction(client, db.name, tables.map((t) => ({ schema: t.schema, name: t.name })));
        // The cursor is this transaction's snapshot, taken with the triggers' locks held: a write
        // that committed before it went through the old triggers, every later one through ours.
        snapshots.set(db.name, (await client.query(`SELECT pg_current_snapshot()::text AS snap`)).rows[0].snap as string);
      });
      say(isSource ? `installed capture for ${tables.length} table(s) on db ${db.name}` : `prepared db ${db.name} as a target`);
    }
    if (opts.dryRun) return;
    // Cursors start at the snapshot of the transaction that installed capture: every transaction
    // that commits after it is captured, and one still open is in the snapshot's xip list, so it
    // is consumed when it commits.
    for (const db of pgDbs.filter((d) => d.role === 'source')) {
      const snap = snapshots.get(db.name) ?? (await clients.get(db.name)!.query(`SELECT pg_current_snapshot()::text AS snap`)).rows[0].snap as string;
      await control.query(`INSERT INTO ibex.cursor (sync, db, snapshot) VALUES ($1, $2, $3) ON CONFLICT (sync, db) DO NOTHING`, [sync, db.name, snap]);
    }
    await control.query(`UPDATE ibex.sync SET status = 'active', status_reason = NULL, updated = now() WHERE name = $1 AND status = 'installing'`, [sync]);
  } catch (err) {
    // Roll back what this call added on the dbs it reached (an upgrade keeps the capture it had).
    for (const db of opts.upgrade ? [] : touched) {
      const c = clients.get(db.name);
      if (c) await removeFromDb(c, db, sync, say).catch(() => {});
    }
    if (err instanceof IbexError) throw err;
    throw new IbexError(isTransient(err) ? 'unreachable' : 'config', `installing capture for sync ${sync} failed: ${errorText(err)}`, { cause: err });
  } finally {
    await Promise.all([...clients.values()].map((c) => c.end().catch(() => {})));
  }
}

/**
 * The tables of a sync as a source db holds them: present, no column with a name ibex reserves,
 * and every counter column (delta_columns) present and numeric (its trigger computes new − old
 * as numeric; a text column would make the application's own UPDATEs fail).
 */
async function checkSourceTables(client: pg.Client, db: string, tables: readonly SyncConfig['relations'][number][]): Promise<TableInfo[]> {
  const out: TableInfo[] = [];
  for (const t of tables) {
    const ti = await tableInfo(client, t.schema, t.name);
    if (!ti) throw new IbexError('config', `table ${t.schema}.${t.name} is missing on db ${db}: create it there, or remove it from the sync`);
    const reserved = ti.columns.find((c) => (RESERVED_COLUMNS as readonly string[]).includes(c.name));
    if (reserved) throw new IbexError('config', `table ${t.schema}.${t.name} has a column named "${reserved.name}", a name ibex reserves for its staging tables: rename the column`);
    const deltaColumns = t.deltaColumns ?? [];
    const missing = deltaColumns.find((c) => !ti.columns.some((x) => x.name === c));
    if (missing) throw new IbexError('config', `table ${t.schema}.${t.name} on db ${db} has no column "${missing}" named in delta_columns: fix delta_columns with "ibex update table"`);
    if (deltaColumns.length) {
      const r = await client.query(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
          WHERE a.attrelid = $1 AND a.attname = ANY($2::text[]) AND ty.typcategory <> 'N'`, [ti.oid, deltaColumns]);
      if (r.rows.length) throw new IbexError('config', `table ${t.schema}.${t.name} on db ${db}: delta_columns names "${String(r.rows[0].name)}", a ${String(r.rows[0].type)} column; a counter must be numeric: fix delta_columns with "ibex update table"`);
    }
    out.push(ti);
  }
  return out;
}

async function removeFromDb(client: pg.Client, db: SyncDb, sync: string, say: (l: string) => void): Promise<void> {
  await ddlTransaction(client, db.name, say, async () => {
    const hasSchema = await client.query(`SELECT to_regclass('ibex.progress') IS NOT NULL AS p, to_regclass('ibex.captured') IS NOT NULL AS c`);
    if (hasSchema.rows[0].p === 't') await client.query(`DELETE FROM ibex.progress WHERE sync = $1`, [sync]);
    if (hasSchema.rows[0].c === 't') {
      const r = await client.query(
        `UPDATE ibex.captured SET syncs = array_remove(syncs, $1) WHERE $1 = ANY(syncs) RETURNING schemaname, relname, syncs, delta, fn`, [sync]);
      for (const row of r.rows) {
        if (row.syncs !== '{}') continue;
        await client.query(`DELETE FROM ibex.captured WHERE schemaname = $1 AND relname = $2`, [row.schemaname, row.relname]);
        const exists = await client.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [qualified(row.schemaname, row.relname).text]);
        // Objects an older ibex let two tables share stay while the other table still uses them.
        const shared = await client.query(
          `SELECT bool_or(delta = $1) AS d, bool_or(fn = $2) AS f FROM ibex.captured`, [row.delta, row.fn]);
        await client.query(dropTableDdl(row.schemaname, row.relname, exists.rows[0].e === 't', {
          ...(shared.rows[0].d === 't' ? {} : { delta: String(row.delta) }), ...(shared.rows[0].f === 't' ? {} : { fn: String(row.fn) }) }));
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

function nameClashError(a: string, b: string, name: string): IbexError {
  return new IbexError('config', `tables ${a} and ${b} would share the capture object name "${name}": rename one of them`);
}

/** Refuse a table whose new object names are already recorded for another table on this db. */
async function checkInstalledClash(client: pg.Client, db: string, t: CaptureTable): Promise<void> {
  const n = captureNames(t.schema, t.name);
  const r = await client.query(
    `SELECT schemaname, relname, delta FROM ibex.captured
      WHERE (delta = $1 OR fn = $2) AND (schemaname, relname) <> ($3, $4) LIMIT 1`, [n.delta, n.fn, t.schema, t.name]);
  const o = r.rows[0];
  if (o) throw nameClashError(`${o.schemaname}.${o.relname}`, `${t.schema}.${t.name} (on db ${db})`, o.delta === n.delta ? n.delta : n.fn);
}

/**
 * Move one table's capture objects from the names recorded at install to
 * today's names, inside the caller's transaction. Older ibex named them by
 * joining schema and table with `_`; the triggers write to whatever the
 * function names, and the runner reads the delta table captureNames() gives,
 * so the two must agree before any run. The delta table is renamed (keeping
 * the changes not yet replicated); the function is replaced by tableDdl and
 * the old one dropped once no table uses it. A delta table two tables shared
 * (the clash that made this necessary) cannot be split by table: it is left to
 * the other table, dropped with the last one, and the user is told to validate.
 */
async function renameOldObjects(client: pg.Client, db: string, t: CaptureTable, ibexRole: string, say: (l: string) => void): Promise<boolean> {
  const now = captureNames(t.schema, t.name);
  const r = await client.query(
    `SELECT delta, fn FROM ibex.captured WHERE schemaname = $1 AND relname = $2 FOR UPDATE`, [t.schema, t.name]);
  const old = r.rows[0] as { delta: string; fn: string } | undefined;
  if (!old || (old.delta === now.delta && old.fn === now.fn)) return false;
  const label = `${t.schema}.${t.name}`;
  const others = await client.query(
    `SELECT bool_or(delta = $1) AS d FROM ibex.captured WHERE (schemaname, relname) <> ($2, $3)`, [old.delta, t.schema, t.name]);
  const sharedDelta = others.rows[0].d === 't';
  const there = await client.query(
    `SELECT to_regclass($1) IS NOT NULL AS old, to_regclass($2) IS NOT NULL AS now`,
    [qualified('ibex', old.delta).text, qualified('ibex', now.delta).text]);
  if (old.delta !== now.delta && !sharedDelta && there.rows[0].old === 't' && there.rows[0].now === 'f') {
    // The index keeps its old name otherwise; its old name was the delta's name plus _txid, cut to 63 bytes.
    const idx = await client.query(
      `SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass`,
      [qualified('ibex', old.delta).text]);
    await client.query(`ALTER TABLE ${qualified('ibex', old.delta).text} RENAME TO ${ident(now.delta).text}`);
    for (const row of idx.rows) {
      if (row.relname !== now.index) await client.query(`ALTER INDEX ${qualified('ibex', String(row.relname)).text} RENAME TO ${ident(now.index).text}`);
    }
  } else if (sharedDelta) {
    say(`db ${db}: table ${label} shared its delta table "${old.delta}" with another table (a name clash of older ibex); it gets its own now, `
      + `but changes captured before cannot be told apart: run "ibex validate <sync> --repair" for it`);
  }
  // New function, triggers pointing at it, and the delta table if it was not renamed.
  await client.query(tableDdl(t, ibexRole));
  await client.query(`UPDATE ibex.captured SET delta = $3, fn = $4 WHERE schemaname = $1 AND relname = $2`, [t.schema, t.name, now.delta, now.fn]);
  const left = await client.query(
    `SELECT bool_or(delta = $1) AS d, bool_or(fn = $2) AS f FROM ibex.captured`, [old.delta, old.fn]);
  if (old.fn !== now.fn && left.rows[0].f !== 't') await client.query(`DROP FUNCTION IF EXISTS ${qualified('ibex', old.fn).text}()`);
  if (old.delta !== now.delta && left.rows[0].d !== 't') await client.query(`DROP TABLE IF EXISTS ${qualified('ibex', old.delta).text}`);
  say(`db ${db}: renamed the capture objects of ${label} to "${now.delta}" and "${now.fn}"`);
  return true;
}

/**
 * Bring the capture objects of `tables` on one source db to today's names (see
 * renameOldObjects) and today's triggers (CAPTURE_VERSION). Cheap when nothing is old: one query and no locks. Called
 * when a runner loads, so a daemon upgraded in place keeps reading the delta
 * tables its triggers write to.
 */
export async function upgradeCaptureNames(client: pg.Client, db: string, tables: readonly Omit<CaptureTable, 'partitioned'>[],
  say: (l: string) => void, lockTimeoutMs = 2000): Promise<void> {
  if (!tables.length) return;
  const has = await client.query(`SELECT to_regclass('ibex.captured') IS NOT NULL AS c`);
  if (has.rows[0].c !== 't') return;
  const r = await client.query(
    `SELECT schemaname, relname, delta, fn, version FROM ibex.captured c
      WHERE (schemaname, relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)]);
  const stale = tables.filter((t) => r.rows.some((row) => {
    const n = captureNames(t.schema, t.name);
    return row.schemaname === t.schema && row.relname === t.name && (row.delta !== n.delta || row.fn !== n.fn || Number(row.version) < CAPTURE_VERSION);
  }));
  if (!stale.length) return;
  const info = await serverInfo(client);
  await ddlTransaction(client, db, say, async () => {
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
    for (const t of stale) {
      const ti = await tableInfo(client, t.schema, t.name);
      if (!ti) continue; // dropped behind ibex's back: the run reports it
      const ct: CaptureTable = { ...t, partitioned: ti.relkind === 'p', columns: await columnEquality(client, ti.oid) };
      // Older triggers also record no column mask (merge and counters need them): replaced in place.
      if (!(await renameOldObjects(client, db, ct, info.user, say))) await client.query(tableDdl(ct, info.user));
      await client.query(`UPDATE ibex.captured SET version = $3, cols = $4 WHERE schemaname = $1 AND relname = $2`,
        [t.schema, t.name, CAPTURE_VERSION, ct.columns!.map((c) => c.name)]);
    }
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

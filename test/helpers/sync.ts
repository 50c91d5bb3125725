/**
 * Test helpers for the engine: configure a sync directly in the control
 * database (independent of the configuration CLI), install its capture, and
 * run it with a SyncRunner.
 */
import pino from 'pino';
import type pg from 'pg';
import { openControl } from '../../src/control/connection.js';
import { migrate } from '../../src/control/migrate.js';
import { connect } from '../../src/db/connect.js';
import { tableInfo } from '../../src/db/catalog.js';
import { installCapture } from '../../src/capture/install.js';
import { SyncRunner, type RunnerOptions } from '../../src/engine/runner.js';
import type { RunResult } from '../../src/engine/types.js';
import type { TestEnv } from './env.js';

/** A quiet logger for tests (IBEX_TEST_LOG=debug to see the engine). */
export const testLog = pino({ level: process.env.IBEX_TEST_LOG ?? 'silent' });

/** Install the control schema and register cluster i as db `name` (database `app`). */
export async function setupControl(env: TestEnv, dbs: Record<string, number>, dbname = 'app'): Promise<void> {
  const c = await connect(env.clusters[0]!.params('ibexctl'), { parseTypes: true });
  try {
    await migrate(c);
    for (const [name, i] of Object.entries(dbs)) {
      const p = env.params(i, dbname);
      await c.query(
        `INSERT INTO ibex.db (name, host, port, dbname, dbuser, can_replica, is_superuser) VALUES ($1, $2, $3, $4, $5, true, true)
         ON CONFLICT (name) DO NOTHING`, [name, p.host, p.port, p.dbname, p.user]);
    }
  } finally {
    await c.end();
  }
}

/** Options of a test sync. */
export interface TestSyncOptions {
  /** db name -> role */
  dbs: Record<string, 'source' | 'target' | 'fullcopy'>;
  /**
   * schema.table names (or sequences with `seq:` prefix) registered from the first source db's cluster;
   * a [schema, table] pair for names with dots.
   */
  tables: (string | [string, string])[];
  options?: Record<string, unknown>;
  /** db -> priority */
  priority?: Record<string, number>;
}

/** Register relations, groups and a sync, then install its capture. */
export async function addSync(env: TestEnv, name: string, o: TestSyncOptions): Promise<void> {
  const control = await openControl(env.controlUrl);
  try {
    const first = Object.keys(o.dbs)[0]!;
    const fr = await control.query(`SELECT host, port, dbname FROM ibex.db WHERE name = $1`, [first]);
    const app = await connect({ host: fr.rows[0].host, port: fr.rows[0].port, dbname: fr.rows[0].dbname, user: 'postgres' });
    const ids: number[] = [];
    try {
      for (const t of o.tables) {
        const isSeq = typeof t === 'string' && t.startsWith('seq:');
        const full = typeof t === 'string' ? (isSeq ? t.slice(4) : t) : t.join('.');
        const dot = full.indexOf('.');
        const schema = typeof t === 'string' ? full.slice(0, dot) : t[0];
        const rel = typeof t === 'string' ? full.slice(dot + 1) : t[1];
        let keyCols: string[] | null = null;
        let keyTypes: string[] | null = null;
        let keyKind: string | null = null;
        if (!isSeq) {
          const info = await tableInfo(app, schema, rel);
          if (!info) throw new Error(`no table ${full} on ${first}`);
          if (info.key) {
            keyCols = info.key.columns;
            keyTypes = info.key.types;
            keyKind = info.key.kind;
          }
        }
        const r = await control.query(
          `INSERT INTO ibex.relation (db, schemaname, relname, reltype, key_columns, key_types, key_kind) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (db, schemaname, relname) DO UPDATE SET reltype = EXCLUDED.reltype RETURNING id`,
          [first, schema, rel, isSeq ? 'sequence' : 'table', keyCols, keyTypes, keyKind]);
        ids.push(Number(r.rows[0].id));
      }
    } finally {
      await app.end();
    }
    await control.query(`INSERT INTO ibex.relgroup (name) VALUES ($1)`, [name]);
    for (const [i, id] of ids.entries()) await control.query(`INSERT INTO ibex.relgroup_member (relgroup, relation, priority) VALUES ($1, $2, $3)`, [name, id, -i]);
    await control.query(`INSERT INTO ibex.dbgroup (name) VALUES ($1)`, [name]);
    for (const [db, role] of Object.entries(o.dbs)) {
      await control.query(`INSERT INTO ibex.dbgroup_member (dbgroup, db, role, priority) VALUES ($1, $2, $3, $4)`, [name, db, role, o.priority?.[db] ?? 0]);
    }
    const opts = o.options ?? {};
    const cols = Object.keys(opts);
    await control.query(
      `INSERT INTO ibex.sync (name, relgroup, dbgroup${cols.map((c) => `, ${c}`).join('')}) VALUES ($1::text, $1::text, $1::text${cols.map((_, i) => `, $${i + 2}`).join('')})`,
      [name, ...Object.values(opts)]);
    await installCapture(control, name);
  } finally {
    await control.end();
  }
}

/** A runner for a sync, closed by `closeRunners()`. */
const runners: SyncRunner[] = [];
export function runner(env: TestEnv, sync: string, more: Partial<Pick<RunnerOptions, 'hooks' | 'clockOffsetMs' | 'openTarget' | 'log'>> = {}): SyncRunner {
  const r = new SyncRunner({ controlUrl: env.controlUrl, sync, log: testLog, ...more });
  runners.push(r);
  return r;
}

/** Run a sync once and fail loudly on a failed run. */
export async function runOk(r: SyncRunner): Promise<RunResult> {
  const res = await r.run('delta');
  if (res.status === 'failed' || res.status === 'aborted') throw new Error(`run failed: ${res.error}`);
  return res;
}

/** Close every runner made by `runner()`. */
export async function closeRunners(): Promise<void> {
  await Promise.all(runners.splice(0).map((r) => r.close()));
}

/** Rows of a table on one cluster, as sorted JSON lines (for equality checks). */
export async function tableRows(c: pg.Client, table: string, order = '1'): Promise<string[]> {
  const r = await c.query(`SELECT to_jsonb(t)::text AS j FROM ${table} t ORDER BY ${order}`);
  return r.rows.map((x) => String(x.j));
}

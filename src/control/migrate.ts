/**
 * Forward-only migrations of the control schema. Each `sql/NNNN_purpose.sql`
 * is applied once, in order, in one transaction with its version row, under an
 * advisory lock: two `ibex install` at once both succeed, one of them waiting.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { IbexError } from '../errors.js';
import { sqlstate } from '../db/sqlstate.js';

const SQL_DIR = join(dirname(fileURLToPath(import.meta.url)), 'sql');

/** The advisory lock key of migrations: a fixed 64-bit number ("ibex" + "migr"). */
const MIGRATION_LOCK = '7594854937164519282';

/** One migration file. */
export interface Migration {
  version: number;
  purpose: string;
  file: string;
}

/** The migrations this code knows, in order. */
export function knownMigrations(): Migration[] {
  return readdirSync(SQL_DIR)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const first = readFileSync(join(SQL_DIR, file), 'utf8').split('\n', 1)[0] ?? '';
      const m = /^-- (\d{4}): (.+)$/.exec(first);
      if (!m || Number(m[1]) !== Number(file.slice(0, 4))) throw new IbexError('internal', `migration ${file} must start with "-- ${file.slice(0, 4)}: purpose"`);
      return { version: Number(m[1]), purpose: m[2]!, file };
    });
}

/** The newest schema version this code understands. */
export function codeVersion(): number {
  return knownMigrations().at(-1)?.version ?? 0;
}

/** The version of an installed control schema (0 when absent). */
export async function installedVersion(client: pg.Client): Promise<number> {
  const r = await client.query(`SELECT to_regclass('ibex.schema_version') IS NOT NULL AS present`);
  if (!r.rows[0].present || r.rows[0].present === 'f') return 0;
  const v = await client.query(`SELECT coalesce(max(version), 0) AS v FROM ibex.schema_version`);
  return Number(v.rows[0].v);
}

/** Refuse to work on a schema that is missing or newer than this code. */
export async function checkSchema(client: pg.Client): Promise<void> {
  const have = await installedVersion(client);
  const know = codeVersion();
  if (have === 0) throw new IbexError('schema', 'the control schema is not installed: run "ibex install" first');
  if (have > know) throw new IbexError('schema', `the control schema is version ${have}, newer than this ibex (${know}): upgrade ibex`);
  if (have < know) throw new IbexError('schema', `the control schema is version ${have}, older than this ibex (${know}): run "ibex install" to upgrade it`);
}

/** Apply every missing migration; returns the versions applied now. */
export async function migrate(client: pg.Client): Promise<number[]> {
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ibex`);
    await client.query(`CREATE TABLE IF NOT EXISTS ibex.schema_version (
      version integer PRIMARY KEY, purpose text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`);
    const have = await installedVersion(client);
    const known = knownMigrations();
    const newest = known.at(-1)?.version ?? 0;
    if (have > newest) {
      throw new IbexError('schema', `the control schema is version ${have}, newer than this ibex (${newest}): upgrade ibex`);
    }
    for (const m of known) {
      if (m.version <= have) continue;
      await client.query(readFileSync(join(SQL_DIR, m.file), 'utf8'));
      await client.query(`INSERT INTO ibex.schema_version (version, purpose) VALUES ($1, $2)`, [m.version, m.purpose]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
  } catch (err) {
    // Best effort: the error being thrown is the one that matters; a failed ROLLBACK means the session is gone, and its transaction with it.
    await client.query('ROLLBACK').catch(() => {});
    if (err instanceof IbexError) throw err;
    throw new IbexError('schema', `installing the control schema failed (${sqlstate(err) ?? 'error'}): ${(err as Error).message}`, { cause: err });
  }
  return applied;
}

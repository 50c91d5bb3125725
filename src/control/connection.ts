/**
 * Reaching the control database: `--control URL`, else IBEX_CONTROL_URL,
 * else postgresql:///ibex. `ibex install` may create the database itself.
 */
import type pg from 'pg';
import { connect, endQuietly, parseUrl, type PgParams } from '../db/connect.js';
import { sqlstate } from '../db/sqlstate.js';
import { ident } from '../db/ident.js';
import { IbexError } from '../errors.js';
import { checkSchema } from './migrate.js';

/** The default control database. */
export const DEFAULT_CONTROL_URL = 'postgresql:///ibex';

/** The control URL in force: the flag, then the environment, then the default. */
export function controlUrl(flag?: string): string {
  return flag || process.env.IBEX_CONTROL_URL || DEFAULT_CONTROL_URL;
}

/** Control-database parameters from a URL (the database name defaults to `ibex`). */
export function controlParams(url: string): PgParams {
  const p = parseUrl(url);
  if (!p.dbname && !p.service) p.dbname = 'ibex';
  return p;
}

/** Open a session on the control database; by default check that the schema is installed and current. */
export async function openControl(url: string, opts: { check?: boolean; applicationName?: string } = {}): Promise<pg.Client> {
  const params = controlParams(url);
  const client = await connect(params, { parseTypes: true, applicationName: opts.applicationName ?? 'ibex/control' });
  if (opts.check !== false) {
    try {
      await checkSchema(client);
    } catch (err) {
      await endQuietly(client);
      throw err;
    }
  }
  return client;
}

/**
 * Open the control database for `ibex install`, creating the database when it
 * is missing and this role may (two installs racing are both fine).
 */
export async function openOrCreateControl(url: string): Promise<{ client: pg.Client; created: boolean }> {
  const params = controlParams(url);
  try {
    return { client: await connect(params, { parseTypes: true, applicationName: 'ibex/install' }), created: false };
  } catch (err) {
    const cause = (err as IbexError).cause;
    if (sqlstate(cause) !== '3D000') throw err;
  }
  const admin = await connect({ ...params, dbname: 'postgres' }, { parseTypes: true, applicationName: 'ibex/install' });
  let created = false;
  try {
    await admin.query(`CREATE DATABASE ${ident(params.dbname!).text}`);
    created = true;
  } catch (err) {
    if (sqlstate(err) !== '42P04' && sqlstate(err) !== '23505') {
      throw new IbexError('config', `the control database "${params.dbname}" does not exist and cannot be created (${(err as Error).message}): create it, or point --control at an existing one`, { cause: err });
    }
  } finally {
    await endQuietly(admin);
  }
  return { client: await connect(params, { parseTypes: true, applicationName: 'ibex/install' }), created };
}

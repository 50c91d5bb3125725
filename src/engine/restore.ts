/**
 * `ibex conflicts restore <id>`: put back a version the conflict log holds. The version is written
 * on one PostgreSQL source of the sync (the conflict's winner when it is one) as a change of that
 * db — captured like any application write — so the next run of the sync replicates it to every
 * db. A version that would collide again (its unique value held by another row, its parent gone)
 * is refused with one line, and nothing is written.
 */
import type pg from 'pg';
import { dbParams } from '../control/sync-config.js';
import { connect } from '../db/connect.js';
import { ident, qualified } from '../db/ident.js';
import { sqlstate, SqlState } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { parseExactJson, stringifyExactJson } from '../db/json.js';

/** What a restore wrote, and where. */
export interface Restored {
  id: number;
  sync: string;
  db: string;
  table: string;
  key: unknown;
}

/** Restore the removed version of conflict `id` (the first loser holding a row). */
export async function restoreConflict(control: pg.Client, id: number): Promise<Restored> {
  const c = (await control.query(
    `SELECT id, sync, schemaname, relname, key::text AS key, winner, losers::text AS losers FROM ibex.conflict WHERE id = $1`, [id])).rows[0];
  if (!c) throw new IbexError('not_found', `no conflict with id ${id}: list them with "ibex conflicts"`);
  // Read exactly: a key or value past 2^53 must restore as itself (db/json.ts).
  const losers = (c.losers === null ? [] : parseExactJson(String(c.losers))) as { db: string; row: Record<string, unknown> | null }[];
  const key = parseExactJson<Record<string, unknown>>(String(c.key));
  const version = losers.find((l) => l.row !== null)?.row;
  const table = `${c.schemaname}.${c.relname}`;
  if (!version) throw new IbexError('config', `conflict ${id} holds no removed row of ${table} to restore (the version it lost was a delete)`);
  const sources = (await control.query(
    `SELECT d.*, m.role FROM ibex.sync s JOIN ibex.dbgroup_member m ON m.dbgroup = s.dbgroup JOIN ibex.db d ON d.name = m.db
      WHERE s.name = $1 AND m.role = 'source' AND d.dbtype = 'postgres' ORDER BY d.name`, [c.sync])).rows;
  const at = sources.find((d) => d.name === c.winner) ?? sources[0];
  if (!at) throw new IbexError('config', `sync ${c.sync} has no PostgreSQL source to restore conflict ${id} on`);
  const keyCols = Object.keys(key);
  const cols = Object.keys(version);
  const q = qualified(String(c.schemaname), String(c.relname)).text;
  const nonKey = cols.filter((x) => !keyCols.includes(x));
  const sql = `INSERT INTO ${q} (${cols.map((x) => ident(x).text).join(', ')})
                 SELECT ${cols.map((x) => `r.${ident(x).text}`).join(', ')} FROM jsonb_populate_record(NULL::${q}, $1::jsonb) r
                 ON CONFLICT (${keyCols.map((x) => ident(x).text).join(', ')}) ${nonKey.length ? `DO UPDATE SET ${nonKey.map((x) => `${ident(x).text} = EXCLUDED.${ident(x).text}`).join(', ')}` : 'DO NOTHING'}`;
  const db = await connect(dbParams(at));
  try {
    await db.query(sql, [stringifyExactJson(version)]);
  } catch (err) {
    const what = `restoring conflict ${id} (${table} ${stringifyExactJson(key)}) on db ${at.name}`;
    const constraint = (err as { constraint?: string }).constraint ?? 'a constraint';
    if (sqlstate(err) === SqlState.uniqueViolation) throw new IbexError('config', `${what} would collide again on ${constraint}: another row holds that value now; change or remove it first`);
    if (sqlstate(err) === SqlState.foreignKeyViolation) throw new IbexError('config', `${what} would break ${constraint}: the row it references is gone; restore that first`);
    throw new IbexError('config', `${what} failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await db.end().catch(() => {});
  }
  return { id, sync: String(c.sync), db: String(at.name), table, key };
}

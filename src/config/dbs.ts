/**
 * Sessions on the registered dbs, for the configuration steps that read their catalogs.
 */
import type pg from 'pg';
import { connect, endQuietly, errorText } from '../db/connect.js';
import { dbParams, getDb, type DbRecord } from '../control/config-store.js';
import { ExitCode, IbexError, notFound } from '../errors.js';
import type { Noun } from './names.js';

/** The hint of every "no such name" error. */
export function listHint(noun: Noun): string {
  return `list them with "ibex list ${noun}s"`;
}

/** A registered db, or a not_found error. */
export async function requireDb(c: pg.Client, name: string): Promise<DbRecord> {
  const db = await getDb(c, name);
  if (!db) throw notFound('db', name, listHint('db'));
  return db;
}

/** Open a session on a registered PostgreSQL db; a failure names the db and keeps the libpq reason. */
export async function openDb(db: DbRecord, timeoutS = 10): Promise<pg.Client> {
  try {
    return await connect(dbParams(db), { applicationName: 'ibex/cli', connectTimeoutS: timeoutS, statementTimeoutMs: 60_000 });
  } catch (err) {
    // A configuration mistake (an unknown service, a bad conn= option) is not an outage: exit 2 as it is.
    if (err instanceof IbexError && err.exitCode === ExitCode.usage) throw err;
    const reason = err instanceof IbexError ? err.message : errorText(err);
    throw new IbexError('unreachable', `db "${db.name}": ${reason}: start it or fix it with "ibex update db ${db.name} …"`, { cause: err });
  }
}

/** Open sessions on several dbs at once; all or none (the opened ones are closed on failure). */
export async function openDbs(dbs: readonly DbRecord[]): Promise<Map<string, pg.Client>> {
  const results = await Promise.allSettled(dbs.map((d) => openDb(d)));
  const out = new Map<string, pg.Client>();
  let failure: unknown;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') out.set(dbs[i]!.name, r.value);
    else failure ??= r.reason;
  });
  if (failure !== undefined) {
    await closeAll(out);
    throw failure;
  }
  return out;
}

/** Close sessions opened by `openDbs`. */
export async function closeAll(clients: Map<string, pg.Client>): Promise<void> {
  await Promise.all([...clients.values()].map((c) => endQuietly(c)));
}

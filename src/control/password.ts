/**
 * A db's password: the one stored (dbpass), or the one its reference (dbpass_ref) points to,
 * read when a session is opened so the control database never holds it.
 */
import { readFileSync } from 'node:fs';
import { IbexError } from '../errors.js';

/** The password to connect with; undefined lets libpq's rules apply (.pgpass, PGPASSWORD). */
export function resolvePassword(db: { name?: unknown; dbpass?: unknown; dbpass_ref?: unknown }): string | undefined {
  if (typeof db.dbpass === 'string') return db.dbpass;
  const ref = typeof db.dbpass_ref === 'string' ? db.dbpass_ref : undefined;
  if (!ref || ref === 'pgpass') return undefined;
  const name = String(db.name ?? '?');
  if (ref.startsWith('env:')) {
    const v = process.env[ref.slice(4)];
    if (v === undefined) throw new IbexError('config', `db ${name} takes its password from ${ref}, which is not set: export ${ref.slice(4)} in the environment of ibex`);
    return v;
  }
  const path = ref.slice(5);
  try {
    return readFileSync(path, 'utf8').split(/\r?\n/, 1)[0] ?? '';
  } catch (err) {
    throw new IbexError('config', `db ${name} takes its password from ${ref}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): create it, readable by ibex`);
  }
}

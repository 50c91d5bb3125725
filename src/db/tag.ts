/**
 * Which db a failed statement came from. Every session ibex opens on a replicated db is named
 * here by its opener, so an error (a stream error carries no trace of its connection) can say
 * "db B: …".
 */
import type pg from 'pg';

/** The db name of each session. */
export const sessionNames = new WeakMap<pg.Client, string>();

/** Mark an error with the db it came from (first one wins). */
export function tagDb(err: unknown, client: pg.Client): void {
  const name = sessionNames.get(client);
  if (name && err && typeof err === 'object' && !(err as { ibexDb?: string }).ibexDb) (err as { ibexDb?: string }).ibexDb = name;
}

/** The db an error was tagged with (on it or on its cause). */
export function taggedDb(err: unknown): string | undefined {
  return (err as { ibexDb?: string } | undefined)?.ibexDb ?? ((err as { cause?: { ibexDb?: string } } | undefined)?.cause)?.ibexDb;
}

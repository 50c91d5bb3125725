/**
 * How a target of another kind reports a failure: one line naming the kind, the db and what it
 * was doing, with the password cut out whatever produced the message (drivers echo connection
 * strings). Shared by every kind so they word and clean their errors alike.
 */
import { IbexError } from '../errors.js';
import type { TargetParams } from './target.js';

/** A message with the db's password (and any `user:password@` of a URL) cut out. */
export function withoutPassword(message: string, params: Pick<TargetParams, 'password'>): string {
  const out = message.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@');
  return params.password ? out.split(params.password).join('***') : out;
}

/** The first line of an error's message. */
export function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/** A failure of one operation on a target, as an internal error (the run fails and is retried). */
export function targetFailure(params: TargetParams, what: string, err: unknown, where = ''): IbexError {
  const at = where ? ` (${where})` : '';
  return new IbexError('internal', withoutPassword(`${params.kind} target "${params.name}"${at}: ${what}: ${firstLine(err)}`, params), { cause: err });
}

/** A session object that exists only after connect(). */
export function connected<T>(value: T | undefined, params: Pick<TargetParams, 'kind' | 'name'>): T {
  if (value === undefined) throw new IbexError('internal', `${params.kind} target "${params.name}": used before connect()`);
  return value;
}

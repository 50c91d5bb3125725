/**
 * Conflict strategies (pure: no I/O). A conflict is a key with pending changes
 * on two or more sources of one run. The winner is picked per row,
 * deterministically: every database computes the same winner from the same
 * pending set, so no coordinator is needed.
 */
import { IbexError } from '../errors.js';
import { literal } from '../db/ident.js';

/** A parsed strategy. */
export type Strategy =
  /** The latest change wins; ties: higher db priority, then db name. */
  | { kind: 'latest' }
  /** The first listed db that changed the row wins. */
  | { kind: 'list'; order: string[] }
  /** A pseudo-random winner, the same whichever daemon decides (hash of key and db). */
  | { kind: 'random' }
  /** Conflicting rows are left as they are on each db and logged. */
  | { kind: 'skip' }
  /** The run fails without applying anything; the sync pauses. */
  | { kind: 'abort' }
  /** Custom code decides (conflict hook). */
  | { kind: 'custom' }
  /**
   * Column by column: each column comes from the db that changed it; a column several dbs changed,
   * and a row inserted or deleted on one of them, follows `fallback` (see conflict/merge.ts).
   */
  | { kind: 'merge'; fallback: Fallback };

/** What a merge falls back to for a column (or a row) it cannot merge. */
export type Fallback = { kind: 'latest' } | { kind: 'random' } | { kind: 'list'; order: string[] };

type NamedKind = Exclude<Strategy['kind'], 'list' | 'merge'>;

const ALIASES: Record<string, NamedKind> = {
  latest: 'latest', bucardo_latest: 'latest', bucardo_latest_all_tables: 'latest', source: 'latest', bucardo_source: 'latest',
  target: 'latest', bucardo_target: 'latest',
  random: 'random', bucardo_random: 'random',
  skip: 'skip', bucardo_skip: 'skip',
  abort: 'abort', bucardo_abort: 'abort',
  custom: 'custom',
};

/** Parse a strategy name or an ordered db list (`B,A,C`), checking list members against the sync's dbs. */
export function parseStrategy(text: string, dbs: readonly string[]): Strategy {
  const t = text.trim();
  const m = /^merge(?::(.*))?$/i.exec(t);
  if (m) {
    const fb = m[1] === undefined ? { kind: 'latest' as const } : parseStrategy(m[1], dbs);
    if (fb.kind !== 'latest' && fb.kind !== 'random' && fb.kind !== 'list') {
      throw new IbexError('config', `conflict strategy "${text}": a merge falls back to latest, random or a list of the sync's dbs such as merge:${dbs.join(',')}`);
    }
    return { kind: 'merge', fallback: fb };
  }
  const kind = ALIASES[t.toLowerCase()];
  if (kind) return { kind };
  const order = t.split(/[\s,]+/).filter(Boolean);
  const unknown = order.filter((d) => !dbs.includes(d));
  if (order.length === 0 || unknown.length) {
    throw new IbexError('config', `unknown conflict strategy "${text}": use latest, skip, abort, random, custom, or a list of the sync's dbs such as ${dbs.join(',')}`);
  }
  return { kind: 'list', order };
}

/**
 * The ORDER BY that puts the winning version of a key first, over a relation
 * with columns `ibex_src` (db name), `ibex_ts` (change time) and the key columns given
 * as `keyExpr` (SQL text of the key as one value, e.g. `ROW(k1, k2)::text`).
 * `priority` maps db names to their dbgroup priority (higher wins ties).
 */
export function winnerOrder(s: Strategy, priority: ReadonlyMap<string, number>, keyExpr: string): string {
  if (s.kind === 'merge') return winnerOrder(s.fallback, priority, keyExpr);
  const prio = `CASE ibex_src ${[...priority].map(([db, p]) => `WHEN ${literal(db)} THEN ${Number(p)}`).join(' ')} ELSE 0 END DESC`;
  const tieBreak = `${prio}, ibex_src`;
  switch (s.kind) {
    case 'list':
      return `array_position(ARRAY[${s.order.map(literal).join(', ')}]::text[], ibex_src) NULLS LAST, ibex_ts DESC, ${tieBreak}`;
    case 'random':
      return `md5(${keyExpr} || '/' || ibex_src), ${tieBreak}`;
    default:
      return `ibex_ts DESC, ${tieBreak}`;
  }
}

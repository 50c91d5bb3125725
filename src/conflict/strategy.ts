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
  | { kind: 'custom' };

type NamedKind = Exclude<Strategy['kind'], 'list'>;

/** The strategy names a sync or a table may store (besides an ordered list of its dbs). */
export const STRATEGIES = ['latest', 'source', 'target', 'skip', 'random', 'abort', 'custom'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

/** Bucardo's names for ours (accepted everywhere a strategy is). */
const BUCARDO_NAMES: Readonly<Record<string, StrategyName>> = {
  bucardo_latest: 'latest',
  // Bucardo's per-table "latest" is a known wart (DESIGN invariant 5); ours is per row for every table.
  bucardo_latest_all_tables: 'latest',
  bucardo_source: 'source',
  bucardo_target: 'target',
  bucardo_skip: 'skip',
  bucardo_random: 'random',
  bucardo_abort: 'abort',
};

/** How a run resolves each stored name (`source` and `target` are accepted, resolved like `latest`). */
const KIND_OF: Readonly<Record<StrategyName, NamedKind>> = {
  latest: 'latest', source: 'latest', target: 'latest', skip: 'skip', random: 'random', abort: 'abort', custom: 'custom',
};

/** A conflict strategy as read: the text to store and its db list, if it is one; or why it is not one. */
export type StrategyReading = { strategy: string; dbs?: string[] } | { error: string };

/**
 * Read a conflict strategy: one of ours, a Bucardo alias, or an ordered list of db names
 * (`B,A,C`; whether they are the sync's dbs is the caller's to check). A value that is none of
 * these is a reading with the error to show, not a throw: callers word it for their own option.
 */
export function readStrategy(value: string): StrategyReading {
  const v = value.trim();
  const lower = v.toLowerCase();
  if ((STRATEGIES as readonly string[]).includes(lower)) return { strategy: lower };
  if (BUCARDO_NAMES[lower]) return { strategy: BUCARDO_NAMES[lower] };
  const dbs = v.split(/[\s,]+/).filter(Boolean);
  if (dbs.length === 0 || !dbs.every((d) => /^[A-Za-z][A-Za-z0-9_]*$/.test(d))) {
    return { error: `bad conflict_strategy "${value}": use one of ${STRATEGIES.join(', ')} (or bucardo_*), or a list of the sync's dbs such as A,B` };
  }
  if (new Set(dbs).size !== dbs.length) return { error: `conflict_strategy "${value}" names a db twice: name each db once` };
  return { strategy: dbs.join(','), dbs };
}

/** The db list of a stored strategy, when it is one. */
export function strategyDbs(strategy: string): string[] | undefined {
  return (STRATEGIES as readonly string[]).includes(strategy) ? undefined : strategy.split(',');
}

/** The strategy a run applies, from its stored text, checking list members against the sync's dbs. */
export function parseStrategy(text: string, dbs: readonly string[]): Strategy {
  const r = readStrategy(text);
  if (!('error' in r) && !r.dbs) return { kind: KIND_OF[r.strategy as StrategyName] };
  const order = 'error' in r ? [] : r.dbs!;
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

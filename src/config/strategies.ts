/**
 * The conflict strategies a sync or a table may name (pure: no I/O), as the configuration
 * stores them: one of ours, a Bucardo alias, or an ordered list of db names.
 */
import { usage } from '../errors.js';

/** Our conflict strategies. */
export const STRATEGIES = ['latest', 'source', 'target', 'skip', 'random', 'abort', 'custom'] as const;

const BUCARDO_STRATEGIES: Record<string, string> = {
  bucardo_latest: 'latest',
  // Bucardo's per-table "latest" is a known wart (DESIGN invariant 5); ours is per row for every table.
  bucardo_latest_all_tables: 'latest',
  bucardo_source: 'source',
  bucardo_target: 'target',
  bucardo_skip: 'skip',
  bucardo_random: 'random',
  bucardo_abort: 'abort',
};

/**
 * Normalize a conflict strategy: one of ours, a Bucardo alias, or an ordered
 * list of db names (`B,A,C`, checked against the sync's dbs by the caller).
 * Returns the stored text and the db list, if it is one.
 */
export function parseStrategy(value: string): { strategy: string; dbs?: string[] } {
  const v = value.trim();
  const lower = v.toLowerCase();
  if ((STRATEGIES as readonly string[]).includes(lower)) return { strategy: lower };
  if (BUCARDO_STRATEGIES[lower]) return { strategy: BUCARDO_STRATEGIES[lower] };
  const dbs = v.split(/[\s,]+/).filter(Boolean);
  if (dbs.length === 0 || !dbs.every((d) => /^[A-Za-z][A-Za-z0-9_]*$/.test(d))) {
    throw usage(`bad conflict_strategy "${value}": use one of ${STRATEGIES.join(', ')} (or bucardo_*), or a list of the sync's dbs such as A,B`);
  }
  if (new Set(dbs).size !== dbs.length) throw usage(`conflict_strategy "${value}" names a db twice: name each db once`);
  return { strategy: dbs.join(','), dbs };
}

/** The db list of a stored strategy, when it is one. */
export function strategyDbs(strategy: string): string[] | undefined {
  return (STRATEGIES as readonly string[]).includes(strategy) ? undefined : strategy.split(',');
}


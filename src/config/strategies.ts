/**
 * The conflict strategies a sync or a table may name (pure: no I/O), as the configuration
 * stores them: one of ours, a Bucardo alias, or an ordered list of db names.
 */
import { usage } from '../errors.js';

/** Our conflict strategies. */
export const STRATEGIES = ['latest', 'source', 'target', 'skip', 'random', 'abort', 'custom', 'merge'] as const;

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

/** A conflict strategy as read: the text to store and its db list, if it is one; or why it is not one. */
export type StrategyReading = { strategy: string; dbs?: string[] } | { error: string };

/**
 * Read a conflict strategy: one of ours, a Bucardo alias, or an ordered list of db names
 * (`B,A,C`, checked against the sync's dbs by the caller). A value that is none of these is a
 * reading with the error to show, not a throw: callers word it for their own option.
 */
export function readStrategy(value: string): StrategyReading {
  const v = value.trim();
  const lower = v.toLowerCase();
  // merge, or merge:<fallback> where the fallback is latest, random or a db list.
  if (lower === 'merge') return { strategy: 'merge' };
  if (lower.startsWith('merge:')) {
    const fb = readStrategy(v.slice(6));
    if ('error' in fb) return fb;
    if (!fb.dbs && fb.strategy !== 'latest' && fb.strategy !== 'random') {
      return { error: `bad conflict_strategy "${value}": a merge falls back to latest, random or a list of the sync's dbs (merge:latest, merge:A,B)` };
    }
    return fb.dbs ? { strategy: `merge:${fb.strategy}`, dbs: fb.dbs } : { strategy: `merge:${fb.strategy}` };
  }
  if ((STRATEGIES as readonly string[]).includes(lower)) return { strategy: lower };
  if (BUCARDO_STRATEGIES[lower]) return { strategy: BUCARDO_STRATEGIES[lower] };
  const dbs = v.split(/[\s,]+/).filter(Boolean);
  if (dbs.length === 0 || !dbs.every((d) => /^[A-Za-z][A-Za-z0-9_]*$/.test(d))) {
    return { error: `bad conflict_strategy "${value}": use one of ${STRATEGIES.join(', ')} (or bucardo_*), or a list of the sync's dbs such as A,B` };
  }
  if (new Set(dbs).size !== dbs.length) return { error: `conflict_strategy "${value}" names a db twice: name each db once` };
  return { strategy: dbs.join(','), dbs };
}

/** `readStrategy`, with a usage error (exit 2) for a value that is not a strategy. */
export function parseStrategy(value: string): { strategy: string; dbs?: string[] } {
  const r = readStrategy(value);
  if ('error' in r) throw usage(r.error);
  return r;
}

/** The db list of a stored strategy, when it is one. */
export function strategyDbs(strategy: string): string[] | undefined {
  if (strategy.startsWith('merge')) return strategy.startsWith('merge:') ? strategyDbs(strategy.slice(6)) : undefined;
  return (STRATEGIES as readonly string[]).includes(strategy) ? undefined : strategy.split(',');
}


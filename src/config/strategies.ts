/**
 * Conflict strategies as the configuration takes them: the names and their reading live in
 * src/conflict/strategy.ts (one place); here, a value that is not one is a usage error (exit 2).
 */
import { usage } from '../errors.js';
import { readStrategy } from '../conflict/strategy.js';

export { STRATEGIES, readStrategy, strategyDbs, type StrategyReading } from '../conflict/strategy.js';

/** A `conflict_strategy=` option's value as stored, with its db list if it is one; exit 2 when it is not a strategy. */
export function strategyOption(value: string): { strategy: string; dbs?: string[] } {
  const r = readStrategy(value);
  if ('error' in r) throw usage(r.error);
  return r;
}

/**
 * Merging the conflicts of a table column by column (conflict_strategy=merge, counter columns):
 * the rules are conflict/merge.ts's; this stages what they decide.
 */
import type pg from 'pg';
import { mergeKey } from '../../conflict/merge.js';
import type { Row } from '../../customcode/api.js';
import type { TablePlan } from '../plan.js';
import { customWinsSql, mergedStageSql } from '../sql/resolve.js';
import { together } from '../together.js';
import { setConflictKind, type CollectedConflict } from './conflicts.js';

/** Where resolveMerge writes: a session per db of the run. */
export interface MergeIo {
  columns: { name: string; type: string }[];
  session: (db: string) => { query(text: string, params?: unknown[]): Promise<pg.QueryResult> };
  sessions: readonly { query(text: string, params?: unknown[]): Promise<pg.QueryResult> }[];
}

/**
 * Decide every held key: a whole-row winner gets the key into its ibex_mine (copied from there
 * like any won row); a merged row is staged on every db with origin "merge" and returned (for
 * targets of other kinds). Records are rewritten to say what was done; a key whose versions agree
 * once merged is marked `settled` (it goes to its winner, and is no conflict).
 */
export async function resolveMerge(p: TablePlan, found: CollectedConflict[], merge: boolean, io: MergeIo): Promise<Record<string, string | null>[]> {
  const wins = new Map<string, Row[]>();
  const merged: Record<string, string | null>[] = [];
  const counters = p.rel.deltaColumns ?? [];
  for (const rec of found) {
    const out = mergeKey(rec.merge!, counters, merge);
    const versions = [...rec.losers, ...(rec.winner ? [{ db: rec.winner, row: rec.winnerRow, changed_at: rec.winnerTime }] : [])];
    rec.strategy = merge ? 'merge' : `${rec.strategy}+delta_columns`;
    if ('winner' in out) {
      const list = wins.get(out.winner) ?? [];
      list.push(rec.keyText);
      wins.set(out.winner, list);
      const w = versions.find((v) => v.db === out.winner)!;
      rec.settled = versions.every((v) => JSON.stringify(v.row) === JSON.stringify(w.row));
      rec.winner = out.winner;
      rec.winnerRow = w.row;
      rec.winnerTime = w.changed_at;
      rec.losers = versions.filter((v) => v.db !== out.winner);
    } else {
      merged.push(out.row);
      rec.winner = 'merge';
      rec.winnerRow = out.row;
      rec.winnerTime = null;
      rec.losers = versions;
      rec.columns = out.columns;
    }
    setConflictKind(rec, rec.kind === 'insert_insert');
  }
  for (const [db, keyRows] of wins) await io.session(db).query(customWinsSql(p), [db, JSON.stringify(keyRows)]);
  if (merged.length) await together(io.sessions, (c) => c.query(mergedStageSql(p, io.columns), [JSON.stringify(merged)]));
  return merged;
}

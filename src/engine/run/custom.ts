/**
 * Conflict code deciding the conflicts of a table (the codes themselves: hooks.ts).
 */
import type pg from 'pg';
import { checkDecisions, type Decision } from '../../conflict/custom.js';
import { callCode } from '../../customcode/loader.js';
import type { Row } from '../../customcode/api.js';
import type { TablePlan } from '../plan.js';
import { customWinsSql, mergedStageSql } from '../sql/resolve.js';
import { together } from '../together.js';
import type { CollectedConflict } from './conflicts.js';
import type { Hooks } from './hooks.js';

/** Conflicts per call of a conflict code. */
const BATCH = 500;
import { setConflictKind } from './conflicts.js';

/** Where resolveCustom writes: a session per db of the run. */
export interface CustomIo {
  hooks: Hooks;
  runId: number;
  columns: { name: string; type: string }[];
  session: (db: string) => { query(text: string, params?: unknown[]): Promise<pg.QueryResult> };
  sessions: readonly { query(text: string, params?: unknown[]): Promise<pg.QueryResult> }[];
}

/** Ask every conflict code of a table, in batches; the first code that decides a key wins it. */
async function decide(p: TablePlan, found: CollectedConflict[], io: CustomIo): Promise<({ code: string; d: Decision } | undefined)[]> {
  const decided: ({ code: string; d: Decision } | undefined)[] = found.map(() => undefined);
  for (const code of io.hooks.conflictCodes(p.label)) {
    for (let at = 0; at < found.length; at += BATCH) {
      const idx = [...found.keys()].slice(at, at + BATCH).filter((i) => decided[i] === undefined);
      if (idx.length === 0) continue;
      const batch = idx.map((i) => found[i]!.text!);
      const out = await callCode<unknown>(code, {
        ...io.hooks.context(code, io.runId), table: { schema: p.rel.schema, name: p.rel.name }, keyColumns: [...p.keys], columns: io.columns, conflicts: batch,
      });
      const checked = checkDecisions(code.name, batch, out, p.cols, p.keys);
      checked.forEach((d, j) => {
        if (d) decided[idx[j]!] = { code: code.name, d };
      });
    }
  }
  return decided;
}

/**
 * Let the conflict customcodes of a table decide its conflicts: undecided keys fall back to
 * "latest". A winning db gets the key into its ibex_mine (copied from there like any won row); a
 * merged row is staged on every db with origin "merge". Records are rewritten to say what was done.
 */
export async function resolveCustom(p: TablePlan, found: CollectedConflict[], io: CustomIo): Promise<void> {
  const decided = await decide(p, found, io);
  const wins = new Map<string, Row[]>();
  const merged: Row[] = [];
  found.forEach((rec, i) => {
    const t = rec.text!;
    const dec = decided[i];
    const winner = !dec ? t.latest : 'winner' in dec.d ? dec.d.winner : null;
    rec.strategy = dec ? `custom:${dec.code}` : 'latest';
    const versions = [...rec.losers, ...(rec.winner && rec.winner !== 'merge' ? [{ db: rec.winner, row: rec.winnerRow, changed_at: rec.winnerTime }] : [])];
    if (winner === null) {
      merged.push((dec!.d as { row: Row }).row);
      rec.winner = 'merge';
      rec.winnerRow = (dec!.d as { row: Row }).row;
      rec.winnerTime = null;
      rec.losers = versions;
    } else {
      const list = wins.get(winner) ?? [];
      list.push(t.key);
      wins.set(winner, list);
      const w = versions.find((v) => v.db === winner)!;
      rec.winner = winner;
      rec.winnerRow = w.row;
      rec.winnerTime = w.changed_at;
      rec.losers = versions.filter((v) => v.db !== winner);
    }
    setConflictKind(rec, rec.kind === 'insert_insert');
  });
  for (const [db, keyRows] of wins) await io.session(db).query(customWinsSql(p), [db, JSON.stringify(keyRows)]);
  if (merged.length) await together(io.sessions, (c) => c.query(mergedStageSql(p, io.columns), [JSON.stringify(merged)]));
}

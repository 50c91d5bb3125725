/**
 * Reading the conflicts of one table: every source's version of each key pending on several
 * sources, merged into one record per key whose versions differ.
 */
import type pg from 'pg';
import type { ConflictRecord } from '../../control/run-store.js';
import type { SyncDb } from '../../control/sync-config.js';
import type { Strategy } from '../../conflict/strategy.js';
import type { Conflict, Row } from '../../customcode/api.js';
import type { TablePlan } from '../plan.js';
import type { MergeVersion } from '../../conflict/merge.js';
import { conflictsSql } from '../sql/resolve.js';
import { together } from '../together.js';
import type { RunContext } from './context.js';
import { parseExactJson, stringifyExactJson } from '../../db/json.js';

/** A conflict record while a run resolves it; `text` carries the versions custom code sees, `merge` what a merge reads. */
export type CollectedConflict = ConflictRecord & { keyText: Row; text?: Conflict; merge?: MergeVersion[]; settled?: boolean };

/** Statements sent with each source's conflict query: `before` ahead, `after` behind (its result to `onAfter`). */
export interface Around {
  before?: Map<SyncDb, string[]> | undefined;
  after?: Map<SyncDb, string> | undefined;
  onAfter?: (src: SyncDb, r: pg.QueryResult) => void;
  /** Also read what each source changed of each key (a merge, counter columns): its window. */
  mergeWindow?: ((src: SyncDb) => string) | undefined;
}

interface Version { db: string; row: unknown; changed_at: string | null; inserted: boolean; text: Row | null; merge?: MergeVersion }
interface KeyVersions { key: Record<string, unknown>; winner: string; keyText: Row; versions: Version[] }

/**
 * The keys of a table changed on several sources whose versions differ, read inside each source's
 * apply snapshot. With `asText`, each record also carries every version as text (for custom code).
 */
export async function collectConflicts(ctx: RunContext, p: TablePlan, order: string, asText: boolean, around: Around = {}): Promise<CollectedConflict[]> {
  // Read on every source at once, then merged in source order (the order of the versions).
  const perSource = await together(ctx.sources, async (src) => {
    const extra = around.after?.get(src);
    const ahead = around.before?.get(src) ?? [];
    const merge = around.mergeWindow ? { window: around.mergeWindow(src), counters: p.rel.deltaColumns ?? [] } : undefined;
    const results = await ctx.pg(src).queryAll(`${ahead.map((x) => `${x};\n`).join('')}${conflictsSql(p, src.name, order, asText, merge)}${extra ? `;\n${extra}` : ''}`);
    const at = ahead.length;
    if (extra) around.onAfter?.(src, results[at + 1]!);
    return results[at]!;
  });
  const byKey = new Map<string, KeyVersions>();
  for (const [i, src] of ctx.sources.entries()) {
    for (const row of perSource[i]!.rows) {
      const k = String(row.key);
      let entry = byKey.get(k);
      if (!entry) byKey.set(k, (entry = { key: parseExactJson(k), winner: String(row.winner), keyText: JSON.parse(String(row.key_text)), versions: [] }));
      entry.versions.push({
        db: src.name, row: row.row === null ? null : parseExactJson(String(row.row)), changed_at: row.my_ts === null ? null : String(row.my_ts),
        inserted: row.inserted === 't', text: asText && row.row_text !== null ? JSON.parse(String(row.row_text)) : null,
        ...(around.mergeWindow ? { merge: mergeVersion(src.name, row) } : {}),
      });
    }
  }
  return [...byKey.values()].map((e) => toRecord(p, ctx.strategy(p), e, asText)).filter((r): r is CollectedConflict => r !== undefined);
}

/** One key's versions as a conflict record; none when they agree. */
function toRecord(p: TablePlan, strategy: Strategy, e: KeyVersions, asText: boolean): CollectedConflict | undefined {
  // Versions that agree (the same row everywhere, or deleted everywhere) overwrite nothing:
  // not a conflict. This is also how an operator settles an aborted conflict: make the rows equal.
  // Counter columns are the exception: equal rows may still hide differences that must add up.
  const first = stringifyExactJson(e.versions[0]!.row);
  const counters = e.versions[0]!.merge !== undefined && (p.rel.deltaColumns ?? []).length > 0;
  if (!counters && e.versions.every((v) => stringifyExactJson(v.row) === first)) return undefined;
  // skip and abort write nothing: every version is kept in losers, no winner is named.
  const decides = strategy.kind !== 'skip' && strategy.kind !== 'abort';
  const w = decides ? e.versions.find((v) => v.db === e.winner)! : undefined;
  const rec: CollectedConflict = {
    schema: p.rel.schema, table: p.rel.name, key: e.key, kind: 'update_update', strategy: strategy.kind,
    keyText: e.keyText, winner: w ? w.db : null, winnerRow: w ? w.row : null, winnerTime: w ? w.changed_at : null,
    losers: e.versions.filter((v) => v !== w).map((v) => ({ db: v.db, row: v.row, changed_at: v.changed_at })),
  };
  if (asText) {
    rec.text = { key: e.keyText, latest: e.winner, versions: e.versions.map((v) => ({ db: v.db, row: v.text, changedAt: v.changed_at })) };
  }
  if (e.versions[0]!.merge) rec.merge = e.versions.map((v) => v.merge!);
  setConflictKind(rec, e.versions.every((v) => v.inserted && v.row !== null));
  return rec;
}

/**
 * The kind of a conflict from what the winner wrote and what the losers had: insert_insert when
 * every db only inserted the key; delete_delete when nothing of the row survives anywhere;
 * delete_update when the winner deleted a row another db kept; update_delete when a db deleted a
 * row that survives. Without a winner (skip, abort), from the versions alone.
 */
export function setConflictKind(rec: ConflictRecord, allInserted = false): void {
  const versions = [...(rec.winner === null ? [] : [{ row: rec.winnerRow }]), ...rec.losers];
  const deleted = versions.filter((v) => v.row === null).length;
  if (allInserted) rec.kind = 'insert_insert';
  else if (deleted === versions.length) rec.kind = 'delete_delete';
  else if (rec.winner !== null && rec.winner !== 'merge' && rec.winnerRow === null) rec.kind = 'delete_update';
  else rec.kind = deleted > 0 ? 'update_delete' : 'update_update';
}

/** A source's version of a key as a merge reads it (row as text, rank, changed columns, counter sums). */
function mergeVersion(db: string, row: Record<string, unknown>): MergeVersion {
  const text = row.row_text === null ? null : JSON.parse(String(row.row_text)) as Record<string, string | null>;
  const mask = row.ibex_mask === null ? null : String(row.ibex_mask);
  const cols = row.capcols === null ? null : JSON.parse(String(row.capcols)) as string[] | null;
  let changed: string[] | null = null;
  if (mask !== null && cols) {
    changed = cols.filter((_c, i) => mask[i] === '1');
    // A column added after the capture was installed has no bit: count it as changed.
    if (text) changed.push(...Object.keys(text).filter((c) => !cols.includes(c)));
  }
  return { db, row: text, rank: Number(row.rnk), changed, sums: row.ibex_sums === null || row.ibex_sums === undefined ? {} : JSON.parse(String(row.ibex_sums)) };
}

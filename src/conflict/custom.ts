/**
 * Checking what a conflict customcode returned (pure: no I/O). Anything that
 * is not a clear decision fails the run, naming the code and the key: a
 * handler that returns nonsense must never write half-guessed data.
 */
import type { Conflict, Row } from '../customcode/api.js';
import { CustomCodeError } from '../customcode/loader.js';

/** A checked decision: a winning db, or the complete row to write everywhere. */
export type Decision = { winner: string } | { row: Row };

function cell(codeName: string, key: string, col: string, v: unknown): string | null {
  if (v === null) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date && !Number.isNaN(v.getTime())) return v.toISOString();
  throw new CustomCodeError(codeName, 'conflict', `returned a ${typeof v} for column "${col}" of key ${key}: give a string (the value as PostgreSQL reads it) or null`);
}

/**
 * Check the decisions of one handler for a batch. Returns one entry per conflict: a decision,
 * or undefined where the handler left the key to the next code.
 */
export function checkDecisions(codeName: string, conflicts: readonly Conflict[], out: unknown, columns: readonly string[], keyColumns: readonly string[]): (Decision | undefined)[] {
  if (!Array.isArray(out) || out.length !== conflicts.length) {
    throw new CustomCodeError(codeName, 'conflict', `must return an array with one decision per conflict (${conflicts.length}), got ${Array.isArray(out) ? `${out.length} entries` : typeof out}`);
  }
  return conflicts.map((c, i) => {
    const d = out[i] as unknown;
    const key = JSON.stringify(c.key);
    if (d === undefined || d === null) return undefined;
    if (typeof d !== 'object') throw new CustomCodeError(codeName, 'conflict', `returned ${JSON.stringify(d)} for key ${key}: expected { winner: '<db>' }, { row: {…} } or null`);
    const o = d as Record<string, unknown>;
    if ('winner' in o && !('row' in o)) {
      if (typeof o.winner !== 'string' || !c.versions.some((v) => v.db === o.winner)) {
        throw new CustomCodeError(codeName, 'conflict', `chose winner ${JSON.stringify(o.winner)} for key ${key}: choose one of the dbs that changed it (${c.versions.map((v) => v.db).join(', ')})`);
      }
      return { winner: o.winner };
    }
    if ('row' in o && !('winner' in o) && o.row !== null && typeof o.row === 'object' && !Array.isArray(o.row)) {
      const given = o.row as Record<string, unknown>;
      const unknown = Object.keys(given).filter((k) => !columns.includes(k));
      if (unknown.length) throw new CustomCodeError(codeName, 'conflict', `returned a row for key ${key} with unknown column(s) ${unknown.join(', ')}: the columns are ${columns.join(', ')}`);
      const base = c.versions.find((v) => v.db === c.latest)?.row ?? {};
      const row: Row = {};
      for (const col of columns) {
        const v = col in given ? cell(codeName, key, col, given[col]) : base[col];
        if (v === undefined) throw new CustomCodeError(codeName, 'conflict', `returned a row for key ${key} without column "${col}", and the latest version is a delete: give every column`);
        row[col] = v;
      }
      for (const k of keyColumns) {
        if (row[k] !== c.key[k]) throw new CustomCodeError(codeName, 'conflict', `changed key column "${k}" of key ${key}: a merged row keeps its key`);
      }
      return { row };
    }
    throw new CustomCodeError(codeName, 'conflict', `returned ${JSON.stringify(d).slice(0, 200)} for key ${key}: expected { winner: '<db>' }, { row: {…} } or null`);
  });
}

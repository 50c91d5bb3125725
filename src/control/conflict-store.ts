/**
 * Reads of the conflict log (ibex.conflict) for `ibex conflicts` and the quickstart. The engine
 * writes the log (run-store.ts); retention.ts purges it.
 */
import type pg from 'pg';
import { parseExactJson } from '../db/json.js';

/** What `ibex conflicts` filters on; null = any. */
export interface ConflictFilter {
  sync: string | null;
  /** LIKE patterns of the schema and the table name (both or neither). */
  schemaLike: string | null;
  relLike: string | null;
  /** Only entries newer than now minus this interval. */
  sinceInterval: string | null;
  /** Only entries at or after this time (ISO 8601). */
  sinceTime: string | null;
  status: string | null;
  limit: number;
}

/** One conflict log entry. */
export interface ConflictRow {
  id: number;
  sync: string;
  run: number | null;
  schemaname: string;
  relname: string;
  key: unknown;
  kind: string;
  strategy: string;
  winner: string | null;
  winner_row: unknown;
  winner_time: unknown;
  losers: { db: string; row: unknown; constraint?: string }[];
  status: string;
  created: Date | string;
}

/** Is this sync configured, or has it logged conflicts (a removed sync keeps its log)? */
export async function syncHasConflictLog(c: pg.Client, sync: string): Promise<boolean> {
  const r = await c.query(
    `SELECT EXISTS (SELECT 1 FROM ibex.sync WHERE name = $1) OR EXISTS (SELECT 1 FROM ibex.conflict WHERE sync = $1) AS known`, [sync]);
  return r.rows[0].known === true;
}

/** The newest entries matching the filter, newest first. */
export async function listConflicts(c: pg.Client, f: ConflictFilter): Promise<ConflictRow[]> {
  const r = await c.query(
    `SELECT id, sync, run, schemaname, relname, key::text AS key, kind, strategy, winner, winner_row::text AS winner_row, winner_time, losers::text AS losers, status, created
       FROM ibex.conflict
      WHERE ($1::text IS NULL OR sync = $1) AND ($2::text IS NULL OR (schemaname LIKE $2 AND relname LIKE $3))
        AND ($4::interval IS NULL OR created > now() - $4::interval) AND ($5::timestamptz IS NULL OR created >= $5::timestamptz)
        AND ($6::text IS NULL OR status = $6)
      ORDER BY id DESC LIMIT $7`,
    [f.sync, f.schemaLike, f.relLike, f.sinceInterval, f.sinceTime, f.status, f.limit]);
  // Keys and rows as their text, read exactly (a bigint past 2^53 stays itself; see db/json.ts).
  const exact = (t: unknown): unknown => (t === null ? null : parseExactJson(String(t)));
  return r.rows.map((x) => ({ ...x, id: Number(x.id), run: x.run === null ? null : Number(x.run), key: exact(x.key), winner_row: exact(x.winner_row), losers: exact(x.losers) ?? [] }) as ConflictRow);
}

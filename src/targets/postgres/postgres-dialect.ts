/**
 * SQL text a PostgreSQL target runs (pure: no I/O). Identifiers come quoted from the caller's
 * table description; values that cannot be bound (statements sent several to a text, COPY) go
 * through `literal()`.
 */
import { ident, literal } from '../../db/ident.js';
import { epochOf, FENCE_SOURCE, FENCED_MARK } from '../target.js';

export { FENCED_MARK } from '../target.js';

/** The quoted names of one table, as the engine's plans carry them. */
export interface PgTableNames {
  /** `"schema"."table"`. */
  q: string;
  keys: readonly string[];
  /** Quoted, comma-separated key columns. */
  keyList: string;
  /** Quoted, comma-separated writable columns. */
  colList: string;
  nonKeyCols: readonly string[];
}

/**
 * How ibex marks what it writes on a session (DESIGN, "Loop prevention"): the origin the rows
 * came from, the sync that wrote them (which never reads them back), and whether capture records
 * them at all (it must wherever another sync reads the table on that db, so changes cascade).
 */
export interface Stamp {
  origin: string | null;
  sync: string;
  /** Capture records the written rows (another sync reads this table there). */
  capture: boolean;
}

/** The transaction-local settings of a stamp, as one statement. */
export function stampSql(s: Stamp): string {
  return `SELECT set_config('ibex.origin', ${literal(s.origin ?? '')}, true), set_config('ibex.by', ${literal(s.sync)}, true), set_config('ibex.nocapture', ${s.capture ? `'off'` : `'on'`}, true)`;
}

/** `ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, …` (DO NOTHING for a table of key columns only). */
export function onConflictSql(t: PgTableNames): string {
  const update = t.nonKeyCols.length
    ? `DO UPDATE SET ${t.nonKeyCols.map((col) => `${ident(col).text} = EXCLUDED.${ident(col).text}`).join(', ')}`
    : 'DO NOTHING';
  return `ON CONFLICT (${t.keyList}) ${update}`;
}

/** Insert the rows of `select` (the table's writable columns, in order) or replace them by key. */
export function upsertSql(t: PgTableNames, select: string): string {
  // OVERRIDING SYSTEM VALUE: a GENERATED ALWAYS identity column takes the replicated value (no-op elsewhere).
  return `INSERT INTO ${t.q} (${t.colList}) OVERRIDING SYSTEM VALUE ${select}
          ${onConflictSql(t)}`;
}

/** `TRUNCATE` of one table, with its fallback (see truncateWithFallback in postgres-target.ts). */
export function truncateSql(t: PgTableNames, cascade = false): { savepoint: string; truncate: string; release: string; rollback: string; fallback: string } {
  return {
    savepoint: 'SAVEPOINT ibex_trunc',
    truncate: `TRUNCATE ${t.q}${cascade ? ' CASCADE' : ''}`,
    release: 'RELEASE SAVEPOINT ibex_trunc',
    rollback: 'ROLLBACK TO SAVEPOINT ibex_trunc',
    fallback: `DELETE FROM ${t.q}`,
  };
}

/** Rows of a sync's progress table on this db (its fence record left out). */
export function readProgressSql(sync: string): string {
  return `SELECT source, snapshot, run FROM ibex.progress WHERE sync = ${literal(sync)} AND source <> ${literal(FENCE_SOURCE)}`;
}

/** Adds the epoch column to the progress table of a db installed before it existed (cheap when present). */
export const PROGRESS_EPOCH_SQL = `DO $ibex$BEGIN
  IF to_regclass('ibex.progress') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'ibex.progress'::regclass AND attname = 'epoch') THEN
    ALTER TABLE ibex.progress ADD COLUMN epoch bigint;
  END IF;
END$ibex$`;

/**
 * Record how far this db has applied some sources (inside the apply transaction; empty text for
 * none). With an epoch (the lease of the daemon that ran it) the transaction first checks that no
 * progress row of the sync carries a newer one — the fencing token: a daemon that lost the lease
 * cannot commit here once the new owner has. The rows are then written only over rows of an
 * epoch no newer than this one: in READ COMMITTED (copies) a new owner's row committed meanwhile
 * is seen by the upsert after its row lock and refuses the write; in REPEATABLE READ (delta runs)
 * such a write fails with a serialization error instead. Either way nothing commits.
 */
export function writeProgressSql(sync: string, entries: readonly { source: string; snapshot: string; run: number; epoch?: number }[]): string {
  const epoch = epochOf(entries);
  const refuse = `RAISE EXCEPTION '${FENCED_MARK} a daemon with a newer lease of sync % committed here', ${literal(sync)} USING ERRCODE = 'P0001'`;
  const check = `IF EXISTS (SELECT 1 FROM ibex.progress WHERE sync = ${literal(sync)} AND epoch > ${Number(epoch)}) THEN
    ${refuse};
  END IF;`;
  if (epoch !== undefined && entries.length === 0) return `DO $ibex$BEGIN
  ${check}
END$ibex$;\n`;
  if (entries.length === 0) return '';
  if (epoch === undefined) {
    // Without a lease (a run outside any daemon), on a db that may predate the epoch column.
    return `INSERT INTO ibex.progress (sync, source, snapshot, run)
                VALUES ${entries.map((e) => `(${literal(sync)}, ${literal(e.source)}, ${literal(e.snapshot)}, ${Number(e.run)})`).join(', ')}
              ON CONFLICT (sync, source) DO UPDATE SET snapshot = EXCLUDED.snapshot, run = EXCLUDED.run, applied = now();\n`;
  }
  return `DO $ibex$DECLARE n bigint; BEGIN
  ${check}
  INSERT INTO ibex.progress (sync, source, snapshot, run, epoch)
    VALUES ${entries.map((e) => `(${literal(sync)}, ${literal(e.source)}, ${literal(e.snapshot)}, ${Number(e.run)}, ${Number(epoch)})`).join(', ')}
    ON CONFLICT (sync, source) DO UPDATE SET snapshot = EXCLUDED.snapshot, run = EXCLUDED.run, epoch = EXCLUDED.epoch, applied = now()
    WHERE ibex.progress.epoch IS NULL OR ibex.progress.epoch <= EXCLUDED.epoch;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n < ${entries.length} THEN
    ${refuse};
  END IF;
END$ibex$;\n`;
}

/** `(r->>0)::type0, (r->>1)::type1, …`: a JSON array `r` of texts read back through column types. */
export function fromJsonText(types: readonly string[], offset = 0): string {
  return types.map((type, i) => `(r->>${i + offset})::${type}`).join(', ');
}

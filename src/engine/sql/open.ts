/** Opening a run on one db (pure SQL text). */
import { literal } from '../../db/ident.js';
import { readProgressSql } from '../../targets/postgres/postgres-dialect.js';
import { fingerprintParams, fingerprintQuery } from '../plan.js';
import type { SyncRelation } from '../../control/sync-config.js';

/** A text array value as SQL, through the one literal helper. */
export function textArraySql(values: readonly string[]): string {
  return `ARRAY[${values.map(literal).join(', ')}]::text[]`;
}

/** The schema check of some relations with its values inlined (a multi-statement text takes no parameters). */
export function fingerprintSql(rels: { schema: string; name: string; keyColumns: string[] }[]): string {
  const [a, b, c] = fingerprintParams(rels).map(textArraySql) as [string, string, string];
  return fingerprintQuery([a, b, c]);
}

/** Options of openSql. */
export interface OpenOptions {
  serializable: boolean;
  replica: boolean;
  sync: string;
  rels: SyncRelation[];
}

/**
 * One round trip that opens a run on a db: BEGIN; the snapshot and the db's clock; the schema
 * check (fingerprintQuery); this sync's progress rows there.
 */
export function openSql(o: OpenOptions): string {
  return `BEGIN ISOLATION LEVEL ${o.serializable ? 'SERIALIZABLE' : 'REPEATABLE READ'};
         SELECT set_config('work_mem', '64MB', true), ${o.replica ? `set_config('session_replication_role', 'replica', true), ` : ''}pg_current_snapshot()::text AS snap,
                extract(epoch FROM clock_timestamp()) * 1000 AS now_ms;
         ${fingerprintSql(o.rels)};
         ${readProgressSql(o.sync)}`;
}

/** Is snapshot $1 newer than $2 (a later xmax)? */
export const NEWER_SNAPSHOT_SQL = `SELECT pg_snapshot_xmax($1::pg_snapshot) > pg_snapshot_xmax($2::pg_snapshot) AS n`;

/** The writable columns of a table ($1: its oid) and their types, in table order. */
export const COLUMN_TYPES_SQL = `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`;

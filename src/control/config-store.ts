/**
 * The configuration tables of the control database: db, relation, relgroup(_member),
 * dbgroup(_member), sync, customcode(_map), customname. This module is the only code that reads or
 * writes them; it knows nothing of the command line. Values are always parameters,
 * column names come from fixed lists and go through `ident()`.
 */
import type pg from 'pg';
import { ident, raw } from '../db/ident.js';
import { sql, joinSql, type Query } from '../db/sql.js';
import type { PgParams } from '../db/connect.js';
import { sqlstate } from '../db/sqlstate.js';
import { IbexError } from '../errors.js';
import { resolvePassword } from './password.js';

/** The kinds of database ibex knows. Only postgres may be a source. */
export const DB_TYPES = ['postgres', 'mysql', 'mariadb', 'sqlite', 'redis', 'mongo', 'oracle'] as const;
/** One of {@link DB_TYPES}. */
export type DbType = (typeof DB_TYPES)[number];

/** The role of a db in a dbgroup. */
export type DbRoleName = 'source' | 'target' | 'fullcopy';

/** A row of ibex.db. `dbpass` never leaves this process in any output. */
export interface DbRecord {
  name: string;
  dbtype: DbType;
  host: string | null;
  port: number | null;
  dbname: string | null;
  dbuser: string | null;
  dbpass: string | null;
  /** Where the password is instead (env:NAME, file:/path, pgpass); see password.ts. */
  dbpass_ref: string | null;
  conn: string | null;
  service: string | null;
  status: 'active' | 'inactive';
  server_version: string | null;
  encoding: string | null;
  is_superuser: boolean | null;
  can_replica: boolean | null;
  about: string | null;
}

/** Columns of ibex.db a command may set. */
export const DB_COLUMNS = [
  'dbtype', 'host', 'port', 'dbname', 'dbuser', 'dbpass', 'dbpass_ref', 'conn', 'service', 'status',
  'server_version', 'encoding', 'is_superuser', 'can_replica', 'about',
] as const;

/** A row of ibex.relation (a registered table or sequence). */
export interface RelationRecord {
  id: number;
  db: string;
  schemaname: string;
  relname: string;
  reltype: 'table' | 'sequence';
  key_columns: string[] | null;
  key_types: string[] | null;
  key_kind: 'primary' | 'unique' | null;
  key_index: string | null;
  conflict_strategy: string | null;
  /** Counter columns (`delta_columns=`); null: none. */
  delta_columns?: string[] | null;
}

/** A relation before it has an id. */
export type NewRelation = Omit<RelationRecord, 'id'>;

/** A relgroup and its members (relation ids, highest priority first). */
export interface RelgroupRecord {
  name: string;
  about: string | null;
  members: { relation: number; priority: number }[];
}

/** A member of a dbgroup. */
export interface DbgroupMember {
  db: string;
  role: DbRoleName;
  priority: number;
}

/** A dbgroup and its members (by name). */
export interface DbgroupRecord {
  name: string;
  about: string | null;
  members: DbgroupMember[];
}

/** The options of a sync, as stored (intervals as PostgreSQL interval text, or null). */
export interface SyncOptions {
  conflict_strategy: string;
  clock: 'change' | 'commit';
  onetimecopy: number;
  onetimecopy_from: string | null;
  autokick: boolean;
  checktime: string | null;
  fullcopy_interval: string | null;
  stayalive: boolean;
  kidsalive: boolean;
  deletemethod: 'delete' | 'truncate' | 'truncate_cascade';
  isolation_level: 'repeatable read' | 'serializable';
  apply_mode: 'upsert' | 'replica';
  rebuild_index: number;
  analyze_after_copy: boolean;
  vacuum_after_copy: boolean;
  strict_checking: boolean;
  lifetime: string | null;
  maxkicks: number | null;
  about: string | null;
  on_row_error: 'stall' | 'quarantine';
}

/** Every option column of ibex.sync, in display order. */
export const SYNC_OPTION_COLUMNS: readonly (keyof SyncOptions)[] = [
  'conflict_strategy', 'clock', 'onetimecopy', 'onetimecopy_from', 'autokick', 'checktime', 'fullcopy_interval',
  'stayalive', 'kidsalive', 'deletemethod', 'isolation_level', 'apply_mode', 'rebuild_index', 'analyze_after_copy',
  'vacuum_after_copy', 'strict_checking', 'lifetime', 'maxkicks', 'about', 'on_row_error',
];

/** The state of a sync row. */
export type SyncStatus = 'installing' | 'active' | 'paused' | 'inactive';

/** A row of ibex.sync. */
export interface SyncRecord extends SyncOptions {
  name: string;
  relgroup: string;
  dbgroup: string;
  status: SyncStatus;
  status_reason: string | null;
}

/** The hooks custom code can run at. */
export const WHENRUN = [
  'before_sync', 'before_txn', 'before_check_rows', 'conflict', 'exception', 'before_commit', 'after_txn', 'after_sync',
] as const;

/** A row of ibex.customcode with its mappings. */
export interface CustomcodeRecord {
  id: number;
  name: string;
  whenrun: (typeof WHENRUN)[number];
  src_code: string;
  src_path: string | null;
  language: 'typescript' | 'javascript';
  status: 'active' | 'inactive';
  priority: number;
  about: string | null;
  maps: { sync: string | null; relation: number | null; active: boolean; priority: number }[];
}

/** Columns of ibex.customcode a command may set. */
export const CUSTOMCODE_COLUMNS = ['whenrun', 'src_code', 'src_path', 'language', 'status', 'priority', 'about'] as const;

async function q<T>(c: pg.Client, query: Query): Promise<T[]> {
  const r = await c.query(query.text, query.values);
  return r.rows as T[];
}

// --- transactions ------------------------------------------------------------------------------

/**
 * Run `fn` in one control transaction. With `rollback` (a dry run) everything is
 * undone at the end even when `fn` succeeds. Errors of the control schema's
 * constraints are turned into clear one-line IbexErrors.
 */
export async function inTransaction<T>(c: pg.Client, fn: () => Promise<T>, opts: { rollback?: boolean } = {}): Promise<T> {
  await c.query('BEGIN');
  try {
    const out = await fn();
    await c.query(opts.rollback ? 'ROLLBACK' : 'COMMIT');
    return out;
  } catch (err) {
    // Best effort: the error being thrown is the one that matters; a failed ROLLBACK means the session is gone, and its transaction with it.
    await c.query('ROLLBACK').catch(() => {});
    throw controlError(err);
  }
}

const NOUN_OF_TABLE: Record<string, { noun: string; verb: string }> = {
  db: { noun: 'db', verb: 'db' },
  relation: { noun: 'table or sequence', verb: 'table' },
  relgroup: { noun: 'relgroup', verb: 'relgroup' },
  relgroup_member: { noun: 'relgroup member', verb: 'relgroup' },
  dbgroup: { noun: 'dbgroup', verb: 'dbgroup' },
  dbgroup_member: { noun: 'dbgroup member', verb: 'dbgroup' },
  sync: { noun: 'sync', verb: 'sync' },
  customcode: { noun: 'customcode', verb: 'customcode' },
  customcode_map: { noun: 'customcode mapping', verb: 'customcode' },
  customname: { noun: 'customname', verb: 'customname' },
};

/**
 * Map a constraint violation of the control schema to an IbexError (exit 2):
 * 23505 duplicate, 23503 still referenced / missing reference, 23514 check,
 * 23502 missing value. Anything else passes through unchanged.
 */
export function controlError(err: unknown): unknown {
  if (err instanceof IbexError) return err;
  const state = sqlstate(err);
  if (!state?.startsWith('23')) return err;
  const e = err as { table?: string; constraint?: string; detail?: string; message?: string; column?: string };
  const what = NOUN_OF_TABLE[e.table ?? ''] ?? { noun: e.table ?? 'row', verb: e.table ?? 'it' };
  const key = /^Key \((.+)\)=\((.*)\)/.exec(e.detail ?? '');
  if (state === '23505') {
    const name = key?.[2] ?? '?';
    return new IbexError('config', `a ${what.noun} named ${name} already exists: choose another name or change it with "ibex update ${what.verb} ${name}"`, { cause: err });
  }
  if (state === '23503') {
    const m = /is still referenced from table "(\w+)"/.exec(e.detail ?? '');
    if (m) {
      const by = NOUN_OF_TABLE[m[1]!]?.noun ?? m[1];
      return new IbexError('config', `${what.noun} ${key?.[2] ?? ''} is still used by a ${by}: remove that first, or use --force`, { cause: err });
    }
    return new IbexError('not_found', `${key?.[1] ?? 'a reference'} ${key?.[2] ?? ''} does not exist: list what exists with "ibex list"`, { cause: err });
  }
  if (state === '23514') {
    if (e.constraint === undefined && /relgroup/.test(e.message ?? '')) {
      return new IbexError('config', `${e.message}: a relgroup holds the tables of one db`, { cause: err });
    }
    if (/object_name/.test(e.message ?? '') || /object_name/.test(e.constraint ?? '')) {
      return new IbexError('usage', 'bad name: a name starts with a letter and holds only letters, digits and _ (at most 63 bytes)', { cause: err });
    }
    return new IbexError('config', `a value is not allowed for ${what.noun} (${e.constraint ?? 'check'}): see "ibex help"`, { cause: err });
  }
  if (state === '23502') {
    return new IbexError('usage', `${what.noun} needs a value for ${e.column ?? 'a column'}`, { cause: err });
  }
  return new IbexError('config', `the control database refused the change (${state}): ${e.message ?? ''}`, { cause: err });
}

// --- global settings ---------------------------------------------------------------------------

/** The strategy of a sync that names none (ibex.config default_conflict_strategy). */
export async function defaultConflictStrategy(c: pg.Client): Promise<string> {
  const rows = await q<{ value: string }>(c, sql`SELECT value FROM ibex.config WHERE name = 'default_conflict_strategy'`);
  return rows[0]?.value || 'latest';
}

// --- db ----------------------------------------------------------------------------------------

const DB_SELECT = raw(`SELECT name, dbtype, host, port, dbname, dbuser, dbpass, dbpass_ref, conn, service, status, server_version, encoding,
  is_superuser, can_replica, about FROM ibex.db`);

/** One db by name. */
export async function getDb(c: pg.Client, name: string): Promise<DbRecord | undefined> {
  return (await q<DbRecord>(c, sql`${DB_SELECT} WHERE name = ${name}`))[0];
}

/** Every db, by name. */
export async function listDbs(c: pg.Client): Promise<DbRecord[]> {
  return q<DbRecord>(c, sql`${DB_SELECT} ORDER BY name`);
}

/** Insert a db. */
export async function insertDb(c: pg.Client, rec: Pick<DbRecord, 'name'> & Partial<DbRecord>): Promise<void> {
  const cols = DB_COLUMNS.filter((k) => rec[k] !== undefined);
  const names = joinSql([ident('name'), ...cols.map((k) => ident(k))]);
  const values = [rec.name, ...cols.map((k) => rec[k])];
  const params = raw(values.map((_, i) => `$${i + 1}`).join(', '));
  await c.query(sql`INSERT INTO ibex.db (${names}) VALUES (${params})`.text, values);
}

/** Change columns of a db. */
export async function updateDb(c: pg.Client, name: string, changes: Partial<Omit<DbRecord, 'name'>>): Promise<void> {
  await updateRow(c, 'db', 'name', name, DB_COLUMNS, changes);
}

/** Delete a db (its dependants must be gone). */
export async function deleteDb(c: pg.Client, name: string): Promise<void> {
  await c.query(`DELETE FROM ibex.db WHERE name = $1`, [name]);
}

/** libpq parameters of a db (the password stays in memory only). */
export function dbParams(rec: DbRecord): PgParams {
  return {
    host: rec.host ?? undefined, port: rec.port ?? undefined, dbname: rec.dbname ?? undefined, user: rec.dbuser ?? undefined,
    password: resolvePassword(rec), conn: rec.conn ?? undefined, service: rec.service ?? undefined,
  };
}

async function updateRow(
  c: pg.Client, table: string, keyCol: string, key: unknown, allowed: readonly string[], changes: Record<string, unknown>,
): Promise<void> {
  const cols = Object.keys(changes).filter((k) => changes[k] !== undefined);
  if (cols.length === 0) return;
  for (const col of cols) if (!allowed.includes(col)) throw new IbexError('internal', `column ${col} of ibex.${table} cannot be changed`);
  const set = raw(cols.map((col, i) => `${ident(col).text} = $${i + 2}`).join(', '));
  await c.query(`UPDATE ibex.${ident(table).text} SET ${set.text} WHERE ${ident(keyCol).text} = $1`, [key, ...cols.map((k) => changes[k])]);
}

// --- relation ----------------------------------------------------------------------------------

const REL_SELECT = raw(`SELECT id, db, schemaname, relname, reltype, key_columns, key_types, key_kind, key_index, conflict_strategy, delta_columns
  FROM ibex.relation`);

/** Every registered relation (of one kind, or of one db), ordered by schema, name, db. */
export async function listRelations(c: pg.Client, filter: { reltype?: 'table' | 'sequence'; db?: string } = {}): Promise<RelationRecord[]> {
  return q<RelationRecord>(c, sql`${REL_SELECT}
    WHERE (${filter.reltype ?? null}::text IS NULL OR reltype = ${filter.reltype ?? null})
      AND (${filter.db ?? null}::text IS NULL OR db = ${filter.db ?? null})
    ORDER BY schemaname, relname, db`);
}

/** The relations with this schema and name, on any db (or on `db`). */
export async function relationsNamed(c: pg.Client, schema: string, name: string, db?: string): Promise<RelationRecord[]> {
  return q<RelationRecord>(c, sql`${REL_SELECT} WHERE schemaname = ${schema} AND relname = ${name}
    AND (${db ?? null}::text IS NULL OR db = ${db ?? null}) ORDER BY db`);
}

/** Relations by id. */
export async function relationsById(c: pg.Client, ids: readonly number[]): Promise<RelationRecord[]> {
  return q<RelationRecord>(c, sql`${REL_SELECT} WHERE id = ANY(${ids}::int[]) ORDER BY schemaname, relname, db`);
}

/** Register a relation; returns its id. */
export async function insertRelation(c: pg.Client, r: NewRelation): Promise<number> {
  const rows = await q<{ id: number }>(c, sql`INSERT INTO ibex.relation
      (db, schemaname, relname, reltype, key_columns, key_types, key_kind, key_index, conflict_strategy, delta_columns)
    VALUES (${r.db}, ${r.schemaname}, ${r.relname}, ${r.reltype}, ${r.key_columns}, ${r.key_types}, ${r.key_kind},
            ${r.key_index}, ${r.conflict_strategy}, ${r.delta_columns ?? null}) RETURNING id`);
  return rows[0]!.id;
}

/** Change the per-table conflict strategy (null: the sync's). */
export async function setRelationStrategy(c: pg.Client, id: number, strategy: string | null): Promise<void> {
  await c.query(`UPDATE ibex.relation SET conflict_strategy = $2 WHERE id = $1`, [id, strategy]);
}

/** Change a table's counter columns (null: none); the capture of its syncs must be upgraded after. */
export async function setRelationDeltaColumns(c: pg.Client, id: number, cols: readonly string[] | null): Promise<void> {
  await c.query(`UPDATE ibex.relation SET delta_columns = $2 WHERE id = $1`, [id, cols]);
}

/** Delete relations with their relgroup memberships (customcode mappings cascade). */
export async function deleteRelations(c: pg.Client, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await c.query(`DELETE FROM ibex.relgroup_member WHERE relation = ANY($1::int[])`, [ids]);
  await c.query(`DELETE FROM ibex.relation WHERE id = ANY($1::int[])`, [ids]);
}

// --- relgroup ----------------------------------------------------------------------------------

const RELGROUP_SELECT = raw(`SELECT g.name, g.about,
    coalesce((SELECT json_agg(json_build_object('relation', m.relation, 'priority', m.priority)
                              ORDER BY m.priority DESC, r.schemaname, r.relname)
                FROM ibex.relgroup_member m JOIN ibex.relation r ON r.id = m.relation
               WHERE m.relgroup = g.name), '[]'::json) AS members
  FROM ibex.relgroup g`);

/** One relgroup with its members. */
export async function getRelgroup(c: pg.Client, name: string): Promise<RelgroupRecord | undefined> {
  return (await q<RelgroupRecord>(c, sql`${RELGROUP_SELECT} WHERE g.name = ${name}`))[0];
}

/** Every relgroup with its members, by name. */
export async function listRelgroups(c: pg.Client): Promise<RelgroupRecord[]> {
  return q<RelgroupRecord>(c, sql`${RELGROUP_SELECT} ORDER BY g.name`);
}

/** Create an empty relgroup. */
export async function insertRelgroup(c: pg.Client, name: string, about: string | null = null): Promise<void> {
  await c.query(`INSERT INTO ibex.relgroup (name, about) VALUES ($1, $2)`, [name, about]);
}

/** Change a relgroup's description. */
export async function setRelgroupAbout(c: pg.Client, name: string, about: string | null): Promise<void> {
  await c.query(`UPDATE ibex.relgroup SET about = $2 WHERE name = $1`, [name, about]);
}

/** Add relations to a relgroup (members already there are left alone). */
export async function addRelgroupMembers(c: pg.Client, group: string, ids: readonly number[], priority = 0): Promise<void> {
  if (ids.length === 0) return;
  await c.query(`INSERT INTO ibex.relgroup_member (relgroup, relation, priority)
    SELECT $1, id, $3 FROM unnest($2::int[]) AS id ON CONFLICT DO NOTHING`, [group, ids, priority]);
}

/** Remove relations from a relgroup. */
export async function removeRelgroupMembers(c: pg.Client, group: string, ids: readonly number[]): Promise<void> {
  await c.query(`DELETE FROM ibex.relgroup_member WHERE relgroup = $1 AND relation = ANY($2::int[])`, [group, ids]);
}

/** Delete a relgroup (members cascade; the relations stay registered). */
export async function deleteRelgroup(c: pg.Client, name: string): Promise<void> {
  await c.query(`DELETE FROM ibex.relgroup WHERE name = $1`, [name]);
}

/** Relgroup memberships of these relations. */
export async function relgroupsOf(c: pg.Client, ids: readonly number[]): Promise<{ relgroup: string; relation: number }[]> {
  return q(c, sql`SELECT relgroup, relation FROM ibex.relgroup_member WHERE relation = ANY(${ids}::int[]) ORDER BY relgroup`);
}

// --- dbgroup -----------------------------------------------------------------------------------

const DBGROUP_SELECT = raw(`SELECT g.name, g.about,
    coalesce((SELECT json_agg(json_build_object('db', m.db, 'role', m.role, 'priority', m.priority)
                              ORDER BY CASE m.role WHEN 'source' THEN 0 WHEN 'target' THEN 1 ELSE 2 END, m.db)
                FROM ibex.dbgroup_member m WHERE m.dbgroup = g.name), '[]'::json) AS members
  FROM ibex.dbgroup g`);

/** One dbgroup with its members (sources first, then targets, then fullcopy; by name). */
export async function getDbgroup(c: pg.Client, name: string): Promise<DbgroupRecord | undefined> {
  return (await q<DbgroupRecord>(c, sql`${DBGROUP_SELECT} WHERE g.name = ${name}`))[0];
}

/** Every dbgroup with its members, by name. */
export async function listDbgroups(c: pg.Client): Promise<DbgroupRecord[]> {
  return q<DbgroupRecord>(c, sql`${DBGROUP_SELECT} ORDER BY g.name`);
}

/** Create a dbgroup with members. */
export async function insertDbgroup(c: pg.Client, name: string, members: readonly DbgroupMember[], about: string | null = null): Promise<void> {
  await c.query(`INSERT INTO ibex.dbgroup (name, about) VALUES ($1, $2)`, [name, about]);
  for (const m of members) await setDbgroupMember(c, name, m);
}

/** Add a member to a dbgroup, or change its role and priority. */
export async function setDbgroupMember(c: pg.Client, group: string, m: DbgroupMember): Promise<void> {
  await c.query(`INSERT INTO ibex.dbgroup_member (dbgroup, db, role, priority) VALUES ($1, $2, $3, $4)
    ON CONFLICT (dbgroup, db) DO UPDATE SET role = EXCLUDED.role, priority = EXCLUDED.priority`, [group, m.db, m.role, m.priority]);
}

/** Remove members from a dbgroup. */
export async function removeDbgroupMembers(c: pg.Client, group: string, dbs: readonly string[]): Promise<void> {
  await c.query(`DELETE FROM ibex.dbgroup_member WHERE dbgroup = $1 AND db = ANY($2::text[])`, [group, dbs]);
}

/** Remove a db from every dbgroup. */
export async function removeDbFromDbgroups(c: pg.Client, db: string): Promise<void> {
  await c.query(`DELETE FROM ibex.dbgroup_member WHERE db = $1`, [db]);
}

/** Change a dbgroup's description. */
export async function setDbgroupAbout(c: pg.Client, name: string, about: string | null): Promise<void> {
  await c.query(`UPDATE ibex.dbgroup SET about = $2 WHERE name = $1`, [name, about]);
}

/** Delete a dbgroup (members cascade). */
export async function deleteDbgroup(c: pg.Client, name: string): Promise<void> {
  await c.query(`DELETE FROM ibex.dbgroup WHERE name = $1`, [name]);
}

// --- sync --------------------------------------------------------------------------------------

const SYNC_SELECT = raw(`SELECT name, relgroup, dbgroup, status, status_reason, conflict_strategy, clock, onetimecopy,
  onetimecopy_from, autokick, checktime::text AS checktime, fullcopy_interval::text AS fullcopy_interval, stayalive,
  kidsalive, deletemethod, isolation_level, apply_mode, rebuild_index, analyze_after_copy, vacuum_after_copy,
  strict_checking, lifetime::text AS lifetime, maxkicks, about, on_row_error FROM ibex.sync`);

/** One sync. */
export async function getSync(c: pg.Client, name: string): Promise<SyncRecord | undefined> {
  return (await q<SyncRecord>(c, sql`${SYNC_SELECT} WHERE name = ${name}`))[0];
}

/** Every sync, by name. */
export async function listSyncs(c: pg.Client): Promise<SyncRecord[]> {
  return q<SyncRecord>(c, sql`${SYNC_SELECT} ORDER BY name`);
}

/** Insert a sync (status `installing` unless given). */
export async function insertSync(
  c: pg.Client, rec: { name: string; relgroup: string; dbgroup: string; status?: SyncStatus } & Partial<SyncOptions>,
): Promise<void> {
  const cols = (['relgroup', 'dbgroup', 'status', ...SYNC_OPTION_COLUMNS] as const).filter((k) => rec[k] !== undefined);
  const names = joinSql([ident('name'), ...cols.map((k) => ident(k))]);
  const values = [rec.name, ...cols.map((k) => rec[k])];
  const params = raw(values.map((_, i) => `$${i + 1}`).join(', '));
  await c.query(sql`INSERT INTO ibex.sync (${names}) VALUES (${params})`.text, values);
}

/** Change a sync's options, groups or status (and stamp `updated`). */
export async function updateSync(
  c: pg.Client, name: string, changes: Partial<SyncOptions & { relgroup: string; dbgroup: string; status: SyncStatus; status_reason: string | null }>,
): Promise<void> {
  const allowed = ['relgroup', 'dbgroup', 'status', 'status_reason', ...SYNC_OPTION_COLUMNS];
  if (Object.values(changes).every((v) => v === undefined)) return;
  await updateRow(c, 'sync', 'name', name, allowed, changes);
  await c.query(`UPDATE ibex.sync SET updated = now() WHERE name = $1`, [name]);
}

/** Delete a sync (cursors, state, runs, kicks and customcode mappings cascade). */
export async function deleteSync(c: pg.Client, name: string): Promise<void> {
  await c.query(`DELETE FROM ibex.sync WHERE name = $1`, [name]);
}

/** Syncs that use a relgroup, a dbgroup, a db (through their dbgroup or their relgroup's relations) or relations. */
export async function syncsUsing(
  c: pg.Client, what: { relgroup?: string; dbgroup?: string; db?: string; relations?: readonly number[] },
): Promise<string[]> {
  const rows = await q<{ name: string }>(c, sql`SELECT s.name FROM ibex.sync s
    WHERE s.relgroup = ${what.relgroup ?? null}
       OR s.dbgroup = ${what.dbgroup ?? null}
       OR EXISTS (SELECT 1 FROM ibex.dbgroup_member m WHERE m.dbgroup = s.dbgroup AND m.db = ${what.db ?? null})
       OR EXISTS (SELECT 1 FROM ibex.relgroup_member m JOIN ibex.relation r ON r.id = m.relation
                   WHERE m.relgroup = s.relgroup AND (r.db = ${what.db ?? null} OR r.id = ANY(${what.relations ?? []}::int[])))
       OR s.onetimecopy_from = ${what.db ?? null}
    ORDER BY s.name`);
  return rows.map((r) => r.name);
}

/** Per sync: its members with roles and the schema-qualified names of its relations (for the two-writers rule). */
export async function syncFootprints(c: pg.Client): Promise<{ name: string; members: { db: string; role: DbRoleName }[]; relations: { schema: string; name: string }[] }[]> {
  return q(c, sql`SELECT s.name,
      coalesce((SELECT json_agg(json_build_object('db', m.db, 'role', m.role) ORDER BY m.db)
                  FROM ibex.dbgroup_member m WHERE m.dbgroup = s.dbgroup), '[]'::json) AS members,
      coalesce((SELECT json_agg(json_build_object('schema', r.schemaname, 'name', r.relname) ORDER BY r.schemaname, r.relname)
                  FROM ibex.relgroup_member m JOIN ibex.relation r ON r.id = m.relation WHERE m.relgroup = s.relgroup), '[]'::json) AS relations
    FROM ibex.sync s ORDER BY s.name`);
}

// --- customcode --------------------------------------------------------------------------------

const CODE_SELECT = raw(`SELECT c.id, c.name, c.whenrun, c.src_code, c.src_path, c.language, c.status, c.priority, c.about,
    coalesce((SELECT json_agg(json_build_object('sync', m.sync, 'relation', m.relation, 'active', m.active, 'priority', m.priority)
                              ORDER BY m.sync, m.relation) FROM ibex.customcode_map m WHERE m.code = c.id), '[]'::json) AS maps
  FROM ibex.customcode c`);

/** One customcode with its mappings. */
export async function getCustomcode(c: pg.Client, name: string): Promise<CustomcodeRecord | undefined> {
  return (await q<CustomcodeRecord>(c, sql`${CODE_SELECT} WHERE c.name = ${name}`))[0];
}

/** Every customcode, by name. */
export async function listCustomcodes(c: pg.Client): Promise<CustomcodeRecord[]> {
  return q<CustomcodeRecord>(c, sql`${CODE_SELECT} ORDER BY c.name`);
}

/** Insert a customcode; returns its id. */
export async function insertCustomcode(
  c: pg.Client, rec: Pick<CustomcodeRecord, 'name' | 'whenrun' | 'src_code' | 'src_path' | 'language' | 'status' | 'priority' | 'about'>,
): Promise<number> {
  const rows = await q<{ id: number }>(c, sql`INSERT INTO ibex.customcode (name, whenrun, src_code, src_path, language, status, priority, about)
    VALUES (${rec.name}, ${rec.whenrun}, ${rec.src_code}, ${rec.src_path}, ${rec.language}, ${rec.status}, ${rec.priority}, ${rec.about})
    RETURNING id`);
  return rows[0]!.id;
}

/** Change columns of a customcode. */
export async function updateCustomcode(c: pg.Client, id: number, changes: Partial<Pick<CustomcodeRecord, (typeof CUSTOMCODE_COLUMNS)[number]>>): Promise<void> {
  await updateRow(c, 'customcode', 'id', id, CUSTOMCODE_COLUMNS, changes);
}

/** Map a customcode to a sync or to a relation (an existing mapping is left alone). */
export async function mapCustomcode(c: pg.Client, code: number, to: { sync?: string; relation?: number }, priority = 0): Promise<void> {
  await c.query(`INSERT INTO ibex.customcode_map (code, sync, relation, priority) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    [code, to.sync ?? null, to.relation ?? null, priority]);
}

/** Delete a customcode (its mappings cascade). */
export async function deleteCustomcode(c: pg.Client, name: string): Promise<void> {
  await c.query(`DELETE FROM ibex.customcode WHERE name = $1`, [name]);
}

/** An active code of a sync, mapped to the sync itself or to one of its tables. */
export interface ActiveCustomcode {
  name: string;
  whenrun: string;
  src_code: string;
  language: string;
  /** The table it is mapped to; null for a sync-level mapping. */
  schemaname: string | null;
  relname: string | null;
}

/**
 * The active codes of a sync and of these tables, in the order they run: mapping priority,
 * table-level before sync-level, then name (Bucardo's order).
 */
export async function activeCustomcodes(c: pg.Client, sync: string, tables: readonly { schema: string; name: string }[]): Promise<ActiveCustomcode[]> {
  return q<ActiveCustomcode>(c, sql`SELECT c.name, c.whenrun, c.src_code, c.language, r.schemaname, r.relname
       FROM ibex.customcode c
       JOIN ibex.customcode_map m ON m.code = c.id
       LEFT JOIN ibex.relation r ON r.id = m.relation
      WHERE c.status = 'active' AND m.active
        AND (m.sync = ${sync} OR (r.schemaname, r.relname) IN (SELECT * FROM unnest(${tables.map((t) => t.schema)}::text[], ${tables.map((t) => t.name)}::text[])))
      ORDER BY m.priority, (m.relation IS NULL), c.name`);
}

// --- customname ------------------------------------------------------------------------------

/** A table's name on one (non-PostgreSQL) db. */
export interface CustomnameRecord {
  relation: number;
  /** The registered table, for messages. */
  schemaname: string;
  relname: string;
  /** The db the table is registered on (its source). */
  source: string;
  db: string;
  name: string;
}

/** Every customname, by table and db. */
export async function listCustomnames(c: pg.Client): Promise<CustomnameRecord[]> {
  return q<CustomnameRecord>(c, sql`SELECT n.relation, r.schemaname, r.relname, r.db AS source, n.db, n.name
      FROM ibex.customname n JOIN ibex.relation r ON r.id = n.relation
     ORDER BY r.schemaname, r.relname, n.db`);
}

/** The customnames on one db of these relations, by relation id. */
export async function customnamesOn(c: pg.Client, db: string, relations: readonly number[]): Promise<Map<number, string>> {
  const rows = await q<{ relation: number; name: string }>(c,
    sql`SELECT relation, name FROM ibex.customname WHERE db = ${db} AND relation = ANY(${relations}::int[])`);
  return new Map(rows.map((r) => [r.relation, r.name]));
}

/** Set the name of a relation on a db (replacing one it had). */
export async function setCustomname(c: pg.Client, relation: number, db: string, name: string): Promise<void> {
  await c.query(`INSERT INTO ibex.customname (relation, db, name) VALUES ($1, $2, $3)
    ON CONFLICT (relation, db) DO UPDATE SET name = EXCLUDED.name`, [relation, db, name]);
}

/** Remove the name of a relation on a db; returns whether there was one. */
export async function deleteCustomname(c: pg.Client, relation: number, db: string): Promise<boolean> {
  const r = await c.query(`DELETE FROM ibex.customname WHERE relation = $1 AND db = $2`, [relation, db]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * Reading one sync's whole configuration (sync row, its dbs with roles and
 * connection parameters, its relations) for capture and the engine.
 */
import type pg from 'pg';
import type { PgParams } from '../db/connect.js';
import { notFound } from '../errors.js';
import { resolvePassword } from './password.js';

/** A db as a member of a sync. */
export interface SyncDb {
  name: string;
  dbtype: string;
  role: 'source' | 'target' | 'fullcopy';
  priority: number;
  params: PgParams;
  canReplica: boolean;
  status: string;
}

/** A table or sequence of a sync. */
export interface SyncRelation {
  id: number;
  schema: string;
  name: string;
  reltype: 'table' | 'sequence';
  keyColumns: string[];
  keyTypes: string[];
  conflictStrategy: string | null;
  priority: number;
  /** The table's name on dbs that give it another (`ibex add customname`), by db; else its own name there. */
  customnames?: Record<string, string>;
}

/** Everything the engine needs about one sync. */
export interface SyncConfig {
  name: string;
  status: string;
  conflictStrategy: string;
  clock: 'change' | 'commit';
  onetimecopy: number;
  onetimecopyFrom: string | null;
  autokick: boolean;
  checktimeMs: number | null;
  fullcopyIntervalMs: number | null;
  deletemethod: string;
  isolationLevel: string;
  applyMode: 'upsert' | 'replica';
  dbs: SyncDb[];
  relations: SyncRelation[];
}

/** Connection parameters of a db row. */
export function dbParams(row: Record<string, unknown>): PgParams {
  const s = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : String(v));
  return {
    host: s(row.host), port: row.port === null || row.port === undefined ? undefined : Number(row.port),
    dbname: s(row.dbname), user: s(row.dbuser), password: resolvePassword(row), conn: s(row.conn), service: s(row.service),
  };
}

/** Load a sync's configuration from the control database. */
export async function loadSyncConfig(control: pg.Client, name: string): Promise<SyncConfig> {
  const s = await control.query(
    `SELECT s.*, extract(epoch FROM s.checktime) * 1000 AS checktime_ms, extract(epoch FROM s.fullcopy_interval) * 1000 AS fullcopy_ms
       FROM ibex.sync s WHERE s.name = $1`, [name]);
  const row = s.rows[0];
  if (!row) throw notFound('sync', name, 'list them with "ibex list syncs"');
  const dbs = await control.query(
    `SELECT d.*, m.role, m.priority FROM ibex.dbgroup_member m JOIN ibex.db d ON d.name = m.db
      WHERE m.dbgroup = $1 ORDER BY CASE m.role WHEN 'source' THEN 0 WHEN 'target' THEN 1 ELSE 2 END, d.name`, [row.dbgroup]);
  const rels = await control.query(
    `SELECT r.*, m.priority,
            (SELECT coalesce(json_object_agg(n.db, n.name), '{}'::json) FROM ibex.customname n WHERE n.relation = r.id)::text AS customnames
       FROM ibex.relgroup_member m JOIN ibex.relation r ON r.id = m.relation
      WHERE m.relgroup = $1 ORDER BY m.priority DESC, r.schemaname, r.relname`, [row.relgroup]);
  return {
    name: row.name,
    status: row.status,
    conflictStrategy: row.conflict_strategy,
    clock: row.clock,
    onetimecopy: Number(row.onetimecopy),
    onetimecopyFrom: row.onetimecopy_from,
    autokick: row.autokick,
    checktimeMs: row.checktime_ms === null ? null : Number(row.checktime_ms),
    fullcopyIntervalMs: row.fullcopy_ms === null ? null : Number(row.fullcopy_ms),
    deletemethod: row.deletemethod,
    isolationLevel: row.isolation_level,
    applyMode: row.apply_mode,
    dbs: dbs.rows.map((d) => ({
      name: d.name, dbtype: d.dbtype, role: d.role, priority: Number(d.priority), params: dbParams(d),
      canReplica: d.can_replica === true, status: d.status,
    })),
    relations: rels.rows.map((r) => ({
      id: Number(r.id), schema: r.schemaname, name: r.relname, reltype: r.reltype,
      keyColumns: r.key_columns ?? [], keyTypes: r.key_types ?? [], conflictStrategy: r.conflict_strategy, priority: Number(r.priority),
      customnames: JSON.parse(String(r.customnames)) as Record<string, string>,
    })),
  };
}

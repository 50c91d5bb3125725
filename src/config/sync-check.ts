/**
 * The checks a sync must pass before it is written (add sync, update sync, and
 * changes to the groups of existing syncs): configuration rules, the
 * two-writers rule, and the live comparison of every table on every db.
 */
import type pg from 'pg';
import { relationOid, rowSecurityFix, serverInfo, tableInfo, uniqueIndexes, type TableInfo } from '../db/catalog.js';
import {
  getDb, getDbgroup, getRelgroup, getSync, relationsById, syncFootprints, type DbRecord, type DbRoleName, type SyncRecord,
} from '../control/config-store.js';
import { configError, notFound } from '../errors.js';
import { closeAll, listHint, openDbs } from './dbs.js';
import { displayPart, displayRelation } from './names.js';
import { STRATEGIES, strategyDbs } from './strategies.js';
import { checkTargets, refuseKeyless } from './targets.js';

/** What the checks need of a relation (it may not be registered yet). */
export interface RelationLike {
  db: string;
  schemaname: string;
  relname: string;
  reltype: 'table' | 'sequence';
  key_columns: string[] | null;
}

/** A sync as it would be after the change. */
export interface SyncPlan {
  name: string;
  members: { db: string; role: DbRoleName }[];
  relations: RelationLike[];
  conflict_strategy: string;
  clock: 'change' | 'commit';
  onetimecopy_from: string | null;
}

/**
 * The dbs a sync writes: with exactly one source it is one-way and writes only
 * its targets (and fullcopy targets); with several sources every db is written.
 */
export function writtenDbs(members: readonly { db: string; role: DbRoleName }[]): string[] {
  const sources = members.filter((m) => m.role === 'source');
  return sources.length === 1 ? members.filter((m) => m.role !== 'source').map((m) => m.db) : members.map((m) => m.db);
}

/** The plan of an existing sync, with its relations or members replaced by a change under way. */
export async function planOf(
  c: pg.Client, sync: SyncRecord | string,
  override: { relgroup?: string; dbgroup?: string; relations?: RelationLike[]; members?: { db: string; role: DbRoleName }[] } & Partial<Pick<SyncPlan, 'conflict_strategy' | 'clock' | 'onetimecopy_from'>> = {},
): Promise<SyncPlan> {
  const s = typeof sync === 'string' ? await getSync(c, sync) : sync;
  if (!s) throw notFound('sync', String(sync), listHint('sync'));
  let members = override.members;
  if (!members) {
    const g = await getDbgroup(c, override.dbgroup ?? s.dbgroup);
    if (!g) throw notFound('dbgroup', override.dbgroup ?? s.dbgroup, listHint('dbgroup'));
    members = g.members;
  }
  let relations = override.relations;
  if (!relations) {
    const g = await getRelgroup(c, override.relgroup ?? s.relgroup);
    if (!g) throw notFound('relgroup', override.relgroup ?? s.relgroup, listHint('relgroup'));
    relations = await relationsById(c, g.members.map((m) => m.relation));
  }
  return {
    name: s.name, members, relations,
    conflict_strategy: override.conflict_strategy ?? s.conflict_strategy,
    clock: override.clock ?? s.clock,
    onetimecopy_from: override.onetimecopy_from !== undefined ? override.onetimecopy_from : s.onetimecopy_from,
  };
}

/** The rules that need no connection; returns the db rows of the sync. */
export async function checkRules(c: pg.Client, plan: SyncPlan): Promise<DbRecord[]> {
  const dbs: DbRecord[] = [];
  for (const m of plan.members) {
    const d = await getDb(c, m.db);
    if (!d) throw notFound('db', m.db, listHint('db'));
    dbs.push(d);
  }
  const names = plan.members.map((m) => m.db);
  const sources = plan.members.filter((m) => m.role === 'source');
  if (sources.length === 0) {
    throw configError(`sync ${plan.name} has no source db: mark at least one db as source, e.g. dbs=${names[0] ?? 'A'}:source${names[1] ? `,${names[1]}:target` : ''}`);
  }
  if (plan.members.length < 2) throw configError(`sync ${plan.name} has only db ${names[0]}: a sync needs a source and at least one more db`);
  for (const s of sources) {
    const d = dbs.find((x) => x.name === s.db)!;
    if (d.dbtype !== 'postgres') throw configError(`db ${d.name} is a ${d.dbtype} db and cannot be a source of sync ${plan.name}: only postgres dbs can be sources; make it a target`);
  }
  if (plan.relations.length === 0) throw configError(`sync ${plan.name} has no tables: add tables to its relgroup first ("ibex add table <name> db=<db> relgroup=<g>")`);
  const nonSources = plan.members.filter((m) => m.role !== 'source');
  const fullcopyOnly = sources.length === 1 && nonSources.every((m) => m.role === 'fullcopy');
  for (const r of plan.relations) {
    if (r.reltype === 'table' && !r.key_columns && !fullcopyOnly) {
      throw configError(`table ${displayRelation(r.schemaname, r.relname)} has no key, so sync ${plan.name} cannot carry its changes: give it a primary key (then remove and add the table again), or use one source with fullcopy targets only`);
    }
  }
  refuseKeyless(plan.relations, dbs, { reAdd: true, leaveOut: `sync ${plan.name}` });
  if (plan.onetimecopy_from !== null && !names.includes(plan.onetimecopy_from)) {
    throw configError(`onetimecopy_from=${plan.onetimecopy_from} is not a db of sync ${plan.name}: name one of ${names.join(', ')}`);
  }
  const listed = strategyDbs(plan.conflict_strategy) ?? [];
  for (const d of listed) {
    if (names.includes(d)) continue;
    if (listed.length === 1) {
      throw configError(`conflict_strategy=${d} is neither a strategy (${STRATEGIES.join(', ')}) nor a db of sync ${plan.name}: use a strategy, or list its dbs in order of preference (${names.join(',')})`);
    }
    throw configError(`conflict_strategy lists ${d}, which is not a db of sync ${plan.name}: list its dbs in order of preference (${names.join(',')})`);
  }
  return dbs;
}

/** Refuse a second sync writing a table on a db another sync already writes. */
export async function checkTwoWriters(c: pg.Client, plan: SyncPlan): Promise<void> {
  const mine = writtenDbs(plan.members);
  const myTables = new Set(plan.relations.map((r) => JSON.stringify([r.schemaname, r.relname])));
  for (const other of await syncFootprints(c)) {
    if (other.name === plan.name) continue;
    const theirs = writtenDbs(other.members);
    for (const db of mine) {
      if (!theirs.includes(db)) continue;
      const clash = other.relations.find((r) => myTables.has(JSON.stringify([r.schema, r.name])));
      if (clash) {
        throw configError(`sync ${other.name} already writes ${displayRelation(clash.schema, clash.name)} on db ${db}: two syncs cannot write one table on one db; add the table to ${other.name} instead, or leave it out of sync ${plan.name}`);
      }
    }
  }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function compareTables(plan: SyncPlan, label: string, refDb: string, ref: TableInfo, db: string, other: TableInfo): void {
  const col = (n: string): string => `column ${displayPart(n)} of table ${label}`;
  for (const rc of ref.columns) {
    const oc = other.columns.find((x) => x.name === rc.name);
    if (!oc) throw configError(`${col(rc.name)} is missing on db ${db}: add it there (${rc.type}) or drop it on db ${refDb}; every db of sync ${plan.name} needs the same columns`);
    if (oc.type !== rc.type) throw configError(`${col(rc.name)} is ${rc.type} on db ${refDb} but ${oc.type} on db ${db}: give it the same type on every db of sync ${plan.name}`);
    if (oc.generated !== rc.generated) throw configError(`${col(rc.name)} is ${rc.generated ? '' : 'not '}generated on db ${refDb} but ${oc.generated ? '' : 'not '}generated on db ${db}: define it the same way on every db`);
  }
  for (const oc of other.columns) {
    if (!ref.columns.some((x) => x.name === oc.name)) {
      throw configError(`table ${label} on db ${db} has column ${displayPart(oc.name)} (${oc.type}) that db ${refDb} lacks: add it on db ${refDb}, or drop it on db ${db}; every db of sync ${plan.name} needs the same columns`);
    }
  }
}

/**
 * What ibex cannot do with a kind of table, refused before the sync exists: a run would fail
 * at every attempt instead.
 */
function checkKind(plan: SyncPlan, label: string, infosByDb: Map<string, TableInfo>, servers: Map<string, { user: string }>): void {
  const written = writtenDbs(plan.members);
  for (const [db, info] of infosByDb) {
    if (info.rowSecurityBlocks) {
      const role = servers.get(db)?.user ?? '';
      throw configError(`table ${label} on db ${db} has row-level security${info.forceRowSecurity ? ' forced on its owner' : ''} that applies to role ${displayPart(role)}, and ibex reads and writes with row_security=off so every run would fail: ${rowSecurityFix(role, info.forceRowSecurity)}`);
    }
    if (!written.includes(db) || !info.key) continue;
    const stuck = info.columns.find((c) => c.identity === 'always' && !info.key!.columns.includes(c.name));
    if (stuck) {
      throw configError(`column ${displayPart(stuck.name)} of table ${label} on db ${db} is GENERATED ALWAYS AS IDENTITY outside the key, so ibex could never update it there: ALTER TABLE ${label} ALTER COLUMN ${displayPart(stuck.name)} SET GENERATED BY DEFAULT on db ${db}, or leave the table out of sync ${plan.name}`);
    }
  }
}

/**
 * Connect to every postgres db of the sync and compare: same encoding,
 * track_commit_timestamp for clock=commit, and every table present with the
 * same columns (names, types) and a usable unique index on the key columns;
 * sequences present; no partitions or inheritance children.
 */
export async function checkLive(plan: SyncPlan, dbs: readonly DbRecord[]): Promise<void> {
  const pgDbs = dbs.filter((d) => d.dbtype === 'postgres');
  const clients = await openDbs(pgDbs);
  try {
    const infos = new Map<string, Awaited<ReturnType<typeof serverInfo>>>();
    for (const [name, client] of clients) infos.set(name, await serverInfo(client));
    const first = pgDbs[0]!;
    for (const d of pgDbs) {
      const enc = infos.get(d.name)!.encoding;
      const firstEnc = infos.get(first.name)!.encoding;
      if (enc !== firstEnc) throw configError(`db ${d.name} has encoding ${enc} but db ${first.name} has ${firstEnc}: every db of sync ${plan.name} needs the same server encoding`);
    }
    if (plan.clock === 'commit') {
      for (const m of plan.members.filter((x) => x.role === 'source')) {
        if (!infos.get(m.db)?.trackCommitTimestamp) {
          throw configError(`clock=commit needs track_commit_timestamp=on on every source, but db ${m.db} has it off: turn it on there (a restart is needed) or use clock=change`);
        }
      }
    }
    const firstSource = plan.members.find((m) => m.role === 'source')!.db;
    for (const r of plan.relations) {
      const label = displayRelation(r.schemaname, r.relname);
      if (r.reltype === 'sequence') {
        for (const [db, client] of clients) {
          const rel = await relationOid(client, r.schemaname, r.relname);
          if (!rel || rel.relkind !== 'S') throw configError(`sequence ${label} is missing on db ${db}: create it there or leave it out of sync ${plan.name}`);
        }
        continue;
      }
      const refDb = clients.has(r.db) ? r.db : firstSource;
      const infosByDb = new Map<string, TableInfo>();
      for (const [db, client] of clients) {
        const info = await tableInfo(client, r.schemaname, r.relname);
        if (!info) throw configError(`table ${label} is missing on db ${db}: create it there (same columns and key) or leave it out of the sync`);
        if (info.partition) throw configError(`table ${label} on db ${db} is a partition: replicate its partitioned parent instead, and make it a table or partitioned table on every db`);
        if (info.inheritanceChild) throw configError(`table ${label} on db ${db} inherits from another table: inheritance children cannot be replicated; remove the INHERITS there or leave the table out of sync ${plan.name}`);
        infosByDb.set(db, info);
      }
      const ref = infosByDb.get(refDb)!;
      for (const [db, info] of infosByDb) if (db !== refDb) compareTables(plan, label, refDb, ref, db, info);
      checkKind(plan, label, infosByDb, infos);
      if (!r.key_columns) continue;
      for (const [db, client] of clients) {
        const info = infosByDb.get(db)!;
        const idx = await uniqueIndexes(client, info.oid);
        if (!idx.some((i) => i.usable && sameSet(i.columns, r.key_columns!))) {
          const have = idx.filter((i) => i.usable).map((i) => `(${i.columns.join(', ')})`);
          throw configError(`table ${label} on db ${db} has no primary key or unique index on NOT NULL columns (${r.key_columns.join(', ')}), its key on db ${r.db}${have.length ? `; it has ${have.join(', ')}` : ''}: give it the same key on every db of sync ${plan.name}`);
        }
      }
    }
  } finally {
    await closeAll(clients);
  }
}

/** Every check, cheapest first; the tables on non-PostgreSQL targets last. */
export async function validateSync(c: pg.Client, plan: SyncPlan): Promise<DbRecord[]> {
  const dbs = await checkRules(c, plan);
  await checkTwoWriters(c, plan);
  await checkLive(plan, dbs);
  await checkTargets(c, plan, dbs);
  return dbs;
}

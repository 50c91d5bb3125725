/**
 * Relations in the configuration: finding tables and sequences in a db's catalog with their
 * keys, finding registered ones by name or pattern, and adding relations to a relgroup (every
 * sync using it checked again first).
 */
import type pg from 'pg';
import { findRelations, relationOid, tableInfo } from '../db/catalog.js';
import {
  addRelgroupMembers, deleteRelations, getDb, getRelgroup, getSync, insertRelation, insertRelgroup, listDbs, listRelations,
  relationsById, relationsNamed, removeRelgroupMembers, setRelationDeltaColumns, setRelationStrategy, syncsUsing, type DbRecord, type NewRelation,
  type RelationRecord,
} from '../control/config-store.js';
import { configError, notFound, usage } from '../errors.js';
import { runInstallCapture, runUpgradeCapture } from './capture.js';
import { report, write, type ConfigContext } from './context.js';
import { listHint, requireDb } from './dbs.js';
import { displayRelation, isExact, likeOf, parseRelationTerm, type RelationTerm } from './names.js';
import { STRATEGIES, strategyOption } from './strategies.js';
import { planOf, validateSync, type RelationLike } from './sync-check.js';

/** The `-n/-N/-t/-T` filters of `add all tables` (each may repeat). */
export interface RelationFilters {
  schemas: string[];
  excludeSchemas: string[];
  tables: string[];
  excludeTables: string[];
}

/** Table or sequence. */
export type RelKind = 'table' | 'sequence';

/** What discovery found on a db. */
export interface Discovery {
  /** New relations, ready to insert. */
  found: NewRelation[];
  /** Relations already registered on that db (same key). */
  existing: RelationRecord[];
  /** Matches left out by a wildcard, with the reason. */
  skipped: { label: string; why: string }[];
}

const KIND_WORD: Record<string, string> = { r: 'table', p: 'partitioned table', S: 'sequence', v: 'view', m: 'materialized view', f: 'foreign table', i: 'index', I: 'partitioned index', c: 'composite type', t: 'TOAST table' };

export function keyText(cols: readonly string[] | null | undefined): string {
  return cols ? `(${cols.join(', ')})` : '(none)';
}

/**
 * Look terms up in a db's catalog and find each table's key. Exact names that
 * are missing, of the wrong kind, partitions, inheritance children or without
 * a key (unless `force`) are errors; wildcard matches of those are skipped and
 * reported. Registered relations are reported (with a key that changed since:
 * an error).
 */
export async function discover(
  control: pg.Client, db: DbRecord, client: pg.Client, kind: RelKind,
  what: { terms: RelationTerm[] } | { all: RelationFilters }, force: boolean,
): Promise<Discovery> {
  const out: Discovery = { found: [], existing: [], skipped: [] };
  const registered = await listRelations(control, { db: db.name });
  const seen = new Set<string>();
  const consider = async (schema: string, name: string, exact: boolean): Promise<void> => {
    const label = displayRelation(schema, name);
    if (seen.has(label)) return;
    seen.add(label);
    if (schema === 'ibex' || schema === 'pg_catalog' || schema === 'information_schema') {
      throw usage(`${label} belongs to ${schema === 'ibex' ? 'ibex itself' : 'the system catalog'} and cannot be replicated: name your own tables (schema.table)`);
    }
    const fail = (why: string, fix: string): void => {
      if (exact) throw configError(`${kind} ${label} on db ${db.name} ${why}: ${fix}`);
      out.skipped.push({ label, why });
    };
    const rel = await relationOid(client, schema, name);
    if (!rel) {
      if (exact) throw notFound(kind, label, `it does not exist on db ${db.name}: create it there, or check the name (names are case-sensitive; quote them as schema."Name")`);
      return;
    }
    const wanted = kind === 'table' ? ['r', 'p'] : ['S'];
    if (!wanted.includes(rel.relkind)) {
      const is = KIND_WORD[rel.relkind] ?? `a relation of kind ${rel.relkind}`;
      return fail(`is a ${is}, not a ${kind}`, rel.relkind === 'S' ? 'add it with "ibex add sequence"' : rel.relkind === 'r' || rel.relkind === 'p' ? 'add it with "ibex add table"' : `only tables and sequences can be replicated`);
    }
    const known = registered.find((r) => r.schemaname === schema && r.relname === name);
    let row: NewRelation = {
      db: db.name, schemaname: schema, relname: name, reltype: kind, key_columns: null, key_types: null, key_kind: null, key_index: null, conflict_strategy: null,
    };
    if (kind === 'table') {
      const info = await tableInfo(client, schema, name);
      if (!info) return fail('has disappeared', 'check the name');
      if (info.partition) return fail('is a partition', 'add its partitioned parent table instead (ibex reads and writes partitions through the parent)');
      if (info.inheritanceChild) return fail('inherits from another table', 'inheritance children cannot be replicated; replicate a table without INHERITS, or use declarative partitioning');
      if (info.key) {
        row = { ...row, key_columns: info.key.columns, key_types: info.key.types, key_kind: info.key.kind, key_index: info.key.index };
      } else if (!force && !(known && known.key_columns === null)) {
        return fail('has no primary key and no unique index on NOT NULL columns',
          'add a primary key; or add it with --force without a key, which only a sync with fullcopy targets can carry');
      }
    }
    if (known) {
      if (JSON.stringify(known.key_columns) !== JSON.stringify(row.key_columns)) {
        throw configError(`${kind} ${label} is registered on db ${db.name} with key ${keyText(known.key_columns)} but its key is now ${keyText(row.key_columns)}: remove it with "ibex remove ${kind} ${label} db=${db.name}" and add it again`);
      }
      out.existing.push(known);
      return;
    }
    out.found.push(row);
  };

  if ('all' in what) {
    const f = what.all;
    const list = await findRelations(client, {
      kind, ...(f.schemas.length ? { schemas: f.schemas } : {}), ...(f.excludeSchemas.length ? { excludeSchemas: f.excludeSchemas } : {}),
      ...(f.tables.length ? { names: f.tables } : {}), ...(f.excludeTables.length ? { excludeNames: f.excludeTables } : {}),
    });
    if (list.length === 0) throw notFound(`${kind} on db`, db.name, `no ${kind} matches there${f.schemas.length + f.tables.length ? ' with these -n/-t filters' : ''}: check the filters, or create the ${kind}s first`);
    for (const r of list) await consider(r.schema, r.name, false);
    return out;
  }
  for (const term of what.terms) {
    if (isExact(term)) {
      await consider(term.schema.text, term.name.text, true);
      continue;
    }
    const list = await findRelations(client, { kind, schemaLike: likeOf(term.schema), nameLike: likeOf(term.name) });
    if (list.length === 0) throw notFound(kind, term.given, `nothing matches it on db ${db.name}: check the pattern (% matches anything, _ one character)`);
    for (const r of list) await consider(r.schema, r.name, false);
  }
  return out;
}

/**
 * Find registered relations by name or pattern (optionally on one db). An
 * exact name registered on several dbs needs db=.
 */
export async function registeredRelations(
  c: pg.Client, kind: RelKind | undefined, words: readonly string[], db?: string, opts: { filter?: boolean } = {},
): Promise<RelationRecord[]> {
  const all = await listRelations(c, { ...(kind ? { reltype: kind } : {}), ...(db ? { db } : {}) });
  const out = new Map<number, RelationRecord>();
  for (const w of words) {
    const term = parseRelationTerm(w);
    if (opts.filter && isExact(term)) {
      for (const r of all) if (r.schemaname === term.schema.text && r.relname === term.name.text) out.set(r.id, r);
      continue;
    }
    if (isExact(term)) {
      const hits = db !== undefined || kind !== undefined
        ? all.filter((r) => r.schemaname === term.schema.text && r.relname === term.name.text)
        : await relationsNamed(c, term.schema.text, term.name.text);
      const label = displayRelation(term.schema.text, term.name.text);
      if (hits.length === 0) throw notFound(kind ?? 'table', label, `it is not registered${db ? ` on db ${db}` : ''}: add it with "ibex add ${kind ?? 'table'} ${label} db=<db>", or ${listHint(kind ?? 'table')}`);
      if (hits.length > 1) throw usage(`${kind ?? 'table'} ${label} is registered on dbs ${hits.map((h) => h.db).join(', ')}: say which with db=<db>`);
      out.set(hits[0]!.id, hits[0]!);
      continue;
    }
    const re = (p: string): RegExp => new RegExp('^' + [...p].map((ch) => (ch === '%' ? '.*' : ch === '_' ? '.' : ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('') + '$', 's');
    const sRe = term.schema.pattern ? re(term.schema.text) : undefined;
    const nRe = term.name.pattern ? re(term.name.text) : undefined;
    const hits = all.filter((r) => (sRe ? sRe.test(r.schemaname) : r.schemaname === term.schema.text) && (nRe ? nRe.test(r.relname) : r.relname === term.name.text));
    if (hits.length === 0 && !opts.filter) throw notFound(kind ?? 'table', w, `no registered ${kind ?? 'table'} matches it: ${listHint(kind ?? 'table')}`);
    for (const h of hits) out.set(h.id, h);
  }
  return [...out.values()];
}

/** A change to a relgroup, checked up front, applied in the caller's transaction. */
export interface RelgroupChange {
  /** Inside the transaction: create the group if needed and add the members (ids of `relations`, in order). */
  apply(ids: number[]): Promise<void>;
  /** After the commit: bring the capture of the syncs that use the group up to date; on failure undo and throw. */
  afterCommit(undoMore?: () => Promise<void>): Promise<void>;
}

/**
 * Plan adding relations to a relgroup (created when missing): one db per
 * relgroup, and every sync that uses it is validated again with the new
 * tables (columns, keys, the two-writers rule) before anything is written.
 */
export async function planRelgroupAddition(ctx: ConfigContext, c: pg.Client, group: string, relations: readonly (RelationLike & { id?: number })[]): Promise<RelgroupChange> {
  const existing = await getRelgroup(c, group);
  const current = existing ? await relationsById(c, existing.members.map((m) => m.relation)) : [];
  const dbs = new Set([...current, ...relations].map((r) => r.db));
  if (dbs.size > 1) {
    const odd = relations.find((r) => r.db !== (current[0]?.db ?? relations[0]?.db));
    throw configError(`relgroup ${group} would hold tables of dbs ${[...dbs].join(' and ')}${odd ? ` (${displayRelation(odd.schemaname, odd.relname)} is on db ${odd.db})` : ''}: a relgroup holds the tables of one db; use another relgroup`);
  }
  const isMember = (r: RelationLike & { id?: number }): boolean => r.id !== undefined && current.some((x) => x.id === r.id);
  const adding = relations.filter((r) => !isMember(r));
  const syncs = existing && adding.length ? await syncsUsing(c, { relgroup: group }) : [];
  const statuses = new Map<string, string>();
  for (const s of syncs) {
    const plan = await planOf(c, s, { relations: [...current, ...adding] });
    await validateSync(c, plan);
    statuses.set(s, (await getSync(c, s))!.status);
  }
  const added: number[] = [];
  const installAll = async (undo?: () => Promise<void>): Promise<void> => {
    for (const s of syncs) {
      const st = statuses.get(s)!;
      await runInstallCapture(ctx, c, s, st === 'installing' ? 'active' : (st as 'active' | 'paused' | 'inactive'), undo);
    }
  };
  return {
    async apply(ids) {
      if (!existing) {
        await insertRelgroup(c, group);
        report(ctx, 'create', `relgroup ${group}`);
      }
      relations.forEach((r, i) => {
        if (!isMember(r)) added.push(ids[i]!);
      });
      await addRelgroupMembers(c, group, added);
      for (const r of relations) {
        if (!isMember(r)) report(ctx, 'add', `${r.reltype} ${displayRelation(r.schemaname, r.relname)} to relgroup ${group}`);
        else ctx.say(`${r.reltype} ${displayRelation(r.schemaname, r.relname)} is already in relgroup ${group}`);
      }
      if (syncs.length && ctx.flags.dryRun) await installAll();
    },
    async afterCommit(undoMore) {
      if (ctx.flags.dryRun || syncs.length === 0) return;
      await installAll(async () => {
        await write(ctx, c, async () => {
          await removeRelgroupMembers(c, group, added);
          if (undoMore) await undoMore();
        });
      });
    },
  };
}

/** The db a relation command reads: the one named (db=), else the only postgres db. */
export async function sourceDbFor(c: pg.Client, name: string | undefined, what: string): Promise<DbRecord> {
  if (name) {
    const db = await requireDb(c, name);
    if (db.dbtype !== 'postgres') throw configError(`db ${name} is a ${db.dbtype} db: tables are registered from a postgres db (a source)`);
    return db;
  }
  const pgDbs = (await listDbs(c)).filter((d) => d.dbtype === 'postgres');
  if (pgDbs.length === 1) return pgDbs[0]!;
  throw usage(`${what} needs db=<db>: name the db to read the ${what.includes('sequence') ? 'sequences' : 'tables'} from${pgDbs.length ? ` (one of ${pgDbs.map((d) => d.name).join(', ')})` : ' (add one with "ibex add db")'}`);
}

/** Check a per-table conflict_strategy= (a db list may only name registered dbs). */
export async function checkRelationStrategy(c: pg.Client, value: string | undefined): Promise<string | null | undefined> {
  if (value === undefined) return undefined;
  if (value === '') return null;
  const s = strategyOption(value);
  if (s.dbs?.length === 1 && !(await getDb(c, s.dbs[0]!))) {
    throw usage(`conflict_strategy=${value} is neither a strategy (${STRATEGIES.join(', ')}) nor a registered db: use a strategy, or list dbs in order of preference (A,B)`);
  }
  for (const d of s.dbs ?? []) await requireDb(c, d);
  return s.strategy;
}

/**
 * Register relations and optionally put them in a relgroup, all in one
 * transaction; a relgroup used by syncs is re-validated for each of them and
 * their capture is brought up to date after the commit.
 */
export async function registerRelations(
  ctx: ConfigContext, c: pg.Client, kind: RelKind, d: Discovery, group: string | undefined, strategy: string | null | undefined, announce?: () => void,
): Promise<void> {
  for (const r of d.found) r.conflict_strategy = strategy ?? null;
  const plan = group ? await planRelgroupAddition(ctx, c, group, [...d.existing, ...d.found]) : undefined;
  // Only once the relgroup's syncs accept the tables: a refused command prints nothing but its error.
  announce?.();
  const newIds: number[] = [];
  await write(ctx, c, async () => {
    for (const r of d.found) {
      newIds.push(await insertRelation(c, r));
      report(ctx, 'register', `${kind} ${displayRelation(r.schemaname, r.relname)} of db ${r.db}${kind === 'table' ? ` key ${keyText(r.key_columns)}${r.key_kind === 'unique' ? ` (unique index ${r.key_index})` : r.key_columns ? '' : ' (no key: fullcopy only)'}` : ''}`);
    }
    for (const r of d.existing) {
      if (strategy !== undefined && r.conflict_strategy !== strategy) {
        await setRelationStrategy(c, r.id, strategy);
        report(ctx, 'set', `conflict_strategy=${strategy ?? '(the sync\'s)'} on ${kind} ${displayRelation(r.schemaname, r.relname)}`);
      }
    }
    if (plan) await plan.apply([...d.existing.map((r) => r.id), ...newIds]);
  });
  if (plan) await plan.afterCommit(async () => deleteRelations(c, newIds));
}

/**
 * Read `delta_columns=` (comma-separated column names; empty: none). The names are checked
 * against the table on each source when capture is installed.
 */
export function parseDeltaColumns(value: string | undefined): string[] | null | undefined {
  if (value === undefined) return undefined;
  const cols = value.split(',').map((x) => x.trim()).filter(Boolean);
  if (cols.length === 0) return null;
  if (new Set(cols).size !== cols.length) throw usage(`delta_columns=${value} names a column twice: name each once`);
  return cols;
}

/**
 * Set the counter columns of tables (key columns cannot be counters) and re-install the capture
 * of every sync carrying them: their triggers record the differences from then on.
 */
export async function setDeltaColumns(ctx: ConfigContext, c: pg.Client, rels: readonly RelationRecord[], cols: string[] | null): Promise<void> {
  for (const r of rels) {
    const key = cols?.find((x) => r.key_columns?.includes(x));
    if (key) throw usage(`delta_columns: "${key}" is a key column of ${displayRelation(r.schemaname, r.relname)}; a counter must be a plain numeric column`);
  }
  // The triggers are replaced inside the control transaction (capture reads the new setting
  // through it): a column missing on a source refuses the change and nothing is kept.
  await write(ctx, c, async () => {
    for (const r of rels) {
      await setRelationDeltaColumns(c, r.id, cols);
      report(ctx, 'set', `delta_columns=${cols?.join(',') ?? '(none)'} on table ${displayRelation(r.schemaname, r.relname)}`);
    }
    await runUpgradeCapture(ctx, c, await syncsUsing(c, { relations: rels.map((r) => r.id) }));
  });
}

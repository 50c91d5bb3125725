/**
 * `add | list | update | remove table|sequence` and `add all tables|sequences`:
 * registering relations of one db, with the key found in its catalog.
 */
import type pg from 'pg';
import { endQuietly } from '../../db/connect.js';
import { findRelations, relationOid, tableInfo } from '../../db/catalog.js';
import {
  deleteRelations, getDb, insertRelation, listDbs, listRelations, listRelgroups,
  listSyncs, relationsNamed, relgroupsOf, removeRelgroupMembers, setRelationStrategy, syncsUsing,
  type DbRecord, type NewRelation, type RelationRecord,
} from '../../control/config-store.js';
import { configError, notFound, usage } from '../../errors.js';
import { allowOnly } from '../args.js';
import type { Context } from '../context.js';
import {
  dryRunDone, listHint, openDb, parseNounArgs, printRows, report, requireDb, write, type RelationFilters,
} from './common.js';
import {
  checkObjectName, displayRelation, isExact, likeOf, parseRelationTerm, type RelationTerm,
} from './names.js';
import { STRATEGIES, parseStrategy } from './options.js';
import { planRelgroupAddition } from './relgroup.js';

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

function keyText(cols: readonly string[] | null | undefined): string {
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

/** Split `tables=a,b,"x,y".z` on commas outside double quotes. */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  out.push(cur.trim());
  return out.filter(Boolean);
}

/** The db a relation command works on: db=, else the only postgres db. */
async function pickDb(c: pg.Client, options: Map<string, string>, what: string): Promise<DbRecord> {
  const name = options.get('db');
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
async function tableStrategy(c: pg.Client, value: string | undefined): Promise<string | null | undefined> {
  if (value === undefined) return undefined;
  if (value === '') return null;
  const s = parseStrategy(value);
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
async function registerAndGroup(
  ctx: Context, c: pg.Client, kind: RelKind, d: Discovery, group: string | undefined, strategy: string | null | undefined, announce?: () => void,
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

function sayDiscovery(ctx: Context, kind: RelKind, d: Discovery): void {
  for (const r of d.existing) ctx.say(`${kind} ${displayRelation(r.schemaname, r.relname)} is already registered on db ${r.db}`);
  for (const s of d.skipped) ctx.say(`skipped ${kind} ${s.label}: it ${s.why}`);
}

/** `ibex add table|sequence <name|pattern …> [db=] [relgroup=] [conflict_strategy=] [--force]` */
export async function addRelations(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, `add ${kind}`);
  allowOnly(options, kind === 'table' ? ['db', 'relgroup', 'herd', 'conflict_strategy'] : ['db', 'relgroup', 'herd'], `add ${kind}`);
  if (words.length === 0) throw usage(`add ${kind} needs a name: ibex add ${kind} <schema.${kind}|pattern …> db=<db>`);
  const terms = words.map(parseRelationTerm);
  const group = options.get('relgroup') ?? options.get('herd');
  if (options.has('relgroup') && options.has('herd')) throw usage('relgroup= and herd= are the same option: give it once');
  if (group !== undefined) checkObjectName('relgroup', group);
  await ctx.withControl(async (c) => {
    const db = await pickDb(c, options, `add ${kind}`);
    const strategy = await tableStrategy(c, options.get('conflict_strategy'));
    const client = await openDb(db);
    let d: Discovery;
    try {
      d = await discover(c, db, client, kind, { terms }, ctx.flags.force);
    } finally {
      await endQuietly(client);
    }
    for (const r of d.existing) {
      if (strategy !== undefined && r.conflict_strategy !== strategy) {
        const label = displayRelation(r.schemaname, r.relname);
        throw configError(`${kind} ${label} is already registered on db ${r.db} with conflict_strategy=${r.conflict_strategy ?? '(the sync\'s)'}: change it with "ibex update ${kind} ${label} db=${r.db} conflict_strategy=${strategy ?? ''}"`);
      }
    }
    await registerAndGroup(ctx, c, kind, d, group, strategy, () => sayDiscovery(ctx, kind, d));
    if (d.found.length === 0 && !group && strategy === undefined) ctx.say(`nothing new to register on db ${db.name}`);
    dryRunDone(ctx);
  });
}

/** `ibex add all tables|sequences db=<db> [-n schema] [-N schema] [-t name] [-T name] [relgroup=] [--force]` */
export async function addAllRelations(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options, filters } = parseNounArgs(args, `add all ${kind}s`, true);
  allowOnly(options, ['db', 'relgroup', 'herd'], `add all ${kind}s`);
  if (words.length) throw usage(`unexpected "${words.join(' ')}" for add all ${kind}s: filter with -n schema, -N schema, -t ${kind}, -T ${kind}`);
  const group = options.get('relgroup') ?? options.get('herd');
  if (group !== undefined) checkObjectName('relgroup', group);
  await ctx.withControl(async (c) => {
    const db = await pickDb(c, options, `add all ${kind}s`);
    const client = await openDb(db);
    let d: Discovery;
    try {
      d = await discover(c, db, client, kind, { all: filters }, ctx.flags.force);
    } finally {
      await endQuietly(client);
    }
    await registerAndGroup(ctx, c, kind, d, group, undefined, () => sayDiscovery(ctx, kind, d));
    ctx.say(`new ${kind}s: ${d.found.length}, already registered: ${d.existing.length}, skipped: ${d.skipped.length}`);
    dryRunDone(ctx);
  });
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

/** `ibex list tables|sequences [name|pattern …] [db=] [--json]` */
export async function listRelationsVerb(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, `list ${kind}s`);
  allowOnly(options, ['db'], `list ${kind}s`);
  await ctx.withControl(async (c) => {
    const rels = words.length
      ? (await registeredRelations(c, kind, words, options.get('db'), { filter: true })).sort((a, b) =>
        displayRelation(a.schemaname, a.relname).localeCompare(displayRelation(b.schemaname, b.relname)) || a.db.localeCompare(b.db))
      : await listRelations(c, { reltype: kind, ...(options.get('db') ? { db: options.get('db')! } : {}) });
    const groups = await relgroupsOf(c, rels.map((r) => r.id));
    const syncs = await listSyncs(c);
    const rows = rels.map((r) => {
      const gs = groups.filter((g) => g.relation === r.id).map((g) => g.relgroup);
      return {
        r, gs, ss: syncs.filter((s) => gs.includes(s.relgroup)).map((s) => s.name),
      };
    });
    const json = rows.map(({ r, gs, ss }) => ({
      name: displayRelation(r.schemaname, r.relname), schema: r.schemaname, [kind]: r.relname, db: r.db,
      ...(kind === 'table' ? {
        key: r.key_columns ? { kind: r.key_kind, index: r.key_index, columns: r.key_columns, types: r.key_types } : null,
        conflict_strategy: r.conflict_strategy,
      } : {}),
      relgroups: gs, syncs: ss,
    }));
    printRows(
      ctx,
      kind === 'table' ? ['table', 'db', 'key', 'relgroups', 'syncs', 'strategy'] : ['sequence', 'db', 'relgroups', 'syncs'],
      rows.map(({ r, gs, ss }) => kind === 'table'
        ? [displayRelation(r.schemaname, r.relname), r.db, r.key_columns ? `${r.key_columns.map((k, i) => `${k} ${r.key_types?.[i] ?? ''}`).join(', ')}${r.key_kind === 'unique' ? ' (unique)' : ''}` : '(none)', gs.join(' '), ss.join(' '), r.conflict_strategy ?? '']
        : [displayRelation(r.schemaname, r.relname), r.db, gs.join(' '), ss.join(' ')]),
      json,
      `no ${kind}s registered${words.length ? ` match ${words.join(' ')}` : ''}: add them with "ibex add ${kind} <name> db=<db>"`,
    );
  });
}

/** `ibex update table <name> [db=] [conflict_strategy=] [relgroup=<g>]` */
export async function updateRelations(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, `update ${kind}`);
  allowOnly(options, kind === 'table' ? ['db', 'conflict_strategy', 'relgroup', 'herd'] : ['db', 'relgroup', 'herd'], `update ${kind}`);
  if (words.length === 0) throw usage(`update ${kind} needs a name: ibex update ${kind} <schema.name> [db=] key=value …`);
  const changes = [...options.keys()].filter((k) => k !== 'db');
  if (changes.length === 0) throw usage(`update ${kind} needs something to change: e.g. relgroup=<g>${kind === 'table' ? ' or conflict_strategy=source' : ''}`);
  const group = options.get('relgroup') ?? options.get('herd');
  if (group !== undefined) checkObjectName('relgroup', group);
  await ctx.withControl(async (c) => {
    const rels = await registeredRelations(c, kind, words, options.get('db'));
    const strategy = await tableStrategy(c, options.get('conflict_strategy'));
    await registerAndGroup(ctx, c, kind, { found: [], existing: rels, skipped: [] }, group, strategy);
    dryRunDone(ctx);
  });
}

/** `ibex remove table|sequence <name|pattern …> [db=] [--force]`: refused while in a relgroup of a sync, unless --force. */
export async function removeRelations(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, `remove ${kind}`);
  allowOnly(options, ['db'], `remove ${kind}`);
  if (words.length === 0) throw usage(`remove ${kind} needs a name: ibex remove ${kind} <schema.name …> [db=]`);
  await ctx.withControl(async (c) => {
    const rels = await registeredRelations(c, kind, words, options.get('db'));
    const ids = rels.map((r) => r.id);
    const syncs = await syncsUsing(c, { relations: ids });
    const inSync = syncs.length > 0;
    if (inSync && !ctx.flags.force) {
      throw configError(`${rels.length === 1 ? `${kind} ${displayRelation(rels[0]!.schemaname, rels[0]!.relname)} is` : `these ${kind}s are`} replicated by sync ${syncs.join(', ')}: remove it from the sync's relgroup first, or use --force`);
    }
    const memberships = await relgroupsOf(c, ids);
    const relgroups = await listRelgroups(c);
    await write(ctx, c, async () => {
      for (const m of memberships) {
        await removeRelgroupMembers(c, m.relgroup, [m.relation]);
        const r = rels.find((x) => x.id === m.relation)!;
        report(ctx, 'remove', `${kind} ${displayRelation(r.schemaname, r.relname)} from relgroup ${m.relgroup}`);
      }
      await deleteRelations(c, ids);
      for (const r of rels) report(ctx, 'remove', `${kind} ${displayRelation(r.schemaname, r.relname)} of db ${r.db}`);
    });
    if (inSync) ctx.say(`note: sync ${syncs.join(', ')} no longer ${syncs.length > 1 ? 'carry' : 'carries'} it; its capture objects stay on the sources until the sync is removed`);
    for (const g of relgroups) {
      if (g.members.length && g.members.every((m) => ids.includes(m.relation))) ctx.say(`note: relgroup ${g.name} is now empty`);
    }
    dryRunDone(ctx);
  });
}

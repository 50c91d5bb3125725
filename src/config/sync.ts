/**
 * Adding a sync: resolve its dbs (an existing dbgroup, an identical one, or a new one named
 * after the sync) and its tables (a relgroup, or tables registered from the first source), run
 * every check, then write it all in one transaction with status `installing` and install
 * capture; if that fails every row this step added is deleted again.
 */
import type pg from 'pg';
import { endQuietly } from '../db/connect.js';
import {
  addRelgroupMembers, defaultConflictStrategy, deleteDbgroup, deleteRelations, deleteRelgroup, deleteSync, getDb,
  getDbgroup, getRelgroup, getSync, insertDbgroup, insertRelation, insertRelgroup, insertSync, listDbgroups,
  listRelgroups, relationsById, type DbgroupMember, type DbRoleName, type NewRelation, type RelationRecord,
  type SyncOptions, type SyncStatus,
} from '../control/config-store.js';
import { configError, notFound, usage } from '../errors.js';
import { runInstallCapture } from './capture.js';
import { dryRunDone, report, write, type ConfigContext } from './context.js';
import { listHint, openDb, requireDb } from './dbs.js';
import { displayRelation, type RelationTerm } from './names.js';
import { discover } from './relations.js';
import { validateSync, type SyncPlan } from './sync-check.js';

/** What `add sync` asks for, parsed. */
export interface NewSync {
  name: string;
  /** The options given (the rest take their defaults). */
  options: Partial<SyncOptions>;
  /** The status the sync should have once installed. */
  status: SyncStatus;
  /** An existing dbgroup, or members (`orDbgroup`: the one word given, which may name a dbgroup instead). */
  dbs: { dbgroup: string } | { members: DbgroupMember[]; orDbgroup?: string };
  /** An existing relgroup, or tables to find on the first source. */
  relations: { relgroup: string } | { tables: RelationTerm[] };
}

/** Check that the dbs of a member list exist and that only postgres dbs are sources. */
export async function checkMembers(c: pg.Client, members: readonly { db: string; role: DbRoleName }[]): Promise<void> {
  for (const m of members) {
    const d = await requireDb(c, m.db);
    if (m.role === 'source' && d.dbtype !== 'postgres') {
      throw configError(`db ${d.name} is a ${d.dbtype} db and cannot be a source: only postgres dbs can be sources; make it a target (${d.name}:target)`);
    }
  }
}

function sameMembers(a: readonly { db: string; role: string }[], b: readonly { db: string; role: string }[]): boolean {
  return a.length === b.length && a.every((m) => b.some((x) => x.db === m.db && x.role === m.role));
}

/** Add a sync (see the module comment); reports each step through `ctx`. */
export async function createSync(ctx: ConfigContext, c: pg.Client, input: NewSync): Promise<void> {
  const { name } = input;
  const values = input.options;
  const requested = input.status;
  if (await getSync(c, name)) throw configError(`a sync named ${name} already exists: choose another name or change it with "ibex update sync ${name}"`);

  // What is said before the checks passed would be a report of nothing: it waits for validateSync.
  const later: (() => void)[] = [];

  // The dbs: an existing dbgroup, an identical one, or a new one named after the sync.
  let dbgroup: string;
  let members: DbgroupMember[];
  let createDbgroup = false;
  if ('dbgroup' in input.dbs) {
    const g = await getDbgroup(c, input.dbs.dbgroup);
    if (!g) throw notFound('dbgroup', input.dbs.dbgroup, listHint('dbgroup'));
    dbgroup = g.name;
    members = g.members;
  } else {
    const single = input.dbs.orDbgroup;
    const asGroup = single && !(await getDb(c, single)) ? await getDbgroup(c, single) : undefined;
    if (asGroup) {
      dbgroup = asGroup.name;
      members = asGroup.members;
    } else {
      members = input.dbs.members;
      await checkMembers(c, members);
      const same = (await listDbgroups(c)).find((g) => sameMembers(g.members, members));
      if (same) {
        dbgroup = same.name;
        later.push(() => report(ctx, 'reuse', `dbgroup ${same.name} (${members.map((m) => `${m.db}:${m.role}`).join(' ')})`));
      } else {
        if (await getDbgroup(c, name)) throw configError(`a dbgroup named ${name} already exists with other members: use dbgroup=${name}, choose another sync name, or remove it with "ibex remove dbgroup ${name}"`);
        dbgroup = name;
        createDbgroup = true;
      }
    }
  }

  // The relations: an existing relgroup, or tables= registered from the first source, grouped.
  let relgroup: string;
  let relations: (RelationRecord | NewRelation)[];
  let createRelgroup = false;
  let newRelations: NewRelation[] = [];
  if ('relgroup' in input.relations) {
    const g = await getRelgroup(c, input.relations.relgroup);
    if (!g) throw notFound('relgroup', input.relations.relgroup, `${listHint('relgroup')}, or give tables=<t1,t2>`);
    relgroup = g.name;
    relations = await relationsById(c, g.members.map((m) => m.relation));
  } else {
    const source = members.find((m) => m.role === 'source');
    if (!source) throw configError(`sync ${name} has no source db: mark at least one db as source, e.g. dbs=${members[0]?.db ?? 'A'}:source`);
    const db = await requireDb(c, source.db);
    if (db.dbtype !== 'postgres') throw configError(`db ${db.name} is a ${db.dbtype} db and cannot be a source: only postgres dbs can be sources`);
    const terms = input.relations.tables;
    if (terms.length === 0) throw usage('tables= is empty: write tables=public.t1,public.t2');
    const client = await openDb(db);
    try {
      const d = await discover(c, db, client, 'table', { terms }, ctx.flags.force);
      for (const s of d.skipped) later.push(() => ctx.say(`skipped table ${s.label}: it ${s.why}`));
      relations = [...d.existing, ...d.found];
      newRelations = d.found;
    } finally {
      await endQuietly(client);
    }
    const ids = relations.flatMap((r) => ('id' in r ? [r.id] : []));
    const same = newRelations.length ? undefined
      : (await listRelgroups(c)).find((g) => g.members.length === ids.length && g.members.every((m) => ids.includes(m.relation)));
    if (same) {
      relgroup = same.name;
      later.push(() => report(ctx, 'reuse', `relgroup ${same.name}`));
    } else {
      if (await getRelgroup(c, name)) throw configError(`a relgroup named ${name} already exists with other tables: use relgroup=${name}, choose another sync name, or remove it with "ibex remove relgroup ${name}"`);
      relgroup = name;
      createRelgroup = true;
    }
  }

  const strategy = values.conflict_strategy ?? (await defaultConflictStrategy(c));
  const plan: SyncPlan = {
    name, members, relations, conflict_strategy: strategy, clock: values.clock ?? 'change', onetimecopy_from: values.onetimecopy_from ?? null,
  };
  await validateSync(c, plan);
  for (const say of later) say();

  const newIds: number[] = [];
  const insertAll = async (): Promise<void> => {
    for (const r of newRelations) {
      newIds.push(await insertRelation(c, r));
      report(ctx, 'register', `table ${displayRelation(r.schemaname, r.relname)} of db ${r.db} key (${(r.key_columns ?? []).join(', ')})`);
    }
    if (createRelgroup) {
      await insertRelgroup(c, relgroup);
      await addRelgroupMembers(c, relgroup, relations.map((r, i) => ('id' in r ? r.id : newIds[i - (relations.length - newRelations.length)]!)));
      report(ctx, 'create', `relgroup ${relgroup} with ${relations.length} table(s)`);
    }
    if (createDbgroup) {
      await insertDbgroup(c, dbgroup, members);
      report(ctx, 'create', `dbgroup ${dbgroup} (${members.map((m) => `${m.db}:${m.role}`).join(' ')})`);
    }
    await insertSync(c, { ...values, conflict_strategy: strategy, name, relgroup, dbgroup, status: 'installing' });
    report(ctx, 'add', `sync ${name}: relgroup ${relgroup}, dbs ${members.map((m) => `${m.db}:${m.role}`).join(' ')}, conflict_strategy ${strategy}`);
  };
  if (ctx.flags.dryRun) {
    await write(ctx, c, async () => {
      await insertAll();
      await runInstallCapture(ctx, c, name, requested);
    });
  } else {
    await write(ctx, c, insertAll);
    await runInstallCapture(ctx, c, name, requested, async () => {
      await write(ctx, c, async () => {
        await deleteSync(c, name);
        if (createRelgroup) await deleteRelgroup(c, relgroup);
        if (createDbgroup) await deleteDbgroup(c, dbgroup);
        await deleteRelations(c, newIds);
      });
    });
    if (requested !== 'active') ctx.say(`sync ${name} is ${requested}`);
  }
  dryRunDone(ctx);
}

/**
 * `add | list | update | remove relgroup`: named sets of tables and sequences of one db.
 */
import type pg from 'pg';
import { endQuietly } from '../../db/connect.js';
import { relationOid } from '../../db/catalog.js';
import {
  deleteRelations, deleteRelgroup, deleteSync, getRelgroup, insertRelation, insertRelgroup, listRelgroups, listSyncs, relationsById, removeRelgroupMembers, setRelgroupAbout, syncsUsing, type RelationRecord, type NewRelation,
} from '../../control/config-store.js';
import { configError, notFound, usage } from '../../errors.js';
import { allowOnly } from '../args.js';
import type { Context } from '../context.js';
import { parseNounArgs, printRows } from './common.js';
import { runRemoveCapture } from '../../config/capture.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { listHint, openDb, requireDb } from '../../config/dbs.js';
import {
  checkObjectName, displayRelation, isExact, matchesFilter, parseRelationTerm, type RelationTerm,
} from '../../config/names.js';
import { discover, planRelgroupAddition, registeredRelations } from '../../config/relations.js';

/** Resolve table words for a relgroup: registered relations, or with db= discovered (and registered) on that db. */
async function resolveMembers(ctx: Context, c: pg.Client, words: readonly string[], dbName: string | undefined): Promise<{ existing: RelationRecord[]; found: NewRelation[] }> {
  if (words.length === 0) return { existing: [], found: [] };
  if (!dbName) return { existing: await registeredRelations(c, undefined, words), found: [] };
  const db = await requireDb(c, dbName);
  const client = await openDb(db);
  try {
    // Each exact name that is a sequence is registered as one; everything else as tables.
    const tables: RelationTerm[] = [];
    const sequences: RelationTerm[] = [];
    for (const w of words) {
      const term = parseRelationTerm(w);
      const rel = isExact(term) ? await relationOid(client, term.schema.text, term.name.text) : undefined;
      (rel?.relkind === 'S' ? sequences : tables).push(term);
    }
    const existing: RelationRecord[] = [];
    const found: NewRelation[] = [];
    for (const [kind, terms] of [['table', tables], ['sequence', sequences]] as const) {
      if (terms.length === 0) continue;
      const d = await discover(c, db, client, kind, { terms }, ctx.flags.force);
      for (const s of d.skipped) ctx.say(`skipped ${kind} ${s.label}: it ${s.why}`);
      existing.push(...d.existing);
      found.push(...d.found);
    }
    return { existing, found };
  } finally {
    await endQuietly(client);
  }
}

async function addMembers(ctx: Context, c: pg.Client, group: string, words: readonly string[], dbName: string | undefined): Promise<void> {
  const { existing, found } = await resolveMembers(ctx, c, words, dbName);
  const change = await planRelgroupAddition(ctx, c, group, [...existing, ...found]);
  const newIds: number[] = [];
  await write(ctx, c, async () => {
    for (const r of found) {
      newIds.push(await insertRelation(c, r));
      report(ctx, 'register', `${r.reltype} ${displayRelation(r.schemaname, r.relname)} of db ${r.db}`);
    }
    await change.apply([...existing.map((r) => r.id), ...newIds]);
  });
  await change.afterCommit(async () => deleteRelations(c, newIds));
}

/** `ibex add relgroup <name> [schema.table …] [db=<db>] [about=]` (with db=, unregistered tables are registered) */
export async function addRelgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'add relgroup');
  allowOnly(options, ['db', 'about'], 'add relgroup');
  const [name, ...tables] = words;
  if (!name) throw usage('add relgroup needs a name: ibex add relgroup <name> [schema.table …] [db=<db>]');
  checkObjectName('relgroup', name);
  await ctx.withControl(async (c) => {
    if (await getRelgroup(c, name)) throw configError(`a relgroup named ${name} already exists: choose another name or change it with "ibex update relgroup ${name} add <table …>"`);
    if (tables.length === 0) {
      await write(ctx, c, async () => insertRelgroup(c, name, options.get('about') || null));
      report(ctx, 'create', `relgroup ${name}`);
    } else {
      await addMembers(ctx, c, name, tables, options.get('db'));
      if (options.get('about')) await write(ctx, c, async () => setRelgroupAbout(c, name, options.get('about')!));
    }
    dryRunDone(ctx);
  });
}

/** `ibex list relgroups [name|pattern …] [--json]` */
export async function listRelgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'list relgroups');
  allowOnly(options, [], 'list relgroups');
  await ctx.withControl(async (c) => {
    const groups = (await listRelgroups(c)).filter((g) => matchesFilter(g.name, words));
    const syncs = await listSyncs(c);
    const rels = await relationsById(c, groups.flatMap((g) => g.members.map((m) => m.relation)));
    const rows = groups.map((g) => {
      const members = g.members.map((m) => rels.find((r) => r.id === m.relation)!).filter(Boolean);
      return {
        name: g.name, db: members[0]?.db ?? null,
        tables: members.filter((r) => r.reltype === 'table').map((r) => displayRelation(r.schemaname, r.relname)),
        sequences: members.filter((r) => r.reltype === 'sequence').map((r) => displayRelation(r.schemaname, r.relname)),
        syncs: syncs.filter((s) => s.relgroup === g.name).map((s) => s.name), about: g.about,
      };
    });
    printRows(ctx, ['relgroup', 'db', 'members', 'syncs'],
      rows.map((r) => [r.name, r.db ?? '', [...r.tables, ...r.sequences].join('\n'), r.syncs.join(' ')]),
      rows, words.length ? `no relgroup matches ${words.join(' ')}` : 'no relgroups: add one with "ibex add relgroup <name> <table …>"');
  });
}

/**
 * `ibex update relgroup <name> add <table …> [db=]` | `remove <table …>` | `about=…`.
 * Adding to a relgroup of a sync validates the sync again and updates its capture;
 * removing from one is refused unless --force.
 */
export async function updateRelgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'update relgroup');
  allowOnly(options, ['db', 'about'], 'update relgroup');
  const [name, action, ...tables] = words;
  if (!name) throw usage('update relgroup needs a name: ibex update relgroup <name> add|remove <table …>');
  if (action !== undefined && action !== 'add' && action !== 'remove') throw usage(`unknown action "${action}" for update relgroup: write "add <table …>" or "remove <table …>"`);
  if (action && tables.length === 0) throw usage(`update relgroup ${name} ${action} needs tables: ibex update relgroup ${name} ${action} <schema.table …>`);
  if (!action && !options.has('about')) throw usage(`update relgroup ${name} needs a change: add <table …>, remove <table …> or about=`);
  await ctx.withControl(async (c) => {
    const group = await getRelgroup(c, name);
    if (!group) throw notFound('relgroup', name, listHint('relgroup'));
    if (action === 'add') await addMembers(ctx, c, name, tables, options.get('db'));
    if (action === 'remove') {
      const rels = (await registeredRelations(c, undefined, tables, options.get('db'))).filter((r) => group.members.some((m) => m.relation === r.id));
      if (rels.length === 0) throw notFound('member of relgroup', name, `none of ${tables.join(' ')} is in it: list its members with "ibex list relgroups ${name}"`);
      const syncs = await syncsUsing(c, { relgroup: name });
      if (syncs.length && !ctx.flags.force) throw configError(`relgroup ${name} is used by sync ${syncs.join(', ')}: removing tables from a running sync is refused; remove the sync first, or use --force (its capture objects for them stay until the sync is removed)`);
      await write(ctx, c, async () => {
        await removeRelgroupMembers(c, name, rels.map((r) => r.id));
        for (const r of rels) report(ctx, 'remove', `${r.reltype} ${displayRelation(r.schemaname, r.relname)} from relgroup ${name}`);
      });
    }
    if (options.has('about')) {
      await write(ctx, c, async () => setRelgroupAbout(c, name, options.get('about') || null));
      report(ctx, 'set', `about on relgroup ${name}`);
    }
    dryRunDone(ctx);
  });
}

/** Remove syncs (capture first), for `--force` removals of what they use. */
export async function removeSyncsFor(ctx: Context, c: pg.Client, syncs: readonly string[]): Promise<void> {
  for (const s of syncs) await runRemoveCapture(ctx, c, s);
}

/** `ibex remove relgroup <name …> [--force]`: refused while a sync uses it, unless --force removes those syncs. */
export async function removeRelgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'remove relgroup');
  allowOnly(options, [], 'remove relgroup');
  if (words.length === 0) throw usage('remove relgroup needs a name: ibex remove relgroup <name …>');
  await ctx.withControl(async (c) => {
    const syncs = new Set<string>();
    for (const name of new Set(words)) {
      if (!(await getRelgroup(c, name))) throw notFound('relgroup', name, listHint('relgroup'));
      const users = await syncsUsing(c, { relgroup: name });
      if (users.length && !ctx.flags.force) throw configError(`relgroup ${name} is used by sync ${users.join(', ')}: remove the sync first, or use --force to remove it too`);
      for (const u of users) syncs.add(u);
    }
    await removeSyncsFor(ctx, c, [...syncs]);
    await write(ctx, c, async () => {
      for (const s of syncs) {
        await deleteSync(c, s);
        report(ctx, 'remove', `sync ${s}`);
      }
      for (const name of new Set(words)) {
        await deleteRelgroup(c, name);
        report(ctx, 'remove', `relgroup ${name} (its tables stay registered)`);
      }
    });
    dryRunDone(ctx);
  });
}

/**
 * `add | list | update | remove table|sequence` and `add all tables|sequences`:
 * registering relations of one db, with the key found in its catalog.
 */
import { endQuietly } from '../../db/connect.js';
import {
  deleteRelations, listRelations, listRelgroups, listSyncs, relgroupsOf, removeRelgroupMembers, syncsUsing,
} from '../../control/config-store.js';
import { configError, usage } from '../../errors.js';
import { allowOnly } from '../args.js';
import type { Context } from '../context.js';
import { parseNounArgs, printRows } from './common.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { openDb } from '../../config/dbs.js';
import { checkObjectName, displayRelation, parseRelationTerm } from '../../config/names.js';
import {
  checkRelationStrategy, discover, parseDeltaColumns, registerRelations, registeredRelations, setDeltaColumns, sourceDbFor, type Discovery, type RelKind,
} from '../../config/relations.js';

function sayDiscovery(ctx: Context, kind: RelKind, d: Discovery): void {
  for (const r of d.existing) ctx.say(`${kind} ${displayRelation(r.schemaname, r.relname)} is already registered on db ${r.db}`);
  for (const s of d.skipped) ctx.say(`skipped ${kind} ${s.label}: it ${s.why}`);
}

/** `ibex add table|sequence <name|pattern …> [db=] [relgroup=] [conflict_strategy=] [delta_columns=] [--force]` */
export async function addRelations(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, `add ${kind}`);
  allowOnly(options, kind === 'table' ? ['db', 'relgroup', 'herd', 'conflict_strategy', 'delta_columns'] : ['db', 'relgroup', 'herd'], `add ${kind}`);
  const deltaCols = parseDeltaColumns(options.get('delta_columns'));
  if (words.length === 0) throw usage(`add ${kind} needs a name: ibex add ${kind} <schema.${kind}|pattern …> db=<db>`);
  const terms = words.map(parseRelationTerm);
  const group = options.get('relgroup') ?? options.get('herd');
  if (options.has('relgroup') && options.has('herd')) throw usage('relgroup= and herd= are the same option: give it once');
  if (group !== undefined) checkObjectName('relgroup', group);
  await ctx.withControl(async (c) => {
    const db = await sourceDbFor(c, options.get('db'), `add ${kind}`);
    const strategy = await checkRelationStrategy(c, options.get('conflict_strategy'));
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
    await registerRelations(ctx, c, kind, d, group, strategy, () => sayDiscovery(ctx, kind, d));
    if (deltaCols !== undefined && !ctx.flags.dryRun) await setDeltaColumns(ctx, c, await registeredRelations(c, kind, words, db.name), deltaCols);
    if (d.found.length === 0 && !group && strategy === undefined && deltaCols === undefined) ctx.say(`nothing new to register on db ${db.name}`);
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
    const db = await sourceDbFor(c, options.get('db'), `add all ${kind}s`);
    const client = await openDb(db);
    let d: Discovery;
    try {
      d = await discover(c, db, client, kind, { all: filters }, ctx.flags.force);
    } finally {
      await endQuietly(client);
    }
    await registerRelations(ctx, c, kind, d, group, undefined, () => sayDiscovery(ctx, kind, d));
    ctx.say(`new ${kind}s: ${d.found.length}, already registered: ${d.existing.length}, skipped: ${d.skipped.length}`);
    dryRunDone(ctx);
  });
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
        conflict_strategy: r.conflict_strategy, delta_columns: r.delta_columns ?? null,
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

/** `ibex update table <name> [db=] [conflict_strategy=] [delta_columns=] [relgroup=<g>]` */
export async function updateRelations(ctx: Context, kind: RelKind, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, `update ${kind}`);
  allowOnly(options, kind === 'table' ? ['db', 'conflict_strategy', 'relgroup', 'herd', 'delta_columns'] : ['db', 'relgroup', 'herd'], `update ${kind}`);
  const deltaCols = parseDeltaColumns(options.get('delta_columns'));
  if (words.length === 0) throw usage(`update ${kind} needs a name: ibex update ${kind} <schema.name> [db=] key=value …`);
  const changes = [...options.keys()].filter((k) => k !== 'db');
  if (changes.length === 0) throw usage(`update ${kind} needs something to change: e.g. relgroup=<g>${kind === 'table' ? ' or conflict_strategy=source' : ''}`);
  const group = options.get('relgroup') ?? options.get('herd');
  if (group !== undefined) checkObjectName('relgroup', group);
  await ctx.withControl(async (c) => {
    const rels = await registeredRelations(c, kind, words, options.get('db'));
    const strategy = await checkRelationStrategy(c, options.get('conflict_strategy'));
    await registerRelations(ctx, c, kind, { found: [], existing: rels, skipped: [] }, group, strategy);
    if (deltaCols !== undefined) await setDeltaColumns(ctx, c, rels, deltaCols);
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

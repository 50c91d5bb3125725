/**
 * `add | list | update | remove dbgroup`: named sets of dbs, each with a role.
 */
import {
  deleteDbgroup, deleteSync, getDbgroup, getSync, insertDbgroup, listDbgroups, listSyncs, removeDbgroupMembers, setDbgroupAbout, setDbgroupMember, syncsUsing, type DbgroupMember, type DbRoleName,
} from '../../control/config-store.js';
import { configError, notFound, usage } from '../../errors.js';
import { allowOnly, parseDbRoles } from '../args.js';
import type { Context } from '../context.js';
import { parseNounArgs, printRows } from './common.js';
import { runInstallCapture, runRemoveCapture } from '../../config/capture.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { listHint } from '../../config/dbs.js';
import { checkObjectName, matchesFilter } from '../../config/names.js';
import { planOf, validateSync } from '../../config/sync-check.js';
import { checkMembers } from '../../config/sync.js';

function membersText(members: readonly { db: string; role: string }[]): string {
  return members.map((m) => `${m.db}:${m.role}`).join(' ');
}

/** `ibex add dbgroup <name> [A:source B:target …|A:source,B:target] [about=]` */
export async function addDbgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'add dbgroup');
  allowOnly(options, ['about', 'dbs'], 'add dbgroup');
  const [name, ...rest] = words;
  if (!name) throw usage('add dbgroup needs a name: ibex add dbgroup <name> A:source B:target …');
  checkObjectName('dbgroup', name);
  const specs = [...rest, ...(options.has('dbs') ? [options.get('dbs')!] : [])];
  const members: DbgroupMember[] = specs.length ? parseDbRoles(specs).map((m) => ({ db: m.db, role: m.role, priority: 0 })) : [];
  await ctx.withControl(async (c) => {
    if (await getDbgroup(c, name)) throw configError(`a dbgroup named ${name} already exists: choose another name or change it with "ibex update dbgroup ${name} …"`);
    await checkMembers(c, members);
    await write(ctx, c, async () => insertDbgroup(c, name, members, options.get('about') || null));
    report(ctx, 'create', `dbgroup ${name}${members.length ? ` with ${membersText(members)}` : ' (empty)'}`);
    dryRunDone(ctx);
  });
}

/** `ibex list dbgroups [name|pattern …] [--json]` */
export async function listDbgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'list dbgroups');
  allowOnly(options, [], 'list dbgroups');
  await ctx.withControl(async (c) => {
    const groups = (await listDbgroups(c)).filter((g) => matchesFilter(g.name, words));
    const syncs = await listSyncs(c);
    const rows = groups.map((g) => ({
      name: g.name, members: g.members.map((m) => ({ db: m.db, role: m.role, priority: m.priority })),
      syncs: syncs.filter((s) => s.dbgroup === g.name).map((s) => s.name), about: g.about,
    }));
    printRows(ctx, ['dbgroup', 'members', 'syncs'], rows.map((r) => [r.name, membersText(r.members), r.syncs.join(' ')]), rows,
      words.length ? `no dbgroup matches ${words.join(' ')}` : 'no dbgroups: add one with "ibex add dbgroup <name> A:source B:target"');
  });
}

/**
 * `ibex update dbgroup <name> A:source B:target …` (the full membership, as Bucardo) |
 * `add C:target …` | `remove C …` | `about=`. A dbgroup used by syncs: each sync is
 * validated again with the new members and its capture brought up to date;
 * removing a member from it is refused.
 */
export async function updateDbgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'update dbgroup');
  allowOnly(options, ['about'], 'update dbgroup');
  const [name, ...rest] = words;
  if (!name) throw usage('update dbgroup needs a name: ibex update dbgroup <name> add C:target | remove C | A:source B:target …');
  if (rest.length === 0 && !options.has('about')) throw usage(`update dbgroup ${name} needs a change: add <db:role …>, remove <db …>, the full list of members, or about=`);
  await ctx.withControl(async (c) => {
    const group = await getDbgroup(c, name);
    if (!group) throw notFound('dbgroup', name, listHint('dbgroup'));
    const old = group.members;
    let next: DbgroupMember[] = old.map((m) => ({ ...m }));
    const action = rest[0];
    if (action === 'add') {
      if (rest.length < 2) throw usage(`update dbgroup ${name} add needs members: add C:target`);
      for (const m of parseDbRoles(rest.slice(1))) {
        // An added member without a role is a target (it joins an existing group).
        const role: DbRoleName = m.explicit ? m.role : 'target';
        next = next.filter((x) => x.db !== m.db);
        next.push({ db: m.db, role, priority: 0 });
      }
    } else if (action === 'remove') {
      const dbs = rest.slice(1).flatMap((w) => w.split(',')).filter(Boolean);
      if (dbs.length === 0) throw usage(`update dbgroup ${name} remove needs db names: remove C`);
      for (const d of dbs) if (!old.some((m) => m.db === d)) throw notFound(`member of dbgroup ${name}`, d, `its members are ${membersText(old) || 'none'}`);
      next = next.filter((m) => !dbs.includes(m.db));
    } else if (rest.length) {
      next = parseDbRoles(rest).map((m) => ({ db: m.db, role: m.role, priority: old.find((x) => x.db === m.db)?.priority ?? 0 }));
    }
    await checkMembers(c, next);
    const removed = old.filter((m) => !next.some((x) => x.db === m.db));
    const changed = next.filter((m) => old.find((x) => x.db === m.db)?.role !== m.role);
    const syncs = await syncsUsing(c, { dbgroup: name });
    if (syncs.length && removed.length) {
      throw configError(`dbgroup ${name} is used by sync ${syncs.join(', ')}: removing db ${removed.map((m) => m.db).join(', ')} from a sync is refused; remove the sync first`);
    }
    const statuses = new Map<string, string>();
    if (changed.length) {
      for (const s of syncs) {
        await validateSync(c, await planOf(c, s, { members: next }));
        statuses.set(s, (await getSync(c, s))!.status);
      }
    }
    const install = async (undo?: () => Promise<void>): Promise<void> => {
      for (const s of statuses.keys()) {
        const st = statuses.get(s)!;
        await runInstallCapture(ctx, c, s, st === 'installing' ? 'active' : (st as 'active' | 'paused' | 'inactive'), undo);
      }
    };
    await write(ctx, c, async () => {
      if (removed.length) {
        await removeDbgroupMembers(c, name, removed.map((m) => m.db));
        for (const m of removed) report(ctx, 'remove', `db ${m.db} from dbgroup ${name}`);
      }
      for (const m of changed) {
        await setDbgroupMember(c, name, m);
        const was = old.find((x) => x.db === m.db);
        report(ctx, was ? 'change' : 'add', was ? `db ${m.db} in dbgroup ${name} from ${was.role} to ${m.role}` : `db ${m.db} to dbgroup ${name} as ${m.role}`);
      }
      if (options.has('about')) {
        await setDbgroupAbout(c, name, options.get('about') || null);
        report(ctx, 'set', `about on dbgroup ${name}`);
      }
      if (ctx.flags.dryRun) await install();
    });
    if (!removed.length && !changed.length && !options.has('about')) ctx.say(`no change needed for dbgroup ${name}`);
    if (!ctx.flags.dryRun && statuses.size) {
      await install(async () => {
        await write(ctx, c, async () => {
          for (const m of changed) {
            const was = old.find((x) => x.db === m.db);
            if (was) await setDbgroupMember(c, name, was);
            else await removeDbgroupMembers(c, name, [m.db]);
          }
        });
      });
    }
    dryRunDone(ctx);
  });
}

/** `ibex remove dbgroup <name …> [--force]`: refused while a sync uses it, unless --force removes those syncs. */
export async function removeDbgroup(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'remove dbgroup');
  allowOnly(options, [], 'remove dbgroup');
  if (words.length === 0) throw usage('remove dbgroup needs a name: ibex remove dbgroup <name …>');
  await ctx.withControl(async (c) => {
    const syncs = new Set<string>();
    for (const name of new Set(words)) {
      if (!(await getDbgroup(c, name))) throw notFound('dbgroup', name, listHint('dbgroup'));
      const users = await syncsUsing(c, { dbgroup: name });
      if (users.length && !ctx.flags.force) throw configError(`dbgroup ${name} is used by sync ${users.join(', ')}: remove the sync first, or use --force to remove it too`);
      for (const u of users) syncs.add(u);
    }
    for (const s of syncs) await runRemoveCapture(ctx, c, s);
    await write(ctx, c, async () => {
      for (const s of syncs) {
        await deleteSync(c, s);
        report(ctx, 'remove', `sync ${s}`);
      }
      for (const name of new Set(words)) {
        await deleteDbgroup(c, name);
        report(ctx, 'remove', `dbgroup ${name}`);
      }
    });
    dryRunDone(ctx);
  });
}

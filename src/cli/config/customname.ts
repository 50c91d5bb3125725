/**
 * `add | list | update | remove customname`: the name a registered table has on one
 * non-PostgreSQL db, when it is not the source table's bare name (Bucardo's customname).
 */
import type pg from 'pg';
import { deleteCustomname, listCustomnames, setCustomname, type RelationRecord } from '../../control/config-store.js';
import { configError, notFound, usage } from '../../errors.js';
import { allowOnly } from '../args.js';
import type { Context } from '../context.js';
import { dryRunDone, report, write } from '../../config/context.js';
import { requireDb } from '../../config/dbs.js';
import { displayRelation, matchesFilter } from '../../config/names.js';
import { registeredRelations } from '../../config/relations.js';
import { parseNounArgs, printRows } from './common.js';

const SYNOPSIS = 'ibex add customname <schema.table> db=<db> name=<name on that db>';

/** The table word and target db of a customname command, checked against the configuration. */
async function resolve(c: pg.Client, words: readonly string[], options: Map<string, string>, what: string): Promise<{ tables: RelationRecord[]; db: string }> {
  const [table, ...extra] = words;
  if (!table) throw usage(`${what} needs a table: ${SYNOPSIS}`);
  if (extra.length) throw usage(`unexpected "${extra.join(' ')}" for ${what}: give one table, then db= and name=`);
  const dbName = options.get('db');
  if (!dbName) throw usage(`${what} needs db=<db>, the db where the table has another name: ${SYNOPSIS}`);
  const db = await requireDb(c, dbName);
  if (db.dbtype === 'postgres') {
    throw configError(`db ${db.name} is a postgres db: tables keep their schema and name on postgres dbs; a customname is for dbs of other types`);
  }
  // The table may be registered on several source dbs: the name on this db applies to each.
  const tables = (await registeredRelations(c, 'table', [table], undefined, { filter: true }));
  if (tables.length === 0) throw notFound('table', table, `it is not registered: add it with "ibex add table ${table} db=<source db>"`);
  return { tables, db: db.name };
}

function checkName(name: string | undefined, what: string): string {
  if (name === undefined || name === '') throw usage(`${what} needs name=<the table's name on that db>: ${SYNOPSIS}`);
  if (name.length > 128 || /\p{Cc}/u.test(name)) throw usage(`bad name "${name}": give at most 128 characters, without control characters`);
  return name;
}

/** `ibex add customname <schema.table> db=<db> name=<name>` (`update` changes the name). */
export async function addCustomname(ctx: Context, args: string[], verb: 'add' | 'update' = 'add'): Promise<void> {
  const { words, options } = parseNounArgs(args, `${verb} customname`);
  allowOnly(options, ['db', 'name'], `${verb} customname`);
  const name = checkName(options.get('name'), `${verb} customname`);
  await ctx.withControl(async (c) => {
    const { tables, db } = await resolve(c, words, options, `${verb} customname`);
    const existing = (await listCustomnames(c)).filter((n) => n.db === db && tables.some((t) => t.id === n.relation));
    if (verb === 'add' && existing.some((n) => n.name !== name)) {
      throw configError(`table ${words[0]} already has the name ${existing[0]!.name} on db ${db}: change it with "ibex update customname ${words[0]} db=${db} name=${name}"`);
    }
    if (verb === 'update' && existing.length === 0) {
      throw notFound('customname', `${words[0]} db=${db}`, `add it with "ibex add customname ${words[0]} db=${db} name=${name}"`);
    }
    await write(ctx, c, async () => {
      for (const t of tables) {
        await setCustomname(c, t.id, db, name);
        report(ctx, verb === 'add' ? 'add' : 'change', `customname of table ${displayRelation(t.schemaname, t.relname)} (db ${t.db}) on db ${db}: ${name}`);
      }
    });
    ctx.say('a sync using the table is checked against the new name when it is added or changed; a running daemon uses it after "ibex reload"');
    dryRunDone(ctx);
  });
}

/** `ibex list customnames [table|pattern …] [db=] [--json]` */
export async function listCustomname(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'list customnames');
  allowOnly(options, ['db'], 'list customnames');
  await ctx.withControl(async (c) => {
    const rows = (await listCustomnames(c))
      .filter((n) => (options.get('db') === undefined || n.db === options.get('db')) && matchesFilter(displayRelation(n.schemaname, n.relname), words));
    printRows(ctx, ['table', 'source', 'db', 'name'],
      rows.map((n) => [displayRelation(n.schemaname, n.relname), n.source, n.db, n.name]),
      rows.map((n) => ({ table: displayRelation(n.schemaname, n.relname), source: n.source, db: n.db, name: n.name })),
      'no customnames: add one with "ibex add customname <schema.table> db=<db> name=<name>"');
  });
}

/** `ibex remove customname <schema.table> db=<db>` */
export async function removeCustomname(ctx: Context, args: string[]): Promise<void> {
  const { words, options } = parseNounArgs(args, 'remove customname');
  allowOnly(options, ['db'], 'remove customname');
  await ctx.withControl(async (c) => {
    const { tables, db } = await resolve(c, words, options, 'remove customname');
    await write(ctx, c, async () => {
      let removed = 0;
      for (const t of tables) {
        if (!(await deleteCustomname(c, t.id, db))) continue;
        removed++;
        report(ctx, 'remove', `customname of table ${displayRelation(t.schemaname, t.relname)} (db ${t.db}) on db ${db}`);
      }
      if (removed === 0) throw notFound('customname', `${words[0]} db=${db}`, 'list them with "ibex list customnames"');
    });
    dryRunDone(ctx);
  });
}

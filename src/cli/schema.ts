/**
 * `ibex schema <sync> --db=<db>`, or `ibex schema --db=<db> relgroup=<g>` /
 * `tables=<t1,t2> source=<db>` before a sync exists: print the DDL that creates the tables of
 * a sync on one of its dbs, in that db's dialect. Nothing connects to that db.
 */
import { getRelgroup, relationsById } from '../control/config-store.js';
import { endQuietly } from '../db/connect.js';
import { configError, notFound, usage } from '../errors.js';
import { listHint, openDb, requireDb } from '../config/dbs.js';
import { parseRelationTerm, splitList } from '../config/names.js';
import { discover } from '../config/relations.js';
import { schemaStatements } from '../config/schema.js';
import { planOf } from '../config/sync-check.js';
import type { TargetRelation } from '../config/targets.js';
import { allowOnly, parseArgs } from './args.js';
import type { Context, VerbHandler } from './context.js';

const SYNOPSIS = 'ibex schema <sync> --db=<db> (or: ibex schema --db=<db> relgroup=<g> | tables=<t1,t2> source=<db>)';

/** `ibex schema …`: one statement per table, in the order of the sync's relgroup. */
export const schema: VerbHandler = async (ctx: Context, args: string[]) => {
  const { words, options } = parseArgs(args, { flags: ['db'], what: '"ibex schema"' });
  allowOnly(options, ['db', 'relgroup', 'tables', 'source'], '"ibex schema"');
  const dbName = options.get('db');
  if (!dbName) throw usage(`"ibex schema" needs --db=<db>, the db to create the tables on: ${SYNOPSIS}`);
  const given = [words.length > 0, options.has('relgroup'), options.has('tables')].filter(Boolean).length;
  if (given !== 1 || words.length > 1) throw usage(`"ibex schema" needs one sync, relgroup= or tables=: ${SYNOPSIS}`);
  if (options.has('source') !== options.has('tables')) throw usage(`tables= and source=<db> go together: ${SYNOPSIS}`);
  return ctx.withControl(async (c) => {
    const db = await requireDb(c, dbName);
    let relations: TargetRelation[];
    if (words[0] !== undefined) {
      const plan = await planOf(c, words[0]);
      if (!plan.members.some((m) => m.db === db.name)) {
        throw configError(`db ${db.name} is not a db of sync ${plan.name}: name one of ${plan.members.map((m) => m.db).join(', ')}`);
      }
      relations = plan.relations;
    } else if (options.has('relgroup')) {
      const g = await getRelgroup(c, options.get('relgroup')!);
      if (!g) throw notFound('relgroup', options.get('relgroup')!, listHint('relgroup'));
      relations = await relationsById(c, g.members.map((m) => m.relation));
    } else {
      const source = await requireDb(c, options.get('source')!);
      if (source.dbtype !== 'postgres') throw configError(`db ${source.name} is a ${source.dbtype} db: source= names the postgres db the tables are read from`);
      const terms = splitList(options.get('tables')!).map(parseRelationTerm);
      if (terms.length === 0) throw usage('tables= is empty: write tables=public.t1,public.t2');
      const client = await openDb(source);
      try {
        // Tables without a key are shown too: what they lack is for add sync to say.
        const d = await discover(c, source, client, 'table', { terms }, true);
        relations = [...d.existing, ...d.found];
      } finally {
        await endQuietly(client);
      }
    }
    const statements = await schemaStatements(c, relations, db);
    if (statements.length === 0) {
      ctx.say(`-- db ${db.name} (${db.dbtype}) needs no tables created for these ${relations.length} relation(s)`, true);
      return 0;
    }
    if (ctx.flags.json) ctx.json(statements);
    else ctx.say(statements.join('\n\n'), true);
    return 0;
  });
};

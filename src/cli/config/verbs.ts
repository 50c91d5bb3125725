/**
 * The configuration verbs, Bucardo's syntax: `ibex <verb> <noun> [name …]
 * [key=value …] [--flags]` with verbs add, list, update, remove and nouns db,
 * table, sequence, relgroup, dbgroup, sync, customcode, customname (plurals accepted),
 * plus `add all tables|sequences`.
 */
import { usage } from '../../errors.js';
import { controlError } from '../../control/config-store.js';
import type { Context, VerbHandler } from '../context.js';
import { oneLine } from './common.js';
import { didYouMean } from '../suggest.js';
import { addCustomcode, listCustomcode, removeCustomcode, updateCustomcodeVerb } from './customcode.js';
import { addCustomname, listCustomname, removeCustomname } from './customname.js';
import { addDb, listDb, removeDb, updateDbVerb } from './db.js';
import { addDbgroup, listDbgroup, removeDbgroup, updateDbgroup } from './dbgroup.js';
import { NOUNS, nounOf, type Noun } from '../../config/names.js';
import { addRelgroup, listRelgroup, removeRelgroup, updateRelgroup } from './relgroup.js';
import { addSync, listSync, removeSync, updateSyncVerb } from './sync.js';
import { addAllRelations, addRelations, listRelationsVerb, removeRelations, updateRelations } from './table.js';

type Verb = 'add' | 'list' | 'update' | 'remove';
type Handler = (ctx: Context, args: string[]) => Promise<void>;

const HANDLERS: Record<Noun, Record<Verb, Handler>> = {
  db: { add: addDb, list: listDb, update: updateDbVerb, remove: removeDb },
  table: {
    add: (ctx, a) => addRelations(ctx, 'table', a), list: (ctx, a) => listRelationsVerb(ctx, 'table', a),
    update: (ctx, a) => updateRelations(ctx, 'table', a), remove: (ctx, a) => removeRelations(ctx, 'table', a),
  },
  sequence: {
    add: (ctx, a) => addRelations(ctx, 'sequence', a), list: (ctx, a) => listRelationsVerb(ctx, 'sequence', a),
    update: (ctx, a) => updateRelations(ctx, 'sequence', a), remove: (ctx, a) => removeRelations(ctx, 'sequence', a),
  },
  relgroup: { add: addRelgroup, list: listRelgroup, update: updateRelgroup, remove: removeRelgroup },
  dbgroup: { add: addDbgroup, list: listDbgroup, update: updateDbgroup, remove: removeDbgroup },
  sync: { add: addSync, list: listSync, update: updateSyncVerb, remove: removeSync },
  customcode: { add: addCustomcode, list: listCustomcode, update: updateCustomcodeVerb, remove: removeCustomcode },
  customname: { add: addCustomname, list: listCustomname, update: (ctx, a) => addCustomname(ctx, a, 'update'), remove: removeCustomname },
};

/**
 * Every error leaves as one line: constraint violations of the control schema
 * become IbexErrors (exit 2), anything unexpected an internal error (exit 1).
 */
function normalize(err: unknown): unknown {
  return oneLine(controlError(err));
}

async function dispatch(verb: Verb, ctx: Context, args: string[]): Promise<number> {
  const rest = [...args];
  const word = rest.shift();
  const nounList = `${NOUNS.join(', ')}${verb === 'add' ? ', all tables, all sequences' : ''}`;
  if (!word) throw usage(`"ibex ${verb}" needs a noun: ibex ${verb} <${NOUNS.join('|')}> …`);
  try {
    if (verb === 'add' && word.toLowerCase() === 'all') {
      const kind = rest.shift();
      const noun = kind ? nounOf(kind) : undefined;
      if (noun !== 'table' && noun !== 'sequence') throw usage(`"ibex add all" needs tables or sequences: ibex add all tables db=<db>`);
      await addAllRelations(ctx, noun, rest);
      return 0;
    }
    const noun = nounOf(word);
    if (!noun) throw usage(`unknown noun "${word}" for ${verb}: use one of ${nounList}${didYouMean(word, [...NOUNS, ...NOUNS.map((n) => `${n}s`)])}`);
    await HANDLERS[noun][verb](ctx, rest);
    return 0;
  } catch (err) {
    throw normalize(err);
  }
}

/** `ibex add <noun> …` */
export const add: VerbHandler = (ctx, args) => dispatch('add', ctx, args);
/** `ibex list <noun> …` */
export const list: VerbHandler = (ctx, args) => dispatch('list', ctx, args);
/** `ibex update <noun> …` */
export const update: VerbHandler = (ctx, args) => dispatch('update', ctx, args);
/** `ibex remove <noun> …` */
export const remove: VerbHandler = (ctx, args) => dispatch('remove', ctx, args);

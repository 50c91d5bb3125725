/**
 * What the configuration verbs share on the command line: the arguments after
 * the noun and printing. The steps below the command line (dry runs, capture,
 * sessions on registered dbs) are in src/config/.
 */
import Table from 'cli-table3';
import { IbexError, usage } from '../../errors.js';
import { parseArgs } from '../args.js';
import type { Context } from '../context.js';
import type { RelationFilters } from '../../config/relations.js';

/** Arguments after the noun: names, key=value options, and the relation filters. */
export interface NounArgs {
  words: string[];
  options: Map<string, string>;
  filters: RelationFilters;
}

const FILTER_FLAGS: Record<string, keyof RelationFilters> = {
  '-n': 'schemas', '--schema': 'schemas',
  '-N': 'excludeSchemas', '--exclude-schema': 'excludeSchemas',
  '-t': 'tables', '--table': 'tables',
  '-T': 'excludeTables', '--exclude-table': 'excludeTables',
};

/**
 * Split the arguments after the noun. `-n X`, `--schema=X` and the like are
 * collected only where `allowFilters`; any other word starting with `-` is an
 * unknown flag (quote a name that starts with `-`: `public."-x"`).
 */
export function parseNounArgs(args: readonly string[], what: string, allowFilters = false): NounArgs {
  const filters: RelationFilters = { schemas: [], excludeSchemas: [], tables: [], excludeTables: [] };
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-') || a === '-') {
      rest.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const key = FILTER_FLAGS[flag];
    if (!key || !allowFilters) {
      throw usage(`unknown flag "${flag}" for ${what}${allowFilters ? ': use -n/-N/-t/-T' : ''} (global flags: --json --dry-run --force --quiet --debug --control)`);
    }
    const value = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '') throw usage(`${flag} needs a value: ${flag} <name>`);
    filters[key].push(value);
  }
  const { words, options } = parseArgs(rest);
  return { words, options, filters };
}

/** Refuse words where a command takes none. */
export function noWords(words: readonly string[], what: string, hint: string): void {
  if (words.length) throw usage(`unexpected "${words.join(' ')}" for ${what}: ${hint}`);
}

/** Print rows as a table (cli-table3, no colours) or, with `--json`, as JSON. */
export function printRows(ctx: Context, head: string[], rows: (string | number)[][], jsonValue: unknown, empty: string): void {
  if (ctx.flags.json) {
    ctx.json(jsonValue);
    return;
  }
  if (rows.length === 0) {
    ctx.say(empty);
    return;
  }
  const table = new Table({ head, style: { head: [], border: [] }, wordWrap: true });
  for (const r of rows) table.push(r.map(String));
  ctx.say(table.toString(), true);
}

/** Parse a signed whole number (priority). */
export function parseSignedInt(key: string, value: string): number {
  if (!/^-?\d{1,9}$/.test(value)) throw usage(`bad value "${value}" for ${key}: give a whole number`);
  return Number(value);
}

/** Make an error's message one line (driver texts can hold newlines). */
export function oneLine(err: unknown): unknown {
  // An IbexError's line breaks come from names the user gave: the CLI shows them as \n instead.
  if (err instanceof Error && !(err instanceof IbexError) && /\n/.test(err.message)) err.message = err.message.replace(/\s*\n\s*/g, ' ').trim();
  return err;
}

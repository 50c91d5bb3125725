/**
 * Bucardo's argument syntax: `ibex <verb> [noun] [name …] [key=value …] [--flags]`.
 */
import { usage } from '../errors.js';
import { didYouMean } from './suggest.js';

/** Positional words and key=value pairs, in order, after the verb and noun. */
export interface ParsedArgs {
  words: string[];
  /** key=value pairs; keys are lower-cased, a key given twice is an error. */
  options: Map<string, string>;
}

/** How {@link parseArgs} reads words that start with `-`. */
export interface FlagOptions {
  /**
   * Option keys the verb also takes as `--key=value` or `--key value`: the same
   * option as `key=value` (giving both is "given twice"). With this set, any
   * other word starting with `-` is an unknown flag (a usage error); without
   * it, such words are plain words. Global flags never reach a verb.
   */
  flags: readonly string[];
  /** The command, for messages: `"ibex conflicts"`. */
  what: string;
}

/** Split arguments into words and `key=value` options (and declared `--key=value` flags). */
export function parseArgs(args: readonly string[], flagOptions?: FlagOptions): ParsedArgs {
  const words: string[] = [];
  const options = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (flagOptions && arg.startsWith('-') && arg !== '-') {
      const { flags, what } = flagOptions;
      const m = /^--([A-Za-z_][A-Za-z0-9_]*)(?:=([\s\S]*))?$/.exec(arg);
      const key = m?.[1]?.toLowerCase();
      if (!m || !key || !flags.includes(key)) {
        const flag = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
        const own = flags.length ? `: use ${flags.map((f) => `--${f}=…`).join(' ')}` : '';
        throw usage(`unknown flag "${flag}" for ${what}${own} (global flags: --json --dry-run --force --quiet --debug --control)${didYouMean(flag, flags.map((f) => `--${f}`))}`);
      }
      const value = m[2] ?? args[++i];
      if (value === undefined || value === '') throw usage(`--${key} needs a value: --${key}=…`);
      if (options.has(key)) throw usage(`option "${key}" is given twice: give it once`);
      options.set(key, value);
      continue;
    }
    const eq = arg.indexOf('=');
    // A word with `=` is an option only if what precedes it looks like a key.
    if (eq > 0 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(arg.slice(0, eq))) {
      const key = arg.slice(0, eq).toLowerCase();
      if (options.has(key)) throw usage(`option "${key}" is given twice: give it once`);
      options.set(key, arg.slice(eq + 1));
    } else {
      words.push(arg);
    }
  }
  return { words, options };
}

/** Refuse options outside an allowed set, naming the allowed ones. */
export function allowOnly(options: Map<string, string>, allowed: readonly string[], what: string): void {
  for (const key of options.keys()) {
    if (allowed.includes(key)) continue;
    if (allowed.length === 0) throw usage(`unknown option "${key}" for ${what}: it takes no key=value options; leave "${key}=" out`);
    throw usage(`unknown option "${key}" for ${what}: use one of ${allowed.join(', ')}${didYouMean(key, allowed)}`);
  }
}

/** A member of `dbs=A:source,B:target`. */
export interface DbRole {
  db: string;
  role: 'source' | 'target' | 'fullcopy';
  /** Explicitly given (false: defaulted by position, Bucardo's rule). */
  explicit: boolean;
}

const ROLE_ALIASES: Record<string, DbRole['role']> = {
  source: 'source', master: 'source', s: 'source',
  target: 'target', slave: 'target', replica: 'target', t: 'target',
  fullcopy: 'fullcopy', f: 'fullcopy',
};

/**
 * Parse `A:source,B:source,C:target` (commas or spaces). Bucardo's rule: a db
 * without a role is a source if it comes first, else a target.
 */
export function parseDbRoles(text: string | readonly string[]): DbRole[] {
  const items = (typeof text === 'string' ? text.split(/[,\s]+/) : text.flatMap((t) => t.split(/[,\s]+/))).filter(Boolean);
  if (items.length === 0) throw usage('dbs= is empty: write dbs=A:source,B:target');
  const out: DbRole[] = [];
  items.forEach((item, i) => {
    const [db, roleText, extra] = item.split(':');
    if (extra !== undefined || !db) throw usage(`bad db "${item}" in dbs=: write name or name:role`);
    let role: DbRole['role'];
    if (roleText === undefined || roleText === '') role = i === 0 ? 'source' : 'target';
    else {
      const r = ROLE_ALIASES[roleText.toLowerCase()];
      if (!r) throw usage(`unknown role "${roleText}" for db "${db}": use source, target or fullcopy`);
      role = r;
    }
    if (out.some((o) => o.db === db)) throw usage(`db "${db}" is listed twice in dbs=: list it once`);
    out.push({ db, role, explicit: roleText !== undefined && roleText !== '' });
  });
  return out;
}

/** Parse a boolean option the way Bucardo accepts them. */
export function parseBool(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (['1', 't', 'true', 'on', 'yes', 'y'].includes(v)) return true;
  if (['0', 'f', 'false', 'off', 'no', 'n'].includes(v)) return false;
  throw usage(`bad value "${value}" for ${key}: use 1/0, true/false, on/off or yes/no`);
}

/** Parse a non-negative integer option. */
export function parseIntOption(key: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `of ${min} or more` : `from ${min} to ${max}`;
    throw usage(`bad value "${value}" for ${key}: give a whole number ${range}`);
  }
  return Number(value);
}

/** Durations are parsed where the option schemas live (src/config/options.ts). */
export { parseInterval } from '../config/options.js';

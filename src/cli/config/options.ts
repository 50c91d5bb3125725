/**
 * The typed options of the configuration commands (pure: no I/O): what each
 * sync option accepts, its default, Bucardo's aliases, and the conflict
 * strategies.
 */
import { usage } from '../../errors.js';
import { parseBool, parseIntOption, parseInterval } from '../args.js';
import type { SyncOptions } from '../../control/config-store.js';
import { targetKind } from '../../targets/registry.js';
import { TARGET_KINDS, type TargetKind } from '../../targets/target.js';

/** How one option's text becomes a stored value. */
type Parser = (key: string, value: string) => unknown;

const bool: Parser = (k, v) => parseBool(k, v);
const int = (min: number, max: number): Parser => (k, v) => parseIntOption(k, v, min, max);
const intOrNull = (min: number, max: number): Parser => (k, v) => (v === '' ? null : parseIntOption(k, v, min, max));
/** An interval; empty or 0 means "none" (NULL). */
const intervalOrNull: Parser = (k, v) => (v === '' || v === '0' ? null : parseInterval(k, v));
const oneOf = (values: readonly string[], normalize: (v: string) => string = (v) => v.toLowerCase()): Parser => (k, v) => {
  const n = normalize(v);
  if (!values.includes(n)) throw usage(`bad value "${v}" for ${k}: use one of ${values.join(', ')}`);
  return n;
};
const text: Parser = (_k, v) => (v === '' ? null : v);

/** One sync option: parser and default. */
interface SyncOptionSpec {
  parse: Parser;
  default: unknown;
}

/** The sync options `add sync` and `update sync` accept, with their defaults (DESIGN, bucardo.md §c.1). */
export const SYNC_OPTIONS: Record<Exclude<keyof SyncOptions, 'conflict_strategy' | 'onetimecopy_from'>, SyncOptionSpec> = {
  clock: { parse: oneOf(['change', 'commit']), default: 'change' },
  onetimecopy: { parse: int(0, 2), default: 0 },
  autokick: { parse: bool, default: true },
  checktime: { parse: intervalOrNull, default: null },
  fullcopy_interval: { parse: intervalOrNull, default: null },
  stayalive: { parse: bool, default: true },
  kidsalive: { parse: bool, default: true },
  deletemethod: { parse: oneOf(['delete', 'truncate', 'truncate_cascade']), default: 'delete' },
  isolation_level: { parse: oneOf(['repeatable read', 'serializable'], (v) => v.toLowerCase().replace(/_/g, ' ')), default: 'repeatable read' },
  apply_mode: { parse: oneOf(['upsert', 'replica']), default: 'upsert' },
  rebuild_index: { parse: int(0, 2), default: 0 },
  analyze_after_copy: { parse: bool, default: true },
  vacuum_after_copy: { parse: bool, default: false },
  strict_checking: { parse: bool, default: true },
  lifetime: { parse: intervalOrNull, default: null },
  maxkicks: { parse: intOrNull(0, 2_147_483_647), default: null },
  about: { parse: text, default: null },
  on_row_error: { parse: oneOf(['stall', 'quarantine']), default: 'quarantine' },
};

/** Bucardo's aliases of sync option names. */
export const SYNC_ALIASES: Record<string, string> = {
  conflict: 'conflict_strategy',
  standard_conflict: 'conflict_strategy',
  ping: 'autokick',
  txnmode: 'isolation_level',
  herd: 'relgroup',
};

/** Parse one sync option (already de-aliased) into its stored value. */
export function parseSyncOption(key: keyof typeof SYNC_OPTIONS, value: string): unknown {
  return SYNC_OPTIONS[key].parse(key, value);
}

/** Resolve Bucardo's aliases in a parsed option map (an alias and its name together is an error). */
export function dealias(options: Map<string, string>, aliases: Record<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of options) {
    const name = aliases[k] ?? k;
    if (out.has(name)) throw usage(`option "${name}" is given twice (as "${k}" too): give it once`);
    out.set(name, v);
  }
  return out;
}

/** A db's `type=`: Bucardo's spellings (pg, postgresql, mongodb, sqlite3 …) and ours, by prefix too (maria, mongo…). */
export function parseDbType(value: string): TargetKind {
  const known = targetKind(value.trim());
  if (known) return known;
  const v = value.trim().toLowerCase();
  if (/^(pg|postgres)/.test(v)) return 'postgres';
  if (/^maria/.test(v)) return 'mariadb';
  if (/^mysql/.test(v)) return 'mysql';
  if (/^sqll?ite/.test(v)) return 'sqlite';
  if (/^redis/.test(v)) return 'redis';
  if (/^mongo/.test(v)) return 'mongo';
  if (/^oracle/.test(v)) return 'oracle';
  throw usage(`unknown db type "${value}": use one of ${TARGET_KINDS.join(', ')}`);
}

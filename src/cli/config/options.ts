/**
 * The typed options of the configuration commands (pure: no I/O): sync
 * options parsed through their schemas (src/config/sync-options.ts), Bucardo's
 * aliases, and db types.
 */
import { usage } from '../../errors.js';
import { parseOption } from '../../config/options.js';
import { SYNC_OPTIONS, type SyncOptionName } from '../../config/sync-options.js';
import { targetKind } from '../../targets/registry.js';
import { TARGET_KINDS, type TargetKind } from '../../targets/target.js';

export { SYNC_ALIASES, SYNC_OPTIONS } from '../../config/sync-options.js';

/** Parse one sync option (already de-aliased) into its stored value, through its schema. */
export function parseSyncOption(key: SyncOptionName, value: string): unknown {
  return parseOption(key, SYNC_OPTIONS[key], value);
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

/**
 * The Redis layout of ibex, as pure functions (no I/O): key names, their escaping and parsing,
 * SCAN patterns, and the hash a row becomes.
 *
 * A row of table T with key values k1…kn is the key `T:k1:…:kn`. In T and in every key value a
 * backslash becomes `\\` and a colon `\:`, so no value can pose as a separator and the mapping
 * from (table, key values) to a Redis key is injective: `a:b` is `t:a\:b`, never `t:a:b`. A NULL
 * key value (possible only under a unique index that allows it) is `\N`, which no escaped text can
 * produce. The value is a HASH of every non-key column that is not NULL, holding PostgreSQL's
 * text output of that column; a row whose non-key columns are all NULL (or which has none) is the
 * hash `{"": ""}`, since Redis has no empty hash and PostgreSQL no empty column name.
 */
import { IbexError } from '../../errors.js';
import type { KeyRow, TableSpec, TextRow } from '../target.js';

/** The field that keeps a row with no non-NULL non-key column in existence. */
export const PRESENCE_FIELD = '';

/** The key prefix of ibex's own records (progress, marker). */
export const IBEX_PREFIX = 'ibex:';

/** The key that marks a server ibex has written to; it holds that instance's random id. */
export const MARKER_KEY = 'ibex:marker';

/** The hash holding a sync's progress: one field per source, each JSON `{snapshot, run}`. */
export function progressKey(sync: string): string {
  return `${IBEX_PREFIX}progress:${escapePart(sync)}`;
}

/** Escape one part of a key: `\` → `\\`, `:` → `\:`. */
export function escapePart(text: string): string {
  return text.replace(/[\\:]/g, (c) => `\\${c}`);
}

/** A key value as it appears in a key (NULL is `\N`). */
function keyPart(value: string | null): string {
  return value === null ? '\\N' : escapePart(value);
}

/** Why a table cannot be kept in Redis under its name, or undefined: `ibex` is ibex's own prefix. */
export function reservedNameProblem(table: TableSpec): string | undefined {
  if (`${escapePart(table.targetName)}:` === IBEX_PREFIX) {
    return `the table's keys would start with "${IBEX_PREFIX}", where ibex keeps its progress; give the table a customname for this db`;
  }
  return undefined;
}

/** The prefix every key of the table starts with: the escaped table name and a colon. */
export function tablePrefix(table: TableSpec): string {
  const problem = reservedNameProblem(table);
  if (problem !== undefined) throw new IbexError('config', `${table.label}: ${problem}`);
  return `${escapePart(table.targetName)}:`;
}

/** The Redis key of one row, from its key values in key order. */
export function rowKey(table: TableSpec, key: KeyRow): string {
  if (key.length !== table.keys.length || key.length === 0) {
    throw new Error(`key of ${table.label} has ${key.length} values, the table has ${table.keys.length} key columns`);
  }
  return tablePrefix(table) + key.map(keyPart).join(':');
}

/**
 * Split the part after the table prefix back into key values; undefined when it is not a
 * well-formed key of `count` values (a foreign key under the same prefix).
 */
export function parseKeyParts(rest: string, count: number): KeyRow | undefined {
  const out: KeyRow = [];
  let cur = '';
  let isNull = false;
  let partStart = true;
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i]!;
    if (c === '\\') {
      const n = rest[i + 1];
      if (n === '\\' || n === ':') {
        if (isNull) return undefined;
        cur += n;
        i++;
      } else if (n === 'N' && partStart) {
        isNull = true;
        i++;
      } else {
        return undefined;
      }
      partStart = false;
    } else if (c === ':') {
      out.push(isNull ? null : cur);
      cur = '';
      isNull = false;
      partStart = true;
    } else {
      if (isNull) return undefined;
      cur += c;
      partStart = false;
    }
  }
  out.push(isNull ? null : cur);
  return out.length === count ? out : undefined;
}

/** The key values of a Redis key of this table, or undefined when the key is not one of its rows. */
export function parseRowKey(table: TableSpec, key: string): KeyRow | undefined {
  const prefix = tablePrefix(table);
  if (!key.startsWith(prefix)) return undefined;
  return parseKeyParts(key.slice(prefix.length), table.keys.length);
}

/** Escape SCAN/KEYS glob characters (`* ? [ ] \`) so the text matches only itself. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** The SCAN MATCH pattern of every key of the table. */
export function tablePattern(table: TableSpec): string {
  return `${escapeGlob(tablePrefix(table))}*`;
}

/** Where each key column and each non-key column sits in a row of the table. */
export interface RowLayout {
  /** Column index of each key column, in key order. */
  keyIdx: number[];
  /** Column index and name of every non-key column, in column order. */
  valueCols: { idx: number; name: string }[];
}

/** The layout of a table's rows; refuses a key column that is not among the columns. */
export function rowLayout(table: TableSpec): RowLayout {
  const names = table.columns.map((c) => c.name);
  const keyIdx = table.keys.map((k) => {
    const i = names.indexOf(k);
    if (i < 0) throw new Error(`key column ${k} of ${table.label} is not among its columns`);
    return i;
  });
  const valueCols = names.flatMap((name, idx) => (keyIdx.includes(idx) ? [] : [{ idx, name }]));
  return { keyIdx, valueCols };
}

/** The key values of a row, in key order. */
export function keyOfRow(layout: RowLayout, row: TextRow): KeyRow {
  return layout.keyIdx.map((i) => row[i] ?? null);
}

/** The HSET arguments of a row: field, value, … for each non-NULL non-key column (never empty). */
export function hashArgs(layout: RowLayout, row: TextRow): string[] {
  const out: string[] = [];
  for (const { idx, name } of layout.valueCols) {
    const v = row[idx];
    if (v !== null && v !== undefined) out.push(name, v);
  }
  if (out.length === 0) out.push(PRESENCE_FIELD, '');
  return out;
}

/** A row back from its key values and its hash (a missing field is NULL). */
export function rowFromHash(table: TableSpec, layout: RowLayout, key: KeyRow, hash: Record<string, string>): TextRow {
  const row: TextRow = table.columns.map(() => null);
  layout.keyIdx.forEach((ci, ki) => {
    row[ci] = key[ki] ?? null;
  });
  for (const { idx, name } of layout.valueCols) {
    const v = hash[name];
    row[idx] = v === undefined ? null : v;
  }
  return row;
}

/** The progress field value of one source (with the epoch of the run's daemon when it has one). */
export function encodeProgress(snapshot: string, run: number, epoch?: number): string {
  return JSON.stringify(epoch === undefined ? { snapshot, run } : { snapshot, run, epoch });
}

/**
 * Fenced progress write, run atomically by the server (EVAL; nothing else runs meanwhile):
 * the newest epoch among the sync's progress fields; the fields are written only when it is no
 * newer than this run's. KEYS[1]: the progress hash; ARGV[1]: the epoch; ARGV[2..]: field, value.
 * Returns the newest epoch found (the caller refuses when it exceeds its own).
 */
export const FENCED_PROGRESS_LUA = `local mine = tonumber(ARGV[1])
local newest = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local ok, p = pcall(cjson.decode, v)
  if ok and type(p) == 'table' and type(p.epoch) == 'number' and p.epoch > newest then newest = p.epoch end
end
if newest > mine then return newest end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return newest`;

/** A progress field value back; undefined when it is not ibex's JSON. */
export function decodeProgress(text: string): { snapshot: string; run: number } | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null) {
      const { snapshot, run } = v as Record<string, unknown>;
      if (typeof snapshot === 'string' && typeof run === 'number' && Number.isInteger(run)) return { snapshot, run };
    }
  } catch {
    // fall through: not ours
  }
  return undefined;
}

/**
 * The logical database number of `dbname=` (empty → 0); undefined when it is not a number a
 * server can have: digits, at most 2^31 - 1 (its `databases` setting is an int). Whether this
 * server has it is its own to say, when SELECT refuses it at connect.
 */
export function dbNumber(dbname: string | undefined): number | undefined {
  if (dbname === undefined || dbname === '') return 0;
  if (!/^\d{1,10}$/.test(dbname)) return undefined;
  const n = Number(dbname);
  return n <= 2 ** 31 - 1 ? n : undefined;
}

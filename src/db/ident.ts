/**
 * Identifier quoting and the naming of generated objects. Every identifier
 * that reaches SQL goes through `ident()`, even names read from pg_catalog.
 */
import { createHash } from 'node:crypto';
import { IbexError } from '../errors.js';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. */
export const MAX_IDENT_BYTES = 63;

/** A piece of SQL text that is already safe to splice (an identifier or reviewed raw SQL). */
export class SqlFragment {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Quote one identifier: double every `"`, refuse empty names and NUL bytes. */
export function ident(name: string): SqlFragment {
  if (name.length === 0) throw new IbexError('usage', 'an empty name cannot be used as an SQL identifier');
  if (name.includes('\0')) throw new IbexError('usage', 'a name containing a NUL byte cannot be used as an SQL identifier');
  return new SqlFragment('"' + name.replaceAll('"', '""') + '"');
}

/**
 * Quote a text value as an SQL string literal, for the few places a value must be spliced into
 * SQL text (COPY and multi-statement queries take no parameters). Relies on
 * standard_conforming_strings, which every ibex session pins.
 */
export function literal(value: string): string {
  if (value.includes('\0')) throw new IbexError('usage', 'a value containing a NUL byte cannot be used in SQL');
  return `'${value.replaceAll("'", "''")}'`;
}

/** Quote a schema-qualified name: `"schema"."name"`. */
export function qualified(schema: string, name: string): SqlFragment {
  return new SqlFragment(`${ident(schema).text}.${ident(name).text}`);
}

/** A comma-separated list of quoted identifiers. */
export function identList(names: readonly string[], prefix = ''): SqlFragment {
  return new SqlFragment(names.map((n) => (prefix ? `${prefix}.` : '') + ident(n).text).join(', '));
}

/**
 * The one escape hatch for SQL text that is not an identifier and not a value
 * (keywords chosen by code, type names read from the catalog). Grep for `raw(`
 * when reviewing.
 */
export function raw(text: string): SqlFragment {
  return new SqlFragment(text);
}

/** Hex digits of the hash in a generated name (48 bits). */
export const NAME_HASH_CHARS = 12;

/**
 * Name a generated object (delta table, capture function, index) after the
 * exact tuple `key` it belongs to, within 63 bytes (PostgreSQL cuts longer
 * identifiers silently, so two long names could otherwise become one).
 *
 * The name is `<kind>_<key parts joined by _>`, cut on a character boundary
 * to leave room, then `_` and a hash of the key parts joined by NUL — a byte no
 * identifier can hold, so ("a_b", "c") and ("a", "b_c") hash apart even though
 * their readable parts read the same. The readable part is for people; the
 * hash keeps names apart. Two keys share a name only if their 48-bit hashes
 * collide, which `add sync` checks and refuses (see findNameClash).
 */
export function keyedName(kind: string, key: readonly string[]): string {
  if (key.some((k) => k.includes('\0'))) throw new IbexError('usage', 'a name containing a NUL byte cannot be used as an SQL identifier');
  const hash = createHash('sha256').update(key.join('\0')).digest('hex').slice(0, NAME_HASH_CHARS);
  const budget = MAX_IDENT_BYTES - NAME_HASH_CHARS - 1;
  let cut = '';
  for (const ch of [kind, ...key].join('_')) {
    if (Buffer.byteLength(cut + ch, 'utf8') > budget) break;
    cut += ch;
  }
  return `${cut}_${hash}`;
}

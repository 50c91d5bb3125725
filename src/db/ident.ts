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

/**
 * Name a generated object (delta table, trigger, function) so that it stays
 * within 63 bytes: parts are joined with `_`; when too long, the name is cut on
 * a character boundary and a short hash of the full name is appended, so two
 * long names that share a prefix never collide.
 */
export function objectName(...parts: string[]): string {
  const full = parts.join('_');
  if (Buffer.byteLength(full, 'utf8') <= MAX_IDENT_BYTES) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  const budget = MAX_IDENT_BYTES - hash.length - 1;
  let cut = '';
  for (const ch of full) {
    if (Buffer.byteLength(cut + ch, 'utf8') > budget) break;
    cut += ch;
  }
  return `${cut}_${hash}`;
}

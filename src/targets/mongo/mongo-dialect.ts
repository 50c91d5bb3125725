/**
 * The MongoDB layout of ibex, as pure functions: the document a row becomes, its `_id`, and the
 * way back from a stored document to canonical text for `validate`.
 *
 * One collection per table (its target name), one document per row. `_id` is the typed key
 * value; for a composite key, a sub-document of the key columns in key order (MongoDB compares
 * sub-documents field by field in order, so the order is part of the identity). Key columns are
 * also top-level fields, so they can be queried like the others. A NULL column is left out.
 *
 * Values go through the shared codec, then to BSON:
 *   smallint, integer → int32; bigint → Long (int64); real, double → double;
 *   numeric → Decimal128 when its digits fit Decimal128's 34, else the exact canonical string;
 *   NaN/±Infinity numerics → Decimal128's own NaN/±Infinity;
 *   boolean → bool; bytea → Binary (subtype 0); uuid → Binary subtype 4 (MongoDB's UUID);
 *   timestamptz → Date when the value has no sub-millisecond part and fits a JavaScript Date,
 *   else the exact ISO text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`); ±infinity → refused;
 *   json, jsonb → the parsed document, or its canonical JSON text when a number in it cannot be
 *   held exactly by a double; arrays → BSON arrays of the element type's mapping;
 *   date, timestamp, time, interval → ISO 8601 text; everything else → the text itself.
 *
 * The BSON classes come in as a parameter (the driver's own), so importing this module loads no
 * driver.
 */
import type { Binary as BinaryT, BSON as BSONT, Decimal128 as Decimal128T, Long as LongT, Document } from 'mongodb';
import { canonicalText, decode, jsonNumberLostAsDouble, parseArrayLiteral, pgType, type ArrayItem, type PgType, plainDecimal } from '../codec.js';
import { FENCE_SOURCE, type KeyRow, type ProgressEntry, type TableSpec, type TextRow } from '../target.js';

/** The BSON constructors the dialect needs: the driver's (`await import('mongodb')`). */
export interface BsonKit {
  Long: typeof LongT;
  Decimal128: typeof Decimal128T;
  Binary: typeof BinaryT;
  BSON: typeof BSONT;
}

/** MongoDB's limit on one document. */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;

/** Decimal128 holds 34 significant digits. */
export const DECIMAL128_DIGITS = 34;

/** The collection holding progress records. */
export const PROGRESS_COLLECTION = 'ibex_progress';

/** A value the dialect cannot store; the row is refused with this reason. */
export class RefusedValue extends Error {}

const MAX_DATE_MS = 8.64e15;

/** Digits of a canonical plain decimal's coefficient (leading zeros and sign dropped). */
export function coefficientDigits(canonical: string): number {
  return canonical.replace(/^-/, '').replace('.', '').replace(/^0+/, '').length;
}

/** Whether a type is an array type, and its element type's text. */
function elementTypeText(type: string): string | undefined {
  const t = type.trim();
  return t.endsWith('[]') ? t.slice(0, -2).trimEnd() : undefined;
}

/** One non-NULL value of a column of PostgreSQL type `type`, from its text, as BSON. */
export function toBson(bson: BsonKit, type: string, text: string, column: string): unknown {
  const elType = elementTypeText(type);
  if (elType !== undefined) return arrayToBson(bson, elType, parseArrayLiteral(text), column);
  const v = decode(type, text);
  switch (v.kind) {
    case 'int': {
      const width = pgType(type).width ?? 8;
      return width === 8 ? bson.Long.fromBigInt(v.value) : Number(v.value);
    }
    case 'decimal':
      if (v.special !== null) return bson.Decimal128.fromString(v.special);
      if (coefficientDigits(v.value) <= DECIMAL128_DIGITS) {
        try {
          return bson.Decimal128.fromString(v.value);
        } catch {
          // Beyond Decimal128's exponent range (numeric allows 16383 fraction digits): exact text.
        }
      }
      return v.value;
    case 'float':
      return v.value;
    case 'bool':
      return v.value;
    case 'bytes':
      return new bson.Binary(v.value, bson.Binary.SUBTYPE_DEFAULT);
    case 'uuid':
      return new bson.Binary(Buffer.from(v.value.replace(/-/g, ''), 'hex'), bson.Binary.SUBTYPE_UUID);
    case 'json': {
      const parsed = JSON.parse(v.text) as unknown;
      // A number a double would change keeps the whole value as its exact canonical text.
      return jsonNumberLostAsDouble(v.text) === undefined ? parsed : v.text;
    }
    case 'timestamptz': {
      if (v.special !== null) {
        throw new RefusedValue(`column ${column} is ${v.special}, which a MongoDB Date cannot hold; change the value or leave the table out of this target`);
      }
      const ms = v.micros / 1000n;
      if (v.micros % 1000n === 0n && ms >= BigInt(-MAX_DATE_MS) && ms <= BigInt(MAX_DATE_MS)) return new Date(Number(ms));
      return v.iso;
    }
    case 'timestamp':
    case 'date':
    case 'time':
    case 'interval':
      return v.iso;
    case 'text':
      return v.value;
    case 'array':
      // Unreachable: array types are handled above; kept so the switch covers every kind.
      return v.value;
  }
}

function arrayToBson(bson: BsonKit, elType: string, items: ArrayItem[], column: string): unknown[] {
  return items.map((it) => (it === null ? null : Array.isArray(it) ? arrayToBson(bson, elType, it, column) : toBson(bson, elType, it, column)));
}

/** Where each column and each key column sits in a row. */
export interface DocLayout {
  /** Column index of each key column, in key order. */
  keyIdx: number[];
}

/** The layout of a table; refuses a key column that is not among the columns. */
export function docLayout(table: TableSpec): DocLayout {
  const names = table.columns.map((c) => c.name);
  return {
    keyIdx: table.keys.map((k) => {
      const i = names.indexOf(k);
      if (i < 0) throw new Error(`key column ${k} of ${table.label} is not among its columns`);
      return i;
    }),
  };
}

/**
 * Why the table's column names cannot all be document fields, or undefined. MongoDB reserves a
 * leading `$` (operators) and `.` (paths) in field names, and `_id` is ibex's key.
 */
export function fieldNameProblem(table: TableSpec): string | undefined {
  for (const c of table.columns) {
    if (c.name.startsWith('$')) return `column ${c.name} starts with '$', which MongoDB reserves for operators; rename it or leave the table out of this target`;
    if (c.name.includes('.')) return `column ${c.name} contains '.', which MongoDB reads as a path; rename it or leave the table out of this target`;
    if (c.name.includes('\0')) return `column name ${JSON.stringify(c.name)} holds a NUL byte; rename it`;
    if (c.name === '_id' && !(table.keys.length === 1 && table.keys[0] === '_id')) {
      return "column _id is not the table's only key column, but ibex keeps the key in _id; rename it or leave the table out of this target";
    }
  }
  return undefined;
}

/** The `_id` of a row with these key values (typed, in key order). */
export function idOf(bson: BsonKit, table: TableSpec, key: KeyRow): unknown {
  const typed = key.map((v, i) => {
    const name = table.keys[i]!;
    if (v === null) return null;
    const col = table.columns.find((c) => c.name === name)!;
    return toBson(bson, col.type, v, name);
  });
  if (typed.length === 1) return typed[0];
  const id: Document = {};
  table.keys.forEach((k, i) => {
    id[k] = typed[i];
  });
  return id;
}

/** The key values of a row, in key order. */
export function keyOfRow(layout: DocLayout, row: TextRow): KeyRow {
  return layout.keyIdx.map((i) => row[i] ?? null);
}

/** The document of a row: `_id` first, then every non-NULL column in column order. */
export function rowDocument(bson: BsonKit, table: TableSpec, layout: DocLayout, row: TextRow): Document {
  const doc: Document = { _id: idOf(bson, table, keyOfRow(layout, row)) };
  table.columns.forEach((c, i) => {
    const v = row[i];
    if (v === null || v === undefined || c.name === '_id') return;
    doc[c.name] = toBson(bson, c.type, v, c.name);
  });
  return doc;
}

/** The `_id` of a sync's progress record for one source. */
export function progressId(sync: string, source: string): Document {
  return { sync, source };
}

/**
 * The conditional upsert of a sync's fence record that every fenced progress write starts with:
 * it matches only a record of an epoch no newer than this run's (or none), so with a newer one
 * present the upsert's insert collides on `_id` (E11000) and the write is refused — one
 * single-document operation, atomic on the server, ordering every two owners' writes.
 */
export function fenceUpdate(sync: string, run: number, epoch: number): { filter: Document; update: Document } {
  return {
    filter: { _id: progressId(sync, FENCE_SOURCE), $or: [{ epoch: { $exists: false } }, { epoch: { $lte: epoch } }] },
    update: { $set: { snapshot: '', run, epoch } },
  };
}

/** A progress record's replacement: with the epoch of the run's daemon when it has one. */
export function progressDoc(sync: string, e: ProgressEntry): Document {
  return { _id: progressId(sync, e.source), snapshot: e.snapshot, run: e.run, ...(e.epoch !== undefined ? { epoch: e.epoch } : {}) };
}

// ---------------------------------------------------------------- reading back


function isBsonType(v: unknown, name: string): v is { _bsontype: string } {
  return typeof v === 'object' && v !== null && (v as { _bsontype?: unknown })._bsontype === name;
}

function hexOf(v: { buffer: Uint8Array }): string {
  return Buffer.from(v.buffer.buffer, v.buffer.byteOffset, v.buffer.byteLength).toString('hex');
}

/**
 * A stored value back to a text the codec reads as the column's type (not yet canonical). Values
 * another writer stored in an unexpected shape come back as their JSON, so validate reports them.
 */
export function textOfBson(type: PgType, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 't' : 'f';
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return String(v);
  if (v instanceof Date) return v.toISOString();
  if (isBsonType(v, 'Long')) return v.toString();
  if (isBsonType(v, 'Decimal128')) return plainDecimal(v.toString());
  if (isBsonType(v, 'Binary')) {
    const hex = hexOf(v as unknown as { buffer: Uint8Array });
    if (type.cls === 'uuid') return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    return `\\x${hex}`;
  }
  if (type.cls === 'array' && Array.isArray(v)) return arrayJsonOf(type.element ?? pgType('text'), v);
  return JSON.stringify(v);
}

/** A stored array as JSON text in the codec's array form (numbers bare, other elements their canonical text). */
function arrayJsonOf(el: PgType, items: unknown[]): string {
  const parts = items.map((it): string => {
    if (it === null || it === undefined) return 'null';
    if (Array.isArray(it)) return arrayJsonOf(el, it);
    const text = textOfBson(el, it);
    switch (el.cls) {
      case 'int':
      case 'float':
      case 'decimal':
        return /^-?\d/.test(text) ? text : JSON.stringify(text);
      case 'bool':
        return text === 't' ? 'true' : 'false';
      case 'json':
        return text;
      default:
        return JSON.stringify(canonicalOrAsIs(el.base, text));
    }
  });
  return `[${parts.join(',')}]`;
}

function canonicalOrAsIs(type: string, text: string): string {
  try {
    return canonicalText(type, text) ?? text;
  } catch {
    return text;
  }
}

/** A stored document back to a row of canonical texts (a missing field is NULL). */
export function rowOfDocument(table: TableSpec, doc: Document): TextRow {
  return table.columns.map((c) => {
    const v = c.name === '_id' ? doc._id : doc[c.name];
    if (v === undefined || v === null) return null;
    return canonicalOrAsIs(c.type, textOfBson(pgType(c.type), v));
  });
}

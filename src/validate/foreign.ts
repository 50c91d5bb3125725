/**
 * `ibex validate` for targets that are not PostgreSQL (MariaDB/MySQL, SQLite, Redis, MongoDB,
 * Oracle). Hash buckets computed in SQL are a PostgreSQL facility, so a target of another kind is
 * compared row by row against one source, through canonical values: every source row is read as
 * PostgreSQL's text output and put through the codec's `canonicalText`, every target row comes
 * back from `Target.scan` in the same canonical form, so equal data compares equal whatever the
 * target stores (DATETIME(6), Decimal128, a Redis hash of texts …).
 *
 * As for PostgreSQL dbs, a key that differs but has changes the sync has not consumed is in
 * flight, not different; a key must differ in two reads, taken one after the other, to count.
 * `repairForeign` re-applies the differing keys from a PostgreSQL db of the sync through the
 * Target contract: the source's rows upserted, keys it does not hold deleted.
 */
import type pg from 'pg';
import { createHash } from 'node:crypto';
import { canonicalText } from '../targets/codec.js';
import type { KeyRow, Target, TableSpec, TextRow } from '../targets/target.js';
import type { TablePlan } from '../engine/plan.js';
import { ident } from '../db/ident.js';
import { keyJsonb } from './queries.js';

/** Source rows read per FETCH. */
const FETCH_ROWS = 10_000;
/** Rows per upsert or delete call of a repair. */
const REPAIR_BATCH = 5_000;

/** A key whose row differs between the source and a target; rows are canonical text. */
export interface ForeignDiff {
  /** The key's identity as validate writes it: JSON array of the key columns' text values. */
  key: string;
  source: TextRow | null;
  target: TextRow | null;
}

/** The canonical form of a source row (as the target's scan returns it). */
export function canonicalRow(spec: TableSpec, row: TextRow): TextRow {
  return spec.columns.map((c, i) => canonicalText(c.type, row[i] ?? null));
}

/** The key values of a row, in key order. */
export function keyOf(spec: TableSpec, row: TextRow): KeyRow {
  return spec.keys.map((k) => row[spec.columns.findIndex((c) => c.name === k)] ?? null);
}

/** A short digest of a canonical row (for reports: equal rows give equal digests). */
export function rowDigest(row: TextRow): string {
  return createHash('sha256').update(JSON.stringify(row)).digest('hex').slice(0, 16);
}

/**
 * Compare one table: every target row (held in memory by canonical key) against the source's rows
 * read in the source session's open snapshot through a cursor. Returns the differing keys with
 * both versions, and the row counts.
 */
export async function compareForeignTable(source: pg.Client, plan: TablePlan, spec: TableSpec, target: Target):
  Promise<{ diffs: ForeignDiff[]; sourceRows: number; targetRows: number }> {
  const held = new Map<string, TextRow>();
  for await (const row of target.scan(spec)) held.set(JSON.stringify(keyOf(spec, row)), row);
  const targetRows = held.size;
  const diffs: ForeignDiff[] = [];
  let sourceRows = 0;
  const cursor = `ibex_validate_${plan.idx}`;
  const cols = spec.columns.map((c) => ident(c.name).text).join('::text, ');
  await source.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT to_json(ARRAY[${cols}::text])::text AS r FROM ${plan.q}`);
  try {
    for (;;) {
      const r = await source.query(`FETCH ${FETCH_ROWS} FROM ${cursor}`);
      for (const x of r.rows) {
        sourceRows++;
        const text = JSON.parse(String(x.r)) as TextRow;
        const canon = canonicalRow(spec, text);
        const id = JSON.stringify(keyOf(spec, canon));
        const there = held.get(id);
        held.delete(id);
        if (!there || JSON.stringify(there) !== JSON.stringify(canon)) {
          diffs.push({ key: JSON.stringify(keyOf(spec, text)), source: canon, target: there ?? null });
        }
      }
      if (r.rows.length < FETCH_ROWS) break;
    }
  } finally {
    await source.query(`CLOSE ${cursor}`);
  }
  // What is left is on the target only; its canonical key is the source's text for every key type
  // a key can sensibly have (integers, text, uuid, dates), which is what in-flight checks look up.
  for (const [id, row] of held) diffs.push({ key: id, source: null, target: row });
  diffs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { diffs, sourceRows, targetRows };
}

/** A key a repair wrote on a target, in the conflict log's forms. */
export interface ForeignWrite {
  /** The key's identity as validate writes it (see ForeignDiff). */
  key: string;
  /** The key as the conflict log stores it: column → typed JSON value (as for PostgreSQL dbs). */
  typedKey: string;
  /** The source's row as `to_jsonb` gives it, or null where the key was deleted. */
  row: string | null;
}

/**
 * Re-apply some keys from the source (in its open snapshot) to a target, in one target
 * transaction: rows the source holds are upserted, keys it does not hold are deleted.
 * Returns how many keys were written, each written key (for the conflict log) and the rows the
 * target refused.
 */
export async function repairForeignTable(source: pg.Client, plan: TablePlan, spec: TableSpec, target: Target, keys: readonly string[]):
  Promise<{ upserted: number; deleted: number; written: ForeignWrite[]; refused: { key: KeyRow; reason: string }[] }> {
  let upserted = 0;
  let deleted = 0;
  const written: ForeignWrite[] = [];
  const refused: { key: KeyRow; reason: string }[] = [];
  const cols = spec.columns.map((c) => ident(c.name).text).join('::text, t.');
  const keyTypes = spec.keys.map((k) => spec.columns.find((c) => c.name === k)!.type);
  const keyCols = spec.keys.map((k) => `t.${ident(k).text}`);
  const unnest = `unnest(${keyTypes.map((ty, j) => `$${j + 1}::${ty}[]`).join(', ')})`;
  for (let i = 0; i < keys.length; i += REPAIR_BATCH) {
    const ids = keys.slice(i, i + REPAIR_BATCH);
    const batch = ids.map((k) => JSON.parse(k) as KeyRow);
    const params = spec.keys.map((_, j) => batch.map((k) => k[j] ?? null));
    const r = await source.query(
      `SELECT to_json(ARRAY[t.${cols}::text])::text AS r, to_jsonb(t)::text AS j FROM ${plan.q} t
        WHERE (${keyCols.join(', ')}) IN (SELECT * FROM ${unnest})`, params);
    // The typed form of every key of the batch, by position (a key only the target holds has
    // its canonical text there, which reads back as the same value but not always as the same text).
    const typed = await source.query(
      `SELECT u.ibex_n AS n, ${keyJsonb(plan, 'u')} AS key FROM ${unnest} WITH ORDINALITY AS u(${spec.keys.map((k) => ident(k).text).join(', ')}, ibex_n)`, params);
    const typedKeys = new Map(typed.rows.map((x) => [ids[Number(x.n) - 1]!, String(x.key)]));
    const typedKey = (k: string): string => typedKeys.get(k) ?? JSON.stringify(Object.fromEntries(spec.keys.map((c, j) => [c, (JSON.parse(k) as KeyRow)[j] ?? null])));
    const rows = r.rows.map((x) => JSON.parse(String(x.r)) as TextRow);
    const json = new Map(r.rows.map((x, n) => [JSON.stringify(keyOf(spec, rows[n]!)), String(x.j)]));
    const gone = ids.filter((k) => !json.has(k));
    if (gone.length) {
      deleted += await target.deleteKeys(spec, gone.map((k) => JSON.parse(k) as KeyRow));
      for (const k of gone) written.push({ key: k, typedKey: typedKey(k), row: null });
    }
    if (rows.length) {
      const out = await target.upsertRows(spec, rows);
      upserted += out.applied;
      refused.push(...out.refused);
      const notWritten = new Set(out.refused.map((x) => JSON.stringify(x.key)));
      for (const [k, j] of json) if (!notWritten.has(k)) written.push({ key: k, typedKey: typedKey(k), row: j });
    }
  }
  return { upserted, deleted, written, refused };
}

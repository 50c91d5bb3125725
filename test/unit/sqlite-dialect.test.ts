import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  affinityOf,
  affinityProblem,
  createTableSql,
  deleteChunkKeys,
  deleteSql,
  PROGRESS_DDL,
  PROGRESS_FENCE_SQL,
  PROGRESS_SELECT,
  PROGRESS_UPSERT,
  quoteIdent,
  scanSql,
  sqliteType,
  upsertChunkRows,
  upsertSql,
} from '../../src/targets/sqlite/sqlite-dialect.js';
import { encodeSqlite } from '../../src/targets/sqlite/sqlite-target.js';
import type { TableSpec } from '../../src/targets/target.js';

const spec = (name: string, columns: [string, string][], keys: string[]): TableSpec => ({
  label: `public.${name}`, schema: 'public', name, targetName: name,
  columns: columns.map(([n, type]) => ({ name: n, type, notNull: keys.includes(n) })), keys,
});
const orders = spec('orders', [['id', 'bigint'], ['note', 'text'], ['at', 'timestamp with time zone']], ['id']);
const pair = spec('pair', [['a', 'integer'], ['b', 'text']], ['a', 'b']);

describe('sqlite dialect', () => {
  it('quotes identifiers with double quotes and refuses empty or NUL names', () => {
    assert.equal(quoteIdent('we"ird'), '"we""ird"');
    assert.throws(() => quoteIdent(''), /not a usable/);
    assert.throws(() => quoteIdent('a\0'), /not a usable/);
  });
  it('writes a multi-row VALUES upsert with ON CONFLICT, never INSERT…SELECT', () => {
    assert.equal(
      upsertSql(orders, 2),
      'INSERT INTO "orders" ("id", "note", "at") VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT ("id") DO UPDATE SET "note" = excluded."note", "at" = excluded."at"',
    );
    assert.equal(upsertSql(spec('k', [['a', 'integer']], ['a']), 1), 'INSERT INTO "k" ("a") VALUES (?) ON CONFLICT ("a") DO NOTHING');
  });
  it('deletes with IN, or row values for a composite key', () => {
    assert.equal(deleteSql(orders, 2), 'DELETE FROM "orders" WHERE "id" IN (?, ?)');
    assert.equal(deleteSql(pair, 2), 'DELETE FROM "pair" WHERE ("a", "b") IN (VALUES (?, ?), (?, ?))');
  });
  it('keeps every statement under 32,766 parameters', () => {
    assert.equal(upsertChunkRows(1), 500);
    assert.equal(upsertChunkRows(100), 327);
    assert.equal(upsertChunkRows(40_000), 1);
    assert.ok(deleteChunkKeys(3) * 3 <= 32_766);
  });
  it('creates tables with the type mapping and the key as PRIMARY KEY', () => {
    assert.equal(
      createTableSql(orders),
      'CREATE TABLE "orders" (\n  "id" INTEGER NOT NULL,\n  "note" TEXT,\n  "at" TEXT,\n  PRIMARY KEY ("id")\n)',
    );
    assert.equal(sqliteType('numeric(10,2)'), 'TEXT');
    assert.equal(sqliteType('boolean'), 'INTEGER');
    assert.equal(sqliteType('bytea'), 'BLOB');
    assert.equal(sqliteType('real'), 'REAL');
    assert.equal(sqliteType('jsonb'), 'TEXT');
    assert.equal(scanSql(pair), 'SELECT "a", "b" FROM "pair" ORDER BY "a", "b"');
  });
  it('writes the progress table and its upsert', () => {
    assert.equal(
      PROGRESS_DDL,
      'CREATE TABLE IF NOT EXISTS "ibex_progress" (sync TEXT NOT NULL, source TEXT NOT NULL, snapshot TEXT NOT NULL, run INTEGER NOT NULL, applied TEXT NOT NULL, epoch INTEGER, PRIMARY KEY (sync, source))',
    );
    assert.equal(PROGRESS_UPSERT, 'INSERT INTO "ibex_progress" (sync, source, snapshot, run, applied, epoch) VALUES (?, ?, ?, ?, ?, ?) ' +
      'ON CONFLICT (sync, source) DO UPDATE SET snapshot = excluded.snapshot, run = excluded.run, applied = excluded.applied, epoch = COALESCE(excluded.epoch, epoch)');
    assert.equal(PROGRESS_FENCE_SQL, 'SELECT COALESCE(MAX(epoch), 0) AS epoch FROM "ibex_progress" WHERE sync = ?');
    assert.equal(PROGRESS_SELECT, `SELECT source, snapshot, run FROM "ibex_progress" WHERE sync = ? AND source <> '*' ORDER BY source`);
  });
  it('knows which affinities lose values', () => {
    assert.equal(affinityOf('VARCHAR(10)'), 'TEXT');
    assert.equal(affinityOf('BIGINT'), 'INTEGER');
    assert.equal(affinityOf(''), 'BLOB');
    assert.equal(affinityOf('DECIMAL(10,2)'), 'NUMERIC');
    assert.equal(affinityOf('DOUBLE PRECISION'), 'REAL');
    assert.equal(affinityProblem('numeric', 'TEXT'), null);
    assert.match(affinityProblem('numeric', 'NUMERIC') ?? '', /declare it TEXT/);
    assert.match(affinityProblem('bigint', 'REAL') ?? '', /declare it INTEGER/);
    assert.match(affinityProblem('bytea', 'TEXT') ?? '', /declare it BLOB/);
  });
  it('encodes values as the mapping says', () => {
    assert.equal(encodeSqlite('bigint', '9223372036854775807'), 9223372036854775807n);
    assert.equal(encodeSqlite('boolean', 'f'), 0);
    assert.equal(encodeSqlite('timestamp with time zone', '2026-01-01 00:00:00.5+00'), '2026-01-01T00:00:00.500000Z');
    assert.equal(encodeSqlite('numeric', '1.50'), '1.5');
    assert.deepEqual(encodeSqlite('bytea', '\\xff'), Buffer.from([255]));
    assert.equal(encodeSqlite('text[]', '{a,NULL}'), '["a",null]');
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TableSpec } from '../../src/targets/target.js';
import {
  RefusedValue, bindValue, createTableSql, deleteSql, mergeSql, oracleColumn, oracleTable, quoteIdent, scanSql, textOf, truncateSql,
  READ_PROGRESS_SQL, WRITE_PROGRESS_SQL, CREATE_PROGRESS_SQL, PROGRESS_FENCE_SQL, PROGRESS_HAS_EPOCH_SQL, PROGRESS_ADD_EPOCH_SQL,
} from '../../src/targets/oracle/oracle-dialect.js';

function spec(targetName: string, columns: [string, string, boolean?][], keys: string[]): TableSpec {
  return { label: `public.${targetName}`, schema: 'public', name: targetName, targetName, columns: columns.map(([name, type, nn]) => ({ name, type, notNull: nn ?? false })), keys };
}

const ORDERS = spec('orders', [['id', 'bigint', true], ['Total', 'numeric(12,2)'], ['at', 'timestamp with time zone'], ['note', 'text'], ['ok', 'boolean']], ['id']);
const LINKS = spec('links', [['a', 'integer'], ['b', 'text']], ['a', 'b']);

describe('oracle dialect', () => {
  it('quotes identifiers exactly and refuses what Oracle cannot name', () => {
    assert.equal(quoteIdent('orders'), '"orders"');
    assert.equal(quoteIdent('Mixed Case'), '"Mixed Case"');
    assert.equal(quoteIdent('é'.repeat(64)), `"${'é'.repeat(64)}"`);
    assert.throws(() => quoteIdent('é'.repeat(65)), /130 bytes, over Oracle's 128-byte identifier limit/);
    assert.throws(() => quoteIdent('a"b'), /double quote or NUL/);
    assert.throws(() => quoteIdent(''), /empty name/);
  });

  it('builds the MERGE of a table with non-key columns', () => {
    assert.equal(
      mergeSql(oracleTable(ORDERS)),
      'MERGE INTO "orders" d USING (SELECT TO_NUMBER(:1) AS "id", TO_NUMBER(:2) AS "Total", ' +
        "TO_TIMESTAMP_TZ(:3, 'YYYY-MM-DD HH24:MI:SS.FF6 TZH:TZM') AS \"at\", :4 AS \"note\", :5 AS \"ok\" FROM dual) s " +
        'ON (d."id" = s."id") WHEN MATCHED THEN UPDATE SET d."Total" = s."Total", d."at" = s."at", d."note" = s."note", d."ok" = s."ok" ' +
        'WHEN NOT MATCHED THEN INSERT ("id", "Total", "at", "note", "ok") VALUES (s."id", s."Total", s."at", s."note", s."ok")',
    );
  });

  it('leaves WHEN MATCHED out when every column is a key column', () => {
    assert.equal(
      mergeSql(oracleTable(LINKS)),
      'MERGE INTO "links" d USING (SELECT TO_NUMBER(:1) AS "a", :2 AS "b" FROM dual) s ON (d."a" = s."a" AND d."b" = s."b") ' +
        'WHEN NOT MATCHED THEN INSERT ("a", "b") VALUES (s."a", s."b")',
    );
  });

  it('builds DELETE by key, the truncating DELETE and the scan SELECT', () => {
    assert.equal(deleteSql(oracleTable(LINKS)), 'DELETE FROM "links" WHERE "a" = TO_NUMBER(:1) AND "b" = :2');
    assert.equal(truncateSql(oracleTable(LINKS)), 'DELETE FROM "links"');
    assert.equal(
      scanSql(oracleTable(ORDERS)),
      `SELECT TO_CHAR("id", 'TM9') AS "id", TO_CHAR("Total", 'TM9') AS "Total", ` +
        `CASE WHEN "at" IS NULL THEN NULL ELSE TO_CHAR(SYS_EXTRACT_UTC("at"), 'YYYY-MM-DD"T"HH24:MI:SS.FF6') || 'Z' END AS "at", "note" AS "note", "ok" AS "ok" FROM "orders"`,
    );
  });

  it('creates tables with the Oracle type of every PostgreSQL type', () => {
    const all = spec('all', [
      ['k', 'text', true], ['i2', 'smallint'], ['i4', 'integer'], ['i8', 'bigint'], ['n', 'numeric(10,3)'], ['nu', 'numeric'], ['n40', 'numeric(40,2)'],
      ['r', 'real'], ['d', 'double precision'], ['b', 'boolean'], ['by', 'bytea'], ['u', 'uuid'], ['tz', 'timestamp with time zone'],
      ['ts', 'timestamp without time zone'], ['dt', 'date'], ['tm', 'time without time zone'], ['iv', 'interval'], ['j', 'jsonb'],
      ['arr', 'integer[]'], ['vc', 'character varying(20)'], ['ch', 'character(3)'], ['t', 'text'],
    ], ['k']);
    assert.deepEqual(createTableSql(all), [
      'CREATE TABLE "all" (\n' +
        '  "k" VARCHAR2(4000 CHAR) NOT NULL,\n  "i2" NUMBER(5),\n  "i4" NUMBER(10),\n  "i8" NUMBER(19),\n  "n" NUMBER(10,3),\n  "nu" NUMBER,\n  "n40" NUMBER,\n' +
        '  "r" BINARY_FLOAT,\n  "d" BINARY_DOUBLE,\n  "b" NUMBER(1),\n  "by" BLOB,\n  "u" RAW(16),\n  "tz" TIMESTAMP(6) WITH TIME ZONE,\n' +
        '  "ts" TIMESTAMP(6),\n  "dt" DATE,\n  "tm" VARCHAR2(64),\n  "iv" VARCHAR2(64),\n  "j" CLOB,\n  "arr" CLOB,\n  "vc" VARCHAR2(20 CHAR),\n' +
        '  "ch" CHAR(3 CHAR),\n  "t" CLOB,\n  PRIMARY KEY ("k")\n)',
    ]);
  });

  it('has the progress statements', () => {
    assert.equal(CREATE_PROGRESS_SQL, 'CREATE TABLE "IBEX_PROGRESS" ("SYNC_NAME" VARCHAR2(128 CHAR) NOT NULL, "SOURCE" VARCHAR2(128 CHAR) NOT NULL, "SNAPSHOT" CLOB NOT NULL, "RUN" NUMBER(19) NOT NULL, "EPOCH" NUMBER(19), PRIMARY KEY ("SYNC_NAME", "SOURCE"))');
    assert.equal(READ_PROGRESS_SQL, `SELECT "SOURCE", "SNAPSHOT", "RUN" FROM "IBEX_PROGRESS" WHERE "SYNC_NAME" = :1 AND "SOURCE" <> '*' ORDER BY "SOURCE"`);
    assert.equal(WRITE_PROGRESS_SQL, 'MERGE INTO "IBEX_PROGRESS" d USING (SELECT :1 AS "SYNC_NAME", :2 AS "SOURCE", :3 AS "SNAPSHOT", TO_NUMBER(:4) AS "RUN", TO_NUMBER(:5) AS "EPOCH" FROM dual) s' +
      ' ON (d."SYNC_NAME" = s."SYNC_NAME" AND d."SOURCE" = s."SOURCE")' +
      ' WHEN MATCHED THEN UPDATE SET d."SNAPSHOT" = s."SNAPSHOT", d."RUN" = s."RUN", d."EPOCH" = NVL(s."EPOCH", d."EPOCH")' +
      ' WHEN NOT MATCHED THEN INSERT ("SYNC_NAME", "SOURCE", "SNAPSHOT", "RUN", "EPOCH") VALUES (s."SYNC_NAME", s."SOURCE", s."SNAPSHOT", s."RUN", s."EPOCH")');
    // No aggregate: Oracle refuses FOR UPDATE with one (ORA-01786); the newest epoch is taken by the target.
    assert.equal(PROGRESS_FENCE_SQL, 'SELECT "EPOCH" FROM "IBEX_PROGRESS" WHERE "SYNC_NAME" = :1 FOR UPDATE');
    assert.equal(PROGRESS_HAS_EPOCH_SQL, `SELECT COUNT(*) FROM USER_TAB_COLUMNS WHERE TABLE_NAME = 'IBEX_PROGRESS' AND COLUMN_NAME = 'EPOCH'`);
    assert.equal(PROGRESS_ADD_EPOCH_SQL, 'ALTER TABLE "IBEX_PROGRESS" ADD ("EPOCH" NUMBER(19))');
  });

  it('binds each value in a form Oracle converts exactly', () => {
    const col = (type: string, key = false) => oracleColumn({ name: 'c', type, notNull: false }, key);
    assert.equal(bindValue(col('bigint'), '-9223372036854775808'), '-9223372036854775808');
    assert.equal(bindValue(col('numeric'), '0012.500'), '12.5');
    assert.equal(bindValue(col('numeric'), '1' + '0'.repeat(100)), '1' + '0'.repeat(100), '1E100 has one significant digit');
    assert.equal(bindValue(col('double precision'), '1.5'), 1.5);
    assert.equal(bindValue(col('boolean'), 't'), 1);
    assert.equal(bindValue(col('boolean'), 'f'), 0);
    assert.deepEqual(bindValue(col('bytea'), '\\x00ff'), Buffer.from([0, 255]));
    assert.deepEqual(bindValue(col('uuid'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), Buffer.from('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex'));
    assert.equal(bindValue(col('timestamp with time zone'), '2024-03-01 10:20:30.123456+02'), '2024-03-01 08:20:30.123456 +00:00');
    assert.equal(bindValue(col('timestamp without time zone'), '2024-03-01 10:20:30'), '2024-03-01 10:20:30.000000');
    assert.equal(bindValue(col('date'), '2024-02-29'), '2024-02-29');
    assert.equal(bindValue(col('jsonb'), '{"a": 1}'), '{"a": 1}');
    assert.equal(bindValue(col('text[]'), '{a,NULL}'), '["a",null]');
    assert.equal(bindValue(col('interval'), '1 day'), 'P1D');
    assert.equal(bindValue(col('text'), null), null);
  });

  it('refuses values Oracle cannot hold', () => {
    const col = (type: string, key = false) => oracleColumn({ name: 'c', type, notNull: false }, key);
    assert.throws(() => bindValue(col('text'), ''), (e: unknown) => e instanceof RefusedValue && /empty string, which Oracle stores as NULL/.test(e.message));
    assert.throws(() => bindValue(col('numeric'), '1234567890123456789012345678901234567.89'), /39 significant digits, over the 38/);
    assert.throws(() => bindValue(col('numeric'), 'NaN'), /NaN, which an Oracle NUMBER cannot hold/);
    assert.throws(() => bindValue(col('numeric'), '1' + '0'.repeat(126)), /magnitude 1E126/);
    assert.throws(() => bindValue(col('timestamp with time zone'), 'infinity'), /infinity, which an Oracle TIMESTAMP/);
    assert.throws(() => bindValue(col('date'), '10000-01-01'), /year 10000/);
    assert.throws(() => bindValue(col('text', true), 'x'.repeat(4001)), /4001 bytes, over the 4000/);
    assert.equal(bindValue(col('text', false), 'x'.repeat(4001)), 'x'.repeat(4001), 'a CLOB holds it');
  });

  it('reads fetched values back as PostgreSQL text', () => {
    const col = (type: string) => oracleColumn({ name: 'c', type, notNull: false }, false);
    assert.equal(textOf(col('boolean'), 1), 't');
    assert.equal(textOf(col('boolean'), 0), 'f');
    assert.equal(textOf(col('uuid'), Buffer.from('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex')), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.equal(textOf(col('bytea'), Buffer.from([1, 2])), '\\x0102');
    assert.equal(textOf(col('double precision'), -0), '-0');
    assert.equal(textOf(col('text'), null), null);
    assert.equal(textOf(col('numeric'), '1.5E-100'), '0.' + '0'.repeat(99) + '15', "TO_CHAR 'TM9' goes scientific past 64 characters");
    assert.equal(textOf(col('numeric'), '-1E+70'), '-1' + '0'.repeat(70));
    assert.equal(textOf(col('numeric'), '-.5'), '-.5');
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyStatements, type TablePlan } from '../../src/engine/plan.js';
import { ident, identList } from '../../src/db/ident.js';

function plan(keys: string[], cols: string[], hasRules: boolean): TablePlan {
  return {
    rel: { id: 1, schema: 'public', name: 't', reltype: 'table', keyColumns: keys, keyTypes: keys.map(() => 'integer'), conflictStrategy: null, priority: 0 },
    label: 'public.t', idx: 0, oid: 1, q: '"public"."t"', delta: '"ibex"."delta_t"',
    keys, keyList: identList(keys).text, cols, colList: identList(cols).text, nonKeyCols: cols.filter((c) => !keys.includes(c)),
    keyJoin: (a, b) => keys.map((k) => `${a}.${ident(k).text} = ${b}.${ident(k).text}`).join(' AND '),
    fingerprint: '', hasRules, inForeignKey: false,
  };
}

describe('applyStatements', () => {
  it('upserts on the key, overriding GENERATED ALWAYS identity columns', () => {
    assert.deepEqual(applyStatements(plan(['id'], ['id', 'My V'], false), 'pg_temp.st', 's.o = 1'), [
      'INSERT INTO "public"."t" ("id", "My V") OVERRIDING SYSTEM VALUE SELECT s."id", s."My V" FROM pg_temp.st s WHERE s.o = 1 ON CONFLICT ("id") DO UPDATE SET "My V" = EXCLUDED."My V"',
    ]);
  });

  it('does nothing on a key already there when every column is in the key', () => {
    assert.deepEqual(applyStatements(plan(['a', 'b'], ['a', 'b'], false), 'pg_temp.st', 'true'), [
      'INSERT INTO "public"."t" ("a", "b") OVERRIDING SYSTEM VALUE SELECT s."a", s."b" FROM pg_temp.st s WHERE true ON CONFLICT ("a", "b") DO NOTHING',
    ]);
  });

  it('on a table with rules: updates the keys there, drops them from staging, inserts the rest (no ON CONFLICT)', () => {
    assert.deepEqual(applyStatements(plan(['id'], ['id', 'v'], true), 'pg_temp.st', 's.o = $1 AND s.ctid = $2::tid'), [
      'UPDATE "public"."t" t SET "v" = s."v" FROM pg_temp.st s WHERE (s.o = $1 AND s.ctid = $2::tid) AND t."id" = s."id"',
      'WITH applied AS (DELETE FROM pg_temp.st s USING "public"."t" t WHERE (s.o = $1 AND s.ctid = $2::tid) AND t."id" = s."id") SELECT WHERE false',
      'INSERT INTO "public"."t" ("id", "v") OVERRIDING SYSTEM VALUE SELECT s."id", s."v" FROM pg_temp.st s WHERE s.o = $1 AND s.ctid = $2::tid',
    ]);
    // Only key columns: nothing to update.
    assert.equal(applyStatements(plan(['id'], ['id'], true), 'pg_temp.st', 'true').length, 2);
  });
});

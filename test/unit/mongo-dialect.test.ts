import { plainDecimal } from '../../src/targets/codec.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BSON, Binary, Decimal128, Long } from 'mongodb';
import { canonicalText } from '../../src/targets/codec.js';
import type { TableSpec, TextRow } from '../../src/targets/target.js';
import {
  RefusedValue, coefficientDigits, fenceUpdate, progressDoc, docLayout, fieldNameProblem, idOf, rowDocument, rowOfDocument, toBson, type BsonKit,
} from '../../src/targets/mongo/mongo-dialect.js';

const kit: BsonKit = { Long, Decimal128, Binary, BSON };

function spec(columns: [string, string][], keys: string[]): TableSpec {
  return { label: 'public.t', schema: 'public', name: 't', targetName: 't', columns: columns.map(([name, type]) => ({ name, type, notNull: false })), keys };
}

describe('mongo dialect', () => {
  it('fences progress with one conditional upsert of the sync\'s fence record', () => {
    // Matches only a record of an epoch no newer (or none): with a newer one the upsert's insert collides on _id (E11000).
    assert.deepEqual(fenceUpdate('s1', 9, 3), {
      filter: { _id: { sync: 's1', source: '*' }, $or: [{ epoch: { $exists: false } }, { epoch: { $lte: 3 } }] },
      update: { $set: { snapshot: '', run: 9, epoch: 3 } },
    });
    assert.deepEqual(progressDoc('s1', { source: 'A', snapshot: '1:2:', run: 9, epoch: 3 }), { _id: { sync: 's1', source: 'A' }, snapshot: '1:2:', run: 9, epoch: 3 });
    assert.deepEqual(progressDoc('s1', { source: 'A', snapshot: '1:2:', run: 9 }), { _id: { sync: 's1', source: 'A' }, snapshot: '1:2:', run: 9 });
  });

  it('maps each PostgreSQL type to its BSON type', () => {
    assert.equal(toBson(kit, 'integer', '-7', 'c'), -7);
    assert.equal(toBson(kit, 'smallint', '3', 'c'), 3);
    const big = toBson(kit, 'bigint', '-9223372036854775808', 'c');
    assert.ok(big instanceof Long && big.toString() === '-9223372036854775808');
    const dec = toBson(kit, 'numeric', '0.000000100', 'c');
    assert.ok(dec instanceof Decimal128 && dec.toString() === '1E-7');
    assert.equal(toBson(kit, 'numeric', '1' + '0'.repeat(34), 'c'), '1' + '0'.repeat(34));
    assert.ok(toBson(kit, 'numeric', '9'.repeat(34), 'c') instanceof Decimal128);
    const tiny = '0.' + '0'.repeat(7000) + '1';
    assert.equal(toBson(kit, 'numeric', tiny, 'c'), tiny, "beyond Decimal128's exponent: exact text");
    assert.equal((toBson(kit, 'numeric', 'NaN', 'c') as Decimal128).toString(), 'NaN');
    assert.equal(toBson(kit, 'double precision', '1.5', 'c'), 1.5);
    assert.equal(toBson(kit, 'boolean', 'f', 'c'), false);
    assert.deepEqual(toBson(kit, 'date', '2024-02-29', 'c'), '2024-02-29');
    assert.deepEqual(toBson(kit, 'interval', '1 day 02:00:00', 'c'), 'P1DT2H');
    assert.deepEqual(toBson(kit, 'json', '{"a": 12345678901234567890}', 'c'), '{"a":12345678901234567890}', 'kept as text when a double would round it');
    assert.deepEqual(toBson(kit, 'jsonb', '[1, {"x": null}]', 'c'), [1, { x: null }]);
    const ts = toBson(kit, 'bigint[]', '{{1,2},{NULL,9223372036854775807}}', 'c') as unknown[][];
    assert.equal((ts[1]![1] as Long).toString(), '9223372036854775807');
    assert.equal(ts[1]![0], null);
    assert.throws(() => toBson(kit, 'timestamp with time zone', '-infinity', 'c'), RefusedValue);
    assert.equal(toBson(kit, 'timestamp with time zone', '294276-12-31 23:59:59+00', 'c'), '+294276-12-31T23:59:59.000000Z', 'beyond a JavaScript Date: exact text');
  });

  it('builds _id from the key: the value itself, or a sub-document in key order', () => {
    const t = spec([['a', 'integer'], ['b', 'uuid'], ['v', 'text']], ['b', 'a']);
    const id = idOf(kit, t, ['0e3c0d5e-4f3a-4b8e-9a1b-2c3d4e5f6a7b', '5']) as Record<string, unknown>;
    assert.deepEqual(Object.keys(id), ['b', 'a']);
    assert.equal(id.a, 5);
    assert.ok(id.b instanceof Binary && id.b.sub_type === 4);
    const one = spec([['id', 'text'], ['v', 'text']], ['id']);
    assert.equal(idOf(kit, one, ['k']), 'k');
    const doc = rowDocument(kit, one, docLayout(one), ['k', null]);
    assert.deepEqual(doc, { _id: 'k', id: 'k' });
  });

  it('reads every mapped type back to the canonical text of the source value', () => {
    const cases: [string, string][] = [
      ['bigint', '9007199254740993'], ['integer', '-2147483648'], ['numeric(10,2)', '12.50'], ['numeric', '0.00000012'],
      ['numeric', '123456789012345678901234567890123456789.123'], ['numeric', 'Infinity'], ['real', '0.1'], ['double precision', '-0'],
      ['double precision', 'NaN'], ['boolean', 't'], ['bytea', '\\xDEADbeef'], ['uuid', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'],
      ['jsonb', '{"b": 1, "a": [true, null, 1.25]}'], ['json', '{"big": 1e400}'], ['timestamp with time zone', '2001-02-03 04:05:06.789+00'],
      ['timestamp with time zone', '2001-02-03 04:05:06.789012+00'], ['timestamp without time zone', '2001-02-03 04:05:06'],
      ['date', '0044-03-15 BC'], ['time without time zone', '23:59:59.5'], ['interval', '-1 years +2 mons 3 days -04:05:06'],
      ['text[]', '{"a,b",NULL,"c\\"d"}'], ['numeric[]', '{1.50,NaN}'], ['timestamp with time zone[]', '{"2001-02-03 04:05:06+00"}'],
      ['double precision[]', '{1e300,-Infinity}'], ['character(4)', 'ab  '], ['text', ''],
    ];
    const t = spec([['k', 'integer'], ...cases.map(([type], i): [string, string] => [`c${i}`, type])], ['k']);
    const row: TextRow = ['1', ...cases.map(([, text]) => text)];
    const stored = BSON.deserialize(BSON.serialize(rowDocument(kit, t, docLayout(t), row)), { promoteLongs: false });
    const back = rowOfDocument(t, stored);
    const expected = t.columns.map((c, i) => canonicalText(c.type, row[i] ?? null));
    t.columns.forEach((c, i) => assert.equal(back[i], expected[i], `${c.type} ${row[i]}`));
  });

  it('turns Decimal128 scientific text into plain digits', () => {
    assert.equal(plainDecimal('1E-7'), '0.0000001');
    assert.equal(plainDecimal('1.25E+3'), '1250');
    assert.equal(plainDecimal('-1.5E+40'), '-15' + '0'.repeat(39));
    assert.equal(plainDecimal('12.5'), '12.5');
    assert.equal(coefficientDigits('-0.00120'), 3);
  });

  it('refuses field names MongoDB reserves', () => {
    assert.match(fieldNameProblem(spec([['id', 'int'], ['$x', 'text']], ['id'])) ?? '', /starts with '\$'/);
    assert.match(fieldNameProblem(spec([['id', 'int'], ['a.b', 'text']], ['id'])) ?? '', /contains '\.'/);
    assert.match(fieldNameProblem(spec([['id', 'int'], ['_id', 'text']], ['id'])) ?? '', /column _id/);
    assert.equal(fieldNameProblem(spec([['_id', 'int'], ['v', 'text']], ['_id'])), undefined);
  });
});

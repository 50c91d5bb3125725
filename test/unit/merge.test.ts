import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatDecimal, mergeKey, parseDecimal, type MergeVersion } from '../../src/conflict/merge.js';
import { parseStrategy, winnerOrder } from '../../src/conflict/strategy.js';
import { readStrategy, strategyDbs } from '../../src/conflict/strategy.js';
import { deltaSql, maskSql } from '../../src/capture/objects.js';

const v = (db: string, rank: number, row: Record<string, string | null> | null, changed: string[] | null, sums: Record<string, string | null> = {}): MergeVersion =>
  ({ db, rank, row, changed, sums });

describe('mergeKey', () => {
  it('takes each column from the db that changed it', () => {
    const out = mergeKey([
      v('A', 2, { id: '1', price: '11', stock: '5' }, ['price']),
      v('B', 1, { id: '1', price: '10', stock: '4' }, ['stock']),
    ], [], true);
    assert.deepEqual(out, { row: { id: '1', price: '11', stock: '4' }, columns: { id: 'B', price: 'A', stock: 'B' } });
  });

  it('a column several dbs changed follows the rank (the fallback)', () => {
    const out = mergeKey([v('A', 2, { id: '1', n: 'a' }, ['n']), v('B', 1, { id: '1', n: 'b' }, ['n'])], [], true);
    assert.deepEqual(out, { winner: 'B' });
  });

  it('a delete or an insert on any db: the whole row follows the winner', () => {
    assert.deepEqual(mergeKey([v('A', 1, { id: '1', n: 'a' }, ['n']), v('B', 2, null, null)], [], true), { winner: 'A' });
    assert.deepEqual(mergeKey([v('A', 2, { id: '1', n: 'a' }, ['n']), v('B', 1, { id: '1', n: 'b' }, null)], [], true), { winner: 'B' });
  });

  it('counters add up: base + every difference; equal rows too', () => {
    const out = mergeKey([
      v('A', 2, { id: '1', bal: '90.50', l: 'a' }, ['bal', 'l'], { bal: '-9.5' }),
      v('B', 1, { id: '1', bal: '130', l: 'x' }, ['bal'], { bal: '30' }),
    ], ['bal'], false);
    assert.deepEqual(out, { row: { id: '1', bal: '120.5', l: 'x' }, columns: { id: 'B', bal: 'sum', l: 'B' } });
    const same = mergeKey([v('A', 1, { id: '1', bal: '90' }, ['bal'], { bal: '-10' }), v('B', 2, { id: '1', bal: '90' }, ['bal'], { bal: '-10' })], ['bal'], false);
    assert.deepEqual(same, { row: { id: '1', bal: '80' }, columns: { id: 'A', bal: 'sum' } });
  });

  it('a counter with a non-additive change falls back to the winner', () => {
    const out = mergeKey([v('A', 1, { id: '1', bal: '0' }, ['bal'], { bal: null }), v('B', 2, { id: '1', bal: '7' }, ['bal'], { bal: '2' })], ['bal'], false);
    assert.deepEqual(out, { winner: 'A' });
  });

  it('decimal text round trips exactly', () => {
    for (const t of ['0', '-0.05', '12345678901234567890.123', '7']) assert.equal(formatDecimal(parseDecimal(t)!), t);
    assert.equal(parseDecimal('1e+20'), undefined);
    assert.equal(parseDecimal('NaN'), undefined);
  });
});

describe('merge strategy text', () => {
  it('parses merge and its fallbacks', () => {
    assert.deepEqual(parseStrategy('merge', ['A', 'B']), { kind: 'merge', fallback: { kind: 'latest' } });
    assert.deepEqual(parseStrategy('merge:B,A', ['A', 'B']), { kind: 'merge', fallback: { kind: 'list', order: ['B', 'A'] } });
    assert.throws(() => parseStrategy('merge:skip', ['A', 'B']), /falls back to latest/);
    assert.equal(winnerOrder({ kind: 'merge', fallback: { kind: 'latest' } }, new Map(), 'k'), winnerOrder({ kind: 'latest' }, new Map(), 'k'));
    assert.deepEqual(readStrategy('merge:A,B'), { strategy: 'merge:A,B', dbs: ['A', 'B'] });
    assert.ok('error' in readStrategy('merge:abort'));
    assert.deepEqual(strategyDbs('merge:A,B'), ['A', 'B']);
    assert.equal(strategyDbs('merge:latest'), undefined);
  });
});

describe('capture of changed columns', () => {
  const t = { schema: 's', name: 't', keyColumns: ['id'], keyTypes: ['int'], partitioned: false };
  it('builds a bit per column, comparing types without = as text', () => {
    const sql = maskSql({ ...t, columns: [{ name: 'id', eq: true }, { name: 'j', eq: false }] }, 'o', 'n');
    assert.match(sql, /o\."id" IS DISTINCT FROM n\."id"/);
    assert.match(sql, /o\."j"::text IS DISTINCT FROM n\."j"::text/);
    assert.equal(maskSql(t, 'o', 'n'), 'NULL::varbit');
    assert.match(deltaSql({ ...t, deltaColumns: ['bal'] }, 'o', 'n'), /'bal', n\."bal"::numeric - o\."bal"::numeric/);
  });
});

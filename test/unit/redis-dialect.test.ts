import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TableSpec } from '../../src/targets/target.js';
import { dbNumber, decodeProgress, encodeProgress, escapeGlob, FENCED_PROGRESS_LUA, hashArgs, parseRowKey, rowKey, rowLayout, tablePattern } from '../../src/targets/redis/redis-dialect.js';

const t: TableSpec = {
  label: 'public.t', schema: 'public', name: 't', targetName: 't',
  columns: [{ name: 'v', type: 'text', notNull: false }, { name: 'k1', type: 'text', notNull: true }, { name: 'k2', type: 'text', notNull: true }],
  keys: ['k1', 'k2'],
};

describe('redis dialect', () => {
  it('takes any non-negative integer a server can have as the database number', () => {
    assert.equal(dbNumber(undefined), 0);
    assert.equal(dbNumber(''), 0);
    assert.equal(dbNumber('15'), 15);
    assert.equal(dbNumber('123456'), 123456);
    assert.equal(dbNumber('2147483647'), 2147483647);
    for (const v of ['-1', 'app', '1.5', ' 1', '2147483648']) assert.equal(dbNumber(v), undefined, v);
  });
  it('fences progress in one script: the newest epoch of the hash, written only when not newer', () => {
    assert.equal(FENCED_PROGRESS_LUA, [
      'local mine = tonumber(ARGV[1])',
      'local newest = 0',
      "for _, v in ipairs(redis.call('HVALS', KEYS[1])) do",
      '  local ok, p = pcall(cjson.decode, v)',
      "  if ok and type(p) == 'table' and type(p.epoch) == 'number' and p.epoch > newest then newest = p.epoch end",
      'end',
      'if newest > mine then return newest end',
      "redis.call('HSET', KEYS[1], unpack(ARGV, 2))",
      'return newest',
    ].join('\n'));
    assert.equal(encodeProgress('1:2:', 7, 3), '{"snapshot":"1:2:","run":7,"epoch":3}');
    assert.equal(encodeProgress('1:2:', 7), '{"snapshot":"1:2:","run":7}');
    assert.deepEqual(decodeProgress('{"snapshot":"1:2:","run":7,"epoch":3}'), { snapshot: '1:2:', run: 7 });
  });

  it('escapes colons and backslashes in key values so every key parses back to its values', () => {
    const cases: (string | null)[][] = [['a:b', 'c'], ['a', 'b:c'], ['\\', ':'], ['\\N', 'x'], [null, 'x'], ['', '']];
    const keys = cases.map((k) => rowKey(t, k));
    assert.equal(new Set(keys).size, cases.length);
    assert.equal(rowKey(t, ['a:b', 'c']), 't:a\\:b:c');
    assert.equal(rowKey(t, [null, 'x']), 't:\\N:x');
    assert.equal(rowKey(t, ['\\N', 'x']), 't:\\\\N:x');
    cases.forEach((k, i) => assert.deepEqual(parseRowKey(t, keys[i]!), k));
  });

  it('refuses keys that are not of the table shape', () => {
    assert.equal(parseRowKey(t, 't:only-one'), undefined);
    assert.equal(parseRowKey(t, 't:a:b:c'), undefined);
    assert.equal(parseRowKey(t, 't:a\\x:b'), undefined);
    assert.equal(parseRowKey(t, 't:\\Nx:b'), undefined);
    assert.equal(parseRowKey(t, 'u:a:b'), undefined);
  });

  it("refuses a table whose keys would fall under ibex's own prefix", () => {
    assert.throws(() => rowKey({ ...t, targetName: 'ibex' }, ['marker', 'x']), /would start with "ibex:"/);
    assert.equal(rowKey({ ...t, targetName: 'ibex2' }, ['a', 'b']), 'ibex2:a:b');
  });

  it('escapes glob characters in the SCAN pattern', () => {
    assert.equal(escapeGlob('a*b?c[d]e\\'), 'a\\*b\\?c\\[d\\]e\\\\');
    assert.equal(tablePattern({ ...t, targetName: 'b?g:x' }), 'b\\?g\\\\:x:*');
  });

  it('puts non-NULL non-key columns in the hash, and a presence field when there are none', () => {
    const layout = rowLayout(t);
    assert.deepEqual(layout.keyIdx, [1, 2]);
    assert.deepEqual(hashArgs(layout, ['val', 'a', 'b']), ['v', 'val']);
    assert.deepEqual(hashArgs(layout, [null, 'a', 'b']), ['', '']);
  });
});

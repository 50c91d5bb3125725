import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ident, literal, keyedName, qualified, MAX_IDENT_BYTES, NAME_HASH_CHARS } from '../../src/db/ident.js';
import { captureNames, findNameClash, type CaptureNames } from '../../src/capture/objects.js';
import { sql } from '../../src/db/sql.js';
import { redact, parseUrl } from '../../src/db/connect.js';
import { IbexError, ExitCode } from '../../src/errors.js';

describe('identifier quoting', () => {
  it('doubles quotes and keeps case and spaces', () => {
    assert.equal(ident('My "odd" Table').text, '"My ""odd"" Table"');
    assert.equal(qualified('Sch ema', 't').text, '"Sch ema"."t"');
  });
  it('refuses empty names and NUL bytes', () => {
    assert.throws(() => ident(''), IbexError);
    assert.throws(() => ident('a\0b'), IbexError);
  });
  it('puts values in parameters and identifiers in the text', () => {
    const q = sql`SELECT * FROM ${ident('t"x')} WHERE a = ${"O'Brien"} AND b = ${2}`;
    assert.equal(q.text, 'SELECT * FROM "t""x" WHERE a = $1 AND b = $2');
    assert.deepEqual(q.values, ["O'Brien", 2]);
  });

  it('quotes a value as a string literal where SQL text must carry it, refusing NUL bytes', () => {
    assert.equal(literal(`O'Brien \\ 'x'`), `'O''Brien \\ ''x'''`);
    assert.throws(() => literal('a\0b'), /NUL byte/);
  });
});

/** Bucardo-style awkward (schema, table) pairs, including pairs that joined with `_` read the same. */
const AWKWARD: [string, string][] = [
  ['public', 't1'], ['Public', 't1'], ['public', 'T1'],
  ['a_b', 'c'], ['a', 'b_c'], ['a', 'b__c'], ['a__b', 'c'], ['a_', '_b'], ['a', '__b'],
  ['sch ema', 'ta ble'], ['sch', 'ema ta ble'], ['sch ema ta', 'ble'],
  ['q"uote', 't'], ['q', '"uote_t'], ['"', '"'], ['""', 'x'],
  ['a.b', 'c'], ['a', 'b.c'], ['a.b.c', 'd'], ['.', '.'],
  ['ünï', 'cödé'], ['ün', 'ï_cödé'], ['日本', 'テーブル'], ['日本_テーブル', 'x'], ['😀', '😀'],
  ['s', 'x'.repeat(63)], ['s'.repeat(63), 'x'], ['s'.repeat(63), 'x'.repeat(63)],
  ['ü'.repeat(31), 'a'], ['ü'.repeat(31), 'b'],
  ['public', 'prefix_that_is_exactly_fifty_bytes_long_abcdefghij_tail1'],
  ['public', 'prefix_that_is_exactly_fifty_bytes_long_abcdefghij_tail2'],
  ['public', 'p'.repeat(51) + 'a'], ['public', 'p'.repeat(51) + 'b'],
  ['public', 'p'.repeat(60) + 'a'], ['public', 'p'.repeat(60) + 'b'],
];

/** The naming of capture objects before names were made injective (kept to prove the clash check). */
function joinedNames(schema: string, name: string): CaptureNames {
  return { delta: `delta_${schema}_${name}`, fn: `capture_${schema}_${name}`, index: `delta_${schema}_${name}_txid` };
}

describe('generated object names', () => {
  it('keeps a readable prefix and ends in the hash of the exact pair', () => {
    const n = keyedName('delta', ['public', 't1']);
    assert.match(n, new RegExp(`^delta_public_t1_[0-9a-f]{${NAME_HASH_CHARS}}$`));
    assert.equal(keyedName('delta', ['public', 't1']), n, 'the same pair always gets the same name');
  });

  it('gives a_b.c and a.b_c different delta tables, functions and indexes', () => {
    const x = captureNames('a_b', 'c');
    const y = captureNames('a', 'b_c');
    assert.notEqual(x.delta, y.delta);
    assert.notEqual(x.fn, y.fn);
    assert.notEqual(x.index, y.index);
  });

  it('is injective over awkward names: case, spaces, quotes, dots, underscores, unicode, 63-byte names', () => {
    const pairs = new Map(AWKWARD.map(([s, t]) => [JSON.stringify([s, t]), [s, t] as const]));
    const seen = new Map<string, string>();
    for (const [id, [s, t]] of pairs) {
      const n = captureNames(s, t);
      for (const obj of [n.delta, n.fn, n.index]) {
        assert.ok(Buffer.byteLength(obj, 'utf8') <= MAX_IDENT_BYTES, `${obj} is ${Buffer.byteLength(obj, 'utf8')} bytes`);
        assert.ok(!seen.has(obj), `${id} and ${seen.get(obj)} both get ${obj}`);
        seen.set(obj, id);
        // Cut on a character boundary: the name is valid UTF-8 that round-trips.
        assert.equal(Buffer.from(obj, 'utf8').toString('utf8'), obj);
        assert.doesNotThrow(() => ident(obj));
      }
    }
    assert.equal(seen.size, pairs.size * 3);
  });

  it('keeps long names apart that differ only after byte 50, within 63 bytes', () => {
    const base = 'x'.repeat(50);
    const names = ['a', 'b', 'ab', 'ü'].map((tail) => captureNames('public', base + tail).delta);
    assert.equal(new Set(names).size, names.length);
    for (const n of names) assert.ok(Buffer.byteLength(n) <= MAX_IDENT_BYTES, n);
    // They share the readable prefix: only the hash tells them apart.
    assert.equal(new Set(names.map((n) => n.slice(0, -NAME_HASH_CHARS))).size, 1);
  });

  it('refuses a NUL byte in a name part', () => {
    assert.throws(() => keyedName('delta', ['a\0b', 'c']), IbexError);
  });

  it('finds the first two tables whose objects would share a name, naming both', () => {
    const tables = [{ schema: 'public', name: 't' }, { schema: 'a_b', name: 'c' }, { schema: 'a', name: 'b_c' }];
    assert.equal(findNameClash(tables), null);
    assert.deepEqual(findNameClash(tables, joinedNames), { a: 'a_b.c', b: 'a.b_c', name: 'delta_a_b_c' });
    // A table listed twice (on several dbs) is no clash.
    assert.equal(findNameClash([...tables, { schema: 'a_b', name: 'c' }]), null);
  });
});

describe('secrets and errors', () => {
  it('redacts passwords in URLs and key=value text', () => {
    assert.equal(redact('postgresql://bob:s3cret@h/db'), 'postgresql://bob:********@h/db');
    assert.equal(redact("host=h password=s3cret dbname=x"), 'host=h password=******** dbname=x');
    assert.equal(redact('failed for hunter2', 'hunter2'), 'failed for ********');
  });
  it('parses libpq URLs with a socket host', () => {
    const p = parseUrl('postgresql://postgres@/ibex?host=/tmp/sock&sslmode=disable');
    assert.equal(p.host, '/tmp/sock');
    assert.equal(p.dbname, 'ibex');
    assert.equal(p.conn, "sslmode='disable'");
  });
  it('maps error codes to the documented exit codes', () => {
    assert.equal(new IbexError('usage', 'x').exitCode, ExitCode.usage);
    assert.equal(new IbexError('not_found', 'x').exitCode, ExitCode.usage);
    assert.equal(new IbexError('unreachable', 'x').exitCode, ExitCode.runtime);
    assert.equal(new IbexError('conflict_abort', 'x').exitCode, 3);
    assert.equal(new IbexError('kick_timeout', 'x').exitCode, 4);
    assert.equal(new IbexError('run_failed', 'x').exitCode, 5);
    assert.equal(new IbexError('differences', 'x').exitCode, 6);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkObjectName, displayRelation, isExact, likeOf, matchesFilter, nounOf, parseRelationTerm, splitList,
} from '../../src/config/names.js';
import { dealias, parseDbType, parseSyncOption } from '../../src/cli/config/options.js';
import { strategyOption, strategyDbs } from '../../src/config/strategies.js';
import { writtenDbs } from '../../src/config/sync-check.js';
import { parseNounArgs } from '../../src/cli/config/common.js';
import { IbexError } from '../../src/errors.js';

const isUsage = (e: unknown): boolean => e instanceof IbexError && e.code === 'usage';

describe('table names on the command line', () => {
  it('defaults the schema to public and keeps case and spaces', () => {
    const t = parseRelationTerm('My Table');
    assert.deepEqual([t.schema.text, t.name.text, isExact(t)], ['public', 'My Table', true]);
  });
  it('reads double quotes, doubled quotes and dots inside quotes', () => {
    const t = parseRelationTerm('"my.schema"."a ""b"" c"');
    assert.deepEqual([t.schema.text, t.name.text], ['my.schema', 'a "b" c']);
  });
  it('treats % and * outside quotes as wildcards, and escapes literal parts for LIKE', () => {
    const t = parseRelationTerm('s*.order_%');
    assert.deepEqual([t.schema.text, t.name.text, isExact(t)], ['s%', 'order_%', false]);
    assert.equal(likeOf(parseRelationTerm('public.a_b').name), 'a\\_b');
    assert.equal(likeOf(parseRelationTerm('public."50%"').name), '50\\%');
    assert.equal(isExact(parseRelationTerm('public."50%"')), true);
  });
  it('refuses malformed names', () => {
    for (const bad of ['', 'a.b.c', 'a.', '.a', '"open', '"a"b', 'a.""']) assert.throws(() => parseRelationTerm(bad), isUsage, bad);
  });
  it('prints names so that they read back the same', () => {
    for (const [schema, name] of [['public', 't1'], ['Sch ema', 'My "T"'], ['s', 'a.b'], ['public', 'é'.repeat(31)]] as const) {
      const shown = displayRelation(schema, name);
      const back = parseRelationTerm(shown);
      assert.deepEqual([back.schema.text, back.name.text], [schema, name], shown);
    }
    assert.equal(displayRelation('public', 'MixedCase'), 'public."MixedCase"');
  });
  it('splits tables= on commas outside double quotes', () => {
    assert.deepEqual(splitList('a, public."x,y" ,s.b,'), ['a', 'public."x,y"', 's.b']);
  });
});

describe('object names and nouns', () => {
  it('accepts plurals and Bucardo aliases', () => {
    assert.equal(nounOf('dbs'), 'db');
    assert.equal(nounOf('Herd'), 'relgroup');
    assert.equal(nounOf('syncs'), 'sync');
    assert.equal(nounOf('gizmo'), undefined);
  });
  it('applies Bucardo\'s rule to names', () => {
    checkObjectName('db', 'A_1');
    assert.throws(() => checkObjectName('db', '1A'), isUsage);
    assert.throws(() => checkObjectName('db', 'a-b'), isUsage);
    assert.throws(() => checkObjectName('db', 'a'.repeat(64)), isUsage);
    assert.throws(() => checkObjectName('sync', 'ALL'), /cannot name a sync/);
  });
  it('filters lists by exact name or wildcard', () => {
    assert.equal(matchesFilter('prod_eu', ['prod%']), true);
    assert.equal(matchesFilter('prod_eu', ['prod']), false);
    assert.equal(matchesFilter('x', []), true);
    assert.equal(matchesFilter('a.b', ['a*b']), true);
  });
});

describe('typed options', () => {
  it('maps Bucardo strategies to ours and keeps db lists', () => {
    assert.deepEqual(strategyOption('bucardo_latest_all_tables'), { strategy: 'latest' });
    assert.deepEqual(strategyOption('Source'), { strategy: 'source' });
    assert.deepEqual(strategyOption('B, A'), { strategy: 'B,A', dbs: ['B', 'A'] });
    assert.deepEqual(strategyDbs('B,A'), ['B', 'A']);
    assert.equal(strategyDbs('latest'), undefined);
    assert.throws(() => strategyOption('who?'), isUsage);
    assert.throws(() => strategyOption('A,A'), /twice/);
  });
  it('parses typed sync options', () => {
    assert.equal(parseSyncOption('autokick', 'off'), false);
    assert.equal(parseSyncOption('onetimecopy', '2'), 2);
    assert.equal(parseSyncOption('checktime', '5m'), '300 seconds');
    assert.equal(parseSyncOption('checktime', '0'), null);
    assert.equal(parseSyncOption('isolation_level', 'REPEATABLE_READ'), 'repeatable read');
    assert.throws(() => parseSyncOption('onetimecopy', '7'), /from 0 to 2/);
    assert.throws(() => parseSyncOption('clock', 'wall'), /use one of change, commit/);
  });
  it('resolves aliases and refuses an option given under two names', () => {
    assert.deepEqual([...dealias(new Map([['ping', '1']]), { ping: 'autokick' })], [['autokick', '1']]);
    assert.throws(() => dealias(new Map([['ping', '1'], ['autokick', '0']]), { ping: 'autokick' }), /given twice/);
  });
  it('reads db types with Bucardo\'s aliases', () => {
    assert.equal(parseDbType('pg'), 'postgres');
    assert.equal(parseDbType('MariaDB'), 'mariadb');
    assert.equal(parseDbType('sqlite3'), 'sqlite');
    assert.throws(() => parseDbType('excel'), isUsage);
  });
  it('collects -n/-N/-t/-T filters and refuses unknown flags', () => {
    const a = parseNounArgs(['db=A', '-n', 's1', '--schema=s2', '-T', 'x', 'relgroup=g'], 'add all tables', true);
    assert.deepEqual(a.filters, { schemas: ['s1', 's2'], excludeSchemas: [], tables: [], excludeTables: ['x'] });
    assert.deepEqual([...a.options.keys()], ['db', 'relgroup']);
    assert.throws(() => parseNounArgs(['-n', 's1'], 'add table'), /unknown flag "-n"/);
    assert.throws(() => parseNounArgs(['-n'], 'add all tables', true), /needs a value/);
  });
});

describe('which dbs a sync writes', () => {
  it('writes only the targets of a one-way sync, and every db of a multi-master one', () => {
    assert.deepEqual(writtenDbs([{ db: 'A', role: 'source' }, { db: 'B', role: 'target' }, { db: 'C', role: 'fullcopy' }]), ['B', 'C']);
    assert.deepEqual(writtenDbs([{ db: 'A', role: 'source' }, { db: 'B', role: 'source' }, { db: 'C', role: 'target' }]), ['A', 'B', 'C']);
  });
});

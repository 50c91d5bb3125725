import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, parseDbRoles, parseBool, parseInterval } from '../../src/cli/args.js';
import { IbexError } from '../../src/errors.js';

describe('the key=value parser', () => {
  it('splits words from options and lower-cases keys', () => {
    const p = parseArgs(['public.t1', 'DB=A', 'relgroup=g', 'a=b=c']);
    assert.deepEqual(p.words, ['public.t1']);
    assert.equal(p.options.get('db'), 'A');
    assert.equal(p.options.get('a'), 'b=c');
  });
  it('treats a word whose prefix is not a key as a word', () => {
    assert.deepEqual(parseArgs(['public."a=b"']).words, ['public."a=b"']);
  });
  it('refuses an option given twice', () => {
    assert.throws(() => parseArgs(['db=A', 'db=B']), (e: unknown) => e instanceof IbexError && e.code === 'usage');
  });
});

describe('the dbs= parser', () => {
  it('defaults the first db to source and the rest to target', () => {
    assert.deepEqual(parseDbRoles('A,B,C:fullcopy').map((d) => `${d.db}:${d.role}`), ['A:source', 'B:target', 'C:fullcopy']);
  });
  it('accepts explicit roles and Bucardo aliases', () => {
    assert.deepEqual(parseDbRoles('A:source,B:master,C:slave').map((d) => d.role), ['source', 'source', 'target']);
  });
  it('refuses unknown roles and duplicates', () => {
    assert.throws(() => parseDbRoles('A:boss'), /unknown role "boss"/);
    assert.throws(() => parseDbRoles('A,A'), /listed twice/);
    assert.throws(() => parseDbRoles(''), /empty/);
  });
});

describe('typed option values', () => {
  it('parses booleans the Bucardo way', () => {
    assert.equal(parseBool('autokick', 'yes'), true);
    assert.equal(parseBool('autokick', '0'), false);
    assert.throws(() => parseBool('autokick', 'maybe'), /bad value "maybe" for autokick/);
  });
  it('parses durations into interval text', () => {
    assert.equal(parseInterval('checktime', '30'), '30 seconds');
    assert.equal(parseInterval('checktime', '5m'), '300 seconds');
    assert.equal(parseInterval('checktime', '500ms'), '0.5 seconds');
    assert.throws(() => parseInterval('checktime', 'soon'), /bad duration/);
  });
});

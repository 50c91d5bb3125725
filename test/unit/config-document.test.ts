import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jsonSchemaText } from '../../src/config/document.js';
import { parseConfigText } from '../../src/config/document-file.js';
import { checkReferences } from '../../src/config/apply.js';
import { mapStrategy } from '../../src/config/bucardo-import.js';
import { IbexError } from '../../src/errors.js';
import { ROOT } from '../helpers/env.js';

const GOOD = `version: 1
dbs:
  A: { dbname: shop, host: /tmp, port: 5432, pass: env:SHOP_A_PASSWORD }
  B: { dbname: shop, pass: file:/etc/ibex/b.pass }
tables:
  - { db: A, name: public.orders }
sequences:
  - { db: A, name: public.orders_id_seq }
relgroups:
  shop: { db: A, members: [public.orders, { name: public.orders_id_seq, priority: 2 }] }
dbgroups:
  ab: { members: [ { db: A, role: source }, { db: B, role: source } ] }
syncs:
  s1: { relgroup: shop, dbgroup: ab, checktime: 30 seconds, conflict_strategy: "B,A" }
`;

function errorOf(text: string): string {
  try {
    parseConfigText(text, 'ibex.yaml');
  } catch (err) {
    assert.ok(err instanceof IbexError, String(err));
    return err.message;
  }
  assert.fail('no error');
}

describe('the configuration file', () => {
  it('parses a good file and fills the defaults', () => {
    const doc = parseConfigText(GOOD, 'ibex.yaml');
    assert.equal(doc.dbs.A!.type, 'postgres');
    assert.equal(doc.dbs.A!.pass, 'env:SHOP_A_PASSWORD');
    assert.equal(doc.syncs.s1!.autokick, true);
    assert.equal(doc.syncs.s1!.status, 'active');
    checkReferences(doc);
  });

  it('names the line and column of a bad value, in one line', () => {
    const msg = errorOf(GOOD.replace('checktime: 30 seconds', 'clock: sundial'));
    assert.match(msg, /^ibex\.yaml:14:\d+: syncs\.s1\.clock: /);
    assert.doesNotMatch(msg, /\n/);
  });

  it('names an unknown key at its object', () => {
    const msg = errorOf(GOOD.replace('port: 5432,', 'port: 5432, colour: red,'));
    assert.match(msg, /^ibex\.yaml:3:\d+: dbs\.A: .*colour/);
  });

  it('refuses a password in the file', () => {
    const msg = errorOf(GOOD.replace('pass: env:SHOP_A_PASSWORD', 'pass: hunter2'));
    assert.match(msg, /^ibex\.yaml:3:\d+: dbs\.A\.pass: /);
    assert.doesNotMatch(msg, /hunter2/);
  });

  it('names the position of a YAML syntax error', () => {
    const msg = errorOf('version: 1\ndbs:\n  A: { dbname: x\n');
    assert.match(msg, /^ibex\.yaml:\d+:\d+: .*fix the YAML syntax/);
  });

  it('reads JSON too', () => {
    const doc = parseConfigText('{"version": 1, "dbs": {"A": {"dbname": "x"}}}', 'ibex.json');
    assert.equal(doc.dbs.A!.dbname, 'x');
  });

  it('checks that every name it uses is defined', () => {
    const doc = parseConfigText(GOOD.replace('dbgroup: ab,', 'dbgroup: nope,'), 'ibex.yaml');
    assert.throws(() => checkReferences(doc), /sync s1 uses dbgroup nope, which is not under dbgroups/);
    const doc2 = parseConfigText(GOOD.replace('members: [public.orders,', 'members: [public.nothere,'), 'ibex.yaml');
    assert.throws(() => checkReferences(doc2), /relgroup shop holds public.nothere/);
  });

  it('publishes an up-to-date JSON Schema (npm run json-schema writes it)', () => {
    assert.equal(readFileSync(join(ROOT, 'docs', 'ibex.schema.json'), 'utf8'), jsonSchemaText(), 'docs/ibex.schema.json is out of date: run npm run json-schema');
  });
});

describe('Bucardo conflict strategies', () => {
  it('maps each one and says how it differs', () => {
    assert.equal(mapStrategy('s', 'bucardo_latest').strategy, 'latest');
    assert.match(mapStrategy('s', 'bucardo_latest').note!, /per row|each row/);
    assert.equal(mapStrategy('s', 'bucardo_latest_all_tables').strategy, 'latest');
    assert.equal(mapStrategy('s', 'bucardo_abort').strategy, 'abort');
    assert.equal(mapStrategy('s', 'bucardo_custom').strategy, 'custom');
    assert.equal(mapStrategy('s', 'bucardo_source').strategy, 'source');
    assert.equal(mapStrategy('s', 'bucardo_target').strategy, 'target');
    assert.equal(mapStrategy('s', 'bucardo_skip').strategy, 'skip');
    assert.equal(mapStrategy('s', 'B A C').strategy, 'B,A,C');
    assert.throws(() => mapStrategy('s', 'bucardo_latest!'), /neither a strategy nor a db list/);
  });
});

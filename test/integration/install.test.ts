/**
 * `ibex install`: idempotent, safe to run several at once, and every verb
 * refuses a control schema newer than the code.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { runCliInProcess, useClusters } from '../helpers/env.js';
import { codeVersion, knownMigrations } from '../../src/control/migrate.js';

const env = useClusters(1);

describe('ibex install', () => {
  before(async () => {
    await env.clusters[0]!.createDatabase('app');
  });

  it('installs the control schema, and a second run changes nothing', async () => {
    const first = await env.cli('install');
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, new RegExp(`installed the control schema version ${codeVersion()}`));
    const second = await env.cli('install', '--json');
    assert.equal(second.code, 0, second.err);
    assert.deepEqual(JSON.parse(second.out), { version: codeVersion(), applied: [], createdDatabase: false });
    const rows = await env.query(0, `SELECT count(*) AS n FROM ibex.schema_version`, [], 'ibexctl');
    assert.equal(Number(rows[0]!.n), knownMigrations().length);
    const list = await env.cli('list', 'dbs', '--json');
    assert.equal(list.code, 0, list.err);
    assert.deepEqual(JSON.parse(list.out), []);
  });

  it('lets three installs run at once, even while the database does not exist yet', async () => {
    const url = env.clusters[0]!.url('ibexfresh');
    const results = await Promise.all([1, 2, 3].map(() => runCliInProcess(url, ['install'])));
    for (const r of results) assert.equal(r.code, 0, r.err);
    assert.equal(results.filter((r) => /installed the control schema/.test(r.out)).length, 1, results.map((r) => r.out).join(''));
    const rows = await env.query(0, `SELECT count(*) AS n FROM ibex.schema_version`, [], 'ibexfresh');
    assert.equal(Number(rows[0]!.n), knownMigrations().length);
    const again = await Promise.all([1, 2].map(() => runCliInProcess(url, ['install'])));
    for (const r of again) assert.match(r.out, /up to date/);
  });

  it('refuses a control schema newer than this ibex, in install and every other verb', async () => {
    await env.query(0, `INSERT INTO ibex.schema_version (version, purpose) VALUES (9999, 'from the future')`, [], 'ibexctl');
    try {
      for (const args of [['install'], ['list', 'dbs'], ['add', 'db', 'A', 'dbname=app', '--force'], ['remove', 'sync', 'x']]) {
        const r = await env.cli(...args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
        assert.match(r.err, /^ibex: the control schema is version 9999, newer than this ibex \(\d+\): upgrade ibex\n$/);
      }
      const rows = await env.query(0, `SELECT count(*) AS n FROM ibex.db`, [], 'ibexctl');
      assert.equal(rows[0]!.n, '0');
    } finally {
      await env.query(0, `DELETE FROM ibex.schema_version WHERE version = 9999`, [], 'ibexctl');
    }
    const r = await env.cli('list', 'dbs');
    assert.equal(r.code, 0, r.err);
  });

  it('asks for install when the schema is missing', async () => {
    await env.clusters[0]!.createDatabase('empty');
    const r = await runCliInProcess(env.clusters[0]!.url('empty'), ['list', 'syncs']);
    assert.equal(r.code, 1);
    assert.match(r.err, /the control schema is not installed: run "ibex install" first/);
  });
});

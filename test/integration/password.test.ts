/**
 * A db or control database that needs a password ibex does not have says so
 * in one line, naming where passwords come from (not the driver's "client
 * password must be a string"). One cluster, one role that must log in with
 * scram-sha-256 (the test clusters trust everyone else).
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { useClusters, runCliProcess } from '../helpers/env.js';

const env = useClusters(1);
const SECRET = 'PwTest-4471';
/** No password from anywhere: not PGPASSWORD, not a ~/.pgpass. */
const NO_PASSWORD = { PGPASSWORD: undefined, PGPASSFILE: '/nonexistent/ibex-test-pgpass', PGSERVICEFILE: '/nonexistent/ibex-test-service' };

describe('a login that needs a password', () => {
  before(async () => {
    await env.query(0, `CREATE ROLE pwneeded LOGIN SUPERUSER PASSWORD '${SECRET}'`);
    const [{ hba_file: hba }] = (await env.query(0, 'SHOW hba_file')) as [{ hba_file: string }];
    writeFileSync(hba, 'local all pwneeded scram-sha-256\nhost all pwneeded 127.0.0.1/32 scram-sha-256\n' + readFileSync(hba, 'utf8'));
    await env.query(0, 'SELECT pg_reload_conf()');
    assert.equal((await env.cli('install')).code, 0);
  });

  it('add db without one: one line saying where passwords come from, exit 1', async () => {
    const r = await runCliProcess(['--control', env.controlUrl, 'add', 'db', 'P', 'host=127.0.0.1', `port=${env.clusters[0]!.port}`, 'dbname=app', 'user=pwneeded'], NO_PASSWORD);
    assert.equal(r.code, 1, r.err);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, /^ibex: db "P": 127\.0\.0\.1:\d+ dbname=app user=pwneeded needs a password and none was given: give it with pass=- .*~\/\.pgpass.*service that sets the password, or PGPASSWORD, or add it anyway with --force$/m);
    assert.doesNotMatch(r.err, /must be a string/);
  });

  it('the control database without one: the same kind of line', async () => {
    const r = await runCliProcess(['--control', `postgresql://pwneeded@127.0.0.1:${env.clusters[0]!.port}/ibexctl`, 'list', 'dbs'], NO_PASSWORD);
    assert.equal(r.code, 1, r.err);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, /^ibex: the control database needs a password and none was given: put it in ~\/\.pgpass .*PGPASSWORD, or the --control/);
  });

  it('with PGPASSWORD the same commands work, and the password shows nowhere', async () => {
    const r = await runCliProcess(['--control', `postgresql://pwneeded@127.0.0.1:${env.clusters[0]!.port}/ibexctl`, 'add', 'db', 'P', 'host=127.0.0.1', `port=${env.clusters[0]!.port}`, 'dbname=app', 'user=pwneeded'], { ...NO_PASSWORD, PGPASSWORD: SECRET });
    assert.equal(r.code, 0, r.err);
    assert.ok(!(r.out + r.err).includes(SECRET));
  });
});

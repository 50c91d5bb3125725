import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useClusters, runCliProcess } from '../helpers/env.js';
import { setupControl, addSync } from '../helpers/sync.js';

const env = useClusters(2);
const piddir = mkdtempSync(join(tmpdir(), 'ibex-kick-'));
const daemonEnv = { IBEX_PIDDIR: piddir };
const ibex = (...args: string[]) => runCliProcess(['--control', env.controlUrl, ...args], daemonEnv);

after(async () => {
  await ibex('stop');
  rmSync(piddir, { recursive: true, force: true });
});

describe('ibex kick <sync> <timeout>', () => {
  it('exits 0 with the counts of a good run, 4 when the run outlasts the timeout, 5 when it failed', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE k (id int PRIMARY KEY, v text)`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'ks', { dbs: { A: 'source', B: 'target' }, tables: ['public.k'], options: { autokick: false } });
    assert.equal((await ibex('start')).code, 0);

    await env.query(0, `INSERT INTO k SELECT g, 'x' FROM generate_series(1, 10) g`);
    const good = await ibex('kick', 'ks', '30');
    assert.equal(good.code, 0, good.err + good.out);
    assert.match(good.out, /10/);
    assert.equal((await env.query(1, `SELECT count(*) AS n FROM k`))[0]!.n, '10');

    // A lock held on the target keeps the run waiting longer than the kick waits.
    const holder = await env.client(1);
    await holder.query(`BEGIN; LOCK TABLE k IN ACCESS EXCLUSIVE MODE`);
    await env.query(0, `INSERT INTO k VALUES (11, 'blocked for a while')`);
    const slow = await ibex('kick', 'ks', '1');
    assert.equal(slow.code, 4, slow.err + slow.out);
    await holder.query('COMMIT');

    // A target that lost a column: the run fails (and the sync pauses with the reason).
    await env.query(1, `ALTER TABLE k DROP COLUMN v`);
    await env.query(0, `INSERT INTO k VALUES (12, 'no column for me on B')`);
    const failed = await ibex('kick', 'ks', '30');
    assert.equal(failed.code, 5, failed.err + failed.out);
    assert.match(failed.err + failed.out, /k on db B/);
    const st = await ibex('status', 'ks', '--json');
    assert.match(st.out, /paused/);
  });
});

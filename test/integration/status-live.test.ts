/**
 * `ibex status` measures the backlog on the sources when asked: a paused or stalled sync shows
 * its pending changes and a lag that grows; a long transaction that holds the delta window back is
 * named with its pid; a source that is down says so.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners } from '../helpers/sync.js';
import type { SyncStatusDoc } from '../../src/cli/status.js';

const env = useClusters(2);
after(closeRunners);

async function status(sync: string): Promise<SyncStatusDoc> {
  const r = await env.cli('status', sync, '--json');
  assert.equal(r.code, 0, r.err);
  return (JSON.parse(r.out) as { syncs: SyncStatusDoc[] }).syncs[0]!;
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ctl = (text: string): Promise<unknown> => env.query(0, text, [], 'ibexctl');

describe('status measures the backlog live', () => {
  it('set up', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'live', { dbs: { A: 'source', B: 'source' }, tables: ['public.t'] });
    await env.query(0, `INSERT INTO t VALUES (1, 'first')`);
    await runOk(runner(env, 'live'));
    const s = await status('live');
    assert.equal(s.backlogLive, true);
    assert.deepEqual(s.backlog.map((b) => [b.db, b.keys]), [['A', 0], ['B', 0]]);
    assert.equal(s.lagS, 0);
  });

  it('a paused sync with pending changes shows them, and its lag grows', async () => {
    await ctl(`UPDATE ibex.sync SET status = 'paused' WHERE name = 'live'`);
    await env.query(0, `INSERT INTO t SELECT g, 'while paused' FROM generate_series(10, 12) g`);
    await sleep(300);
    const first = await status('live');
    assert.equal(first.backlog.find((b) => b.db === 'A')!.keys, 3);
    assert.ok(first.lagS! > 0, JSON.stringify(first.backlog));
    await sleep(1200);
    const later = await status('live');
    assert.equal(later.backlog.find((b) => b.db === 'A')!.keys, 3);
    assert.ok(later.lagS! >= first.lagS! + 1, `lag ${first.lagS} then ${later.lagS}`);
    await ctl(`UPDATE ibex.sync SET status = 'active' WHERE name = 'live'`);
    await runOk(runner(env, 'live'));
    assert.equal((await status('live')).lagS, 0);
  });

  it('a stalled sync (its table locked on a db, so runs fail) shows its backlog too', async () => {
    await env.query(1, `INSERT INTO t VALUES (20, 'from B')`);
    const lock = await env.client(0);
    await lock.query(`BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE`);
    try {
      const res = await runner(env, 'live').run('delta');
      assert.equal(res.status, 'failed');
      const s = await status('live');
      assert.equal(s.backlog.find((b) => b.db === 'B')!.keys, 1);
      assert.ok(s.lagS! > 1, String(s.lagS));
    } finally {
      await lock.query('ROLLBACK');
    }
    await runOk(runner(env, 'live'));
  });

  it('warns about a long transaction holding the delta window back, naming its pid', async () => {
    const long = await env.client(0);
    await long.query(`SET application_name = 'report job'`);
    await long.query(`BEGIN`);
    const pid = Number((await long.query(`SELECT pg_backend_pid() AS pid, pg_current_xact_id()`)).rows[0].pid);
    try {
      assert.deepEqual((await status('live')).warnings, [], 'a transaction begun after the cursor holds nothing back yet');
      await runOk(runner(env, 'live'));
      const s = await status('live');
      assert.equal(s.warnings.length, 1, JSON.stringify(s.warnings));
      assert.match(s.warnings[0]!, new RegExp(`^db A: transaction of pid ${pid} \\(report job\\), open \\d+s \\(idle in transaction\\)`));
      const text = await env.cli('status', 'live');
      assert.match(text.out, new RegExp(`warning: db A: transaction of pid ${pid}`));
    } finally {
      await long.query('ROLLBACK');
    }
    await runOk(runner(env, 'live'));
    assert.deepEqual((await status('live')).warnings, []);
  });

  it('says which source cannot be reached', async () => {
    await env.clusters[1]!.stop();
    const s = await status('live');
    const b = s.backlog.find((x) => x.db === 'B')!;
    assert.equal(b.keys, null);
    assert.match(b.error!, /^unreachable: /);
    assert.equal(s.backlog.find((x) => x.db === 'A')!.keys, 0);
  });
});

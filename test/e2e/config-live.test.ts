/**
 * Changes to what a sync uses — a table of its relgroup, a db of its dbgroup,
 * a db's own settings — reach a running daemon at once, as changes to the sync
 * itself do: no `ibex reload`, no kick. The periodic check is 60 s here, so a
 * change the daemon missed shows as a timeout.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useDaemonProcess } from '../helpers/daemon.js';
import { ok, useClusters, waitFor } from '../helpers/env.js';
import { addSync, setupControl } from '../helpers/sync.js';

const env = useClusters(2);
const daemon = useDaemonProcess(env, {}, 'config-live');
/** How long a write may take to arrive once the command that changed the configuration returned. */
const ARRIVAL_MS = 8000;

async function arrives(table: string, id: number, on: { cluster: number; dbname: string }, what: string): Promise<void> {
  try {
    await waitFor(`row ${id} of ${table} in ${on.dbname}`, async () => (await env.query(on.cluster, `SELECT 1 FROM ${table} WHERE id = ${id}`, [], on.dbname)).length === 1, ARRIVAL_MS, 20);
  } catch {
    assert.fail(`${what}: row ${id} of ${table} did not reach ${on.dbname} within ${ARRIVAL_MS} ms (daemon alive: ${daemon.alive()}). Daemon log:\n${daemon.logTail(60)}`);
  }
}

const B = { cluster: 1, dbname: 'app' };
const C2 = { cluster: 1, dbname: 'app2' };
const C3 = { cluster: 1, dbname: 'app3' };

describe('configuration changes reach a running daemon at once', () => {
  before(async () => {
    await env.clusters[1]!.createDatabase('app2');
    await env.clusters[1]!.createDatabase('app3');
    for (const [i, dbname] of [[0, 'app'], [1, 'app'], [1, 'app2'], [1, 'app3']] as const) {
      await env.query(i, `CREATE TABLE t (id int PRIMARY KEY, v text)`, [], dbname);
      await env.query(i, `CREATE TABLE t2 (id int PRIMARY KEY, v text)`, [], dbname);
      await env.query(i, `CREATE TABLE t3 (id int PRIMARY KEY, v text)`, [], dbname);
    }
    await setupControl(env, { A: 0, B: 1 });
    await setupControl(env, { C: 1 }, 'app2');
    await setupControl(env, { D: 1 }, 'app3');
    await addSync(env, 'rep', { dbs: { A: 'source', B: 'target' }, tables: ['public.t'] });
    // app3 is a target of another sync already (it has ibex's objects), so C can move there.
    await addSync(env, 'other', { dbs: { A: 'source', D: 'target' }, tables: ['public.t3'] });
    await daemon.start();
    await env.query(0, `INSERT INTO t VALUES (1, 'start')`);
    await arrives('t', 1, B, 'the start');
  });

  it('replicates a table added to the relgroup of a running sync', async () => {
    ok(await daemon.ibex('update', 'relgroup', 'rep', 'add', 'public.t2', 'db=A'));
    await env.query(0, `INSERT INTO t2 VALUES (1, 'new table')`);
    await arrives('t2', 1, B, 'update relgroup add');
  });

  it('stops replicating a table removed from the relgroup', async () => {
    ok(await daemon.ibex('--force', 'update', 'relgroup', 'rep', 'remove', 'public.t2'));
    await env.query(0, `INSERT INTO t2 VALUES (2, 'left out')`);
    await env.query(0, `INSERT INTO t VALUES (2, 'still in')`);
    await arrives('t', 2, B, 'update relgroup remove');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await env.query(1, `SELECT 1 FROM t2 WHERE id = 2`)).length, 0, 'the removed table is no longer replicated');
  });

  it('replicates to a db added to the dbgroup', async () => {
    ok(await daemon.ibex('update', 'dbgroup', 'rep', 'add', 'C:target'));
    await env.query(0, `INSERT INTO t VALUES (3, 'to C too')`);
    await arrives('t', 3, C2, 'update dbgroup add');
    await arrives('t', 3, B, 'update dbgroup add');
  });

  it('follows a db moved to another database (update db)', async () => {
    ok(await daemon.ibex('update', 'db', 'C', 'dbname=app3'));
    await env.query(0, `INSERT INTO t VALUES (4, 'to the new C')`);
    await arrives('t', 4, C3, 'update db dbname=');
    assert.equal((await env.query(1, `SELECT 1 FROM t WHERE id = 4`, [], 'app2')).length, 0, 'not to where C was');
  });

  it('leaves out a db made inactive, and takes it back when made active', async () => {
    ok(await daemon.ibex('update', 'db', 'C', 'status=inactive'));
    await env.query(0, `INSERT INTO t VALUES (5, 'not to C')`);
    await arrives('t', 5, B, 'update db status=inactive');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await env.query(1, `SELECT 1 FROM t WHERE id = 5`, [], 'app3')).length, 0, 'an inactive db is left out');
    ok(await daemon.ibex('update', 'db', 'C', 'status=active'));
    await env.query(0, `INSERT INTO t VALUES (6, 'to C again')`);
    await arrives('t', 6, C3, 'update db status=active');
  });
});

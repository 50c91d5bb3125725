/**
 * Focused tests for engine bugs found in review (see the review report).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';

const env = useClusters(3);
after(closeRunners);

const ALL = [0, 1, 2];
async function same(table: string, on = ALL): Promise<string[]> {
  const first = await tableRows(await env.client(on[0]!), table);
  for (const i of on.slice(1)) assert.deepEqual(await tableRows(await env.client(i), table), first, `${table} differs on cluster ${i}`);
  return first;
}

describe('engine review', () => {
  it('set up', async () => {
    for (const i of ALL) {
      await env.query(i, `
        CREATE TABLE cp (id int PRIMARY KEY, name text);
        CREATE TABLE cc (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES cp (id) ON DELETE CASCADE, note text);
        CREATE TABLE tr (id int PRIMARY KEY, v text);
        CREATE TABLE un (id int PRIMARY KEY, email text UNIQUE);
        CREATE TABLE rp (id int PRIMARY KEY);
        CREATE TABLE rc (id int PRIMARY KEY, parent_id int REFERENCES rp (id));
        CREATE TABLE cf (id int PRIMARY KEY, name text);
        CREATE TABLE sh (id int PRIMARY KEY, v text);
      `);
    }
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'casc', { dbs: { A: 'source', B: 'source' }, tables: ['public.cp', 'public.cc'] });
    await addSync(env, 'trunc', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.tr'] });
    await addSync(env, 'uniq', { dbs: { A: 'source', B: 'source' }, tables: ['public.un'] });
    await addSync(env, 'restrict', { dbs: { A: 'source', B: 'source' }, tables: ['public.rp', 'public.rc'] });
    await addSync(env, 'clog', { dbs: { A: 'source', B: 'source' }, tables: ['public.cf'] });
  });

  // Bug: the "keys absent at their winner" list is computed before the run's own deletes run. A
  // delete of a parent cascades (ON DELETE CASCADE) on the winner of a child row, so that row is
  // never copied, yet the other nodes keep their older version: the nodes diverge for good.
  it('deletes everywhere a row its winner lost to a cascade of this run\'s own deletes', async () => {
    const r = runner(env, 'casc');
    await env.query(0, `INSERT INTO cp VALUES (1, 'one'), (2, 'two'); INSERT INTO cc VALUES (10, 1, 'child of 1')`);
    await runOk(r);
    await same('cc', [0, 1]);
    // B moves child 10 to parent 2 while A deletes parent 2 (A has child 10 under parent 1, untouched).
    await env.query(1, `UPDATE cc SET parent_id = 2, note = 'moved on B' WHERE id = 10`);
    await env.query(0, `DELETE FROM cp WHERE id = 2`);
    await runOk(r);
    await same('cp', [0, 1]);
    const rows = await same('cc', [0, 1]);
    assert.deepEqual(rows, []);
  });

  it('… also when the losing node had its own pending version of that row', async () => {
    const r = runner(env, 'casc');
    await env.query(0, `INSERT INTO cp VALUES (3, 'three'), (4, 'four'); INSERT INTO cc VALUES (30, 3, 'child of 3')`);
    await runOk(r);
    await env.query(0, `UPDATE cc SET note = 'A, earlier' WHERE id = 30`);
    await env.query(1, `UPDATE cc SET parent_id = 4, note = 'B, later, moved to 4' WHERE id = 30`);
    await env.query(0, `DELETE FROM cp WHERE id = 4`);
    const res = await runOk(r);
    assert.equal(res.conflicts, 1);
    assert.deepEqual(await same('cc', [0, 1]), []);
  });

  // Bug: a TRUNCATE on one node is applied to every other node before the rows they won are copied
  // from them: a change made on another node after the truncate (kept on purpose: only changes
  // older than the truncate are dropped) is read from an already-truncated table and lost everywhere.
  it('keeps changes made on other nodes after a TRUNCATE', async () => {
    const r = runner(env, 'trunc');
    await env.query(0, `INSERT INTO tr SELECT g, 'before' FROM generate_series(1, 5) g`);
    await runOk(r);
    await env.query(2, `TRUNCATE tr`);
    await env.query(0, `INSERT INTO tr VALUES (100, 'A, after the truncate')`);
    await env.query(1, `UPDATE tr SET v = 'B, after the truncate' WHERE id = 3`);
    const res = await runOk(r);
    assert.equal(res.truncates, 1);
    const rows = await same('tr');
    assert.deepEqual([...rows].sort(), ['{"v": "A, after the truncate", "id": 100}', '{"v": "B, after the truncate", "id": 3}']);
  });

  // Found by the randomized daemon test: a run that applies rows to a node whose TRUNCATE commits
  // while that run is open (its snapshot predates the truncate) leaves them there; the next run
  // replays the truncate on the other nodes only, and the nodes diverge.
  it('converges when a TRUNCATE commits on a node while a run applies rows to it', async () => {
    await env.query(0, `DELETE FROM tr`);
    await runOk(runner(env, 'trunc'));
    await runOk(runner(env, 'trunc'));
    await env.query(2, `INSERT INTO tr VALUES (200, 'C, before the truncate')`);
    const open = await env.client(0);
    await open.query(`BEGIN`);
    await open.query(`TRUNCATE tr`);
    const r = runner(env, 'trunc', { hooks: { afterGather: async () => { await open.query('COMMIT'); } } });
    await runOk(r);
    await runOk(r);
    await runOk(r);
    await same('tr');
  });

  // A secondary UNIQUE value that moves between rows, or is claimed on two nodes, made every later
  // run fail with 23505, then was quarantined (the nodes stayed different); now the later claim keeps
  // it. A swap inside one node's transaction is not a conflict at all and must replicate.
  it('replicates two rows swapping a UNIQUE value in one transaction', async () => {
    const r = runner(env, 'uniq');
    await env.query(0, `INSERT INTO un VALUES (1, 'a@x'), (2, 'b@x')`);
    await runOk(r);
    await env.query(0, `BEGIN; UPDATE un SET email = 'tmp' WHERE id = 1; UPDATE un SET email = 'a@x' WHERE id = 2;
                        UPDATE un SET email = 'b@x' WHERE id = 1; COMMIT;`);
    await runOk(r);
    await same('un', [0, 1]);
  });

  it('resolves two nodes claiming one UNIQUE value with different keys', async () => {
    const r = runner(env, 'uniq');
    await env.query(0, `DELETE FROM un`);
    await runOk(r);
    await env.query(0, `INSERT INTO un VALUES (10, 'same@x')`);
    await env.query(1, `INSERT INTO un VALUES (11, 'same@x')`);
    const res = await r.run('delta');
    assert.ok(res.status !== 'failed' || res.transient, `run failed for good: ${res.error}`);
    await runOk(r);
    await same('un', [0, 1]);
  });

  // Bug (found in review, fixed by the lead at the same time): the insert-only fast path turned only
  // 23505 into "repeat through staging"; a 23503 (the parent is gone on the target) failed the run
  // for good instead of reaching the quarantine.
  it('does not fail for good on a child inserted under a parent deleted elsewhere (FK without cascade)', async () => {
    const r = runner(env, 'restrict');
    await env.query(0, `INSERT INTO rp VALUES (1)`);
    await runOk(r);
    await env.query(0, `DELETE FROM rp WHERE id = 1`);
    await env.query(1, `INSERT INTO rc VALUES (1, 1)`);
    const res = await r.run('delta');
    assert.ok(res.status !== 'failed' || res.transient, `run failed for good: ${res.error}`);
  });

  // Bug (fixed): the cascade pass re-deleted, with a plain DELETE, keys whose delete phase 1 had
  // quarantined (refused by a foreign key): the run failed for good on 23503.
  it('does not fail for good when a delete was quarantined and other deletes went through', async () => {
    const r = runner(env, 'restrict');
    await env.query(0, `DELETE FROM rc; DELETE FROM rp; INSERT INTO rp VALUES (2), (3); INSERT INTO rc VALUES (10, NULL)`);
    await env.query(1, `DELETE FROM rc; DELETE FROM rp`);
    await runOk(r);
    await same('rp', [0, 1]);
    await env.query(1, `UPDATE rc SET parent_id = 2 WHERE id = 10`);
    await env.query(0, `DELETE FROM rp WHERE id IN (2, 3)`);
    const res = await r.run('delta');
    assert.ok(res.status !== 'failed', `run failed: ${res.error}`);
    const q = await env.query(0, `SELECT relname, key::text AS key, losers->0->>'db' AS db FROM ibex.conflict WHERE sync = 'restrict' AND run = $1 ORDER BY 1, 2, 3`, [res.runId], 'ibexctl');
    const keys = q.map((x) => `${x.relname} ${x.key} ${x.db}`);
    assert.equal(new Set(keys).size, keys.length, `a refusal was logged twice: ${keys.join('; ')}`);
  });

  it('converges a child inserted under a parent deleted elsewhere (FK without cascade)', async () => {
    const r = runner(env, 'restrict');
    await env.query(0, `INSERT INTO rp VALUES (5)`);
    await runOk(r);
    await env.query(0, `DELETE FROM rp WHERE id = 5`);
    await env.query(1, `INSERT INTO rc VALUES (5, 5)`);
    await runOk(r);
    // The later child restores its parent: the node that still has it rewrites both, replicated by the next run.
    await runOk(r);
    await same('rp', [0, 1]);
    await same('rc', [0, 1]);
  });

  // Bug: when COMMIT fails on one db after another db committed (here a deferred trigger; in life a
  // connection lost during COMMIT), the run deletes its 'pending' conflict records although the
  // overwrite did happen on the db that committed. The next run logs the conflict again, but reads
  // the "losing" version from a db where it was already overwritten: the lost version is untraced.
  it('keeps the conflict record of an overwrite that committed on one db when another db\'s commit fails', async () => {
    const r = runner(env, 'clog');
    await env.query(0, `INSERT INTO cf VALUES (1, 'original'), (2, 'two')`);
    await runOk(r);
    await env.query(0, `UPDATE cf SET name = 'A version' WHERE id = 1; UPDATE cf SET name = 'two, changed on A' WHERE id = 2`);
    await env.query(1, `UPDATE cf SET name = 'B version, later' WHERE id = 1`);
    // B's apply transaction (it receives row 2) fails at COMMIT; A (first in commit order) has committed by then.
    await env.query(1, `CREATE TABLE fail_commit (x int);
      INSERT INTO fail_commit VALUES (1);
      CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF EXISTS (SELECT 1 FROM public.fail_commit) THEN RAISE EXCEPTION 'commit refused (test)'; END IF; RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT OR UPDATE ON cf DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit();`);
    const failed = await r.run('delta');
    assert.equal(failed.status, 'failed');
    assert.match(failed.error ?? '', /commit refused/);
    assert.equal((await env.query(0, `SELECT name FROM cf WHERE id = 1`))[0]!.name, 'B version, later', 'A committed the overwrite');
    await env.query(1, `DELETE FROM fail_commit`);
    await runOk(r);
    await same('cf', [0, 1]);
    const log = await env.query(0, `SELECT status, losers::text AS losers FROM ibex.conflict WHERE sync = 'clog' AND key->>'id' = '1'`, [], 'ibexctl');
    const lost = log.flatMap((x) => (JSON.parse(String(x.losers)) as { db: string; row: { name?: string } | null }[]).map((l) => l.row?.name));
    assert.ok(lost.includes('A version'), `the overwritten version 'A version' is not in the conflict log: ${JSON.stringify(log)}`);
  });

  // Bug: a runner decides once, at load(), whether the rows it applies on a db must be captured for
  // other syncs (this.downstream). A sync added later that reads the table there (A<->B plus a new
  // A->C) is not seen by the long-lived runner of A<->B (the daemon reloads it only when that sync's
  // own row changes, or on "ibex reload"): B's changes land on A uncaptured and never reach C.
  it('captures applied rows for a sync added after the runner loaded (cascade A<->B, then A->C)', async () => {
    await addSync(env, 'shab', { dbs: { A: 'source', B: 'source' }, tables: ['public.sh'] });
    const ab = runner(env, 'shab');
    await env.query(1, `INSERT INTO sh VALUES (1, 'from B, before A->C existed')`);
    await runOk(ab);
    await addSync(env, 'shac', { dbs: { A: 'source', C: 'target' }, tables: ['public.sh'] });
    await env.query(1, `INSERT INTO sh VALUES (2, 'from B, after A->C was added')`);
    await runOk(ab); // the same, long-lived runner (as in the daemon)
    await runOk(runner(env, 'shac'));
    const c = await env.query(2, `SELECT id FROM sh ORDER BY id`);
    assert.ok(c.some((x) => x.id === '2'), `C lacks B's row 2: ${JSON.stringify(c)}`);
  });
});

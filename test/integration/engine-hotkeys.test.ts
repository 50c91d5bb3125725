/**
 * Liveness under hot keys: a local write that races an apply costs the run that key only (the
 * other keys apply in the same run, without a repeat), and the raced key converges at a later run
 * under the sync's strategy; a serialization failure that does not come from the key's own row
 * (a foreign-key check on a parent) never drops the child.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';

const env = useClusters(3);
after(closeRunners);

const ALL = [0, 1, 2];
async function same(table: string, on = ALL): Promise<string[]> {
  const first = await tableRows(await env.client(on[0]!), table, '1');
  for (const i of on.slice(1)) assert.deepEqual(await tableRows(await env.client(i), table, '1'), first, `${table} differs on cluster ${i}`);
  return first;
}
async function valueOf(i: number, table: string, id: number): Promise<string | undefined> {
  return (await env.query(i, `SELECT v FROM ${table} WHERE id = $1`, [id]))[0]?.v as string | undefined;
}

/** A runner whose afterGather hook runs `race` once, at the first attempt, and counts the attempts. */
function racingRunner(sync: string, race: () => Promise<void>): { r: ReturnType<typeof runner>; attempts: () => number } {
  let n = 0;
  const r = runner(env, sync, {
    hooks: {
      afterGather: async () => {
        n++;
        if (n === 1) await race();
      },
    },
  });
  return { r, attempts: () => n };
}

describe('hot keys', () => {
  it('set up', async () => {
    for (const i of ALL) {
      await env.query(i, `
        CREATE TABLE hot_l (id int PRIMARY KEY, v text);
        CREATE TABLE hot_o (id int PRIMARY KEY, v text);
        CREATE TABLE fkp (id int PRIMARY KEY, v text);
        CREATE TABLE fkc (id int PRIMARY KEY, pid int NOT NULL REFERENCES fkp (id) ON DELETE CASCADE, v text);
        INSERT INTO hot_l SELECT g, 'start' FROM generate_series(1, 10) g;
        INSERT INTO hot_o SELECT g, 'start' FROM generate_series(1, 10) g;
        INSERT INTO fkp VALUES (1, 'parent');
      `);
    }
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'hl', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.hot_l', 'public.fkp', 'public.fkc'] });
    await addSync(env, 'ho', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.hot_o'], options: { conflict_strategy: 'A,B,C' } });
  });

  it('latest: a local write racing the apply costs the run that key only; the later change wins at the next run', async () => {
    await env.query(0, `UPDATE hot_l SET v = 'A ' || id`);
    const { r, attempts } = racingRunner('hl', async () => {
      await env.query(1, `UPDATE hot_l SET v = 'B local, later' WHERE id = 5`);
    });
    const first = await r.run('delta');
    assert.equal(first.status, 'good', first.error);
    assert.equal(attempts(), 1, 'the run was repeated: the race cost the whole run');
    // Every other key applied on B in that very run; B's own later write is untouched.
    for (let id = 1; id <= 10; id++) {
      assert.equal(await valueOf(1, 'hot_l', id), id === 5 ? 'B local, later' : `A ${id}`, `key ${id} on B`);
      assert.equal(await valueOf(2, 'hot_l', id), `A ${id}`, `key ${id} on C`);
    }
    await runOk(r);
    await runOk(r);
    const rows = await same('hot_l');
    assert.ok(rows.includes('{"v": "B local, later", "id": 5}'), rows.join('\n'));
  });

  it('ordered dbs: the preferred db still wins a key left out after a race', async () => {
    await env.query(0, `UPDATE hot_o SET v = 'A ' || id`);
    const { r, attempts } = racingRunner('ho', async () => {
      await env.query(1, `UPDATE hot_o SET v = 'B local, later' WHERE id = 3`);
    });
    const first = await r.run('delta');
    assert.equal(first.status, 'good', first.error);
    assert.equal(attempts(), 1, 'the run was repeated: the race cost the whole run');
    for (let id = 1; id <= 10; id++) if (id !== 3) assert.equal(await valueOf(1, 'hot_o', id), `A ${id}`, `key ${id} on B`);
    await runOk(r);
    await runOk(r);
    await same('hot_o');
    // A comes first in the list: its change of key 3 (left pending, not dropped) beats B's later one.
    for (const i of ALL) assert.equal(await valueOf(i, 'hot_o', 3), 'A 3', `key 3 on cluster ${i}`);
  });

  it('a serialization failure from a foreign-key check on a parent keeps the child', async () => {
    await env.query(0, `INSERT INTO fkc VALUES (7, 1, 'child from A')`);
    // B replaces the parent (delete and insert again) after the run's snapshot: the child's
    // foreign-key check on B meets a parent row deleted after the snapshot (40001), though the
    // child's own row raced nothing.
    const { r } = racingRunner('hl', async () => {
      await env.query(1, `BEGIN; DELETE FROM fkp WHERE id = 1; INSERT INTO fkp VALUES (1, 'parent again on B'); COMMIT;`);
    });
    const first = await r.run('delta');
    assert.equal(first.status, 'good', first.error);
    await runOk(r);
    await runOk(r);
    const children = await same('fkc');
    assert.deepEqual(children, ['{"v": "child from A", "id": 7, "pid": 1}']);
    const parents = await same('fkp');
    assert.deepEqual(parents, ['{"v": "parent again on B", "id": 1}']);
  });
});

import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';

const env = useClusters(3);
after(closeRunners);

async function rows(i: number, table: string): Promise<string[]> {
  return tableRows(await env.client(i), table);
}

describe('onetimecopy and fullcopy', () => {
  it('set up', async () => {
    for (const i of [0, 1, 2]) {
      await env.query(i, `CREATE TABLE big (id int PRIMARY KEY, v text);
                          CREATE TABLE comp (a int, b text, v text, PRIMARY KEY (a, b));
                          CREATE TABLE fc (id int PRIMARY KEY, v text);`);
    }
    await env.query(0, `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 25000) g;
                        INSERT INTO comp SELECT g % 100, 'k' || (g / 100), 'v' FROM generate_series(1, 3000) g;
                        INSERT INTO fc SELECT g, 'fc' FROM generate_series(1, 500) g;`);
    await env.query(1, `INSERT INTO big VALUES (-1, 'stale row on B, removed by onetimecopy=1')`);
    await env.query(2, `INSERT INTO comp VALUES (1, 'x', 'C is not empty, so onetimecopy=2 leaves comp alone')`);
    await setupControl(env, { A: 0, B: 1, C: 2 });
  });

  it('copies whole tables in key-range chunks (onetimecopy=1), keeping changes made during the copy', async () => {
    process.env.IBEX_COPY_CHUNK_ROWS = '4000';
    await addSync(env, 'otc', { dbs: { A: 'source', B: 'target' }, tables: ['public.big', 'public.comp'], options: { onetimecopy: 1 } });
    // A change committed after capture was installed but before the copy: the delta run after the copy carries it.
    await env.query(0, `UPDATE big SET v = 'changed before the copy' WHERE id = 7; DELETE FROM big WHERE id = 8`);
    const r = runner(env, 'otc');
    const copy = await r.run('onetimecopy');
    assert.equal(copy.status, 'good', copy.error);
    assert.equal(copy.tables['public.big']!.deleted, 1);
    const prog = await env.query(0, `SELECT count(*) AS n FROM ibex.copy_progress WHERE sync = 'otc'`, [], 'ibexctl');
    assert.equal(prog[0]!.n, '0');
    const otc = await env.query(0, `SELECT onetimecopy FROM ibex.sync WHERE name = 'otc'`, [], 'ibexctl');
    assert.equal(otc[0]!.onetimecopy, '0');
    await env.query(0, `UPDATE big SET v = 'changed after the copy' WHERE id = 9`);
    await runOk(r);
    assert.deepEqual(await rows(1, 'big'), await rows(0, 'big'));
    assert.deepEqual(await rows(1, 'comp'), await rows(0, 'comp'));
  });

  it('resumes an interrupted copy from its last chunk', async () => {
    await env.query(1, `TRUNCATE big, comp`);
    await env.query(0, `UPDATE ibex.sync SET onetimecopy = 2 WHERE name = 'otc'`, [], 'ibexctl');
    // Pretend a crash after 3 chunks of big: progress says 12000 rows up to key 12000.
    await env.query(0, `INSERT INTO ibex.copy_progress (sync, relation, db, last_key, rows_copied, done)
                        SELECT 'otc', id, 'B', ARRAY['12000'], 12000, false FROM ibex.relation WHERE relname = 'big'`, [], 'ibexctl');
    await env.query(1, `INSERT INTO big SELECT id, v FROM (VALUES (1, 'already copied')) x(id, v)`);
    const res = await runner(env, 'otc').run('onetimecopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal(res.tables['public.big']!.inserted, 25000 - 12000);
    const n = await env.query(1, `SELECT count(*) AS n, min(id) AS lo FROM big`);
    assert.deepEqual([n[0]!.n, n[0]!.lo], [String(25000 - 12000 + 1), '1']);
  });

  it('onetimecopy=2 fills only empty target tables', async () => {
    await addSync(env, 'otc2', { dbs: { A: 'source', C: 'target' }, tables: ['public.big', 'public.comp'], options: { onetimecopy: 2 } });
    const res = await runner(env, 'otc2').run('onetimecopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal((await rows(2, 'big')).length, (await rows(0, 'big')).length);
    assert.equal((await rows(2, 'comp')).length, 1);
  });

  it('replaces fullcopy targets on a fullcopy run', async () => {
    await addSync(env, 'full', { dbs: { A: 'source', B: 'fullcopy', C: 'fullcopy' }, tables: ['public.fc'] });
    await env.query(1, `INSERT INTO fc VALUES (9999, 'only on B')`);
    const res = await runner(env, 'full').run('fullcopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal(res.inserted, 1000);
    assert.deepEqual(await rows(1, 'fc'), await rows(0, 'fc'));
    assert.deepEqual(await rows(2, 'fc'), await rows(0, 'fc'));
  });
  it('cascades rows copied by onetimecopy to a sync that reads the target (A→B copy, B→C sync)', async () => {
    for (const i of [0, 1, 2]) await env.query(i, `CREATE TABLE casc (id int PRIMARY KEY, v text)`);
    await env.query(0, `INSERT INTO casc SELECT g, 'from A ' || g FROM generate_series(1, 50) g`);
    // bc reads casc on B: capture on B must record the rows the copy writes there.
    await addSync(env, 'bc', { dbs: { B: 'source', C: 'target' }, tables: ['public.casc'] });
    await addSync(env, 'abcopy', { dbs: { A: 'source', B: 'target' }, tables: ['public.casc'], options: { onetimecopy: 1 } });
    const copy = await runner(env, 'abcopy').run('onetimecopy');
    assert.equal(copy.status, 'good', copy.error);
    assert.equal((await rows(1, 'casc')).length, 50);
    await runOk(runner(env, 'bc'));
    assert.deepEqual(await rows(2, 'casc'), await rows(0, 'casc'));
  });
});

/**
 * Tables whose schema and name join to the same text (`a_b.c` and `a.b_c`) get
 * capture objects of their own: every row of both replicates, validate agrees,
 * and the sync can be removed. Capture objects installed under the older names
 * are renamed in place when capture is installed again or a runner loads.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';
import { openControl } from '../../src/control/connection.js';
import { installCapture } from '../../src/capture/install.js';
import { captureNames } from '../../src/capture/objects.js';

const env = useClusters(2);
after(closeRunners);

const TABLES = ['a_b.c', 'a.b_c'];
const ddl = `CREATE SCHEMA a_b; CREATE SCHEMA a;
  CREATE TABLE a_b.c (id int PRIMARY KEY, v text);
  CREATE TABLE a.b_c (id int PRIMARY KEY, v text);`;

async function rowsEverywhere(table: string): Promise<string[][]> {
  return [await tableRows(await env.client(0), table, 'id'), await tableRows(await env.client(1), table, 'id')];
}

describe('capture object names of clashing tables', () => {
  it('replicates every row of a_b.c and a.b_c, validates equal, and removes the sync', async () => {
    for (const i of [0, 1]) await env.query(i, ddl);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'clash', { dbs: { A: 'source', B: 'source' }, tables: TABLES });
    const deltas = await env.query(0, `SELECT schemaname, relname, delta, fn FROM ibex.captured ORDER BY 1, 2`);
    assert.equal(new Set(deltas.map((d) => d.delta)).size, 2, JSON.stringify(deltas));
    assert.equal(new Set(deltas.map((d) => d.fn)).size, 2, JSON.stringify(deltas));

    // The same key in both tables, written on both masters.
    await env.query(0, `INSERT INTO a_b.c VALUES (1, 'a_b.c from A'), (2, 'a_b.c from A')`);
    await env.query(0, `INSERT INTO a.b_c VALUES (1, 'a.b_c from A')`);
    await env.query(1, `INSERT INTO a.b_c VALUES (2, 'a.b_c from B'), (3, 'a.b_c from B')`);
    await env.query(1, `INSERT INTO a_b.c VALUES (3, 'a_b.c from B')`);
    await runOk(runner(env, 'clash'));
    for (const t of TABLES) {
      const [a, b] = await rowsEverywhere(t);
      assert.deepEqual(b, a, t);
      assert.equal(a!.length, 3, `${t}: ${a!.join(' ')}`);
    }
    assert.match((await tableRows(await env.client(1), 'a_b.c', 'id'))[0]!, /a_b\.c from A/);
    assert.match((await tableRows(await env.client(0), 'a.b_c', 'id'))[2]!, /a\.b_c from B/);

    const v = await env.cli('validate', 'clash');
    assert.equal(v.code, 0, v.out + v.err);
    assert.match(v.out, /equal/);

    await closeRunners();
    const rm = await env.cli('remove', 'sync', 'clash');
    assert.equal(rm.code, 0, rm.out + rm.err);
    for (const i of [0, 1]) {
      assert.deepEqual(await env.query(i, `SELECT to_regnamespace('ibex') IS NULL AS gone`), [{ gone: 't' }]);
    }
  });

  it('renames capture objects installed under the older names and keeps their pending changes', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE public.old_names (id int PRIMARY KEY, v text)`);
    await addSync(env, 'old', { dbs: { A: 'source', B: 'source' }, tables: ['public.old_names'] });
    // Turn the install into what an older ibex left: objects named kind_schema_table.
    const now = captureNames('public', 'old_names');
    const oldDelta = 'delta_public_old_names';
    const oldFn = 'capture_public_old_names';
    for (const i of [0, 1]) {
      const fnSrc = await env.query(i, `SELECT pg_get_functiondef('ibex.${now.fn}()'::regprocedure) AS d`);
      const oldDef = String(fnSrc[0]!.d).replaceAll(now.delta, oldDelta).replaceAll(now.fn, oldFn);
      await env.query(i, `ALTER TABLE ibex."${now.delta}" RENAME TO "${oldDelta}";
        ALTER INDEX ibex."${now.index}" RENAME TO "${oldDelta}_txid";
        ${oldDef};
        CREATE OR REPLACE TRIGGER ibex_capture_ins AFTER INSERT ON public.old_names REFERENCING NEW TABLE AS ibex_new FOR EACH STATEMENT EXECUTE FUNCTION ibex."${oldFn}"();
        CREATE OR REPLACE TRIGGER ibex_capture_upd AFTER UPDATE ON public.old_names REFERENCING OLD TABLE AS ibex_old NEW TABLE AS ibex_new FOR EACH STATEMENT EXECUTE FUNCTION ibex."${oldFn}"();
        CREATE OR REPLACE TRIGGER ibex_capture_del AFTER DELETE ON public.old_names REFERENCING OLD TABLE AS ibex_old FOR EACH STATEMENT EXECUTE FUNCTION ibex."${oldFn}"();
        DROP FUNCTION ibex."${now.fn}"();
        UPDATE ibex.captured SET delta = '${oldDelta}', fn = '${oldFn}' WHERE relname = 'old_names';`);
    }
    // A change captured under the old names, before the upgrade.
    await env.query(0, `INSERT INTO old_names VALUES (1, 'before the upgrade')`);
    assert.equal((await env.query(0, `SELECT count(*)::int AS n FROM ibex."${oldDelta}"`))[0]!.n, '1');
    // validate changes nothing, but finds the pending change under the recorded (old) name: in flight, not a difference.
    const v = await env.cli('validate', 'old');
    assert.equal(v.code, 0, v.out + v.err);
    assert.match(v.out, /1 key\(s\) in flight/);
    assert.deepEqual(await env.query(0, `SELECT delta FROM ibex.captured WHERE relname = 'old_names'`), [{ delta: oldDelta }]);
    // A runner loading renames the objects, keeps the captured row, and replicates it.
    await runOk(runner(env, 'old'));
    for (const i of [0, 1]) {
      const names = await env.query(i, `SELECT delta, fn FROM ibex.captured WHERE relname = 'old_names'`);
      assert.deepEqual(names, [{ delta: now.delta, fn: now.fn }]);
      const left = await env.query(i, `SELECT to_regclass('ibex."${oldDelta}"') IS NULL AS t, to_regprocedure('ibex."${oldFn}"()') IS NULL AS f`);
      assert.deepEqual(left, [{ t: 't', f: 't' }]);
    }
    assert.deepEqual(await tableRows(await env.client(1), 'old_names', 'id'), ['{"v": "before the upgrade", "id": 1}']);
    await env.query(1, `INSERT INTO old_names VALUES (2, 'after the upgrade')`);
    await runOk(runner(env, 'old'));
    assert.equal((await tableRows(await env.client(0), 'old_names', 'id')).length, 2);
    // Installing again is a no-op now.
    const control = await openControl(env.controlUrl);
    try {
      await installCapture(control, 'old');
    } finally {
      await control.end();
    }
    assert.deepEqual(await env.query(0, `SELECT delta FROM ibex.captured WHERE relname = 'old_names'`), [{ delta: now.delta }]);
  });

  /** Make the capture of a_b.c and a.b_c look like what an older ibex left: one delta table and one function for both. */
  async function shareOldNames(i: number): Promise<void> {
    const x = captureNames('a_b', 'c');
    const y = captureNames('a', 'b_c');
    const def = String((await env.query(i, `SELECT pg_get_functiondef('ibex.${x.fn}()'::regprocedure) AS d`))[0]!.d)
      .replaceAll(x.delta, 'delta_a_b_c').replaceAll(x.fn, 'capture_a_b_c');
    const triggers = (t: string): string => ['ins', 'upd', 'del'].map((op) => `CREATE OR REPLACE TRIGGER ibex_capture_${op} AFTER ${
      { ins: 'INSERT', upd: 'UPDATE', del: 'DELETE' }[op]} ON ${t} REFERENCING ${op === 'ins' ? 'NEW TABLE AS ibex_new' : op === 'del' ? 'OLD TABLE AS ibex_old'
      : 'OLD TABLE AS ibex_old NEW TABLE AS ibex_new'} FOR EACH STATEMENT EXECUTE FUNCTION ibex.capture_a_b_c();`).join('\n');
    await env.query(i, `ALTER TABLE ibex."${x.delta}" RENAME TO delta_a_b_c;
      ALTER INDEX ibex."${x.index}" RENAME TO delta_a_b_c_txid;
      ${def};
      ${triggers('a_b.c')}
      ${triggers('a.b_c')}
      DROP FUNCTION ibex."${x.fn}"(); DROP FUNCTION ibex."${y.fn}"(); DROP TABLE ibex."${y.delta}";
      UPDATE ibex.captured SET delta = 'delta_a_b_c', fn = 'capture_a_b_c' WHERE schemaname IN ('a_b', 'a');`);
  }

  it('removes a sync whose tables an older ibex made share one delta table and function', async () => {
    for (const i of [0, 1]) await env.query(i, `TRUNCATE a_b.c; TRUNCATE a.b_c`);
    await addSync(env, 'shared', { dbs: { A: 'source', B: 'source' }, tables: TABLES });
    for (const i of [0, 1]) await shareOldNames(i);
    await env.query(0, `INSERT INTO a_b.c VALUES (10, 'x'); INSERT INTO a.b_c VALUES (10, 'y')`);
    assert.equal((await env.query(0, `SELECT count(*) AS n FROM ibex.delta_a_b_c`))[0]!.n, '2');
    const rm = await env.cli('remove', 'sync', 'shared');
    assert.equal(rm.code, 0, rm.out + rm.err);
    // Sync "old" keeps schema ibex; nothing of a_b.c and a.b_c is left in it.
    for (const i of [0, 1]) {
      assert.deepEqual(await env.query(i, `SELECT (SELECT count(*) FROM ibex.captured WHERE schemaname IN ('a', 'a_b')) AS c,
          (SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('a_b.c'::regclass, 'a.b_c'::regclass) AND NOT tgisinternal) AS tg,
          to_regclass('ibex.delta_a_b_c') IS NULL AS t, to_regprocedure('ibex.capture_a_b_c()') IS NULL AS f`), [{ c: '0', tg: '0', t: 't', f: 't' }]);
    }
    // Re-registering the relations is not needed: remove sync keeps them; the test helper adds the sync again.
    await env.query(0, `DELETE FROM ibex.relgroup_member WHERE relgroup = 'shared'; DELETE FROM ibex.relgroup WHERE name = 'shared';
      DELETE FROM ibex.dbgroup_member WHERE dbgroup = 'shared'; DELETE FROM ibex.dbgroup WHERE name = 'shared'`, [], 'ibexctl');
  });

  it('gives each table of an older shared install its own objects when a runner loads', async () => {
    for (const i of [0, 1]) await env.query(i, `TRUNCATE a_b.c; TRUNCATE a.b_c`);
    await addSync(env, 'shared', { dbs: { A: 'source', B: 'source' }, tables: TABLES });
    for (const i of [0, 1]) await shareOldNames(i);
    await runOk(runner(env, 'shared'));
    for (const i of [0, 1]) {
      const rows = await env.query(i, `SELECT schemaname, delta, fn FROM ibex.captured WHERE schemaname IN ('a', 'a_b') ORDER BY 1`);
      assert.deepEqual(rows, [
        { schemaname: 'a', delta: captureNames('a', 'b_c').delta, fn: captureNames('a', 'b_c').fn },
        { schemaname: 'a_b', delta: captureNames('a_b', 'c').delta, fn: captureNames('a_b', 'c').fn },
      ]);
      const left = await env.query(i, `SELECT to_regclass('ibex.delta_a_b_c') IS NULL AS t, to_regprocedure('ibex.capture_a_b_c()') IS NULL AS f`);
      assert.deepEqual(left, [{ t: 't', f: 't' }]);
    }
    await env.query(0, `INSERT INTO a_b.c VALUES (20, 'a_b.c after'); INSERT INTO a.b_c VALUES (20, 'a.b_c after')`);
    await env.query(1, `INSERT INTO a.b_c VALUES (21, 'a.b_c on B')`);
    await runOk(runner(env, 'shared'));
    for (const t of TABLES) {
      const [a, b] = await rowsEverywhere(t);
      assert.deepEqual(b, a, t);
    }
    assert.equal((await rowsEverywhere('a.b_c'))[0]!.length, 2);
    const v = await env.cli('validate', 'shared');
    assert.equal(v.code, 0, v.out + v.err);
  });

  it('renames the capture objects of a partitioned table installed under the older names', async () => {
    for (const i of [0, 1]) {
      await env.query(i, `CREATE TABLE public.parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`);
    }
    await addSync(env, 'parted', { dbs: { A: 'source', B: 'source' }, tables: ['public.parted'] });
    const now = captureNames('public', 'parted');
    for (const i of [0, 1]) {
      const def = String((await env.query(i, `SELECT pg_get_functiondef('ibex.${now.fn}()'::regprocedure) AS d`))[0]!.d)
        .replaceAll(now.delta, 'delta_public_parted').replaceAll(now.fn, 'capture_public_parted');
      const trig = String((await env.query(i, `SELECT pg_get_triggerdef(oid) AS d FROM pg_trigger WHERE tgrelid = 'public.parted'::regclass AND tgname = 'ibex_capture'`))[0]!.d)
        .replace(/^CREATE TRIGGER/, 'CREATE OR REPLACE TRIGGER').replaceAll(now.fn, 'capture_public_parted');
      await env.query(i, `ALTER TABLE ibex."${now.delta}" RENAME TO delta_public_parted;
        ${def};
        ${trig};
        DROP FUNCTION ibex."${now.fn}"();
        UPDATE ibex.captured SET delta = 'delta_public_parted', fn = 'capture_public_parted' WHERE relname = 'parted';`);
    }
    await env.query(0, `INSERT INTO parted_1 VALUES (1, '2024-03-01', 'into the partition, before the upgrade')`);
    await runOk(runner(env, 'parted'));
    await env.query(1, `INSERT INTO parted VALUES (2, '2024-04-01', 'after')`);
    await runOk(runner(env, 'parted'));
    const [a, b] = await rowsEverywhere('parted');
    assert.deepEqual(b, a);
    assert.equal(a!.length, 2);
    assert.deepEqual(await env.query(0, `SELECT to_regprocedure('ibex.capture_public_parted()') IS NULL AS f, to_regclass('ibex.delta_public_parted') IS NULL AS t`),
      [{ f: 't', t: 't' }]);
  });
});

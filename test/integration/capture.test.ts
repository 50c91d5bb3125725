import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';
import { openControl } from '../../src/control/connection.js';
import { installCapture, removeCapture } from '../../src/capture/install.js';
import { captureNames } from '../../src/capture/objects.js';
import { classifySql } from '../../src/engine/sql/gather.js';
import type { TablePlan } from '../../src/engine/plan.js';
import type pg from 'pg';

const env = useClusters(2);
after(closeRunners);

async function ibexObjects(i: number): Promise<string[]> {
  const r = await env.query(i, `SELECT c.relname::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ibex'
                                UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'ibex%' AND NOT tgisinternal ORDER BY 1`);
  return r.map((x) => String(x.n));
}

describe('capture', () => {
  it('installs on a partitioned table through its parent and captures rows written to a partition', async () => {
    for (const i of [0, 1]) {
      await env.query(i, `CREATE TABLE ev (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE plain (id int PRIMARY KEY, v text);`);
    }
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'p', { dbs: { A: 'source', B: 'source' }, tables: ['public.ev', 'public.plain'] });
    await env.query(0, `INSERT INTO ev VALUES (1, '2024-05-01', 'via parent')`);
    await env.query(0, `INSERT INTO ev_2025 VALUES (2, '2025-05-01', 'straight into a partition')`);
    // A partition created after capture was installed gets the trigger too.
    await env.query(0, `CREATE TABLE ev_2023 PARTITION OF ev FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')`);
    await env.query(1, `CREATE TABLE ev_2023 PARTITION OF ev FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')`);
    await env.query(1, `INSERT INTO ev_2023 VALUES (3, '2023-05-01', 'new partition on B')`);
    await runOk(runner(env, 'p'));
    assert.deepEqual(await tableRows(await env.client(1), 'ev', 'id'), await tableRows(await env.client(0), 'ev', 'id'));
    assert.equal((await tableRows(await env.client(0), 'ev')).length, 3);
  });

  it('is idempotent: installing again changes nothing and keeps the cursor', async () => {
    const before = await ibexObjects(0);
    const cur = await env.query(0, `SELECT snapshot FROM ibex.cursor WHERE sync = 'p' ORDER BY db`, [], 'ibexctl');
    const control = await openControl(env.controlUrl);
    try {
      await installCapture(control, 'p');
    } finally {
      await control.end();
    }
    assert.deepEqual(await ibexObjects(0), before);
    assert.deepEqual(await env.query(0, `SELECT snapshot FROM ibex.cursor WHERE sync = 'p' ORDER BY db`, [], 'ibexctl'), cur);
  });

  it('waits for a long transaction holding a table instead of blocking writers, then installs', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE busy (id int PRIMARY KEY, v text)`);
    const holder = await env.client(0);
    await holder.query(`BEGIN; LOCK TABLE busy IN ROW EXCLUSIVE MODE`);
    const control = await openControl(env.controlUrl);
    const lines: string[] = [];
    try {
      // Short lock_timeout: each attempt gives up quickly (writers queue behind us only that long).
      setTimeout(() => void holder.query('COMMIT'), 1500);
      await env.query(0, `INSERT INTO ibex.relation (db, schemaname, relname, reltype, key_columns, key_types, key_kind)
                          VALUES ('A', 'public', 'busy', 'table', '{id}', '{integer}', 'primary');
                          INSERT INTO ibex.relgroup VALUES ('busy'); INSERT INTO ibex.relgroup_member (relgroup, relation) SELECT 'busy', id FROM ibex.relation WHERE relname = 'busy';
                          INSERT INTO ibex.dbgroup VALUES ('busy'); INSERT INTO ibex.dbgroup_member VALUES ('busy', 'A', 'source', 0), ('busy', 'B', 'target', 0);
                          INSERT INTO ibex.sync (name, relgroup, dbgroup) VALUES ('busy', 'busy', 'busy');`, [], 'ibexctl');
      await installCapture(control, 'busy', { lockTimeoutMs: 200, say: (l) => lines.push(l) });
    } finally {
      await control.end();
    }
    assert.ok(lines.some((l) => /a lock is held by pid \d+/.test(l)), lines.join('\n'));
    const st = await env.query(0, `SELECT status FROM ibex.sync WHERE name = 'busy'`, [], 'ibexctl');
    assert.equal(st[0]!.status, 'active');
  });

  it('removes everything it installed when the last sync using a table is removed', async () => {
    const control = await openControl(env.controlUrl);
    try {
      await removeCapture(control, 'busy');
      assert.ok((await ibexObjects(0)).includes(captureNames('public', 'ev').delta), 'sync p still uses its tables');
      assert.ok(!(await ibexObjects(0)).includes(captureNames('public', 'busy').delta));
      await removeCapture(control, 'p');
    } finally {
      await control.end();
    }
    assert.deepEqual(await ibexObjects(0), []);
    assert.deepEqual(await ibexObjects(1), []);
    assert.equal((await env.query(0, `SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'ibex'`))[0]!.n, '0');
  });
});

describe('classifying a source\'s pending changes', () => {
  it('gives the count, insert-only and the one origin of every mix of operations and origins', async () => {
    // The reference is the plain formula: the one value of coalesce(origin, source), if there is one.
    await env.clusters[0]!.createDatabase('cls');
    await env.query(0, `CREATE SCHEMA ibex; CREATE TABLE ibex.truncates (grp int, schemaname text, relname text, ibex_ts timestamptz);
                        CREATE TABLE cls_delta (grp int, ibex_op "char" NOT NULL, ibex_origin text)`, [], 'cls');
    const ops = ['I', 'U', 'D'];
    const origins = [null, 'C', 'D', 'Z'];
    let seed = 7;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const values: string[] = [];
    const GROUPS = 300;
    for (let g = 0; g < GROUPS; g++) {
      const rows = 1 + rand(5);
      const originPool = origins.slice(rand(3), rand(3) + 1 + rand(2));
      for (let r = 0; r < rows; r++) {
        const o = originPool[rand(originPool.length)] ?? null;
        values.push(`(${g}, '${ops[rand(g % 3 === 0 ? 1 : 3)]}', ${o === null ? 'NULL' : `'${o}'`})`);
      }
    }
    await env.query(0, `INSERT INTO cls_delta VALUES ${values.join(', ')}`, [], 'cls');
    const plan = { idx: 0, delta: 'cls_delta' } as unknown as TablePlan;
    const c = await env.client(0, 'cls');
    let mixed = 0;
    for (let g = 0; g < GROUPS; g++) {
      const got = (await c.query(classifySql([plan], `grp = ${g}`, 'A')) as unknown as pg.QueryResult[])[1]!.rows[0];
      const want = (await c.query(`SELECT count(*) AS n, bool_and(ibex_op = 'I') AS insonly,
          CASE WHEN min(coalesce(ibex_origin, 'A')) = max(coalesce(ibex_origin, 'A')) THEN min(coalesce(ibex_origin, 'A')) END AS origin
          FROM cls_delta WHERE grp = $1`, [g])).rows[0];
      assert.deepEqual({ n: Number(got.n), insonly: got.insonly, origin: got.origin }, { n: Number(want.n), insonly: want.insonly, origin: want.origin }, `group ${g}`);
      if (want.origin === null) mixed++;
    }
    assert.ok(mixed > 20 && mixed < GROUPS - 20, `both outcomes are covered (${mixed} of ${GROUPS} mixed)`);
  });
});

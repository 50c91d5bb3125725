/**
 * One row must not stop a sync or leave the nodes different for ever: unique claims and foreign
 * key orphans are settled by the sync's strategy (every removed version in the conflict log), and
 * rows of any size COPY can carry replicate.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';
import { connect } from '../../src/db/connect.js';
import { inlineReadSql } from '../../src/engine/sql/apply.js';
import { INLINE_BYTES } from '../../src/engine/run/context.js';
import type { TablePlan } from '../../src/engine/plan.js';

const env = useClusters(3);
after(closeRunners);

const ALL = [0, 1, 2];
async function same(table: string, on = ALL): Promise<string[]> {
  const first = await tableRows(await env.client(on[0]!), table);
  for (const i of on.slice(1)) assert.deepEqual(await tableRows(await env.client(i), table), first, `${table} differs on cluster ${i}`);
  return first;
}

async function conflictLog(sync: string): Promise<{ kind: string; status: string; key: string; winner: string | null; losers: { db: string; row: Record<string, unknown> | null }[] }[]> {
  const rows = await env.query(0, `SELECT kind, status, key::text AS key, winner, losers::text AS losers FROM ibex.conflict WHERE sync = $1 ORDER BY id`, [sync], 'ibexctl');
  return rows.map((r) => ({ kind: String(r.kind), status: String(r.status), key: String(r.key), winner: r.winner === null ? null : String(r.winner), losers: JSON.parse(String(r.losers)) }));
}

/** Run until nothing is pending (settling writes replicate by the next run). */
async function settle(sync: string, runs = 3): Promise<void> {
  const r = runner(env, sync);
  for (let i = 0; i < runs; i++) await runOk(r);
}

describe('apply errors', () => {
  it('set up', async () => {
    for (const i of ALL) {
      await env.query(i, `
        CREATE TABLE un (id int PRIMARY KEY, email text UNIQUE, note text);
        CREATE TABLE uo (id int PRIMARY KEY, email text UNIQUE);
        CREATE TABLE big (id int PRIMARY KEY, body text);
      `);
    }
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'claims', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.un'] });
    await addSync(env, 'ordered', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.uo'], options: { conflict_strategy: 'B,A,C' } });
    await addSync(env, 'big', { dbs: { A: 'source', B: 'source', C: 'target' }, tables: ['public.big'] });
  });

  it('the later of two claims of one unique value keeps it on every node (latest)', async () => {
    await env.query(0, `INSERT INTO un VALUES (10, 'same@x', 'A, earlier')`);
    await env.query(1, `INSERT INTO un VALUES (11, 'same@x', 'B, later')`);
    await settle('claims');
    assert.deepEqual(await same('un'), ['{"id": 11, "note": "B, later", "email": "same@x"}']);
    const log = await conflictLog('claims');
    assert.ok(log.length > 0 && log.every((c) => c.kind === 'unique' && c.status === 'applied'), JSON.stringify(log));
    assert.ok(log.some((c) => c.losers.some((l) => l.row?.note === 'A, earlier')), `the removed version is not logged: ${JSON.stringify(log)}`);
    assert.ok(!log.some((c) => c.losers.some((l) => l.row?.note === 'B, later')), 'the winner was logged as removed');
  });

  it('… also when the earlier claim is on the node applied last', async () => {
    await env.query(2, `INSERT INTO un VALUES (20, 'other@x', 'C, earlier')`);
    await env.query(0, `INSERT INTO un VALUES (21, 'other@x', 'A, later')`);
    await settle('claims');
    const rows = await same('un');
    assert.ok(rows.includes('{"id": 21, "note": "A, later", "email": "other@x"}') && !rows.some((r) => r.includes('C, earlier')), rows.join('\n'));
  });

  it('the preferred db of an ordered strategy keeps the unique value, though its claim is older', async () => {
    await env.query(1, `INSERT INTO uo VALUES (1, 'pref@x')`);
    await env.query(0, `INSERT INTO uo VALUES (2, 'pref@x')`);
    await settle('ordered');
    assert.deepEqual(await same('uo'), ['{"id": 1, "email": "pref@x"}']);
    const log = await conflictLog('ordered');
    assert.ok(log.some((c) => c.winner === 'B' && c.losers.some((l) => l.row?.id === 2)), JSON.stringify(log));
  });

  it('the inline path measures rows by their text, not their compressed size', async () => {
    // 1 MB that compresses to a few KB: too large to travel inline.
    await env.query(0, `INSERT INTO big VALUES (1, repeat('x', 1000000))`);
    const c = await connect(env.params(0, 'app'));
    try {
      await c.query(`BEGIN; CREATE TEMP TABLE ibex_mine_0 (id int, ibex_origin text); INSERT INTO ibex_mine_0 VALUES (1, NULL)`);
      const p = { q: '"public"."big"', idx: 0, cols: ['id', 'body'], keyJoin: (a: string, b: string) => `${a}.id = ${b}.id` } as unknown as TablePlan;
      const r = await c.query(inlineReadSql(p, INLINE_BYTES));
      assert.equal(Number(r.rows[0].n), 1);
      assert.equal(r.rows[0].rows, null, 'a 1 MB row was read inline');
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
    await env.query(0, `DELETE FROM big`);
  });

  it('a 16 MB row replicates (COPY) to every node', async () => {
    const r = runner(env, 'big');
    await env.query(0, `INSERT INTO big SELECT 2, string_agg(md5(g::text), '') FROM generate_series(1, 500000) g`);
    await runOk(r);
    await env.query(1, `UPDATE big SET body = body || 'B' WHERE id = 2`);
    await runOk(r);
    for (const i of ALL) {
      const got = await env.query(i, `SELECT octet_length(body) AS n, right(body, 1) AS last FROM big WHERE id = 2`);
      assert.deepEqual(got.map((x) => [Number(x.n), x.last]), [[16_000_001, 'B']], `cluster ${i}`);
    }
  });
});

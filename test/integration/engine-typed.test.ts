/**
 * A target of another kind in a run, through the Target seam only: a test Target held in memory
 * (test/helpers/memory-target.ts) next to two PostgreSQL masters. Rows must arrive as PostgreSQL's
 * exact text output, by every path a run has (inline, staged COPY, the insert-only fast path,
 * truncate), deletes included; refused rows go to the conflict log; a failure after the
 * PostgreSQL dbs committed is re-applied by the next run.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners } from '../helpers/sync.js';
import { MemoryTarget, memoryTargets } from '../helpers/memory-target.js';
import type { TextRow } from '../../src/targets/target.js';
import pino from 'pino';

const env = useClusters(2);
after(closeRunners);

const mem = new MemoryTarget('M');
const copyMem = new MemoryTarget('N', { transactional: false, progressInTxn: false });
const open = memoryTargets({ M: mem, N: copyMem });

/** A table's rows on cluster i as PostgreSQL's text output, sorted as the memory target sorts them. */
async function pgRows(i: number, table: string, cols: string[], keys: string[]): Promise<TextRow[]> {
  const r = await env.query(i, `SELECT ${cols.map((c, n) => `${c}::text AS c${n}`).join(', ')} FROM ${table}`);
  const rows = r.map((x) => cols.map((_, n) => (x[`c${n}`] === null ? null : String(x[`c${n}`]))));
  const key = (row: TextRow): string => JSON.stringify(keys.map((k) => row[cols.indexOf(k)] ?? null));
  return rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

const T = { cols: ['id', 'v', 'b', 'n'], keys: ['id'] };
const C = { cols: ['a', 'b', 'v'], keys: ['a', 'b'] };

async function same(): Promise<void> {
  const t = await pgRows(0, 't1', T.cols, T.keys);
  assert.deepEqual(await pgRows(1, 't1', T.cols, T.keys), t, 'A and B differ');
  assert.deepEqual(mem.rows('public.t1'), t);
  assert.deepEqual(mem.rows('public.comp'), await pgRows(0, 'comp', C.cols, C.keys));
}

describe('a target of another kind (in memory) next to two masters', () => {
  const r = (): ReturnType<typeof runner> => runner(env, 'mt', { openTarget: open });
  let mt: ReturnType<typeof runner>;

  it('set up', async () => {
    for (const i of [0, 1]) {
      await env.query(i, `CREATE TABLE t1 (id int PRIMARY KEY, v text, b bytea, n numeric);
                          CREATE TABLE comp (a int, b text, v text, PRIMARY KEY (a, b));`);
    }
    await setupControl(env, { A: 0, B: 1 });
    await env.query(0, `INSERT INTO ibex.db (name, dbtype, dbname) VALUES ('M', 'sqlite', 'memory'), ('N', 'sqlite', 'memory')`, [], 'ibexctl');
    await addSync(env, 'mt', { dbs: { A: 'source', B: 'source', M: 'target' }, tables: ['public.t1', 'public.comp'] });
    mt = r();
  });

  it('receives inserts from both masters, by the fast path and inline', async () => {
    await env.query(0, `INSERT INTO t1 SELECT g, 'a' || g, NULL, g / 7.0 FROM generate_series(1, 500) g`);
    await runOk(mt);
    await env.query(1, `INSERT INTO t1 VALUES (1001, 'from B', '\\x00ff', 1.5)`);
    await env.query(0, `INSERT INTO comp VALUES (1, 'x', 'one'), (1, 'y', 'two'), (2, 'x', 'three')`);
    await runOk(mt);
    await same();
    assert.equal(mem.rows('public.t1').length, 501);
  });

  it('carries awkward values as their exact text output', async () => {
    const values = [`it's`, 'back\\slash', 'tab\there', 'new\nline', '\\N', '', 'ünïcødé €😀', 'cr\rlf', '\\x41'];
    for (const [i, v] of values.entries()) await env.query(i % 2, `INSERT INTO t1 VALUES ($1, $2, $3, $4)`, [2000 + i, v, Buffer.from(v), '1e-5']);
    await env.query(0, `INSERT INTO t1 VALUES (2100, NULL, NULL, NULL), (2101, '', ''::bytea, 0)`);
    await runOk(mt);
    await same();
    const empty = mem.rows('public.t1').find((x) => x[0] === '2101')!;
    assert.deepEqual(empty, ['2101', '', '\\x', '0']);
    assert.deepEqual(mem.rows('public.t1').find((x) => x[0] === '2100'), ['2100', null, null, null]);
    assert.equal(mem.rows('public.t1').find((x) => x[0] === '2004')![1], '\\N');
  });

  it('receives updates (staged by COPY and inline) and deletes, composite keys too', async () => {
    await env.query(0, `UPDATE t1 SET v = v || ' updated' WHERE id <= 300`);
    await env.query(1, `UPDATE t1 SET n = -1 WHERE id BETWEEN 400 AND 405; DELETE FROM t1 WHERE id BETWEEN 450 AND 460`);
    await env.query(0, `UPDATE comp SET v = 'changed' WHERE a = 1 AND b = 'y'; DELETE FROM comp WHERE a = 2`);
    await runOk(mt);
    await same();
    assert.equal(mem.rows('public.t1').find((x) => x[0] === '450'), undefined);
    assert.deepEqual(mem.rows('public.comp'), [['1', 'x', 'one'], ['1', 'y', 'changed']]);
  });

  it('empties a truncated table and fills it with what the truncating db holds', async () => {
    await env.query(1, `TRUNCATE comp; INSERT INTO comp VALUES (7, 'after', 'the truncate')`);
    const res = await runOk(mt);
    assert.equal(res.truncates, 1);
    await same();
    assert.deepEqual(mem.rows('public.comp'), [['7', 'after', 'the truncate']]);
  });

  it('quarantines a refused row in the conflict log and lets the rest through', async () => {
    mem.refuse = (spec, row) => (spec.name === 't1' && row[1] === 'refuse me' ? 'v: this target refuses it (test)' : undefined);
    await env.query(0, `INSERT INTO t1 VALUES (3000, 'refuse me', NULL, 1), (3001, 'fine', NULL, 2)`);
    const res = await runOk(mt);
    mem.refuse = undefined;
    assert.equal(res.conflicts, 1);
    assert.ok(mem.rows('public.t1').some((x) => x[0] === '3001'));
    assert.ok(!mem.rows('public.t1').some((x) => x[0] === '3000'));
    const log = await env.query(0, `SELECT key::text AS key, kind, strategy, status, losers::text AS losers FROM ibex.conflict WHERE sync = 'mt' AND kind = 'refused'`, [], 'ibexctl');
    assert.equal(log.length, 1);
    assert.deepEqual([log[0]!.key, log[0]!.strategy, log[0]!.status], ['{"id": "3000"}', 'quarantine', 'quarantined']);
    assert.match(String(log[0]!.losers), /"db": "M".*this target refuses it/);
    // Put it right for the checks that follow.
    await mem.begin();
    await mem.upsertRows({ label: 'public.t1', schema: 'public', name: 't1', targetName: 't1', keys: ['id'], columns: T.cols.map((c) => ({ name: c, type: 'text', notNull: false })) },
      (await pgRows(0, 't1', T.cols, T.keys)).filter((x) => x[0] === '3000'));
    await mem.commit();
  });

  it('re-applies everything after it failed to commit once the PostgreSQL dbs had committed', async () => {
    await env.query(0, `INSERT INTO t1 VALUES (4000, 'after a failed commit', NULL, 4)`);
    await env.query(1, `DELETE FROM t1 WHERE id = 1`);
    const cursors = await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'mt' ORDER BY db`, [], 'ibexctl');
    mem.failNextCommit = true;
    const failed = await mt.run('delta');
    assert.equal(failed.status, 'failed');
    assert.match(failed.error ?? '', /commit failed/);
    assert.deepEqual(await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'mt' ORDER BY db`, [], 'ibexctl'), cursors, 'cursors stay behind');
    // The masters did commit: A and B already agree, the memory target does not.
    assert.deepEqual(await pgRows(1, 't1', T.cols, T.keys), await pgRows(0, 't1', T.cols, T.keys));
    assert.ok(!mem.rows('public.t1').some((x) => x[0] === '4000'));
    await runOk(mt);
    await same();
    assert.ok(mem.progress.get('mt')!.some((e) => e.source === 'A'));
  });

  it('is filled by onetimecopy (a target without transactions)', async () => {
    await addSync(env, 'ncopy', { dbs: { A: 'source', N: 'target' }, tables: ['public.t1'], options: { onetimecopy: 1 } });
    process.env.IBEX_COPY_CHUNK_ROWS = '100';
    const res = await runner(env, 'ncopy', { openTarget: open }).run('onetimecopy');
    delete process.env.IBEX_COPY_CHUNK_ROWS;
    assert.equal(res.status, 'good', res.error);
    assert.deepEqual(copyMem.rows('public.t1'), await pgRows(0, 't1', T.cols, T.keys));
  });

  it('warns about the rows a copy refused, each with its key, then only counts them', async () => {
    await env.query(0, `INSERT INTO t1 SELECT g, 'refused in a copy', NULL, g FROM generate_series(5000, 5149) g`);
    copyMem.refuse = (spec, row) => (row[1] === 'refused in a copy' ? 'v: this target refuses it (test)' : undefined);
    const lines: { msg: string; key?: string; level: number }[] = [];
    const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; key?: string; level: number }) });
    try {
      const res = await runner(env, 'ncopy', { openTarget: open, log }).run('onetimecopy');
      assert.equal(res.status, 'good', res.error);
    } finally {
      copyMem.refuse = undefined;
    }
    const perRow = lines.filter((l) => /^a row was refused by db N and quarantined .*this target refuses it/.test(l.msg));
    assert.equal(perRow.length, 100, 'the first 100, one line each');
    assert.ok(perRow.every((l) => /^\{"id":"5\d{3}"\}$/.test(l.key ?? '')), 'each names its key');
    assert.equal(lines.filter((l) => /^more than 100 rows were refused/.test(l.msg)).length, 1, 'then one line for the rest');
    const logged = await env.query(0, `SELECT count(*)::int AS n FROM ibex.conflict WHERE sync = 'ncopy' AND kind = 'refused'`, [], 'ibexctl');
    assert.equal(Number(logged[0]!.n), 150, 'every refused row is in the conflict log');
  });

  it('refuses a source of another kind with a one-line reason', async () => {
    await env.query(0, `UPDATE ibex.dbgroup_member SET role = 'source' WHERE dbgroup = 'ncopy' AND db = 'N'`, [], 'ibexctl');
    const res = await runner(env, 'ncopy', { openTarget: open }).run('delta');
    assert.equal(res.status, 'failed');
    assert.equal(res.pause, true);
    assert.match(res.error ?? '', /^db N is a sqlite db and only PostgreSQL can be a source: /);
  });

  it('pauses a sync configured before add sync refused a keyless table for a db of another kind', async () => {
    await env.query(0, `CREATE TABLE nokey (x int, y text); INSERT INTO nokey VALUES (1, 'a'), (1, 'a')`);
    await env.query(1, `CREATE TABLE nokey (x int, y text)`);
    await addSync(env, 'nk', { dbs: { A: 'source', N: 'fullcopy' }, tables: ['public.nokey'] });
    const res = await runner(env, 'nk', { openTarget: open }).run('fullcopy');
    assert.equal(res.status, 'failed');
    assert.equal(res.pause, true);
    assert.match(res.error ?? '', /^table public\.nokey has no primary key \(nor a unique index on NOT NULL columns\), and db N is a sqlite db, which keeps each row by its key: give the table a primary key \(then remove and add the table again\), or leave db N out of sync nk \("ibex update dbgroup"\)$/);
    assert.equal(copyMem.rows('public.nokey').length, 0, 'nothing was written');
  });
});

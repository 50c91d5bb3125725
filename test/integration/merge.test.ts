/**
 * Column-level merge (conflict_strategy=merge) and counter columns (delta_columns=) on two and
 * three masters (issue #15 §2, §3): the exact rows left on every db and the conflict log.
 *
 * Change times are set deterministically where an order matters (the capture's test clock hook,
 * compiled in with IBEX_TEST_CLOCK_OFFSET=1): each statement is stamped minutes ahead.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners } from '../helpers/sync.js';
import { openControl } from '../../src/control/connection.js';
import { installCapture } from '../../src/capture/install.js';
import { tableDdl } from '../../src/capture/objects.js';
import type { SyncRunner } from '../../src/engine/runner.js';

process.env.IBEX_TEST_CLOCK_OFFSET = '1';
const env = useClusters(3);
after(closeRunners);

type Db = 'A' | 'B' | 'C';
const IDX: Record<Db, number> = { A: 0, B: 1, C: 2 };

/** One transaction on `db`; each statement's changes are stamped `minutes` ahead of the real clock. */
async function writeTx(db: Db, steps: [minutes: number, sql: string][]): Promise<void> {
  const body = steps.map(([m, s]) => `SELECT set_config('ibex.clock_offset', '${m} minutes', true); ${s};`).join('\n');
  try {
    await env.query(IDX[db], `BEGIN;\n${body}\nCOMMIT;`);
  } catch (err) {
    await env.query(IDX[db], 'ROLLBACK').catch(() => {});
    throw err;
  }
}

let control: Promise<void> | undefined;

const COLUMNS = 'id int PRIMARY KEY, price numeric(10,2) NOT NULL, stock int NOT NULL, note text, meta json';

/** A table on every db of a multi-master sync; `delta` sets its counter columns (re-installing capture). */
async function makeSync(name: string, dbs: Db[], strategy: string, o: { columns?: string; delta?: string[] } = {}): Promise<SyncRunner> {
  control ??= setupControl(env, { A: 0, B: 1, C: 2 });
  await control;
  for (const d of dbs) await env.query(IDX[d], `CREATE TABLE ${name} (${o.columns ?? COLUMNS})`);
  await addSync(env, name, {
    dbs: Object.fromEntries(dbs.map((d) => [d, 'source' as const])),
    tables: [`public.${name}`],
    options: { conflict_strategy: strategy },
  });
  if (o.delta) {
    const c = await openControl(env.controlUrl);
    try {
      await c.query(`UPDATE ibex.relation SET delta_columns = $2 WHERE schemaname = 'public' AND relname = $1`, [name, o.delta]);
      await installCapture(c, name, { upgrade: true });
    } finally {
      await c.end();
    }
  }
  return runner(env, name);
}

async function rows(db: Db, table: string, cols = 'id, price, stock, note'): Promise<string[]> {
  return (await env.query(IDX[db], `SELECT row(${cols})::text AS r FROM ${table} ORDER BY id`)).map((x) => String(x.r));
}

async function sameEverywhere(dbs: Db[], table: string, cols?: string): Promise<string[]> {
  const first = await rows(dbs[0]!, table, cols);
  for (const d of dbs.slice(1)) assert.deepEqual(await rows(d, table, cols), first, `rows of ${table} on ${d} equal ${dbs[0]}'s`);
  return first;
}

async function conflicts(sync: string): Promise<Record<string, unknown>[]> {
  const c = await openControl(env.controlUrl);
  try {
    return (await c.query(`SELECT key::text, kind, strategy, winner, columns::text FROM ibex.conflict WHERE sync = $1 ORDER BY id`, [sync])).rows;
  } finally {
    await c.end();
  }
}

describe('conflict_strategy=merge', () => {
  it('1,000 rows: A changes price while B changes stock; both survive on every db', async () => {
    const t = 'mrg_two';
    const r = await makeSync(t, ['A', 'B'], 'merge');
    await writeTx('A', [[0, `INSERT INTO ${t} SELECT g, 10, 100, 'n', '{"a":1}' FROM generate_series(1, 1000) g`]]);
    assert.equal((await runOk(r)).status, 'good');
    // Both write at once (two open transactions), each its own column of every row.
    const a = await env.client(0);
    const b = await env.client(1);
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await a.query(`UPDATE ${t} SET price = price + id`);
      await b.query(`UPDATE ${t} SET stock = stock - id % 7`);
      await Promise.all([a.query('COMMIT'), b.query('COMMIT')]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
    const res = await runOk(r);
    assert.equal(res.conflicts, 1000);
    const got = await sameEverywhere(['A', 'B'], t);
    assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => `(${i + 1},${(10 + i + 1).toFixed(2)},${100 - ((i + 1) % 7)},n)`));
    const log = await conflicts(t);
    assert.equal(log.length, 1000);
    assert.ok(log.every((c) => c.winner === 'merge' && c.strategy === 'merge' && c.kind === 'update_update'));
    const cols = JSON.parse(String(log[0]!.columns)) as Record<string, string>;
    assert.equal(cols.price, 'A');
    assert.equal(cols.stock, 'B');
    // A later run finds nothing: the merged rows applied everywhere are not echoed back.
    assert.equal((await runOk(r)).status, 'empty');
  });

  it('the same column changed on both follows latest; other columns still merge; json compares as text', async () => {
    const t = 'mrg_same';
    const r = await makeSync(t, ['A', 'B'], 'merge');
    await writeTx('A', [[0, `INSERT INTO ${t} VALUES (1, 1, 1, 'x', '{}'), (2, 1, 1, 'x', '{}')`]]);
    await runOk(r);
    // Row 1: both change note, B later; A also changes price. Row 2: both change note, A later; B changes meta.
    await writeTx('A', [[1, `UPDATE ${t} SET note = 'a1', price = 5 WHERE id = 1`], [3, `UPDATE ${t} SET note = 'a2' WHERE id = 2`]]);
    await writeTx('B', [[2, `UPDATE ${t} SET note = 'b1' WHERE id = 1`], [2, `UPDATE ${t} SET note = 'b2', meta = '{"b":2}' WHERE id = 2`]]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 2);
    assert.deepEqual(await sameEverywhere(['A', 'B'], t, 'id, price, stock, note, meta::text'), ['(1,5.00,1,b1,{})', '(2,1.00,1,a2,"{""b"":2}")']);
    const log = await conflicts(t);
    assert.deepEqual(log.map((c) => JSON.parse(String(c.columns)).note), ['B', 'A']);
  });

  it('update against delete: the whole row follows latest (a later delete wins, a later update brings the row back)', async () => {
    const t = 'mrg_del';
    const r = await makeSync(t, ['A', 'B'], 'merge');
    await writeTx('A', [[0, `INSERT INTO ${t} VALUES (1, 1, 1, 'x', NULL), (2, 1, 1, 'x', NULL)`]]);
    await runOk(r);
    await writeTx('A', [[1, `UPDATE ${t} SET price = 7 WHERE id = 1`], [3, `UPDATE ${t} SET price = 8 WHERE id = 2`]]);
    await writeTx('B', [[2, `DELETE FROM ${t} WHERE id = 1`], [2, `DELETE FROM ${t} WHERE id = 2`]]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 2);
    assert.deepEqual(await sameEverywhere(['A', 'B'], t), ['(2,8.00,1,x)']);
    const log = await conflicts(t);
    assert.deepEqual(log.map((c) => [c.kind, c.winner]), [['delete_update', 'B'], ['update_delete', 'A']]);
  });

  it('three masters each change their own column: all three survive everywhere', async () => {
    const t = 'mrg_three';
    const r = await makeSync(t, ['A', 'B', 'C'], 'merge:C,B,A');
    await writeTx('A', [[0, `INSERT INTO ${t} SELECT g, 1, 1, 'x', NULL FROM generate_series(1, 200) g`]]);
    await runOk(r);
    await writeTx('A', [[1, `UPDATE ${t} SET price = 2`]]);
    await writeTx('B', [[1, `UPDATE ${t} SET stock = 3`]]);
    // C changes note everywhere and price of row 1 (A changed it too: merge:C,B,A prefers C).
    await writeTx('C', [[1, `UPDATE ${t} SET note = 'c'`], [1, `UPDATE ${t} SET price = 9 WHERE id = 1`]]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 200);
    const got = await sameEverywhere(['A', 'B', 'C'], t);
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => `(${i + 1},${i === 0 ? '9.00' : '2.00'},3,c)`));
  });
});

/** Writers on one db: `n` transactions each adding a random difference to a random key; returns the sum per key. */
async function writers(db: Db, table: string, clients: number, n: number, keys: number, sums: Map<number, number>): Promise<void> {
  const cs: pg.Client[] = [];
  for (let i = 0; i < clients; i++) cs.push(await env.client(IDX[db]));
  try {
    await Promise.all(cs.map(async (c, w) => {
      for (let i = 0; i < n; i++) {
        const k = 1 + ((i * 31 + w * 17 + Math.floor(Math.random() * keys)) % keys);
        const d = Math.floor(Math.random() * 201) - 100;
        await c.query(`UPDATE ${table} SET balance = balance + $1, touched = touched + 1 WHERE id = $2`, [d, k]);
        sums.set(k, (sums.get(k) ?? 0) + d);
      }
    }));
  } finally {
    await Promise.all(cs.map((c) => c.end()));
  }
}

const ACCOUNTS = 'id int PRIMARY KEY, balance bigint NOT NULL, touched int NOT NULL, label text';

describe('capture installed by an older ibex', () => {
  it('a runner replaces triggers that record no column mask before it reads, and the merge works', async () => {
    const t = 'mrg_old';
    await makeSync(t, ['A', 'B'], 'merge');
    // What an older ibex installed on A: a trigger without the mask, recorded as version 2.
    const role = String((await env.query(0, `SELECT session_user AS u`))[0]!.u);
    await env.query(0, tableDdl({ schema: 'public', name: t, keyColumns: ['id'], keyTypes: ['int'], partitioned: false }, role));
    await env.query(0, `UPDATE ibex.captured SET version = 2, cols = NULL WHERE relname = $1`, [t]);
    const r = runner(env, t);
    await writeTx('A', [[0, `INSERT INTO ${t} VALUES (1, 1, 1, 'x', NULL)`]]);
    await runOk(r);
    const v = await env.query(0, `SELECT version, cols::text FROM ibex.captured WHERE relname = $1`, [t]);
    assert.deepEqual(v[0], { version: '3', cols: '{id,price,stock,note,meta}' });
    await writeTx('A', [[1, `UPDATE ${t} SET price = 4`]]);
    await writeTx('B', [[2, `UPDATE ${t} SET stock = 5`]]);
    await runOk(r);
    assert.deepEqual(await sameEverywhere(['A', 'B'], t), ['(1,4.00,5,x)']);
  });
});

describe('delta_columns (counters that add up)', () => {
  it('A sets 100 → 90 and B 100 → 130 at once: every db ends at 120; equal rows still add up', async () => {
    const t = 'acc_pair';
    const r = await makeSync(t, ['A', 'B'], 'latest', { columns: ACCOUNTS, delta: ['balance'] });
    await writeTx('A', [[0, `INSERT INTO ${t} VALUES (1, 100, 0, 'x'), (2, 100, 0, 'x')`]]);
    await runOk(r);
    await writeTx('A', [[1, `UPDATE ${t} SET balance = 90 WHERE id = 1`], [1, `UPDATE ${t} SET balance = balance - 10, label = 'a' WHERE id = 2`]]);
    await writeTx('B', [[2, `UPDATE ${t} SET balance = 130 WHERE id = 1`], [2, `UPDATE ${t} SET balance = balance - 10 WHERE id = 2`]]);
    await runOk(r);
    // Row 2: both 90 (equal rows), yet two withdrawals of 10; label follows latest (B kept 'x').
    assert.deepEqual(await sameEverywhere(['A', 'B'], t, 'id, balance, label'), ['(1,120,x)', '(2,80,x)']);
    const log = await conflicts(t);
    assert.deepEqual(log.map((c) => [c.winner, JSON.parse(String(c.columns)).balance, c.strategy]),
      [['merge', 'sum', 'latest+delta_columns'], ['merge', 'sum', 'latest+delta_columns']]);
  });

  for (const dbs of [['A', 'B'], ['A', 'B', 'C']] as Db[][]) {
    it(`${dbs.length} masters: 10,000 concurrent increments and decrements, runs meanwhile; every db ends at initial + the sum`, async () => {
      const t = `acc_many${dbs.length}`;
      const keys = 200;
      const r = await makeSync(t, dbs, 'latest', { columns: ACCOUNTS, delta: ['balance', 'touched'] });
      await writeTx('A', [[0, `INSERT INTO ${t} SELECT g, 1000, 0, 'x' FROM generate_series(1, ${keys}) g`]]);
      await runOk(r);
      const sums = new Map<number, number>();
      const perDb = Math.ceil(10_000 / dbs.length);
      let writing = true;
      const runs = (async () => {
        // A run whose apply meets a row a writer changed after its snapshot fails (repeatable
        // read) and is rolled back whole: the next run takes the same changes again.
        let n = 0;
        while (writing) {
          await r.run('delta');
          n++;
        }
        return n;
      })();
      await Promise.all(dbs.map((d) => writers(d, t, 3, Math.ceil(perDb / 3), keys, sums)));
      writing = false;
      const during = await runs;
      for (let i = 0; i < 5 && (await runOk(r)).status !== 'empty'; i++);
      const want = Array.from({ length: keys }, (_, i) => `(${i + 1},${1000 + (sums.get(i + 1) ?? 0)})`);
      assert.deepEqual(await sameEverywhere(dbs, t, 'id, balance'), want);
      const touched = await env.query(0, `SELECT sum(touched)::int AS n FROM ${t}`);
      assert.equal(Number(touched[0]!.n), dbs.length * 3 * Math.ceil(perDb / 3), 'every update counted once');
      assert.ok(during >= 1, 'runs ran while the writers wrote');
    });
  }
});

describe('delta_columns from the CLI', () => {
  it('add table delta_columns= installs the differences; update table replaces the triggers in place; bad names are refused', async () => {
    control ??= setupControl(env, { A: 0, B: 1, C: 2 });
    await control;
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE acc_cli (${ACCOUNTS})`);
    const ok = async (...args: string[]): Promise<string> => {
      const r = await env.cli(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      return r.out;
    };
    assert.match(await ok('add', 'table', 'public.acc_cli', 'db=A', 'delta_columns=balance'), /set delta_columns=balance on table public\.acc_cli/);
    await ok('add', 'sync', 'acccli', 'tables=public.acc_cli', 'dbs=A:source,B:source');
    const fn = async (): Promise<string> => String((await env.query(0, `SELECT string_agg(prosrc, '') AS s FROM pg_proc WHERE prosrc LIKE '%ibex_delta%' AND prosrc LIKE '%acc_cli%'`))[0]!.s ?? '');
    assert.match(await fn(), /'balance', n\."balance"::numeric - o\."balance"::numeric/);
    const listed = JSON.parse(await ok('list', 'tables', 'public.acc_cli', '--json')) as { delta_columns: string[] | null }[];
    assert.deepEqual(listed[0]!.delta_columns, ['balance']);
    await ok('update', 'table', 'public.acc_cli', 'delta_columns=balance,touched');
    assert.match(await fn(), /'touched', n\."touched"::numeric/);
    // The sync still runs and counters add up with the new triggers.
    const r = runner(env, 'acccli');
    await writeTx('A', [[0, `INSERT INTO acc_cli VALUES (1, 100, 0, 'x')`]]);
    await runOk(r);
    await writeTx('A', [[1, `UPDATE acc_cli SET balance = balance + 5, touched = touched + 1`]]);
    await writeTx('B', [[2, `UPDATE acc_cli SET balance = balance - 7, touched = touched + 1`]]);
    await runOk(r);
    assert.deepEqual(await sameEverywhere(['A', 'B'], 'acc_cli', 'id, balance, touched'), ['(1,98,2)']);
    const bad = await env.cli('update', 'table', 'public.acc_cli', 'delta_columns=id');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /"id" is a key column/);
    const missing = await env.cli('update', 'table', 'public.acc_cli', 'delta_columns=nosuch');
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /no column "nosuch"/);
    const kept = JSON.parse(await ok('list', 'tables', 'public.acc_cli', '--json')) as { delta_columns: string[] | null }[];
    assert.deepEqual(kept[0]!.delta_columns, ['balance', 'touched'], 'a refused change keeps the setting');
  });

  it('export shows delta_columns; apply -f changes them and upgrades the triggers; a key column is refused with nothing changed', async () => {
    await control;
    const doc = JSON.parse((await env.cli('export', '--format=json')).out) as { tables: { name: string; delta_columns?: string[] }[] };
    const acc = (d: typeof doc): { name: string; delta_columns?: string[] } => d.tables.find((t) => t.name === 'public.acc_cli')!;
    assert.deepEqual(acc(doc).delta_columns, ['balance', 'touched']);
    const dir = mkdtempSync(join(tmpdir(), 'ibex-merge-doc-'));
    const write = (d: typeof doc): string => {
      const f = join(dir, 'ibex.json');
      writeFileSync(f, JSON.stringify(d));
      return f;
    };
    acc(doc).delta_columns = ['balance'];
    const applied = await env.cli('apply', '-f', write(doc));
    assert.equal(applied.code, 0, applied.err);
    assert.match(applied.out, /~ update table public\.acc_cli \(db A\): delta_columns: balance,touched → balance/);
    const src = String((await env.query(0, `SELECT string_agg(prosrc, '') AS s FROM pg_proc WHERE prosrc LIKE '%ibex_delta%' AND prosrc LIKE '%acc_cli%'`))[0]!.s ?? '');
    assert.match(src, /'balance', n\."balance"::numeric/);
    assert.doesNotMatch(src, /'touched', n\."touched"::numeric/);
    acc(doc).delta_columns = ['id'];
    const bad = await env.cli('apply', '-f', write(doc));
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /delta_columns names its key column "id"/);
    const listed = JSON.parse((await env.cli('list', 'tables', 'public.acc_cli', '--json')).out) as { delta_columns: string[] | null }[];
    assert.deepEqual(listed[0]!.delta_columns, ['balance']);
  });

  it('a counter column missing on the second source, or not numeric, is refused before any source changes (dry run included)', async () => {
    await control;
    const fnOn = async (i: number): Promise<string> => String((await env.query(i, `SELECT string_agg(prosrc, '') AS s FROM pg_proc WHERE prosrc LIKE '%ibex_delta%' AND prosrc LIKE '%acc_cli%'`))[0]!.s ?? '');
    const before = [await fnOn(0), await fnOn(1)];
    await env.query(0, `ALTER TABLE acc_cli ADD COLUMN extra int NOT NULL DEFAULT 0`);
    const doc = JSON.parse((await env.cli('export', '--format=json')).out) as { tables: { name: string; delta_columns?: string[] }[] };
    doc.tables.find((t) => t.name === 'public.acc_cli')!.delta_columns = ['balance', 'extra'];
    const f = join(mkdtempSync(join(tmpdir(), 'ibex-merge-doc-')), 'ibex.json');
    writeFileSync(f, JSON.stringify(doc));
    for (const dry of [['--dry-run'], []]) {
      const r = await env.cli('apply', '-f', f, ...dry);
      assert.notEqual(r.code, 0, `apply ${dry.join(' ')}: ${r.out}`);
      assert.match(r.err, /acc_cli on db B has no column "extra" named in delta_columns/);
      assert.doesNotMatch(r.err, /\n./);
    }
    assert.deepEqual([await fnOn(0), await fnOn(1)], before, 'no source got new triggers');
    const listed = JSON.parse((await env.cli('list', 'tables', 'public.acc_cli', '--json')).out) as { delta_columns: string[] | null }[];
    assert.deepEqual(listed[0]!.delta_columns, ['balance']);
    const text = await env.cli('update', 'table', 'public.acc_cli', 'delta_columns=balance,label');
    assert.notEqual(text.code, 0);
    assert.match(text.err, /delta_columns names "label", a text column; a counter must be numeric/);
    assert.deepEqual([await fnOn(0), await fnOn(1)], before);
    await env.query(0, `ALTER TABLE acc_cli DROP COLUMN extra`);
  });
});

import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { useClusters } from '../helpers/env.js';
import { captureNames } from '../../src/capture/objects.js';
import { qualified } from '../../src/db/ident.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';

const env = useClusters(3);
after(closeRunners);

const DDL = `
CREATE TABLE item (id int PRIMARY KEY, name text, qty numeric(12,2), updated timestamptz DEFAULT now());
CREATE TABLE oneway (id bigint PRIMARY KEY, v text);
`;

describe('a two-master sync', () => {
  it('converges inserts, updates and deletes made on both masters', async () => {
    for (const i of [0, 1, 2]) await env.query(i, DDL);
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'mm', { dbs: { A: 'source', B: 'source' }, tables: ['public.item'] });
    const r = runner(env, 'mm');
    await env.query(0, `INSERT INTO item (id, name, qty) SELECT g, 'a' || g, g FROM generate_series(1, 100) g`);
    await env.query(1, `INSERT INTO item (id, name, qty) SELECT g, 'b' || g, g FROM generate_series(101, 150) g`);
    const res = await runOk(r);
    assert.equal(res.status, 'good');
    assert.equal(res.inserted, 150);
    await env.query(0, `UPDATE item SET name = 'changed on A' WHERE id = 120`);
    await env.query(1, `DELETE FROM item WHERE id BETWEEN 1 AND 10`);
    await env.query(1, `UPDATE item SET qty = 999 WHERE id = 50`);
    await runOk(r);
    const a = await tableRows(await env.client(0), 'item');
    const b = await tableRows(await env.client(1), 'item');
    assert.equal(a.length, 140);
    assert.deepEqual(a, b);
    const row = await env.query(0, `SELECT name FROM item WHERE id = 120`);
    assert.equal(row[0]!.name, 'changed on A');
    const q = await env.query(0, `SELECT qty FROM item WHERE id = 50`);
    assert.equal(q[0]!.qty, '999.00');
    // Nothing loops back: the next run has nothing to do.
    const again = await runOk(r);
    assert.equal(again.status, 'empty');
  });

  it('a run with changes on both masters sends 3 statements to the control db and 6 to each master', async () => {
    // The fixed cost of a small run is its statements (docs/performance.md): this keeps it from creeping back.
    const r = runner(env, 'mm');
    await runOk(r);
    await runOk(r);
    const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
    const orig = proto.query;
    const runs: Map<string, number>[] = [];
    try {
      for (const id of [7001, 7002]) {
        await env.query(0, `INSERT INTO item (id, name) VALUES ($1, 'on A')`, [id]);
        await env.query(1, `UPDATE item SET name = $1 WHERE id = 50`, [`on B ${id}`]);
        const counts = new Map<string, number>();
        proto.query = function (this: pg.Client, ...args: unknown[]) {
          const key = `${this.port}/${this.database}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
          return orig.apply(this, args);
        };
        const res = await runOk(r);
        proto.query = orig;
        assert.equal(res.status, 'good');
        runs.push(counts);
      }
    } finally {
      proto.query = orig;
    }
    // The fewer of two runs per session: the backlog for `status` (every 5 s) may fall in either.
    const keys = [...new Set(runs.flatMap((m) => [...m.keys()]))];
    const fewest = keys.map((k) => Math.min(...runs.map((m) => m.get(k) ?? 0))).sort((a, b) => a - b);
    assert.deepEqual(fewest, [3, 6, 6], JSON.stringify(runs.map((m) => Object.fromEntries(m))));
  });

  it('picks up a transaction that was still open while a run read the deltas', async () => {
    const r = runner(env, 'mm');
    const open = await env.client(0);
    await open.query('BEGIN');
    await open.query(`INSERT INTO item (id, name) VALUES (1000, 'in flight')`);
    await env.query(0, `INSERT INTO item (id, name) VALUES (1001, 'committed')`);
    await runOk(r);
    assert.equal((await env.query(1, `SELECT count(*) AS n FROM item WHERE id = 1001`))[0]!.n, '1');
    assert.equal((await env.query(1, `SELECT count(*) AS n FROM item WHERE id = 1000`))[0]!.n, '0');
    await open.query('COMMIT');
    await runOk(r);
    assert.equal((await env.query(1, `SELECT name FROM item WHERE id = 1000`))[0]!.name, 'in flight');
  });

  it('resolves a conflict per row: the latest change wins and the loser is logged', async () => {
    const r = runner(env, 'mm');
    await env.query(0, `UPDATE item SET name = 'A wins 1' WHERE id = 20`);
    await env.query(1, `UPDATE item SET name = 'B wins 2' WHERE id = 21`);
    await env.query(1, `UPDATE item SET name = 'B loses 1' WHERE id = 20`.replace('B loses 1', 'B early'));
    // Make A's change on 20 the later one.
    await env.query(0, `UPDATE item SET name = 'A wins 1' WHERE id = 20`);
    await env.query(0, `UPDATE item SET name = 'A loses 2' WHERE id = 21`);
    await env.query(1, `UPDATE item SET name = 'B wins 2' WHERE id = 21`);
    const res = await runOk(r);
    assert.equal(res.conflicts, 2);
    for (const i of [0, 1]) {
      const rows = await env.query(i, `SELECT id, name FROM item WHERE id IN (20, 21) ORDER BY id`);
      assert.deepEqual(rows.map((x) => x.name), ['A wins 1', 'B wins 2']);
    }
    const log = await env.query(0, `SELECT key->>'id' AS id, winner, losers->0->>'db' AS loser, losers->0->'row'->>'name' AS lost, status
                                      FROM ibex.conflict ORDER BY (key->>'id')::int`, [], 'ibexctl');
    assert.deepEqual(log.map((x) => [x.id, x.winner, x.loser, x.lost, x.status]), [
      ['20', 'A', 'B', 'B early', 'applied'],
      ['21', 'B', 'A', 'A loses 2', 'applied'],
    ]);
    const cli = await env.cli('conflicts', 'mm', 'table=public.item', '--json');
    assert.equal(cli.code, 0, cli.err);
    const shown = JSON.parse(cli.out) as { key: { id: number }; winner: string; losers: { db: string; row: { name: string } }[] }[];
    assert.deepEqual(shown.map((x) => [x.key.id, x.winner, x.losers[0]!.row.name]).sort(), [[20, 'A', 'B early'], [21, 'B', 'A loses 2']]);
    const none = await env.cli('conflicts', 'mm', 'table=public.nothing');
    assert.match(none.out, /no conflicts logged/);
    const bad = await env.cli('conflicts', 'mm', 'status=maybe');
    assert.equal(bad.code, 2);
  });
});

describe('a one-way sync', () => {
  it('copies A to C and never pushes writes on C back', async () => {
    await addSync(env, 'ow', { dbs: { A: 'source', C: 'target' }, tables: ['public.oneway'] });
    const r = runner(env, 'ow');
    await env.query(0, `INSERT INTO oneway SELECT g, repeat('x', g % 50) FROM generate_series(1, 500) g`);
    await runOk(r);
    assert.equal((await env.query(2, `SELECT count(*) AS n FROM oneway`))[0]!.n, '500');
    await env.query(2, `UPDATE oneway SET v = 'target only' WHERE id = 1`);
    await env.query(0, `DELETE FROM oneway WHERE id > 250`);
    await runOk(r);
    assert.equal((await env.query(2, `SELECT count(*) AS n FROM oneway`))[0]!.n, '250');
    assert.equal((await env.query(0, `SELECT v FROM oneway WHERE id = 1`))[0]!.v, 'x');
    assert.equal((await env.query(2, `SELECT v FROM oneway WHERE id = 1`))[0]!.v, 'target only');
  });
});

describe('a bulk load on the insert-only fast path', () => {
  /** The COPY … TO statements sent while `f` runs. */
  async function copiesOut(f: () => Promise<unknown>): Promise<string[]> {
    const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
    const orig = proto.query;
    const seen: string[] = [];
    proto.query = function (this: pg.Client, ...args: unknown[]) {
      const text = (args[0] as { text?: unknown }).text;
      if (typeof text === 'string' && /^COPY \(/.test(text)) seen.push(text);
      return orig.apply(this, args);
    };
    try {
      await f();
    } finally {
      proto.query = orig;
    }
    return seen;
  }

  it('reads a load into an empty table as the table itself, a load into a table holding other rows through the window', async () => {
    for (const i of [0, 2]) await env.query(i, `CREATE TABLE load (id int PRIMARY KEY, v text)`);
    await addSync(env, 'load', { dbs: { A: 'source', C: 'target' }, tables: ['public.load'] });
    const delta = captureNames('public', 'load').delta;
    const r = runner(env, 'load');
    await env.query(0, `INSERT INTO load SELECT g, 'first ' || g FROM generate_series(1, 2000) g`);
    const first = await copiesOut(() => runOk(r));
    assert.equal(first.length, 1);
    assert.doesNotMatch(first[0]!, new RegExp(delta), 'the whole table, no join with the window');
    assert.deepEqual(await tableRows(await env.client(2), 'load'), await tableRows(await env.client(0), 'load'));
    await env.query(0, `INSERT INTO load SELECT g, 'second ' || g FROM generate_series(2001, 5000) g`);
    const second = await copiesOut(() => runOk(r));
    assert.equal(second.length, 1);
    assert.match(second[0]!, new RegExp(delta), 'the table holds rows of an earlier load: the window\'s keys only');
    const c = await tableRows(await env.client(2), 'load');
    assert.equal(c.length, 5000);
    assert.deepEqual(c, await tableRows(await env.client(0), 'load'));
  });

  it('analyzes the delta table the load grew before reading the rows through it', async () => {
    // The statistics of a delta table that never saw the load make the planner spill the keys
    // to disk (docs/performance.md, bulk): ibex analyzes it first. Autovacuum is kept off it so
    // only ibex can have done so. A row on both dbs from before the sync: not the whole table.
    for (const i of [0, 2]) await env.query(i, `CREATE TABLE bulk (id int PRIMARY KEY, v text); INSERT INTO bulk VALUES (0, 'before')`);
    await addSync(env, 'bulk', { dbs: { A: 'source', C: 'target' }, tables: ['public.bulk'] });
    const delta = qualified('ibex', captureNames('public', 'bulk').delta).text;
    await env.query(0, `ALTER TABLE ${delta} SET (autovacuum_enabled = false)`);
    const reltuples = async (): Promise<number> => Number((await env.query(0, `SELECT reltuples FROM pg_class WHERE oid = $1::regclass`, [delta]))[0]!.reltuples);
    assert.ok((await reltuples()) < 1, 'never analyzed yet');
    const r = runner(env, 'bulk');
    await env.query(0, `INSERT INTO bulk SELECT g, 'v' || g FROM generate_series(1, 60000) g`);
    const res = await runOk(r);
    assert.equal(res.inserted, 60000);
    assert.deepEqual(await tableRows(await env.client(2), 'bulk'), await tableRows(await env.client(0), 'bulk'));
    assert.ok((await reltuples()) >= 50000, 'the delta table was analyzed in the run');
  });
});

describe('apply_mode=replica', () => {
  it('deletes and copies rows back with user triggers and FK actions silenced', async () => {
    for (const i of [0, 1]) {
      await env.query(i, `CREATE TABLE rp (id int PRIMARY KEY, v text);
        CREATE TABLE rc (id int PRIMARY KEY, rp_id int REFERENCES rp (id) ON DELETE CASCADE);
        CREATE TABLE audit (n serial, what text);
        CREATE FUNCTION audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (what) VALUES (TG_OP); RETURN NULL; END $$;
        CREATE TRIGGER audit_t AFTER INSERT OR UPDATE OR DELETE ON rp FOR EACH ROW EXECUTE FUNCTION audit_fn();`);
    }
    await addSync(env, 'rep', { dbs: { A: 'source', B: 'source' }, tables: ['public.rp', 'public.rc'], options: { apply_mode: 'replica' } });
    const r = runner(env, 'rep');
    await env.query(0, `INSERT INTO rp VALUES (1, 'one'), (2, 'two'); INSERT INTO rc VALUES (10, 1), (20, 2)`);
    await runOk(r);
    await env.query(0, `UPDATE rp SET v = 'one, updated' WHERE id = 1`);
    await env.query(1, `UPDATE rp SET v = 'two, updated on B' WHERE id = 2`);
    const res = await runOk(r);
    assert.equal(res.status, 'good');
    for (const i of [0, 1]) {
      assert.deepEqual((await env.query(i, `SELECT v FROM rp ORDER BY id`)).map((x) => x.v), ['one, updated', 'two, updated on B']);
      assert.equal((await env.query(i, `SELECT count(*) AS n FROM rc`))[0]!.n, '2', 'the cascade did not fire');
    }
    // B's audit trigger saw only B's own local update, none of ibex's deletes or copies.
    assert.deepEqual((await env.query(1, `SELECT what FROM audit ORDER BY n`)).map((x) => x.what), ['UPDATE']);
  });
});

describe('a run repeated after a crash between its commits and its cursor update', () => {
  it('recognises what already landed and never lets the stale delivery override a later change', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE pr (id int PRIMARY KEY, v text)`);
    // A wins every conflict (an ordered list): a stale re-delivery of A's change would win too.
    await addSync(env, 'prio', { dbs: { A: 'source', B: 'source' }, tables: ['public.pr'], options: { conflict_strategy: 'A,B' } });
    const r = runner(env, 'prio');
    await env.query(0, `INSERT INTO pr VALUES (1, 'v1 from A')`);
    await runOk(r);
    const before = await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'prio'`, [], 'ibexctl');
    await env.query(1, `UPDATE pr SET v = 'v2 from B, loses' WHERE id = 1`);
    await env.query(0, `UPDATE pr SET v = 'v2 from A' WHERE id = 1`);
    const crashed = await runOk(r);
    assert.equal(crashed.conflicts, 1);
    // The crash: every db committed, the cursors and the settling of the conflict record were lost.
    for (const row of before) await env.query(0, `UPDATE ibex.cursor SET snapshot = $1 WHERE sync = 'prio' AND db = $2`, [row.snapshot, row.db], 'ibexctl');
    await env.query(0, `UPDATE ibex.conflict SET status = 'pending' WHERE run = $1`, [crashed.runId], 'ibexctl');
    await env.query(1, `UPDATE pr SET v = 'v3 from B, later' WHERE id = 1`);
    await runOk(r);
    for (const i of [0, 1]) assert.equal((await env.query(i, `SELECT v FROM pr WHERE id = 1`))[0]!.v, 'v3 from B, later');
    const settled = await env.query(0, `SELECT status FROM ibex.conflict WHERE run = $1`, [crashed.runId], 'ibexctl');
    assert.deepEqual(settled.map((x) => x.status), ['applied'], 'the recovered run\'s overwrite is recorded as applied');
  });
});

/**
 * `ibex validate`: equal tables, rows changed, missing or extra behind ibex's
 * back (capture silenced with session_replication_role = replica), awkward
 * keys and values, in-flight keys, repair, the conflict log, `all`, `table=`,
 * sequences, schema differences, bad arguments and the --json shape.
 *
 * Three dbs on two clusters: A (cluster 0) and B (cluster 1) are sources,
 * C (cluster 1, database app2) a target.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters, type CliResult } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';

const env = useClusters(2);
after(closeRunners);

/** db name → [cluster, database]. */
const DBS = { A: [0, 'app'], B: [1, 'app'], C: [1, 'app2'] } as const;
type Db = keyof typeof DBS;

const DDL = `
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), note text, data bytea, at timestamptz);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Comp Key" (region text, num numeric, ts timestamptz, v text, extra jsonb, PRIMARY KEY (region, num, ts));
CREATE TABLE other (id bigint PRIMARY KEY, v text);
CREATE SEQUENCE s;
`;

const SEED = `
INSERT INTO items (id, name, price, note, data, at)
  SELECT g, 'item ' || g, g * 1.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END, decode(md5(g::text), 'hex'), '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour'
    FROM generate_series(1, 3000) g;
INSERT INTO "Odd Schema"."Comp Key" (region, num, ts, v, extra) VALUES
  ('o''brien "q"', 1.50, '2024-02-29 23:59:59.123456+00', 'a', '{"x": [1, 2]}'),
  ('ü ☃', -0.000001, '1999-12-31 23:00:00+00', NULL, NULL),
  ('comma, (paren)', 1e20, '2000-01-01 00:00:00+00', 'c', 'null'),
  ('back\\slash', 2, '2000-01-01 00:00:00+00', 'd', '{}');
INSERT INTO other SELECT g, 'o' || g FROM generate_series(1, 50) g;
`;

/** Run SQL on a db with capture silenced (user triggers off): a change made behind ibex's back. */
async function behindBack(db: Db, sql: string): Promise<void> {
  const [i, name] = DBS[db];
  await env.query(i, `BEGIN; SET LOCAL session_replication_role = replica; ${sql}; COMMIT;`, [], name);
}

async function q(db: Db, sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  const [i, name] = DBS[db];
  return env.query(i, sql, values, name);
}

interface JsonDoc {
  equal: boolean;
  differences: number;
  inFlight: number;
  syncs: {
    sync: string; dbs: string[]; equal: boolean; differences: number; inFlight: number;
    tables: {
      table: string; status: string; rows: Record<string, number>; buckets: number; differingBuckets: number; differences: number; inFlight: number;
      keys: { key: Record<string, string | null>; versions: { db: string; row: Record<string, string | null> | null; hash: string | null }[] }[];
      inFlightKeys: { key: Record<string, string | null>; pendingOn: string[] }[];
      schema?: { db: string; problem: string }[];
    }[];
    sequences: { sequence: string; values: Record<string, string | null>; status: string; behind: string[] }[];
  }[];
  repairs: { sync: string; from: string; targets: string[]; dryRun: boolean; changedKeys: number; tables: { table: string; keys: number; inFlight: number; changed: Record<string, number> }[] }[];
}

async function validateJson(...args: string[]): Promise<{ res: CliResult; doc: JsonDoc }> {
  const res = await env.cli('validate', ...args, '--json');
  let doc: JsonDoc;
  try {
    doc = JSON.parse(res.out) as JsonDoc;
  } catch {
    assert.fail(`validate --json printed no JSON (exit ${res.code}): ${res.out} ${res.err}`);
  }
  return { res, doc };
}

const tableOf = (doc: JsonDoc, label: string): JsonDoc['syncs'][number]['tables'][number] => {
  const t = doc.syncs[0]!.tables.find((x) => x.table === label);
  assert.ok(t, `no table ${label} in ${JSON.stringify(doc.syncs[0]!.tables.map((x) => x.table))}`);
  return t;
};

const conflictLog = async (): Promise<Record<string, unknown>[]> =>
  env.query(0, `SELECT relname, key::text AS key, kind, strategy, winner, winner_row::text AS winner_row, losers::text AS losers, status, run FROM ibex.conflict WHERE sync = 'v' ORDER BY id`, [], 'ibexctl');

describe('ibex validate', () => {
  before(async () => {
    await env.clusters[1]!.createDatabase('app2');
    for (const db of ['A', 'B', 'C'] as const) {
      await q(db, DDL);
      await q(db, SEED);
    }
    await setupControl(env, { A: 0, B: 1 });
    await setupControl(env, { C: 1 }, 'app2');
    await addSync(env, 'v', {
      dbs: { A: 'source', B: 'source', C: 'target' },
      tables: ['public.items', 'Odd Schema.Comp Key', 'seq:public.s'],
      priority: { B: 5 },
    });
    await addSync(env, 'w', { dbs: { A: 'source', B: 'target' }, tables: ['public.other'] });
  });

  it('exits 0 when every table is identical on every db', async () => {
    const res = await env.cli('validate', 'v');
    assert.equal(res.code, 0, res.out + res.err);
    assert.match(res.out, /sync v: equal on A, B, C/);
    assert.match(res.out, /public\.items: equal \(rows: A 3000, B 3000, C 3000/);
    assert.match(res.out, /"Odd Schema"\."Comp Key"|Odd Schema\.Comp Key: equal/);
    const { res: j, doc } = await validateJson('v');
    assert.equal(j.code, 0);
    assert.equal(doc.equal, true);
    const items = tableOf(doc, 'public.items');
    assert.equal(items.status, 'equal');
    assert.ok(items.buckets >= 16, `3000 rows should get several buckets, got ${items.buckets}`);
    assert.equal(items.differingBuckets, 0);
  });

  it('exits 6 naming a key changed behind ibex\'s back, with both versions', async () => {
    await behindBack('B', `UPDATE items SET name = 'changed on B' WHERE id = 17`);
    const res = await env.cli('validate', 'v');
    assert.equal(res.code, 6, res.out + res.err);
    assert.match(res.out, /public\.items: 1 differing key/);
    assert.match(res.out, /key id="17" — differs in name/);
    assert.match(res.out, /A: name="item 17"/);
    assert.match(res.out, /B: name="changed on B"/);
    assert.match(res.out, /C: name="item 17"/);
    assert.match(res.out, /--repair --from=<db>/);
    const { res: j, doc } = await validateJson('v');
    assert.equal(j.code, 6);
    const t = tableOf(doc, 'public.items');
    assert.equal(t.status, 'different');
    assert.equal(t.differences, 1);
    assert.equal(t.differingBuckets, 1);
    assert.deepEqual(t.keys[0]!.key, { id: '17' });
    const byDb = Object.fromEntries(t.keys[0]!.versions.map((v) => [v.db, v]));
    assert.equal(byDb.A!.row!.name, 'item 17');
    assert.equal(byDb.B!.row!.name, 'changed on B');
    assert.equal(byDb.A!.row!.price, '21.25');
    assert.notEqual(byDb.A!.hash, byDb.B!.hash);
    assert.equal(byDb.A!.hash, byDb.C!.hash);
    await behindBack('B', `UPDATE items SET name = 'item 17' WHERE id = 17`);
    assert.equal((await env.cli('validate', 'v')).code, 0);
  });

  it('reports a missing and an extra row, and differences in awkward keys and values', async () => {
    await behindBack('C', `DELETE FROM items WHERE id = 2500`);
    await behindBack('A', `INSERT INTO items (id, name) VALUES (9001, 'only on A')`);
    await behindBack('B', `UPDATE "Odd Schema"."Comp Key" SET v = NULL, extra = '{"x": [1, 3]}' WHERE region = 'o''brien "q"'`);
    await behindBack('C', `UPDATE "Odd Schema"."Comp Key" SET v = 'z' WHERE region = 'ü ☃'`);
    await behindBack('A', `UPDATE items SET data = '\\x00ff'::bytea WHERE id = 30`);
    const { res, doc } = await validateJson('v');
    assert.equal(res.code, 6, res.out + res.err);
    const items = tableOf(doc, 'public.items');
    assert.equal(items.differences, 3);
    assert.deepEqual(items.rows, { A: 3001, B: 3000, C: 2999 });
    const key = (id: string): JsonDoc['syncs'][number]['tables'][number]['keys'][number] => {
      const k = items.keys.find((x) => x.key.id === id);
      assert.ok(k, `key ${id} not listed: ${JSON.stringify(items.keys.map((x) => x.key))}`);
      return k;
    };
    const missing = Object.fromEntries(key('2500').versions.map((v) => [v.db, v.row]));
    assert.equal(missing.C, null);
    assert.equal(missing.A!.name, 'item 2500');
    assert.equal(missing.A!.note, 'n2500');
    const extra = Object.fromEntries(key('9001').versions.map((v) => [v.db, v.row]));
    assert.deepEqual([extra.B, extra.C], [null, null]);
    assert.equal(extra.A!.name, 'only on A');
    assert.equal(extra.A!.price, null);
    const bytes = Object.fromEntries(key('30').versions.map((v) => [v.db, v.row]));
    assert.equal(bytes.A!.data, '\\x00ff');
    assert.match(String(bytes.B!.data), /^\\x[0-9a-f]{32}$/);

    const comp = tableOf(doc, 'Odd Schema.Comp Key');
    assert.equal(comp.differences, 2);
    const quoted = comp.keys.find((k) => k.key.region === 'o\'brien "q"');
    assert.ok(quoted, JSON.stringify(comp.keys));
    assert.deepEqual(quoted.key, { region: 'o\'brien "q"', num: '1.50', ts: '2024-02-29 23:59:59.123456+00' });
    const qv = Object.fromEntries(quoted.versions.map((v) => [v.db, v.row]));
    assert.equal(qv.A!.v, 'a');
    assert.equal(qv.B!.v, null);
    assert.equal(qv.B!.extra, '{"x": [1, 3]}');
    const snow = comp.keys.find((k) => k.key.region === 'ü ☃');
    assert.deepEqual(snow?.key, { region: 'ü ☃', num: '-0.000001', ts: '1999-12-31 23:00:00+00' });
    assert.equal(snow.versions.find((v) => v.db === 'C')!.row!.v, 'z');
    assert.equal(snow.versions.find((v) => v.db === 'A')!.row!.v, null);
    const text = await env.cli('validate', 'v');
    assert.match(text.out, /key id="2500"\n\s+A: \{"id":"2500","name":"item 2500"/);
    assert.match(text.out, /C: missing/);
  });

  it('limits the run to one table with table= (or --table=)', async () => {
    const { res, doc } = await validateJson('v', 'table=public.items');
    assert.equal(res.code, 6);
    assert.deepEqual(doc.syncs[0]!.tables.map((t) => t.table), ['public.items']);
    assert.deepEqual(doc.syncs[0]!.sequences, []);
    const other = await validateJson('v', '--table=Odd Schema.Comp Key');
    assert.deepEqual(other.doc.syncs[0]!.tables.map((t) => t.table), ['Odd Schema.Comp Key']);
    const none = await env.cli('validate', 'v', 'table=public.nope');
    assert.equal(none.code, 2, none.err);
    assert.match(none.err, /no table or sequence public\.nope in sync "v"/);
  });

  it('repairs from a named db, logs every overwritten version, and validates clean afterwards', async () => {
    const before = (await conflictLog()).length;
    const dry = await env.cli('validate', 'v', '--repair', '--from=A', '--dry-run');
    assert.equal(dry.code, 6, dry.out + dry.err);
    assert.match(dry.out, /would repair 5 key\(s\) from A on B, C/);
    assert.equal((await conflictLog()).length, before);
    assert.equal((await q('C', `SELECT count(*) AS n FROM items WHERE id = 2500`))[0]!.n, '0');

    const res = await env.cli('validate', 'v', '--repair', '--from', 'A');
    assert.equal(res.code, 0, res.out + res.err);
    assert.match(res.out, /repaired 5 key\(s\) from A on B, C/);
    assert.match(res.out, /sync v: equal on A, B, C/);
    for (const db of ['B', 'C'] as const) {
      assert.deepEqual(await tableRows(await env.client(DBS[db][0], DBS[db][1]), 'items'), await tableRows(await env.client(0), 'items'), `items on ${db}`);
    }
    assert.equal((await q('B', `SELECT v FROM "Odd Schema"."Comp Key" WHERE region = 'o''brien "q"'`))[0]!.v, 'a');

    const log = (await conflictLog()).slice(before);
    assert.equal(log.length, 5, JSON.stringify(log));
    for (const x of log) {
      assert.equal(x.strategy, 'repair');
      assert.equal(x.status, 'applied');
      assert.equal(x.winner, 'A');
      assert.equal(x.run, null);
    }
    const find = (rel: string, keyPart: string): Record<string, unknown> => {
      const x = log.find((l) => l.relname === rel && String(l.key).includes(keyPart));
      assert.ok(x, `no conflict record for ${rel} ${keyPart}: ${JSON.stringify(log)}`);
      return x;
    };
    const e = find('items', '9001');
    assert.equal(e.kind, 'update_delete');
    assert.deepEqual(JSON.parse(String(e.key)), { id: 9001 });
    assert.deepEqual((JSON.parse(String(e.losers)) as { db: string; row: unknown }[]).map((l) => [l.db, l.row]).sort(), [['B', null], ['C', null]]);
    const m = find('items', '2500');
    assert.equal(m.kind, 'update_delete');
    assert.deepEqual((JSON.parse(String(m.losers)) as { db: string }[]).map((l) => l.db), ['C']);
    const u = find('items', '"id": 30');
    assert.equal(u.kind, 'update_update');
    const uLosers = JSON.parse(String(u.losers)) as { db: string; row: { data: string } }[];
    assert.deepEqual(uLosers.map((l) => l.db).sort(), ['B', 'C']);
    assert.match(uLosers[0]!.row.data, /^\\x[0-9a-f]{32}$/);
    assert.equal((JSON.parse(String(u.winner_row)) as { data: string }).data, '\\x00ff');
    const c = find('Comp Key', 'brien');
    assert.deepEqual(JSON.parse(String(c.key)), { region: 'o\'brien "q"', num: 1.50, ts: '2024-02-29T23:59:59.123456+00:00' });
    assert.deepEqual((JSON.parse(String(c.losers)) as { db: string; row: { v: unknown } }[]).map((l) => [l.db, l.row.v]), [['B', null]]);

    // The repair is not sent back or around by the sync: nothing is pending, the next run is empty.
    const r = runner(env, 'v');
    const run = await runOk(r);
    assert.equal(run.status, 'empty', JSON.stringify(run));
    const again = await validateJson('v');
    assert.equal(again.res.code, 0, again.res.out);
    assert.equal(again.doc.inFlight, 0);
  });

  it('repairs from the db with the highest priority when --from is left out', async () => {
    await behindBack('A', `UPDATE items SET name = 'A drifted' WHERE id = 40`);
    const res = await env.cli('validate', 'v', '--repair');
    assert.equal(res.code, 0, res.out + res.err);
    assert.match(res.out, /repaired 1 key\(s\) from B on A, C/);
    assert.equal((await q('A', `SELECT name FROM items WHERE id = 40`))[0]!.name, 'item 40');
    const log = await conflictLog();
    const last = log[log.length - 1]!;
    assert.equal(last.winner, 'B');
    assert.equal(last.kind, 'update_update');
    assert.deepEqual((JSON.parse(String(last.losers)) as { db: string; row: { name: string } }[]).map((l) => [l.db, l.row.name]), [['A', 'A drifted']]);
  });

  it('reports keys with changes the sync has not consumed as in flight, not as differences', async () => {
    await q('A', `INSERT INTO items (id, name) VALUES (9100, 'new on A'); UPDATE items SET note = 'edited on A' WHERE id = 41`);
    await q('B', `DELETE FROM "Odd Schema"."Comp Key" WHERE region = 'comma, (paren)'`);
    const { res, doc } = await validateJson('v');
    assert.equal(res.code, 0, res.out + res.err);
    assert.equal(doc.equal, true);
    assert.equal(doc.inFlight, 3);
    const items = tableOf(doc, 'public.items');
    assert.equal(items.status, 'equal');
    assert.equal(items.differences, 0);
    assert.deepEqual(items.inFlightKeys, [{ key: { id: '41' }, pendingOn: ['A'] }, { key: { id: '9100' }, pendingOn: ['A'] }]);
    assert.deepEqual(tableOf(doc, 'Odd Schema.Comp Key').inFlightKeys.map((k) => k.pendingOn), [['B']]);
    const text = await env.cli('validate', 'v');
    assert.equal(text.code, 0);
    assert.match(text.out, /3 key\(s\) in flight/);
    assert.match(text.out, /in flight: key id="9100" \(pending on A\)/);
    // An in-flight key that also drifted elsewhere is still only in flight (the sync will settle it).
    await runOk(runner(env, 'v'));
    const after = await validateJson('v');
    assert.equal(after.res.code, 0, after.res.out);
    assert.equal(after.doc.inFlight, 0);
    assert.equal((await q('C', `SELECT name FROM items WHERE id = 9100`))[0]!.name, 'new on A');
  });

  it('with wait=, reads in-flight keys again until the sync consumed them', async () => {
    await q('A', `UPDATE items SET note = 'waited for' WHERE id = 42`);
    const validating = validateJson('v', 'table=public.items', 'wait=60');
    await new Promise((res) => setTimeout(res, 1500));
    await runOk(runner(env, 'v'));
    const { res, doc } = await validating;
    assert.equal(res.code, 0, res.out + res.err);
    assert.equal(doc.inFlight, 0, res.out);
    assert.equal((await q('C', `SELECT note FROM items WHERE id = 42`))[0]!.note, 'waited for');
  });

  it('never reports a difference while writers and the sync are running', async () => {
    const r = runner(env, 'v');
    let stop = false;
    let writes = 0;
    const writer = async (db: 'A' | 'B'): Promise<void> => {
      const [i, name] = DBS[db];
      const c = await env.client(i, name);
      for (let n = 0; !stop; n++) {
        const id = 1 + ((n * 7919 + (db === 'A' ? 0 : 1500)) % 3000);
        await c.query(`UPDATE items SET note = $2 WHERE id = $1`, [id, `${db} ${n}`]);
        await c.query(`INSERT INTO items (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`, [20_000 + (n % 50) + (db === 'A' ? 0 : 50), `${db} ${n}`]);
        writes++;
        await new Promise((res) => setTimeout(res, 5));
      }
    };
    const runs = async (): Promise<void> => {
      while (!stop) {
        const res = await r.run('delta');
        if (res.status === 'failed' && !res.transient) throw new Error(`run failed: ${res.error}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    const work = Promise.all([writer('A'), writer('B'), runs()]);
    try {
      for (let i = 0; i < 3; i++) {
        const { res } = await validateJson('v', 'table=public.items');
        assert.equal(res.code, 0, `a difference was reported while the sync was running: ${res.out} ${res.err}`);
      }
      assert.ok(writes > 0);
    } finally {
      stop = true;
      await work;
    }
    await runOk(r);
    await runOk(r);
    const settled = await validateJson('v');
    assert.equal(settled.res.code, 0, settled.res.out);
    assert.equal(settled.doc.inFlight, 0, settled.res.out);
  });

  it('reports a pending truncate as putting every differing key of its table in flight', async () => {
    await q('B', `TRUNCATE "Odd Schema"."Comp Key"`);
    const { res, doc } = await validateJson('v', 'table=Odd Schema.Comp Key');
    assert.equal(res.code, 0, res.out + res.err);
    const t = tableOf(doc, 'Odd Schema.Comp Key');
    assert.equal(t.inFlight, 3);
    assert.ok(t.inFlightKeys.every((k) => k.pendingOn.join() === 'B (truncate)'), JSON.stringify(t.inFlightKeys));
    await runOk(runner(env, 'v'));
    const after = await validateJson('v');
    assert.equal(after.res.code, 0);
    assert.equal(tableOf(after.doc, 'Odd Schema.Comp Key').rows.A, 0);
  });

  it('reports sequences: a db behind is shown but is not a difference', async () => {
    await q('A', `SELECT setval('s', 500)`);
    const { res, doc } = await validateJson('v');
    assert.equal(res.code, 0);
    const s = doc.syncs[0]!.sequences[0]!;
    assert.equal(s.sequence, 'public.s');
    assert.equal(s.status, 'behind');
    assert.deepEqual(s.values, { A: '500', B: '0', C: '0' });
    assert.deepEqual(s.behind, ['B', 'C']);
    await runOk(runner(env, 'v'));
    const after = await validateJson('v');
    assert.equal(after.doc.syncs[0]!.sequences[0]!.status, 'equal');
  });

  it('exits 6 when a table\'s columns differ on a db, without comparing its rows', async () => {
    await q('C', `ALTER TABLE items ADD COLUMN surprise int`);
    try {
      const { res, doc } = await validateJson('v', 'table=public.items');
      assert.equal(res.code, 6);
      const t = tableOf(doc, 'public.items');
      assert.equal(t.status, 'schema');
      assert.equal(t.schema?.[0]?.db, 'C');
      assert.match(t.schema![0]!.problem, /surprise integer/);
    } finally {
      await q('C', `ALTER TABLE items DROP COLUMN surprise`);
    }
  });

  it('validates every sync with "all"', async () => {
    await behindBack('B', `UPDATE other SET v = 'drift' WHERE id = 3`);
    const { res, doc } = await validateJson('all');
    assert.equal(res.code, 6, res.out + res.err);
    assert.deepEqual(doc.syncs.map((s) => [s.sync, s.equal]), [['v', true], ['w', false]]);
    assert.equal(doc.differences, 1);
    const fixed = await env.cli('validate', 'all', '--repair');
    assert.equal(fixed.code, 0, fixed.out + fixed.err);
    assert.match(fixed.out, /sync w: repaired 1 key\(s\) from A on B/);
    assert.equal((await q('B', `SELECT v FROM other WHERE id = 3`))[0]!.v, 'o3');
  });

  it('repairs and logs a bigint key beyond 2^53 as itself, not as its neighbour', async () => {
    for (const db of ['A', 'B'] as const) await behindBack(db, `INSERT INTO other VALUES (9007199254740992, 'neighbour'), (9007199254740993, 'o-big')`);
    await behindBack('B', `UPDATE other SET v = 'drift' WHERE id = 9007199254740993`);
    const fixed = await env.cli('validate', 'w', '--repair', '--from=A');
    assert.equal(fixed.code, 0, fixed.out + fixed.err);
    assert.deepEqual(await q('B', `SELECT id::text, v FROM other WHERE id >= 9007199254740992 ORDER BY id`),
      [{ id: '9007199254740992', v: 'neighbour' }, { id: '9007199254740993', v: 'o-big' }]);
    const log = await env.query(0, `SELECT key::text AS key, losers::text AS losers FROM ibex.conflict WHERE sync = 'w' AND strategy = 'repair' ORDER BY id DESC LIMIT 1`, [], 'ibexctl');
    assert.equal(log[0]!.key, '{"id": 9007199254740993}');
    assert.match(String(log[0]!.losers), /"id": 9007199254740993/);
  });

  it('prints a machine-readable document with --json', async () => {
    const { res, doc } = await validateJson('v');
    assert.equal(res.code, 0);
    assert.deepEqual(Object.keys(doc).sort(), ['differences', 'equal', 'inFlight', 'keyRisks', 'repairs', 'syncs']);
    const s = doc.syncs[0]!;
    assert.deepEqual(Object.keys(s).sort(), ['dbs', 'differences', 'equal', 'inFlight', 'ms', 'sequences', 'skipped', 'sync', 'tables']);
    assert.deepEqual(s.dbs, ['A', 'B', 'C']);
    assert.deepEqual(Object.keys(s.tables[0]!).sort(), ['buckets', 'differences', 'differingBuckets', 'inFlight', 'inFlightKeys', 'keys', 'ms', 'rows', 'status', 'table']);
    assert.equal(res.err, '');
  });

  it('exits 1 with a one-line message when a db cannot be reached', async () => {
    const port = (await env.query(0, `SELECT port FROM ibex.db WHERE name = 'C'`, [], 'ibexctl'))[0]!.port;
    await env.query(0, `UPDATE ibex.db SET port = 1 WHERE name = 'C'`, [], 'ibexctl');
    try {
      const res = await env.cli('validate', 'v');
      assert.equal(res.code, 1, res.out + res.err);
      assert.match(res.err, /^ibex: db C of sync v is unreachable/);
      assert.equal(res.err.trim().split('\n').length, 1);
    } finally {
      await env.query(0, `UPDATE ibex.db SET port = $1 WHERE name = 'C'`, [port], 'ibexctl');
    }
  });

  it('refuses an unknown sync and bad arguments with exit 2 and a one-line message', async () => {
    const unknown = await env.cli('validate', 'nosuch');
    assert.equal(unknown.code, 2);
    assert.equal(unknown.err.trim().split('\n').length, 1);
    assert.match(unknown.err, /no sync named "nosuch": list them with "ibex list syncs"/);
    assert.equal(unknown.out, '');
    for (const [args, msg] of [
      [[], /name one sync, or "all"/],
      [['v', 'w'], /name one sync, or "all"/],
      [['v', '--from=A'], /add --repair/],
      [['v', '--repair', '--from=Z'], /db "Z" is not in sync "v"/],
      [['v', '--bogus'], /unknown flag "--bogus"/],
      [['v', 'colour=red'], /unknown option "colour"/],
      [['v', 'table=a.b.c'], /bad table name/],
    ] as const) {
      const r = await env.cli('validate', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.out} ${r.err}`);
      assert.match(r.err, msg);
    }
  });
});

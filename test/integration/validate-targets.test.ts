import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { useClusters, ok } from '../helpers/env.js';
import { setupControl, addSync, closeRunners } from '../helpers/sync.js';
import { adminConnection, freshDatabase } from '../helpers/mariadb-server.js';
import { privateRedis, type RedisServer } from '../helpers/redis-server.js';
import { openTarget } from '../../src/targets/registry.js';
import { tableSpec } from '../../src/targets/spec.js';
import { tableInfo } from '../../src/db/catalog.js';
import { canonicalRow } from '../../src/validate/foreign.js';
import type { Target, TableSpec, TargetParams, TextRow } from '../../src/targets/target.js';

// validate and --repair on every target of another kind that is live here (a SQLite file, a
// MariaDB database, a private Redis), each the target of its own one-way sync from the same
// source table, compared through canonical values: the rows are written into the targets
// directly, so the test does not depend on the engine.
const env = useClusters(1);
const dir = mkdtempSync(join(tmpdir(), 'ibex-vt-'));
let maria: { dbname: string; drop(): Promise<void> } | undefined;
let redis: RedisServer | undefined;
let spec: TableSpec;

/** A target kind: its db, its sync, how the CLI adds it, how a test reaches it. */
interface Kind {
  db: string;
  sync: string;
  addArgs(): string[];
  params(): TargetParams;
  /** Run the DDL the target's createTableSql gives. */
  exec(stmts: string[]): Promise<void>;
  target?: Target;
}

const file = join(dir, 'shop.sqlite');
const KINDS: Kind[] = [
  {
    db: 'S', sync: 'tosql',
    addArgs: () => ['type=sqlite', `dbname=${file}`],
    params: () => ({ name: 'S', kind: 'sqlite', dbname: file }),
    exec: async (stmts) => {
      const d = new Database(file);
      for (const s of stmts) d.exec(s);
      d.close();
    },
  },
  {
    db: 'M', sync: 'tomaria',
    addArgs: () => ['type=mariadb', 'host=127.0.0.1', 'port=3306', 'user=root', `dbname=${maria!.dbname}`],
    params: () => ({ name: 'M', kind: 'mariadb', host: '127.0.0.1', port: 3306, user: 'root', dbname: maria!.dbname }),
    exec: async (stmts) => {
      const c = await adminConnection(3306, maria!.dbname);
      try {
        for (const s of stmts) await c.query(s);
      } finally {
        await c.end();
      }
    },
  },
  {
    db: 'R', sync: 'toredis',
    addArgs: () => ['type=redis', 'host=127.0.0.1', `port=${redis!.port}`, 'dbname=0'],
    params: () => ({ name: 'R', kind: 'redis', host: '127.0.0.1', port: redis!.port, dbname: '0' }),
    exec: async (stmts) => assert.deepEqual(stmts, [], 'Redis needs no DDL'),
  },
];

before(async () => {
  maria = await freshDatabase();
  redis = await privateRedis();
  await redis.start();
});

after(async () => {
  for (const k of KINDS) await k.target?.close();
  await closeRunners();
  await maria?.drop();
  await redis?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function sourceRows(): Promise<TextRow[]> {
  const rows = await env.query(0, `SELECT to_json(ARRAY[id::text, name, price::text, at::text, tags::text, blob::text])::text AS r FROM item ORDER BY id`);
  return rows.map((x) => JSON.parse(String(x.r)) as TextRow);
}

/** A target's rows as its scan gives them (canonical text), in key order. */
async function targetRows(t: Target): Promise<TextRow[]> {
  const out: TextRow[] = [];
  for await (const row of t.scan(spec)) out.push(row);
  return out.sort((a, b) => Number(a[0]) - Number(b[0]));
}

type ValidateDoc = {
  differences: number;
  syncs: { dbs: string[]; tables: { rows: Record<string, number>; status: string; keys: { key: Record<string, string>; versions: { db: string; row: Record<string, string | null> | null }[] }[] }[] }[];
};

describe('validate on targets of other kinds', () => {
  it('set up: a source table, and its twin in SQLite, MariaDB and Redis, each the target of a sync', async () => {
    await env.query(0, `CREATE TABLE item (id int PRIMARY KEY, name text, price numeric(10,2), at timestamptz, tags text[], blob bytea);
      INSERT INTO item SELECT g, 'item ' || g || E' \\t tab', g * 1.5, '2024-05-06 07:08:09.123456+02'::timestamptz + g * interval '1 hour',
                              ARRAY['a', NULL, 'q"uote'], decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex') FROM generate_series(1, 500) g;
      UPDATE item SET name = NULL WHERE id = 7;
      UPDATE item SET name = '' WHERE id = 11`);
    await setupControl(env, { A: 0 });
    const c = await env.client(0);
    spec = tableSpec((await tableInfo(c, 'public', 'item'))!, ['id']);
    const rows = await sourceRows();
    new Database(file).close(); // add db opens only a SQLite file that exists
    for (const k of KINDS) {
      ok(await env.cli('add', 'db', k.db, ...k.addArgs()));
      await addSync(env, k.sync, { dbs: { A: 'source', [k.db]: 'target' }, tables: ['public.item'] });
      const t = await openTarget(k.params());
      k.target = t;
      await k.exec(t.createTableSql(spec));
      await t.begin();
      const out = await t.upsertRows(spec, rows);
      assert.equal(out.refused.length, 0, `${k.db}: ${JSON.stringify(out.refused)}`);
      await t.commit();
    }
  });

  for (const k of KINDS) {
    it(`${k.db} (${k.sync}): says equal when the target holds the same values (in its own types)`, async () => {
      const r = await env.cli('validate', k.sync, '--json');
      assert.equal(r.code, 0, r.out + r.err);
      const doc = JSON.parse(r.out) as ValidateDoc;
      assert.deepEqual(doc.syncs[0]!.dbs, ['A', k.db]);
      assert.equal(doc.syncs[0]!.tables[0]!.status, 'equal');
      assert.deepEqual(doc.syncs[0]!.tables[0]!.rows, { A: 500, [k.db]: 500 });
    });

    it(`${k.db} (${k.sync}): lists a missing, an extra and changed rows (exit 6); a dry run changes nothing; --repair makes them equal`, async () => {
      const t = k.target!;
      const src = new Map((await sourceRows()).map((r) => [r[0], r]));
      const with_ = (id: string, col: number, v: string | null): TextRow => src.get(id)!.map((x, i) => (i === col ? v : x));
      await t.begin();
      await t.upsertRows(spec, [
        with_('3', 1, 'changed on the target'),
        with_('7', 1, ''), // empty string where the source has NULL
        with_('11', 1, null), // NULL where the source has an empty string
        with_('12', 5, '\\x00ff000e'), // bytea changed
        with_('13', 3, '2024-05-06 18:08:09.123457+00'), // timestamptz one microsecond later
        ['9999', 'only on the target', null, null, null, null],
      ]);
      await t.deleteKeys(spec, [['4']]);
      await t.commit();
      const planted = await targetRows(t);

      const r = await env.cli('validate', k.sync, '--json');
      assert.equal(r.code, 6, r.out + r.err);
      const doc = JSON.parse(r.out) as ValidateDoc;
      assert.equal(doc.differences, 7);
      const table = doc.syncs[0]!.tables[0]!;
      assert.equal(table.status, 'different');
      assert.deepEqual(table.rows, { A: 500, [k.db]: 500 });
      const version = (id: string, db: string): Record<string, string | null> | null =>
        table.keys.find((x) => x.key.id === id)!.versions.find((v) => v.db === db)!.row;
      assert.deepEqual(table.keys.map((x) => x.key.id).sort(), ['11', '12', '13', '3', '4', '7', '9999']);
      assert.equal(version('3', k.db)!.name, 'changed on the target');
      assert.equal(version('3', 'A')!.name, 'item 3 \t tab');
      assert.equal(version('4', k.db), null);
      assert.equal(version('9999', 'A'), null);
      assert.equal(version('9999', k.db)!.name, 'only on the target');
      assert.deepEqual([version('7', 'A')!.name, version('7', k.db)!.name], [null, '']);
      assert.deepEqual([version('11', 'A')!.name, version('11', k.db)!.name], ['', null]);
      assert.deepEqual([version('12', 'A')!.blob, version('12', k.db)!.blob], ['\\x00ff000c', '\\x00ff000e']);
      assert.deepEqual([version('13', 'A')!.at, version('13', k.db)!.at], ['2024-05-06T18:08:09.123456Z', '2024-05-06T18:08:09.123457Z']);
      // The text report names every differing key and, for rows on both sides, the column.
      const text = await env.cli('validate', k.sync);
      assert.equal(text.code, 6, text.out + text.err);
      for (const [id, what] of [['3', 'name'], ['7', 'name'], ['11', 'name'], ['12', 'blob'], ['13', 'at']]) {
        assert.match(text.out, new RegExp(`key id="${id}" — differs in ${what}\\n`), text.out);
      }
      assert.match(text.out, new RegExp(`key id="4"\\n(?:.*\\n)*? {6}${k.db}: missing`), text.out);
      assert.match(text.out, /key id="9999"\n {6}A: missing/, text.out);

      // A dry run reports what it would do and leaves the target as it was (Redis, which has no
      // transactions, is not written at all).
      const dry = await env.cli('validate', k.sync, '--repair', '--from=A', '--dry-run');
      assert.equal(dry.code, 6, dry.out + dry.err);
      assert.match(dry.out, new RegExp(`would repair 7 key\\(s\\) from A on ${k.db}\\n`), dry.out);
      assert.match(dry.out, new RegExp(`public\\.item: 7 differing key\\(s\\); changed: ${k.db} 7\\n`), dry.out);
      assert.match(dry.out, /dry run: nothing was changed/);
      assert.deepEqual(await targetRows(t), planted, 'the dry run changed the target');

      const fixed = await env.cli('validate', k.sync, '--repair', '--from=A');
      assert.equal(fixed.code, 0, fixed.out + fixed.err);
      assert.match(fixed.out, /repaired 7 key\(s\) from A/);
      // What the repair overwrote is in the conflict log, as for a PostgreSQL target.
      const log = JSON.parse(ok(await env.cli('conflicts', k.sync, '--json')).out) as
        { key: Record<string, number | undefined>; kind: string; strategy: string; winner: string; status: string; winnerRow: Record<string, string | null> | null; losers: { db: string; row: Record<string, string | null> | null }[] }[];
      // Keys and winning rows typed as for a PostgreSQL target; the target's version as validate read it.
      assert.deepEqual(log.map((c) => Number(c.key.id)).sort((a, b) => a - b), [3, 4, 7, 11, 12, 13, 9999]);
      for (const c of log) {
        assert.deepEqual([c.strategy, c.status, c.winner, c.losers.map((l) => l.db)], ['repair', 'applied', 'A', [k.db]], JSON.stringify(c));
      }
      const entry = (id: string): (typeof log)[number] => log.find((c) => String(c.key.id) === id)!;
      assert.deepEqual([entry('3').kind, entry('3').winnerRow!.name, entry('3').losers[0]!.row!.name], ['update_update', 'item 3 \t tab', 'changed on the target']);
      assert.deepEqual([entry('4').kind, entry('4').losers[0]!.row], ['update_delete', null]);
      assert.deepEqual([entry('9999').kind, entry('9999').winnerRow, entry('9999').losers[0]!.row!.name], ['delete_update', null, 'only on the target']);
      assert.deepEqual(await targetRows(t), (await sourceRows()).map((row) => canonicalRow(spec, row)));
      const again = await env.cli('validate', k.sync);
      assert.equal(again.code, 0, again.out + again.err);
      assert.match(again.out, new RegExp(`sync ${k.sync}: equal on A, ${k.db}`));
    });
  }
});

describe('a repair a target refuses', () => {
  it('names the refused key and the reason, and the key stays a difference (exit 6)', async () => {
    const m = KINDS.find((k) => k.db === 'M')!;
    // Written without capture, so the key is not in flight: a NaN MariaDB's DECIMAL cannot hold.
    const c = await env.client(0);
    try {
      await c.query(`BEGIN; SET LOCAL ibex.nocapture = 'on'; UPDATE item SET price = 'NaN' WHERE id = 20; COMMIT`);
    } finally {
      await c.end();
    }
    const r = await env.cli('validate', m.sync, '--repair', '--from=A');
    assert.equal(r.code, 6, r.out + r.err);
    assert.match(r.out, /public\.item: 1 differing key\(s\); changed: M 0\n/, r.out);
    assert.match(r.out, /\n {4}refused on M: key id="20": .*price.*\n/, r.out);
    const j = await env.cli('validate', m.sync, '--repair', '--from=A', '--json');
    assert.equal(j.code, 6, j.out + j.err);
    const doc = JSON.parse(j.out) as
      { repairs: { tables: { refused: { db: string; key: Record<string, string>; reason: string }[] }[] }[] };
    assert.deepEqual(doc.repairs[0]!.tables[0]!.refused.map((x) => [x.db, x.key]), [['M', { id: '20' }]]);
    const log = JSON.parse(ok(await env.cli('conflicts', m.sync, '--json')).out) as { key: Record<string, unknown> }[];
    assert.equal(log.filter((x) => String(x.key.id) === '20').length, 0, 'a refused row is not logged as overwritten');
  });
});

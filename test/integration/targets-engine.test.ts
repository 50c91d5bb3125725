/**
 * Issue #13 end to end: the engine and the CLI against REAL targets of other kinds — MariaDB (a
 * fresh database on the shared server, and a private mariadbd a test stops), a SQLite file, and a
 * private redis-server — configured through the CLI (`add db type=…`, `ibex schema`, `add sync`)
 * and replicated by the runner from a 2-master pair A, B. The targets' rows are read back through
 * their own scan (canonical text) and compared with the source's text output.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { useClusters, ok } from '../helpers/env.js';
import { runner, runOk, closeRunners } from '../helpers/sync.js';
import { adminConnection, freshDatabase, privateMariadb, type PrivateMariadb } from '../helpers/mariadb-server.js';
import { privateRedis, type RedisServer } from '../helpers/redis-server.js';
import { canonicalText } from '../../src/targets/codec.js';
import { openTarget } from '../../src/targets/registry.js';
import type { TableSpec, Target, TargetParams, TextRow } from '../../src/targets/target.js';

const env = useClusters(2);
after(closeRunners);

/** The tables of the sync: name → [column, PostgreSQL type][] and key. */
const TABLES: Record<string, { cols: [string, string][]; keys: string[] }> = {
  t1: { cols: [['id', 'integer'], ['v', 'text'], ['b', 'bytea'], ['n', 'numeric(20,6)'], ['ts', 'timestamp with time zone']], keys: ['id'] },
  comp: { cols: [['a', 'integer'], ['k', 'text'], ['v', 'text']], keys: ['a', 'k'] },
  big: { cols: [['id', 'integer'], ['v', 'text']], keys: ['id'] },
  dn: { cols: [['id', 'integer'], ['v', 'text']], keys: ['id'] },
  fc: { cols: [['id', 'integer'], ['v', 'text'], ['b', 'bytea'], ['n', 'numeric(20,6)'], ['ts', 'timestamp with time zone']], keys: ['id'] },
  rk: { cols: [['id', 'integer'], ['v', 'text'], ['n', 'numeric(20,6)']], keys: ['id'] },
};
const DDL = `CREATE TABLE t1 (id int PRIMARY KEY, v text, b bytea, n numeric(20,6), ts timestamptz);
  CREATE TABLE comp (a int, k text, v text, PRIMARY KEY (a, k));
  CREATE TABLE big (id int PRIMARY KEY, v text);
  CREATE TABLE dn (id int PRIMARY KEY, v text);
  CREATE TABLE fc (id int PRIMARY KEY, v text, b bytea, n numeric(20,6), ts timestamptz);`;

const spec = (table: string): TableSpec => ({
  label: `public.${table}`, schema: 'public', name: table, targetName: table,
  columns: TABLES[table]!.cols.map(([name, type]) => ({ name, type, notNull: TABLES[table]!.keys.includes(name) })), keys: TABLES[table]!.keys,
});

const sortRows = (rows: TextRow[]): TextRow[] => rows.map((r) => JSON.stringify(r)).sort().map((j) => JSON.parse(j) as TextRow);

/** A table's rows on cluster i, each value as the codec's canonical text (what a target's scan gives). */
async function sourceRows(i: number, table: string): Promise<TextRow[]> {
  const cols = TABLES[table]!.cols;
  const r = await env.query(i, `SELECT ${cols.map(([c], n) => `${c}::text AS c${n}`).join(', ')} FROM ${table}`);
  return sortRows(r.map((x) => cols.map(([, type], n) => canonicalText(type, x[`c${n}`] === null ? null : String(x[`c${n}`])))));
}

/** A table's rows on a target, read by a session of its own. */
async function targetRows(params: TargetParams, table: string): Promise<TextRow[]> {
  const t = await openTarget(params);
  try {
    const out: TextRow[] = [];
    for await (const row of t.scan(spec(table))) out.push(row);
    return sortRows(out);
  } finally {
    await t.close();
  }
}

/** The targets, each as the CLI adds it and as a test reads it back. */
interface Kind {
  db: string;
  params: TargetParams;
  addArgs: string[];
  /** Create the tables from the DDL `ibex schema` printed (nothing for Redis). */
  create(ddl: string): Promise<void>;
}

let maria: { dbname: string; drop(): Promise<void> };
let pm: PrivateMariadb;
let pmDb: { dbname: string; drop(): Promise<void> };
let redis: RedisServer;
let dir = '';
const kinds: Kind[] = [];
const byDb = (db: string): Kind => kinds.find((k) => k.db === db)!;

/** Run DDL on a MariaDB database, one statement at a time. */
async function mariaDdl(port: number, dbname: string, ddl: string): Promise<void> {
  const c = await adminConnection(port, dbname);
  try {
    for (const s of ddl.split(/;\s*\n/).map((x) => x.trim().replace(/;$/, '')).filter(Boolean)) await c.query(s);
  } finally {
    await c.end();
  }
}

before(async () => {
  maria = await freshDatabase();
  dir = mkdtempSync(join(tmpdir(), 'ibex-targets-e2e-'));
  redis = await privateRedis();
  await redis.start();
  pm = await privateMariadb();
  await pm.start();
  pmDb = await freshDatabase(pm.port);
  const file = join(dir, 'target.sqlite');
  // add db opens only a file that exists: an empty one, its tables made from ibex schema.
  new Database(file).close();
  kinds.push(
    {
      db: 'M', params: { name: 'M', kind: 'mariadb', host: '127.0.0.1', port: 3306, user: 'root', dbname: maria.dbname },
      addArgs: ['type=mariadb', 'host=127.0.0.1', 'port=3306', 'user=root', `dbname=${maria.dbname}`],
      create: (ddl) => mariaDdl(3306, maria.dbname, ddl),
    },
    {
      db: 'S', params: { name: 'S', kind: 'sqlite', dbname: file },
      addArgs: ['type=sqlite', `dbname=${file}`],
      create: async (ddl) => {
        const d = new Database(file);
        d.exec(ddl);
        d.close();
      },
    },
    {
      db: 'R', params: { name: 'R', kind: 'redis', host: '127.0.0.1', port: redis.port, dbname: '0' },
      addArgs: ['type=redis', 'host=127.0.0.1', `port=${redis.port}`, 'dbname=0'],
      create: async () => undefined,
    },
    {
      db: 'PM', params: { name: 'PM', kind: 'mariadb', host: '127.0.0.1', port: pm.port, user: 'root', dbname: pmDb.dbname },
      addArgs: ['type=mariadb', 'host=127.0.0.1', `port=${pm.port}`, 'user=root', `dbname=${pmDb.dbname}`],
      create: (ddl) => mariaDdl(pm.port, pmDb.dbname, ddl),
    },
  );
});

after(async () => {
  await maria?.drop();
  await pmDb?.drop().catch(() => undefined);
  await pm?.destroy();
  await redis?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Every target of the main sync holds what A and B hold (and A and B agree). */
async function converged(tables = ['t1', 'comp'], dbs = ['M', 'S', 'R']): Promise<void> {
  for (const t of tables) {
    const a = await sourceRows(0, t);
    assert.deepEqual(await sourceRows(1, t), a, `A and B differ on ${t}`);
    for (const db of dbs) assert.deepEqual(await targetRows(byDb(db).params, t), a, `db ${db} differs from A on ${t}`);
  }
}

/** A target wrapper whose commit goes through and then throws (a crash after the target committed). */
function commitsThenThrows(failDb: { name: string | undefined }): (p: TargetParams) => Promise<Target> {
  return async (p) => {
    const t = await openTarget(p);
    const commit = t.commit.bind(t);
    return Object.assign(Object.create(t) as Target, {
      commit: async () => {
        await commit();
        if (failDb.name === p.name) {
          failDb.name = undefined;
          throw new Error(`simulated crash after db ${p.name} committed`);
        }
      },
    });
  };
}

describe('targets of other kinds, end to end (MariaDB, SQLite, Redis)', () => {
  const crash = { name: undefined as string | undefined };
  let main: ReturnType<typeof runner>;

  it('set up through the CLI: add db type=…, ibex schema, add sync', async () => {
    for (const i of [0, 1]) await env.clusters[i]!.psql(DDL, 'app');
    ok(await env.cli('install'));
    for (const [name, i] of [['A', 0], ['B', 1]] as const) {
      const p = env.params(i);
      ok(await env.cli('add', 'db', name, `host=${p.host}`, `port=${p.port}`, 'dbname=app', `user=${p.user}`));
    }
    ok(await env.cli('add', 'table', 'public.t1', 'public.comp', 'db=A', 'relgroup=gmain'));
    ok(await env.cli('add', 'table', 'public.big', 'db=A', 'relgroup=gbig'));
    ok(await env.cli('add', 'table', 'public.dn', 'db=A', 'relgroup=gdn'));
    ok(await env.cli('add', 'table', 'public.fc', 'db=A', 'relgroup=gfc'));
    for (const k of kinds) {
      ok(await env.cli('add', 'db', k.db, ...k.addArgs));
      for (const g of ['gmain', 'gbig', 'gdn', 'gfc']) await k.create(ok(await env.cli('schema', `--db=${k.db}`, `relgroup=${g}`)).out);
    }
    ok(await env.cli('add', 'sync', 'main', 'relgroup=gmain', 'dbs=A:source,B:source,M:target,S:target,R:target'));
    ok(await env.cli('add', 'sync', 'dn', 'relgroup=gdn', 'dbs=A:source,B:source,PM:target'));
    main = runner(env, 'main', { openTarget: commitsThenThrows(crash) });
    const dbs = ok(await env.cli('list', 'dbs')).out;
    for (const [db, kind] of [['M', 'mariadb'], ['S', 'sqlite'], ['R', 'redis']]) assert.match(dbs, new RegExp(`\\b${db}\\b.*\\b${kind}\\b`), dbs);
    assert.match(ok(await env.cli('list', 'syncs', 'main')).out, /M:target.*S:target.*R:target|M:target/s);
  });

  it('converges inserts, updates and deletes from both masters', async () => {
    await env.query(0, `INSERT INTO t1 (id, v, n) SELECT g, 'a' || g, g / 7.0 FROM generate_series(1, 300) g`);
    await env.query(1, `INSERT INTO t1 (id, v, n) SELECT g, 'b' || g, g FROM generate_series(301, 400) g`);
    await env.query(0, `INSERT INTO comp VALUES (1, 'x', 'one'), (1, 'y', 'two'), (2, 'x', 'three')`);
    await runOk(main);
    await converged();
    await env.query(0, `UPDATE t1 SET v = v || ' updated on A' WHERE id BETWEEN 1 AND 50 OR id BETWEEN 301 AND 310`);
    await env.query(1, `UPDATE t1 SET n = -1 WHERE id BETWEEN 100 AND 120; DELETE FROM t1 WHERE id BETWEEN 200 AND 250 OR id = 399`);
    await env.query(1, `UPDATE comp SET v = 'changed on B' WHERE a = 1 AND k = 'y'; DELETE FROM comp WHERE a = 2`);
    const res = await runOk(main);
    await converged();
    assert.equal((await targetRows(byDb('M').params, 't1')).length, 400 - 52);
    // status shows a sync with targets of other kinds like any other: its last good run, no error.
    const status = JSON.parse(ok(await env.cli('status', 'main', '--json')).out) as unknown;
    assert.match(JSON.stringify(status), new RegExp(`"lastGood":\\{"run":${res.runId},`));
  });

  it('carries the awkward values exactly', async () => {
    const values = [`it's "quoted"`, 'back\\slash', '\\N', 'tab\there', 'new\nline', 'cr\rlf', 'ünïcødé €😀 中文', '', '\\x41', 'semi;colon'];
    for (const [i, v] of values.entries()) await env.query(i % 2, `INSERT INTO t1 (id, v, b, n) VALUES ($1, $2, $3, $4)`, [1000 + i, v, Buffer.from(v), '123456789.123456']);
    await env.query(0, `INSERT INTO t1 VALUES (1100, NULL, NULL, NULL, NULL), (1101, '', ''::bytea, 0, NULL)`);
    await env.query(0, `INSERT INTO t1 (id, n) VALUES (1102, 0.000001), (1103, -99999999999999.999999), (1104, 1.5)`);
    const mb = 'x'.repeat(1024 * 1024);
    await env.query(1, `INSERT INTO t1 (id, v, b) VALUES (1200, $1, $2)`, [mb, Buffer.alloc(1024 * 1024, 0xab)]);
    // A timestamptz written under a session time zone that is not UTC (and across a DST change).
    const w = await env.client(1);
    await w.query(`SET TimeZone = 'America/New_York'`);
    await w.query(`INSERT INTO t1 (id, ts) VALUES (1300, '2024-03-10 01:30:00'), (1301, '2024-03-10 03:30:00.123456'), (1302, '1969-07-20 20:17:40-04')`);
    await w.end();
    await env.query(0, `INSERT INTO comp VALUES (10, 'a:b', 'colon'), (10, 'a', 'b:'), (11, ':', ''), (11, '', NULL), (12, 'x\\y:z', 'bs')`);
    await runOk(main);
    await converged();
    // NULLing a column, and an empty string where NULL was.
    await env.query(1, `UPDATE t1 SET v = NULL, b = NULL WHERE id IN (1000, 1200); UPDATE t1 SET v = '' WHERE id = 1100`);
    await runOk(main);
    await converged();
    const ts = (await targetRows(byDb('S').params, 't1')).find((r) => r[0] === '1300')!;
    assert.equal(ts[4], '2024-03-10T06:30:00.000000Z');
  });

  it('empties a truncated table on every target, then takes the inserts after it', async () => {
    await env.query(1, `TRUNCATE comp; INSERT INTO comp VALUES (7, 'after', 'the truncate'), (7, 'k:v', 'too')`);
    const res = await runOk(main);
    assert.equal(res.truncates, 1);
    await converged();
    assert.equal((await targetRows(byDb('R').params, 'comp')).length, 2);
  });

  it('ibex validate compares the targets of other kinds of a multi-master sync, lists what differs there, and --repair fixes it', async () => {
    const equal = await env.cli('validate', 'main');
    assert.equal(equal.code, 0, equal.out + equal.err);
    assert.match(equal.out, /sync main: equal on A, B, M, R, S/);
    // A changed row on M, a missing row and a stray one on R.
    const m = await openTarget(byDb('M').params);
    const r = await openTarget(byDb('R').params);
    try {
      const one = (await targetRows(byDb('M').params, 't1')).find((x) => x[0] === '1')!;
      await m.begin();
      await m.upsertRows(spec('t1'), [[one[0]!, 'changed on M', one[2]!, one[3]!, one[4]!]]);
      await m.commit();
      await r.begin();
      await r.deleteKeys(spec('comp'), [['7', 'after']]);
      await r.upsertRows(spec('t1'), [['424242', 'stray on R', null, null, null]]);
      await r.commit();
    } finally {
      await m.close();
      await r.close();
    }
    const found = await env.cli('validate', 'main', '--json');
    assert.equal(found.code, 6, found.out + found.err);
    const doc = JSON.parse(found.out) as { differences: number; syncs: { tables: { table: string; keys: { key: Record<string, string>; versions: { db: string; row: Record<string, string | null> | null }[] }[] }[] }[] };
    assert.equal(doc.differences, 3);
    const keys = (table: string): string[] => doc.syncs[0]!.tables.find((t) => t.table === table)!.keys
      .map((k) => `${JSON.stringify(k.key)} ${k.versions.map((v) => `${v.db}:${v.row === null ? 'missing' : (v.row.v ?? 'NULL')}`).join(' ')}`).sort();
    assert.deepEqual(keys('public.t1'), [
      `{"id":"1"} A:a1 updated on A M:changed on M`,
      `{"id":"424242"} A:missing R:stray on R`,
    ]);
    assert.deepEqual(keys('public.comp'), [`{"a":"7","k":"after"} A:the truncate R:missing`]);
    const fixed = await env.cli('validate', 'main', '--repair', '--from=A');
    assert.equal(fixed.code, 0, fixed.out + fixed.err);
    assert.match(fixed.out, /repaired 3 key\(s\) from A on B, M, R, S/);
    await converged();
  });

  for (const db of ['M', 'S']) {
    it(`recognises a run db ${db} committed before the cursors moved: nothing applied twice`, async () => {
      await env.query(0, `INSERT INTO t1 (id, v) SELECT g, 'crash ${db}' FROM generate_series(${db === 'M' ? 5000 : 5500}, ${db === 'M' ? 5099 : 5599}) g`);
      await env.query(1, `UPDATE t1 SET v = 'crash upd ${db}' WHERE id BETWEEN 1 AND 10`);
      const cursors = await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'main' ORDER BY db`, [], 'ibexctl');
      crash.name = db;
      const failed = await main.run('delta');
      assert.equal(failed.status, 'failed');
      assert.match(failed.error ?? '', new RegExp(`simulated crash after db ${db} committed`));
      assert.deepEqual(await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'main' ORDER BY db`, [], 'ibexctl'), cursors, 'cursors stay behind');
      await converged();
      // Every db holds the run's progress: the next run adopts it and has nothing to apply.
      const next = await runOk(main);
      assert.equal(next.inserted + next.deleted, 0, `the run was applied again: ${JSON.stringify(next)}`);
      await converged();
    });
  }

  it('replays harmlessly after Redis committed and the run failed before its progress was written', async () => {
    await env.query(0, `INSERT INTO t1 (id, v) SELECT g, 'crash R' FROM generate_series(6000, 6099) g; DELETE FROM t1 WHERE id BETWEEN 5000 AND 5009`);
    crash.name = 'R';
    const failed = await main.run('delta');
    assert.equal(failed.status, 'failed');
    await converged();
    // Redis never recorded that run's progress: it is applied again, to the same result.
    const next = await runOk(main);
    assert.ok(next.inserted >= 100, JSON.stringify(next));
    await converged();
  });

  it('copies 100k rows by onetimecopy into every target', async () => {
    await env.query(0, `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 100000) g`);
    ok(await env.cli('add', 'sync', 'big', 'relgroup=gbig', 'dbs=A:source,M:target,S:target,R:target', 'onetimecopy=1'));
    const t0 = Date.now();
    const res = await runner(env, 'big').run('onetimecopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal(res.inserted, 300_000);
    const a = await sourceRows(0, 'big');
    for (const db of ['M', 'S', 'R']) assert.deepEqual(await targetRows(byDb(db).params, 'big'), a, `db ${db}`);
    const s = await env.query(0, `SELECT onetimecopy FROM ibex.sync WHERE name = 'big'`, [], 'ibexctl');
    assert.equal(Number(s[0]!.onetimecopy), 0);
    console.log(`# onetimecopy of 100k rows to MariaDB, SQLite and Redis: ${Date.now() - t0} ms`);
  });

  it('a fullcopy sync fills empty targets of other kinds, then leaves them exactly equal to the source (strays gone)', async () => {
    ok(await env.cli('add', 'sync', 'fc', 'relgroup=gfc', 'dbs=A:source,M:fullcopy,S:fullcopy,R:fullcopy'));
    const fc = runner(env, 'fc');
    const dbs = ['M', 'S', 'R'];
    for (const db of dbs) assert.deepEqual(await targetRows(byDb(db).params, 'fc'), [], `db ${db} starts empty`);
    await env.query(0, `INSERT INTO fc SELECT g, 'fc ' || g || E' \\t\\n ''q''', decode(lpad(to_hex(g), 6, '0'), 'hex'), g / 3.0,
                          '2024-03-10 01:30:00.123456-05'::timestamptz + g * interval '1 minute' FROM generate_series(1, 2000) g;
                        INSERT INTO fc VALUES (0, '', ''::bytea, 0, NULL), (-1, NULL, NULL, NULL, NULL)`);
    const first = await fc.run('fullcopy');
    assert.equal(first.status, 'good', first.error);
    const check = async (): Promise<void> => {
      const a = await sourceRows(0, 'fc');
      for (const db of dbs) assert.deepEqual(await targetRows(byDb(db).params, 'fc'), a, `db ${db} differs from A`);
    };
    await check();
    // The source changes; every target gets a stray row and a local edit the source does not have.
    await env.query(0, `INSERT INTO fc (id, v) VALUES (5000, 'new'); UPDATE fc SET v = 'updated', n = 42.5 WHERE id BETWEEN 10 AND 19;
                        DELETE FROM fc WHERE id BETWEEN 100 AND 199; UPDATE fc SET b = NULL, ts = NULL WHERE id = 1; UPDATE fc SET v = NULL WHERE id = 0`);
    for (const db of dbs) {
      const t = await openTarget(byDb(db).params);
      try {
        await t.begin();
        await t.upsertRows(spec('fc'), [['777777', `stray on ${db}`, '\\x00', '1', null], ['2', 'edited on the target', null, null, null]]);
        await t.commit();
      } finally {
        await t.close();
      }
    }
    const second = await fc.run('fullcopy');
    assert.equal(second.status, 'good', second.error);
    await check();
    assert.equal((await targetRows(byDb('R').params, 'fc')).length, 2002 + 1 - 100);
  });

  it('a SQLite file locked by another writer past the busy timeout: the run fails transiently naming it, applies nothing, then catches up', async () => {
    const file = byDb('S').params.dbname!;
    const before = await targetRows(byDb('S').params, 't1');
    const cursors = await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'main' ORDER BY db`, [], 'ibexctl');
    // Another process's write transaction: ibex's BEGIN IMMEDIATE waits out its busy timeout, then gets SQLITE_BUSY.
    const holder = new Database(file);
    holder.exec('BEGIN IMMEDIATE');
    try {
      await env.query(0, `INSERT INTO t1 (id, v) SELECT g, 'while S is locked' FROM generate_series(8000, 8099) g`);
      await env.query(1, `UPDATE t1 SET v = 'B while S is locked' WHERE id BETWEEN 11 AND 20; DELETE FROM comp WHERE k = 'k:v'`);
      const r = await main.run('delta');
      assert.equal(r.status, 'failed');
      assert.equal(r.transient, true, `a locked SQLite file is transient: ${r.error}`);
      assert.match(r.error ?? '', /\bS\b/);
      assert.match(r.error ?? '', /locked|busy/i);
      assert.doesNotMatch(r.error ?? '', /\n/);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    assert.deepEqual(await targetRows(byDb('S').params, 't1'), before, 'nothing of the failed run is on the SQLite file');
    assert.deepEqual(await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'main' ORDER BY db`, [], 'ibexctl'), cursors, 'cursors stay behind');
    const res = await runOk(main);
    assert.ok(res.inserted >= 100, JSON.stringify(res));
    await converged();
  });

  it('a private MariaDB stopped during writes: runs fail in one line naming it, then catch up by themselves', async () => {
    const dn = runner(env, 'dn');
    await env.query(0, `INSERT INTO dn SELECT g, 'before' FROM generate_series(1, 100) g`);
    await runOk(dn);
    await converged(['dn'], ['PM']);
    await pm.kill();
    await env.query(0, `INSERT INTO dn SELECT g, 'while down' FROM generate_series(101, 200) g`);
    await env.query(1, `UPDATE dn SET v = 'B while down' WHERE id <= 10`);
    for (let i = 0; i < 2; i++) {
      const r = await dn.run('delta');
      assert.equal(r.status, 'failed');
      assert.equal(r.transient, true, `a target that is down is transient: ${r.error}`);
      assert.match(r.error ?? '', /\bPM\b/);
      assert.doesNotMatch(r.error ?? '', /\n/);
    }
    await pm.start();
    await runOk(dn);
    await converged(['dn'], ['PM']);
  });

  it('a private Redis stopped during writes fails the runs, and restarted EMPTY is refilled by itself', async () => {
    await redis.kill();
    await env.query(0, `INSERT INTO t1 (id, v) VALUES (7000, 'while redis is down')`);
    await env.query(1, `UPDATE comp SET v = 'B while redis is down' WHERE a = 7`);
    const r = await main.run('delta');
    assert.equal(r.status, 'failed');
    assert.equal(r.transient, true, r.error);
    assert.match(r.error ?? '', /\bR\b/);
    await redis.start();
    assert.deepEqual(await targetRows(byDb('R').params, 't1'), [], 'the restarted Redis is empty');
    const res = await runOk(main);
    await converged();
    const details = await env.query(0, `SELECT details::text AS d FROM ibex.run WHERE id = $1`, [res.runId], 'ibexctl');
    assert.match(String(details[0]?.d), /"refilled": \["R"\]/);
    // And it goes on as usual afterwards.
    await env.query(0, `DELETE FROM t1 WHERE id = 7000`);
    const again = await runOk(main);
    assert.equal(again.deleted > 0, true);
    await converged();
  });

  it('a private Redis SIGKILLed in the middle of a large run: the run fails in one line, and the restarted EMPTY server is refilled exactly', async () => {
    // Its own sync, table and db (with a password, to check no message shows it), on the private
    // server restarted with requirepass: the tests before are done with R's data.
    const secret = 'rk-Secret-4711';
    await redis.kill();
    await redis.start(['--requirepass', secret]);
    for (const i of [0, 1]) await env.clusters[i]!.psql('CREATE TABLE rk (id int PRIMARY KEY, v text, n numeric(20,6));', 'app');
    ok(await env.cli('add', 'table', 'public.rk', 'db=A', 'relgroup=grk'));
    ok(await env.cli('add', 'db', 'RK', 'type=redis', 'host=127.0.0.1', `port=${redis.port}`, 'dbname=1', `pass=${secret}`));
    ok(await env.cli('add', 'sync', 'rk', 'relgroup=grk', 'dbs=A:source,B:source,RK:target'));
    const params: TargetParams = { name: 'RK', kind: 'redis', host: '127.0.0.1', port: redis.port, dbname: '1', password: secret };
    // The kill lands while the second batch of rows is on its way to the server (the first is written).
    let batches = 0;
    const rk = runner(env, 'rk', {
      openTarget: async (p) => {
        const t = await openTarget(p);
        const upsert = t.upsertRows.bind(t);
        return Object.assign(Object.create(t) as Target, {
          upsertRows: async (table: TableSpec, rows: readonly TextRow[]) => {
            if (p.name !== 'RK' || ++batches !== 2) return upsert(table, rows);
            const sent = upsert(table, rows);
            sent.catch(() => undefined);
            await redis.kill();
            return sent;
          },
        });
      },
    });
    await env.query(0, `INSERT INTO rk SELECT g, 'first ' || g, g / 3.0 FROM generate_series(1, 10) g`);
    await runOk(rk);
    batches = 0;
    await env.query(0, `INSERT INTO rk SELECT g, md5(g::text) || E' \\t:x', g / 7.0 FROM generate_series(11, 40010) g`);
    await env.query(1, `UPDATE rk SET v = 'B before the kill', n = NULL WHERE id <= 5; DELETE FROM rk WHERE id = 10`);
    const cursors = await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'rk' ORDER BY db`, [], 'ibexctl');
    const failed = await rk.run('delta');
    assert.equal(failed.status, 'failed');
    assert.ok(batches >= 2, `the kill happened during the run (batches: ${batches})`);
    assert.equal(failed.transient, true, `a killed Redis is transient: ${failed.error}`);
    assert.match(failed.error ?? '', /\bRK\b/);
    assert.doesNotMatch(failed.error ?? '', /\n/);
    assert.doesNotMatch(failed.error ?? '', new RegExp(secret));
    // Nothing lost on PostgreSQL: every row is still on A, B's own changes stay, the cursors stay behind.
    assert.equal(Number((await env.query(0, `SELECT count(*) AS n FROM rk`))[0]!.n), 40010);
    assert.deepEqual((await env.query(1, `SELECT id, v, n FROM rk ORDER BY id`)).map((r) => `${r.id}:${r.v}:${r.n}`),
      [1, 2, 3, 4, 5].map((i) => `${i}:B before the kill:null`).concat([6, 7, 8, 9].map((i) => `${i}:first ${i}:${(i / 3).toFixed(6)}`)));
    assert.deepEqual(await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = 'rk' ORDER BY db`, [], 'ibexctl'), cursors, 'cursors stay behind');
    // Restarted, it has nothing (no persistence): runs until one is good, then RK equals the source, key for key, field for field.
    await redis.start(['--requirepass', secret]);
    assert.deepEqual(await targetRows(params, 'rk'), [], 'the restarted Redis is empty');
    let res;
    for (let i = 0; i < 3 && res?.status !== 'good'; i++) res = await rk.run('delta');
    assert.equal(res?.status, 'good', res?.error);
    const details = await env.query(0, `SELECT details::text AS d FROM ibex.run WHERE id = $1`, [res!.runId], 'ibexctl');
    assert.match(String(details[0]?.d), /"refilled": \["RK"\]/);
    const a = await sourceRows(0, 'rk');
    assert.equal(a.length, 40009);
    assert.deepEqual(await sourceRows(1, 'rk'), a, 'A and B differ on rk');
    assert.deepEqual(await targetRows(params, 'rk'), a, 'db RK differs from A on rk');
    // No stray key either: the rows and ibex's own progress and marker keys, nothing else.
    const { Redis } = await import('ioredis');
    const c = new Redis({ host: '127.0.0.1', port: redis.port, password: secret, db: 1, lazyConnect: true });
    try {
      await c.connect();
      assert.equal(await c.dbsize(), 40009 + 2);
    } finally {
      c.disconnect();
    }
    // And the next run has nothing left to apply.
    const next = await runOk(rk);
    assert.equal(next.inserted + next.deleted, 0, JSON.stringify(next));
  });
});

/**
 * Configuring dbs that are not PostgreSQL: the options of each kind, the connection test at
 * add db (live MariaDB, a temp SQLite file, a private Redis), the source-role refusal, the
 * table check of add sync against every such target, customname, and `ibex schema`.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { useClusters, ok, fails, waitFor, type CliResult } from '../helpers/env.js';
import { openControl } from '../../src/control/connection.js';
import { getDb, type DbRecord } from '../../src/control/config-store.js';
import { loadSyncConfig } from '../../src/control/sync-config.js';
import { checkTargets, type OpenTarget } from '../../src/config/targets.js';
import { schemaStatements } from '../../src/config/schema.js';
import { IbexError } from '../../src/errors.js';
import type { Problem, TableSpec, Target, TargetParams } from '../../src/targets/target.js';
import { freePort } from '../../src/cluster/ports.js';

process.env.IBEX_SKIP_CAPTURE = '1';

const run = promisify(execFile);
const env = useClusters(1);
const TARGETS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'targets');

/** Whether a kind's module is in this build (the kind modules are written on their own branches). */
function built(folder: string): boolean {
  return existsSync(join(TARGETS, folder, `${folder}-target.ts`));
}
const notBuilt = (folder: string): string | false => (built(folder) ? false : `src/targets/${folder}/${folder}-target.ts is not in this build yet`);

/** Every row of the configuration tables, as one JSON text. */
async function configDump(): Promise<string> {
  const tables = ['db', 'relation', 'relgroup', 'relgroup_member', 'dbgroup', 'dbgroup_member', 'sync', 'customname'];
  const parts = tables.map((t) => `'${t}', (SELECT coalesce(json_agg(x ORDER BY x::text), '[]') FROM ibex.${t} x)`);
  const rows = await env.query(0, `SELECT json_build_object(${parts.join(', ')})::text AS dump`, [], 'ibexctl');
  return String(rows[0]!.dump);
}

/** Run a command that must fail with one line and must not change the configuration. */
async function refused(args: string[], re: RegExp, code = 2): Promise<CliResult> {
  const before = await configDump();
  const r = await env.cli(...args);
  fails(r, code, re);
  assert.equal(await configDump(), before, 'the configuration changed');
  return r;
}

/** A target that knows some tables; `check` reports every other one, and remembers what it was asked. */
function fakeTargets(known: Record<string, string[]>): { open: OpenTarget; asked: TableSpec[] } {
  const asked: TableSpec[] = [];
  const open: OpenTarget = async (params: TargetParams) => ({
    kind: params.kind, name: params.name, caps: { transactional: true, progressInTxn: true, copyText: false },
    connect: async () => undefined,
    probe: async () => ({ version: 'Fake 1.0' }),
    check: async (tables: readonly TableSpec[]): Promise<Problem[]> => {
      asked.push(...tables);
      const have = known[params.name] ?? [];
      return tables.filter((t) => !have.includes(t.targetName)).map((t) => ({ table: t.label, message: `table ${t.targetName} is missing: create it` }));
    },
    createTableSql: (t: TableSpec) => [`CREATE TABLE ${t.targetName} (${t.columns.map((c) => `${c.name} ${c.type}`).join(', ')})`],
    close: async () => undefined,
  }) as unknown as Target;
  return { open, asked };
}


describe('configuring dbs that are not PostgreSQL', () => {
  before(async () => {
    await env.clusters[0]!.createDatabase('app2');
    const schema = `CREATE TABLE public.t1 (id int PRIMARY KEY, v text NOT NULL, g int GENERATED ALWAYS AS (id * 2) STORED, w numeric(10,2));
      CREATE TABLE public.t2 (a int, b text, PRIMARY KEY (a, b));`;
    await env.clusters[0]!.psql(schema, 'app');
    await env.clusters[0]!.psql(schema, 'app2');
    ok(await env.cli('install'));
    const p = env.params(0);
    ok(await env.cli('add', 'db', 'A', `host=${p.host}`, `port=${p.port}`, 'dbname=app', `user=${p.user}`));
    ok(await env.cli('add', 'db', 'B', `host=${p.host}`, `port=${p.port}`, 'dbname=app2', `user=${p.user}`));
    ok(await env.cli('add', 'table', 'public.t1', 'public.t2', 'db=A', 'relgroup=g'));
  });

  describe('refuses options that do not fit the type, in one line', () => {
    const cases: [string, string[], RegExp][] = [
      ['sqlite without its file', ['type=sqlite'], /a sqlite db needs dbname=<file>, the path of the SQLite database file: ibex add db X type=sqlite dbname=<file>/],
      ['sqlite with a host', ['type=sqlite3', 'dbname=/tmp/x.db', 'host=h'], /host= has no meaning for a sqlite db \(a local file\): leave it out/],
      ['service= on mariadb', ['type=mariadb', 'dbname=x', 'host=h', 'user=u', 'service=s'], /service= is for postgres dbs only: give dbname= host= \[port=\] user= \[pass=\] for a mariadb db/],
      ['mysql without a host', ['type=mysql', 'dbname=x', 'user=u'], /a mysql db needs host=<host>/],
      ['mariadb without a user', ['type=mariadb', 'dbname=x', 'host=h'], /a mariadb db needs user=<user>/],
      ['redis with a negative db number', ['type=redis', 'host=h', 'dbname=-1'], /dbname= of a redis db is its logical database number \(0 or more; the server refuses one past its databases setting, 16 by default\), not "-1": ibex add db X type=redis host=/],
      ['redis with a name as db number', ['type=redis', 'host=h', 'dbname=app'], /logical database number \(0 or more; .*\), not "app"/],
      ['redis without a host', ['type=redis', 'dbname=0'], /a redis db needs host=<host>/],
      ['redis with conn=', ['type=redis', 'host=h', 'conn=x'], /conn= has no meaning for a redis db/],
      ['mongo without dbname', ['type=mongodb', 'host=h'], /a mongo db needs dbname=<database>/],
      ['mongo with a conn= that is not a URL', ['type=mongo', 'dbname=x', 'conn=h:27017'], /conn= of a mongo db is a mongodb:\/\/ \(or mongodb\+srv:\/\/\) URL/],
      ['mongo with conn= and host=', ['type=mongo', 'dbname=x', 'conn=mongodb://h', 'host=h'], /conn= and host=\/port= given together for mongo db X/],
      ['oracle without a user', ['type=oracle', 'host=h', 'dbname=svc'], /an oracle db needs user=<user>/],
      ['oracle without host or conn', ['type=oracle', 'user=u', 'dbname=svc'], /an oracle db needs host=<host> \(or conn=<connect string>\)/],
      ['dsn= on another type', ['type=mariadb', 'dsn=postgresql://u@h/d'], /dsn= is a postgresql:\/\/ URL, for postgres dbs only/],
      ['an unknown type', ['type=cassandra', 'dbname=x'], /unknown db type "cassandra": use one of postgres, mariadb, mysql, sqlite, redis, mongo, oracle/],
    ];
    for (const [what, args, re] of cases) {
      it(`refuses ${what}`, async () => {
        await refused(['add', 'db', 'X', ...args], re);
      });
    }

    it('refuses the same on update db', async () => {
      ok(await env.cli('add', 'db', 'R0', 'type=redis', 'host=h', '--force'));
      await refused(['update', 'db', 'R0', 'dbname=x9'], /logical database number \(0 or more; .*\), not "x9"/);
      await refused(['update', 'db', 'R0', 'type=sqlite'], /host= has no meaning for a sqlite db \(a local file\)/);
      ok(await env.cli('remove', 'db', 'R0'));
    });
  });

  it('says in one line when a type is not in this build, and adds it untested with --force', { skip: ['oracle', 'mongo', 'sqlite', 'redis', 'mysql'].every(built) && 'every kind is built' }, async () => {
    const kind = ['oracle', 'mongo', 'sqlite', 'redis', 'mysql'].find((k) => !built(k))!;
    const args: Record<string, string[]> = {
      oracle: ['type=oracle', 'conn=//h:1521/svc', 'user=u'], mongo: ['type=mongo', 'host=h', 'dbname=d'], sqlite: ['type=sqlite', 'dbname=/tmp/none.db'],
      redis: ['type=redis', 'host=h'], mysql: ['type=mysql', 'dbname=d', 'host=h', 'user=u'],
    };
    await refused(['add', 'db', 'N', ...args[kind]!, 'pass=n0tsh0wn'], new RegExp(`db N: targets of type ${kind} are not available in this build of ibex: add it anyway with --force`));
    const r = ok(await env.cli('add', 'db', 'N', ...args[kind]!, '--force'));
    assert.match(r.out, new RegExp(`added db N \\(type ${kind}, connection not tested: --force\\)`));
    ok(await env.cli('remove', 'db', 'N'));
  });

  it('never shows the password of another type of db, in list or in a connection string', async () => {
    ok(await env.cli('add', 'db', 'G', 'type=mongo', 'conn=mongodb://app:urlS3cret@h:27017', 'dbname=d', '--force'));
    ok(await env.cli('add', 'db', 'M', 'type=mariadb', 'dbname=shop', 'host=h', 'user=u', 'pass=myS3cret', '--force'));
    const text = ok(await env.cli('list', 'dbs'));
    const json = ok(await env.cli('list', 'dbs', '--json'));
    for (const out of [text.out, json.out]) {
      assert.doesNotMatch(out, /urlS3cret|myS3cret/);
      assert.match(out, /mongodb:\/\/app:\*{8}@h:27017/);
    }
    assert.match(text.out, /pass=\*{8}/);
  });

  it('reads pass=- of another type of db from IBEX_PASSWORD, and stores it hidden', async () => {
    process.env.IBEX_PASSWORD = 'fromEnvS3cret';
    try {
      const r = ok(await env.cli('add', 'db', 'O2', 'type=oracle', 'conn=//h:1521/svc', 'user=u', 'pass=-', '--force'));
      assert.doesNotMatch(r.out, /fromEnvS3cret/);
    } finally {
      delete process.env.IBEX_PASSWORD;
    }
    const rows = await env.query(0, `SELECT dbpass FROM ibex.db WHERE name = 'O2'`, [], 'ibexctl');
    assert.equal(rows[0]!.dbpass, 'fromEnvS3cret');
    const dbs = JSON.parse(ok(await env.cli('list', 'dbs', 'O2', '--json')).out) as Record<string, unknown>[];
    assert.equal(dbs[0]!.pass, '********');
    ok(await env.cli('remove', 'db', 'O2'));
  });

  it('refuses a db of another type as a source, naming it and its type', async () => {
    await refused(['add', 'sync', 'z', 'relgroup=g', 'dbs=M:source,A:target'], /db M is a mariadb db and cannot be a source: only postgres dbs can be sources; make it a target \(M:target\)/);
    await refused(['add', 'dbgroup', 'dg', 'A:source', 'G:source'], /db G is a mongo db and cannot be a source/);
  });

  describe('customname', () => {
    it('adds, lists, changes and removes the name of a table on a db', async () => {
      const r = ok(await env.cli('add', 'customname', 'public.t1', 'db=M', 'name=T_ONE'));
      assert.match(r.out, /added customname of table public\.t1 \(db A\) on db M: T_ONE/);
      const list = JSON.parse(ok(await env.cli('list', 'customnames', '--json')).out) as Record<string, unknown>[];
      assert.deepEqual(list, [{ table: 'public.t1', source: 'A', db: 'M', name: 'T_ONE' }]);
      await refused(['add', 'customname', 'public.t1', 'db=M', 'name=other'], /table public\.t1 already has the name T_ONE on db M: change it with "ibex update customname public\.t1 db=M name=other"/);
      ok(await env.cli('update', 'customname', 'public.t1', 'db=M', 'name=t_one'));
      assert.match(ok(await env.cli('list', 'customnames')).out, /t_one/);
    });
    it('refuses a customname on a postgres db, for an unregistered table, and without name=', async () => {
      await refused(['add', 'customname', 'public.t1', 'db=B', 'name=x'], /db B is a postgres db: tables keep their schema and name on postgres dbs/);
      await refused(['add', 'customname', 'public.nope', 'db=M', 'name=x'], /no table named "public\.nope": it is not registered: add it with "ibex add table public\.nope db=<source db>"/);
      await refused(['add', 'customname', 'public.t1', 'db=M'], /add customname needs name=<the table's name on that db>/);
      await refused(['remove', 'customname', 'public.t2', 'db=M'], /no customname named "?public\.t2 db=M"?/);
    });
  });

  describe('the table check of add sync', () => {
    it('lists every problem of every target and writes nothing (a fake target)', async () => {
      const c = await openControl(env.controlUrl);
      try {
        const dbs = [(await getDb(c, 'A'))!, (await getDb(c, 'M'))!, (await getDb(c, 'G'))!] as DbRecord[];
        const relations = (await c.query(`SELECT id, db, schemaname, relname, reltype, key_columns FROM ibex.relation ORDER BY relname`)).rows;
        const plan = { name: 'zz', members: [{ db: 'A', role: 'source' as const }, { db: 'M', role: 'target' as const }, { db: 'G', role: 'target' as const }], relations };
        const { open, asked } = fakeTargets({ M: ['t_one'], G: [] });
        const err = await checkTargets(c, plan, dbs, open).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof IbexError, `expected a refusal, got ${String(err)}`);
        assert.equal(err.code, 'config');
        assert.deepEqual(err.details?.problems, [
          'db M: public.t2: table t2 is missing: create it',
          'db G: public.t1: table t1 is missing: create it',
          'db G: public.t2: table t2 is missing: create it',
        ]);
        assert.match(err.message, /^sync zz cannot write its tables to its targets \(3 problems: db M: public\.t2: table t2 is missing: create it …\): create or fix the tables there \("ibex schema --db=M tables=public\.t1,public\.t2 source=A" and "ibex schema --db=G tables=public\.t1,public\.t2 source=A" print the DDL\), then try again$/);
        // What the targets were asked: the writable columns in source order, the key, the customname.
        const t1 = asked.find((t) => t.label === 'public.t1' && t.targetName === 't_one')!;
        assert.deepEqual(t1.columns, [{ name: 'id', type: 'integer', notNull: true }, { name: 'v', type: 'text', notNull: true }, { name: 'w', type: 'numeric(10,2)', notNull: false }]);
        assert.deepEqual(t1.keys, ['id']);
        assert.ok(asked.some((t) => t.label === 'public.t1' && t.targetName === 't1'), 'G has no customname: the bare name');
        assert.deepEqual(asked.find((t) => t.label === 'public.t2')!.keys, ['a', 'b']);
        // Every table there: no problem.
        await checkTargets(c, plan, dbs, fakeTargets({ M: ['t_one', 't2'], G: ['t1', 't2'] }).open);
        // In the target's dialect, with its customname.
        assert.deepEqual(await schemaStatements(c, relations, dbs[1]!, open), ['CREATE TABLE t_one (id integer, v text, w numeric(10,2));', 'CREATE TABLE t2 (a integer, b text);']);
      } finally {
        await c.end();
      }
    });

    it('prints the CREATE TABLE of a postgres db from the source (ibex schema)', async () => {
      ok(await env.cli('add', 'sync', 'pg', 'relgroup=g', 'dbs=A:source,B:target'));
      const r = ok(await env.cli('schema', 'pg', '--db=B'));
      assert.equal(r.out, 'CREATE TABLE "public"."t1" (\n  "id" integer NOT NULL,\n  "v" text NOT NULL,\n  "w" numeric(10,2),\n  PRIMARY KEY ("id")\n);\n\n' +
        'CREATE TABLE "public"."t2" (\n  "a" integer NOT NULL,\n  "b" text NOT NULL,\n  PRIMARY KEY ("a", "b")\n);\n');
      const byTables = ok(await env.cli('schema', '--db=B', 'tables=public.t2', 'source=A'));
      assert.match(byTables.out, /^CREATE TABLE "public"\."t2" \(/);
      assert.equal(ok(await env.cli('schema', '--db=B', 'relgroup=g')).out, r.out);
      // The engine is told each table's customnames with the sync's configuration.
      const c = await openControl(env.controlUrl);
      try {
        const cfg = await loadSyncConfig(c, 'pg');
        assert.deepEqual(cfg.relations.map((x) => [x.name, x.customnames]), [['t1', { M: 't_one' }], ['t2', {}]]);
      } finally {
        await c.end();
      }
      ok(await env.cli('remove', 'sync', 'pg'));
    });

    it('refuses bad ibex schema arguments in one line', async () => {
      fails(await env.cli('schema', 'nosuch', '--db=B'), 2, /no sync named "nosuch"/);
      fails(await env.cli('schema', '--db=B'), 2, /"ibex schema" needs one sync, relgroup= or tables=/);
      fails(await env.cli('schema', 'g'), 2, /"ibex schema" needs --db=<db>/);
      fails(await env.cli('schema', '--db=B', 'tables=public.t1'), 2, /tables= and source=<db> go together/);
    });

    it('refuses add sync with the problems of a SQLite target listed one a line', { skip: notBuilt('sqlite') }, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ibex-sqlite-'));
      try {
        // add db opens only a file that exists: an empty one, tables to come.
        await run('sqlite3', [join(dir, 'target.db'), 'VACUUM']);
        ok(await env.cli('add', 'db', 'S', 'type=sqlite', `dbname=${join(dir, 'target.db')}`));
        const before = await configDump();
        const r = await env.cli('add', 'sync', 'zs', 'relgroup=g', 'dbs=A:source,S:target');
        assert.equal(r.code, 2, r.err);
        assert.equal(await configDump(), before, 'the configuration changed');
        const lines = r.err.trim().split('\n');
        assert.match(lines[0]!, /^ibex: sync zs cannot write its tables to its target \(2 problems: db S: public\.t1: .*\): create or fix the tables there \("ibex schema --db=S tables=public\.t1,public\.t2 source=A" prints the DDL\), then try again$/);
        assert.ok(lines.length >= 3, `every problem on its own line: ${r.err}`);
        assert.match(lines[1]!, /^ {2}db S: public\.t1: /);
        assert.match(lines[2]!, /^ {2}db S: public\.t2: /);
        const ddl = ok(await env.cli('schema', '--db=S', 'relgroup=g'));
        assert.match(ddl.out, /CREATE TABLE/);
        await run('sqlite3', [join(dir, 'target.db'), ddl.out]);
        // update sync to a dbgroup with an empty SQLite file: checked the same way.
        await run('sqlite3', [join(dir, 'empty.db'), 'VACUUM']);
        ok(await env.cli('add', 'db', 'S2', 'type=sqlite', `dbname=${join(dir, 'empty.db')}`));
        ok(await env.cli('add', 'dbgroup', 'ds2', 'A:source', 'S2:target'));
        ok(await env.cli('add', 'sync', 'zs', 'relgroup=g', 'dbs=A:source,S:target'));
        const beforeUpdate = await configDump();
        const u = await env.cli('update', 'sync', 'zs', 'dbgroup=ds2');
        assert.equal(u.code, 2, u.err);
        assert.match(u.err, /^ibex: sync zs cannot write its tables to its target \(2 problems: db S2: public\.t1: .*\("ibex schema zs --db=S2" prints the DDL\), then try again\n/);
        assert.equal(await configDump(), beforeUpdate, 'the configuration changed');
        ok(await env.cli('remove', 'dbgroup', 'ds2'));
        ok(await env.cli('remove', 'db', 'S2'));
        const schema = ok(await env.cli('schema', 'zs', '--db=S'));
        assert.equal(schema.out, ddl.out);
        ok(await env.cli('remove', 'sync', 'zs'));
        ok(await env.cli('remove', 'dbgroup', 'zs'));
        ok(await env.cli('remove', 'db', 'S'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('tests the connection of each type', () => {
    it('adds a live MariaDB db, showing its version', { skip: notBuilt('mysql') }, async () => {
      const name = `ibex_t_${Math.random().toString(36).slice(2, 10)}`;
      const sql = (q: string): Promise<unknown> => run('mariadb', ['-h', '127.0.0.1', '-P', '3306', '-u', 'root', '-e', q]);
      await sql(`CREATE DATABASE ${name}`);
      try {
        const r = ok(await env.cli('add', 'db', 'MD', 'type=mariadb', `dbname=${name}`, 'host=127.0.0.1', 'port=3306', 'user=root'));
        assert.match(r.out, /^added db MD \(mariadb: MariaDB 10\.\d+/);
        const dbs = JSON.parse(ok(await env.cli('list', 'dbs', 'MD', '--json')).out) as Record<string, unknown>[];
        assert.match(String(dbs[0]!.server_version), /MariaDB/);
        await refused(['add', 'db', 'MX', 'type=mariadb', 'dbname=nope_db_ibex', 'host=127.0.0.1', 'port=1', 'user=root'], /db MX \(mariadb\): .*: fix the connection options, or add it anyway with --force/, 1);
        const denied = await env.cli('add', 'db', 'MX', 'type=mariadb', `dbname=${name}`, 'host=127.0.0.1', 'port=3306', 'user=ibex_no_such_user', 'pass=wrongS3cret');
        fails(denied, 1, /db MX \(mariadb\): .*: fix the connection options, or add it anyway with --force/);
        assert.doesNotMatch(denied.err + denied.out, /wrongS3cret/);
        // A sync to it: refused while its table is missing, accepted once the printed DDL made it.
        ok(await env.cli('add', 'relgroup', 'gm', 'public.t1'));
        const before = await configDump();
        const r1 = await env.cli('add', 'sync', 'zm', 'relgroup=gm', 'dbs=A:source,MD:target');
        assert.equal(r1.code, 2, r1.err);
        assert.match(r1.err, /^ibex: sync zm cannot write its tables to its target \(1 problem: db MD: public\.t1: .*\("ibex schema --db=MD tables=public\.t1 source=A" prints the DDL\), then try again\n {2}db MD: public\.t1: /);
        assert.equal(await configDump(), before, 'the configuration changed');
        const ddl = ok(await env.cli('schema', '--db=MD', 'relgroup=gm')).out;
        await run('mariadb', ['-h', '127.0.0.1', '-P', '3306', '-u', 'root', name, '-e', ddl]);
        ok(await env.cli('add', 'sync', 'zm', 'relgroup=gm', 'dbs=A:source,MD:target'));
        assert.equal(ok(await env.cli('schema', 'zm', '--db=MD')).out, ddl);
        ok(await env.cli('remove', 'sync', 'zm'));
        ok(await env.cli('remove', 'dbgroup', 'zm'));
        ok(await env.cli('remove', 'relgroup', 'gm'));
        ok(await env.cli('remove', 'db', 'MD'));
      } finally {
        await sql(`DROP DATABASE IF EXISTS ${name}`);
      }
    });

    it('refuses add sync to MariaDB tables with a missing column, a non-binary key collation or an extra unique key, one line each', { skip: notBuilt('mysql') }, async () => {
      const name = `ibex_t_${Math.random().toString(36).slice(2, 10)}`;
      const sql = (q: string, db?: string): Promise<unknown> => run('mariadb', ['-h', '127.0.0.1', '-P', '3306', '-u', 'root', ...(db ? [db] : []), '-e', q]);
      await sql(`CREATE DATABASE ${name}`);
      try {
        ok(await env.cli('add', 'db', 'MR', 'type=mariadb', `dbname=${name}`, 'host=127.0.0.1', 'port=3306', 'user=root'));
        await sql(`CREATE TABLE t1 (id INT NOT NULL PRIMARY KEY, v LONGTEXT CHARACTER SET utf8mb4 NULL) ENGINE=InnoDB;
                   CREATE TABLE t2 (a INT NOT NULL, b VARCHAR(764) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, PRIMARY KEY (a, b)) ENGINE=InnoDB`, name);
        const before = await configDump();
        const r = await env.cli('add', 'sync', 'zr', 'relgroup=g', 'dbs=A:source,MR:target');
        assert.equal(r.code, 2, r.err);
        assert.equal(await configDump(), before, 'the configuration changed');
        const lines = r.err.trim().split('\n');
        assert.match(lines[0]!, /^ibex: sync zr cannot write its tables to its target \(2 problems: db MR: public\.t1: .*\("ibex schema --db=MR tables=public\.t1,public\.t2 source=A" prints the DDL\), then try again$/);
        assert.equal(lines.length, 3, r.err);
        assert.match(lines[1]!, /^ {2}db MR: public\.t1: column w is missing\b.*ADD `w` DECIMAL\(10,2\)/);
        assert.match(lines[2]!, /^ {2}db MR: public\.t2: key column t2\.b .*collation utf8mb4_general_ci.*COLLATE utf8mb4_nopad_bin$/);
        // The column and the collation put right, a unique key besides the key is the one problem left.
        await sql(`ALTER TABLE t1 ADD w DECIMAL(10,2) NULL, ADD UNIQUE KEY uq_w (w);
                   ALTER TABLE t2 MODIFY b VARCHAR(764) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL`, name);
        const r2 = await env.cli('add', 'sync', 'zr', 'relgroup=g', 'dbs=A:source,MR:target');
        assert.equal(r2.code, 2, r2.err);
        assert.equal(await configDump(), before, 'the configuration changed');
        const lines2 = r2.err.trim().split('\n');
        assert.equal(lines2.length, 2, r2.err);
        assert.match(lines2[1]!, /^ {2}db MR: public\.t1: table t1 has unique key uq_w \(w\) besides the key; ON DUPLICATE KEY UPDATE fires on any unique key/);
        await sql('ALTER TABLE t1 DROP KEY uq_w', name);
        ok(await env.cli('add', 'sync', 'zr', 'relgroup=g', 'dbs=A:source,MR:target'));
        ok(await env.cli('remove', 'sync', 'zr'));
        ok(await env.cli('remove', 'dbgroup', 'zr'));
        ok(await env.cli('remove', 'db', 'MR'));
      } finally {
        await sql(`DROP DATABASE IF EXISTS ${name}`);
      }
    });

    it('adds a SQLite db on a file that exists, and refuses a path with no file without creating one', { skip: notBuilt('sqlite') }, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ibex-sqlite-'));
      try {
        const file = join(dir, 'x.db');
        const missing = (f: string): RegExp => new RegExp(`^ibex: db SQ: SQLite file ${f} does not exist: create it \\(sqlite3 ${f} 'VACUUM'\\) or fix dbname=$`);
        await refused(['add', 'db', 'SQ', 'type=sqlite3', `dbname=${file}`], missing(file));
        assert.equal(existsSync(file), false, 'add db created the file');
        await run('sqlite3', [file, 'VACUUM']);
        const r = ok(await env.cli('add', 'db', 'SQ', 'type=sqlite3', `dbname=${file}`));
        assert.match(r.out, /^added db SQ \(sqlite: /);
        const typo = join(dir, 'y.db');
        await refused(['update', 'db', 'SQ', `dbname=${typo}`], missing(typo));
        assert.equal(existsSync(typo), false, 'update db created the file');
        ok(await env.cli('remove', 'db', 'SQ'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    describe('a private Redis', { skip: notBuilt('redis') }, () => {
      let redis: ChildProcess | undefined;
      let dir = '';
      let port = 0;
      before(async () => {
        dir = mkdtempSync(join(tmpdir(), 'ibex-redis-'));
        port = await freePort();
        redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--databases', '20'], { stdio: 'ignore' });
        await waitFor('redis to listen', async () => {
          try {
            await run('redis-cli', ['-p', String(port), 'ping']);
            return true;
          } catch {
            return false;
          }
        }, 10_000);
      });
      after(() => {
        if (redis?.pid) process.kill(redis.pid);
        rmSync(dir, { recursive: true, force: true });
      });
      it('refuses a table without a key on a db that is not postgres, fullcopy or not, and ibex schema prints no empty key', async () => {
        // Every other kind keeps a row by its key (a Redis key, a MongoDB _id, a PRIMARY KEY):
        // without one, Redis failed every run and MongoDB kept one document for the whole table.
        const sqliteDir = mkdtempSync(join(tmpdir(), 'ibex-sqlite-'));
        try {
          await env.clusters[0]!.psql('CREATE TABLE public.nokey (x int, y text)', 'app');
          await env.clusters[0]!.psql('CREATE TABLE public.nokey (x int, y text)', 'app2');
          ok(await env.cli('add', 'table', 'public.nokey', 'db=A', 'relgroup=gk', '--force'));
          ok(await env.cli('add', 'db', 'RK', 'type=redis', 'host=127.0.0.1', `port=${port}`, 'dbname=4'));
          await run('sqlite3', [join(sqliteDir, 'k.db'), 'VACUUM']); // add db opens only a file that exists
          ok(await env.cli('add', 'db', 'SK', 'type=sqlite', `dbname=${join(sqliteDir, 'k.db')}`));
          const why = (db: string, kind: string, sync: string): RegExp =>
            new RegExp(`^ibex: table public\\.nokey has no primary key \\(nor a unique index on NOT NULL columns\\), and db ${db} is a ${kind} db, which keeps each row by its key: give the table a primary key \\(then remove and add the table again\\), or leave db ${db} out of sync ${sync}$`);
          await refused(['add', 'sync', 'zk', 'relgroup=gk', 'dbs=A:source,B:fullcopy,RK:fullcopy'], why('RK', 'redis', 'zk'));
          await refused(['add', 'sync', 'zk', 'relgroup=gk', 'dbs=A:source,SK:fullcopy'], why('SK', 'sqlite', 'zk'));
          // PostgreSQL can hold it: the sync without those dbs is made, and cannot take one in later.
          ok(await env.cli('add', 'sync', 'zk', 'relgroup=gk', 'dbs=A:source,B:fullcopy'));
          await refused(['update', 'dbgroup', 'zk', 'add', 'RK:fullcopy'], why('RK', 'redis', 'zk'));
          // ibex schema: refused for those dbs (SQLite printed PRIMARY KEY ()), as before for postgres.
          fails(await env.cli('schema', '--db=SK', 'tables=public.nokey', 'source=A'), 2,
            /^ibex: table public\.nokey has no primary key \(nor a unique index on NOT NULL columns\), and db SK is a sqlite db, which keeps each row by its key: give the table a primary key, or leave db SK out of the sync$/);
          fails(await env.cli('schema', '--db=RK', 'relgroup=gk'), 2, /^ibex: table public\.nokey has no primary key .*db RK is a redis db/);
          const pgDdl = ok(await env.cli('schema', 'zk', '--db=B'));
          assert.equal(pgDdl.out, 'CREATE TABLE "public"."nokey" (\n  "x" integer,\n  "y" text\n);\n');
          ok(await env.cli('remove', 'sync', 'zk'));
          ok(await env.cli('remove', 'dbgroup', 'zk'));
          ok(await env.cli('remove', 'relgroup', 'gk'));
          ok(await env.cli('remove', 'table', 'public.nokey', 'db=A'));
          ok(await env.cli('remove', 'db', 'RK'));
          ok(await env.cli('remove', 'db', 'SK'));
        } finally {
          rmSync(sqliteDir, { recursive: true, force: true });
        }
      });

      it('adds it with a logical db number, showing its version', async () => {
        const r = ok(await env.cli('add', 'db', 'RD', 'type=redis', 'host=127.0.0.1', `port=${port}`, 'dbname=3'));
        assert.match(r.out, /^added db RD \(redis: Redis 7\./);
        ok(await env.cli('remove', 'db', 'RD'));
      });
      it('takes a db number past 15 when the server has it, and leaves the refusal of one it lacks to the server', async () => {
        // This server has 20 databases (--databases 20): 19 is there, 20 is not.
        ok(await env.cli('add', 'db', 'RD', 'type=redis', 'host=127.0.0.1', `port=${port}`, 'dbname=19'));
        ok(await env.cli('remove', 'db', 'RD'));
        await refused(['add', 'db', 'RD', 'type=redis', 'host=127.0.0.1', `port=${port}`, 'dbname=20'],
          /^ibex: db RD \(redis\): .*DB index is out of range.*: fix the connection options, or add it anyway with --force$/, 1);
      });
    });
  });
});

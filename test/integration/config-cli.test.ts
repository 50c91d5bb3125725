/**
 * The configuration command line against three real clusters: add, list,
 * update and remove of every noun, key discovery, wildcards, awkward names,
 * the sync checks, dry runs, secrets, and bad input that changes nothing.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useClusters, ok, fails, type CliResult, type TestEnv } from '../helpers/env.js';
import { META_COLUMNS } from '../../src/capture/objects.js';

// Capture objects are not what this file tests (see the capture tests): the
// test-only switch makes add sync mark the sync active without installing them.
process.env.IBEX_SKIP_CAPTURE = '1';

const env = useClusters(3);

/** A name of exactly 63 bytes, with multi-byte characters. */
const LONG = 'long_' + 'é'.repeat(29);

/** Every row of the configuration tables, as one JSON text. */
async function configDump(e: TestEnv): Promise<string> {
  const tables = ['db', 'relation', 'relgroup', 'relgroup_member', 'dbgroup', 'dbgroup_member', 'sync', 'customcode', 'customcode_map'];
  const parts = tables.map((t) => `'${t}', (SELECT coalesce(json_agg(x ORDER BY x::text), '[]') FROM ibex.${t} x)`);
  const rows = await e.query(0, `SELECT json_build_object(${parts.join(', ')})::text AS dump`, [], 'ibexctl');
  return String(rows[0]!.dump);
}

/** Run a command that must fail and must not change the configuration. */
async function refused(args: string[], code: number, re: RegExp): Promise<CliResult> {
  const before = await configDump(env);
  const r = await env.cli(...args);
  fails(r, code, re);
  assert.equal(await configDump(env), before, 'the configuration changed');
  return r;
}

function dbArgs(i: number): string[] {
  const p = env.params(i);
  return [`host=${p.host}`, `port=${p.port}`, `dbname=${p.dbname}`, `user=${p.user}`];
}

async function json<T = Record<string, unknown>[]>(...args: string[]): Promise<T> {
  const r = ok(await env.cli(...args, '--json'));
  return JSON.parse(r.out) as T;
}

const SCHEMA = `
  CREATE TABLE public.t1 (id int PRIMARY KEY, v text);
  CREATE TABLE public.t2 (a int NOT NULL, b text NOT NULL, c text, UNIQUE (a, b), UNIQUE (c));
  CREATE TABLE public.nokey (x int, y text);
  CREATE TABLE public.uniq_nullable (a int UNIQUE, b text);
  CREATE TABLE public."MixedCase" (id int PRIMARY KEY, "Val" text);
  CREATE TABLE public."with space" (id int PRIMARY KEY);
  CREATE TABLE public."quo""te" (id int PRIMARY KEY);
  CREATE TABLE public."${LONG}" (id int PRIMARY KEY);
  CREATE SCHEMA s1; CREATE TABLE s1.a (id int PRIMARY KEY); CREATE TABLE s1.b (id int PRIMARY KEY);
  CREATE SCHEMA s2; CREATE TABLE s2.c (id int PRIMARY KEY);
  CREATE TABLE public.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
  CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
  CREATE TABLE public.inh_parent (id int PRIMARY KEY);
  CREATE TABLE public.inh_child () INHERITS (public.inh_parent);
  CREATE SEQUENCE public.seq1;
  CREATE VIEW public.v1 AS SELECT 1 AS one;
  CREATE TABLE public.ow1 (id int PRIMARY KEY, v text);
  CREATE TABLE public.ow2 (id int PRIMARY KEY, v text);
  CREATE TABLE public.ms1 (id bigint PRIMARY KEY, v text);
`;

describe('the configuration command line', () => {
  before(async () => {
    for (let i = 0; i < 3; i++) await env.clusters[i]!.psql(SCHEMA, 'app');
    // Differences on B only: a type, a column, a key; a table only A has.
    await env.clusters[0]!.psql(`CREATE TABLE mm_type (id int PRIMARY KEY, v int); CREATE TABLE mm_col (id int PRIMARY KEY, v int);
      CREATE TABLE mm_key (id int PRIMARY KEY, v int NOT NULL); CREATE TABLE only_a (id int PRIMARY KEY);`, 'app');
    for (const i of [1, 2]) {
      await env.clusters[i]!.psql(`CREATE TABLE mm_type (id int PRIMARY KEY, v ${i === 1 ? 'bigint' : 'int'});
        CREATE TABLE mm_col (id int PRIMARY KEY, ${i === 1 ? 'w' : 'v'} int);
        CREATE TABLE mm_key (id int ${i === 1 ? '' : 'PRIMARY KEY'}, v int NOT NULL ${i === 1 ? 'PRIMARY KEY' : ''});`, 'app');
    }
    ok(await env.cli('install'));
  });

  it('adds postgres dbs after testing the connection, and records the server', async () => {
    for (const [i, name] of ['A', 'B', 'C'].entries()) {
      const r = ok(await env.cli('add', 'db', name, ...dbArgs(i)));
      assert.match(r.out, new RegExp(`added db ${name} \\(PostgreSQL \\d+`));
    }
    const dbs = await json('list', 'dbs');
    assert.deepEqual(dbs.map((d) => d.name), ['A', 'B', 'C']);
    assert.equal(dbs[0]!.encoding, 'UTF8');
    assert.equal(dbs[0]!.is_superuser, true);
    assert.equal(dbs[0]!.can_replica, true);
    assert.equal(dbs[0]!.pass, null);
    assert.equal(dbs[1]!.port, env.clusters[1]!.port);
    assert.deepEqual(Object.keys(dbs[0]!), ['name', 'type', 'status', 'host', 'port', 'dbname', 'user', 'pass', 'conn', 'service',
      'server_version', 'encoding', 'is_superuser', 'can_replica', 'dbgroups', 'about']);
  });

  it('accepts a libpq URL as dsn=, other db types untested with --force, and plural nouns', async () => {
    ok(await env.cli('add', 'db', 'D', `dsn=${env.clusters[2]!.url('app')}`));
    ok(await env.cli('add', 'db', 'M', 'type=mariadb', 'dbname=shop', 'host=db.example', 'port=3306', 'user=repl', '--force'));
    ok(await env.cli('add', 'db', 'L', 'type=sqlite3', 'dbname=/tmp/x.db', '--force'));
    const dbs = await json('list', 'databases', 'D', 'M', 'L');
    assert.deepEqual(dbs.map((d) => [d.name, d.type, d.dbname]), [['D', 'postgres', 'app'], ['L', 'sqlite', '/tmp/x.db'], ['M', 'mariadb', 'shop']]);
    assert.equal(dbs[0]!.host, env.clusters[2]!.socketDir);
    assert.equal(dbs[2]!.server_version, null);
    const text = ok(await env.cli('list', 'db'));
    assert.match(text.out, /mariadb/);
    ok(await env.cli('remove', 'db', 'D', 'L'));
  });

  it('never shows a password: not in list, not in --json, not in errors', async () => {
    const secret = 's3cretPW';
    const r1 = ok(await env.cli('add', 'db', 'P', ...dbArgs(1), `pass=${secret}`));
    const r2 = ok(await env.cli('list', 'dbs'));
    const r3 = ok(await env.cli('list', 'dbs', 'P', '--json'));
    assert.match(r2.out, /pass=\*{8}/);
    assert.equal(JSON.parse(r3.out)[0].pass, '********');
    const stored = await env.query(0, `SELECT dbpass FROM ibex.db WHERE name = 'P'`, [], 'ibexctl');
    assert.equal(stored[0]!.dbpass, secret);
    // A failing connection with a password (nothing listens on port 1).
    const p = env.params(1);
    const r4 = await env.cli('add', 'db', 'Q', 'host=127.0.0.1', 'port=1', 'dbname=app', `pass=${secret}`, '--debug');
    assert.equal(r4.code, 1);
    assert.match(r4.err, /ECONNREFUSED|refused/);
    const r5 = await env.cli('add', 'db', 'Q', `dsn=postgresql://postgres:${secret}@127.0.0.1:1/app`);
    assert.equal(r5.code, 1);
    const r6 = await env.cli('update', 'db', 'P', `pass=${secret}x`, 'port=1', `host=${p.host}`);
    assert.equal(r6.code, 1);
    // pass=- reads IBEX_PASSWORD.
    process.env.IBEX_PASSWORD = `${secret}2`;
    const r7 = ok(await env.cli('update', 'db', 'P', 'pass=-'));
    delete process.env.IBEX_PASSWORD;
    const r8 = await env.cli('update', 'db', 'P', 'pass=-');
    fails(r8, 2, /IBEX_PASSWORD/);
    for (const r of [r1, r2, r3, r4, r5, r6, r7, r8]) {
      assert.ok(!(r.out + r.err).includes(secret), `the password leaked: ${r.out}${r.err}`);
    }
    const again = await env.query(0, `SELECT dbpass FROM ibex.db WHERE name = 'P'`, [], 'ibexctl');
    assert.equal(again[0]!.dbpass, `${secret}2`);
    ok(await env.cli('remove', 'db', 'P'));
  });

  it('registers a table with its primary key, or the smallest unique index on NOT NULL columns', async () => {
    const r = ok(await env.cli('add', 'table', 'public.t1', 't2', 'db=A'));
    assert.match(r.out, /registered table public\.t1 of db A key \(id\)/);
    assert.match(r.out, /registered table public\.t2 of db A key \(a, b\) \(unique index t2_a_b_key\)/);
    const tables = await json('list', 'tables', 'db=A');
    assert.deepEqual(tables.map((t) => [t.name, t.key]), [
      ['public.t1', { kind: 'primary', index: 't1_pkey', columns: ['id'], types: ['integer'] }],
      ['public.t2', { kind: 'unique', index: 't2_a_b_key', columns: ['a', 'b'], types: ['integer', 'text'] }],
    ]);
    assert.deepEqual(Object.keys(tables[0]!), ['name', 'schema', 'table', 'db', 'key', 'conflict_strategy', 'delta_columns', 'relgroups', 'syncs']);
    // Again: identical, so not an error.
    assert.match(ok(await env.cli('add', 'table', 'public.t1', 'db=A')).out, /already registered on db A/);
    await refused(['add', 'table', 'public.t1', 'db=A', 'conflict_strategy=source'], 2, /already registered on db A with conflict_strategy=\(the sync's\): change it with "ibex update table public\.t1 db=A conflict_strategy=source"/);
  });

  it('refuses a table without a usable key unless --force, and says fullcopy can carry it', async () => {
    await refused(['add', 'table', 'public.nokey', 'db=A'], 2, /public\.nokey on db A has no primary key.*--force.*fullcopy/);
    await refused(['add', 'table', 'uniq_nullable', 'db=A'], 2, /has no primary key and no unique index on NOT NULL columns/);
    const r = ok(await env.cli('add', 'table', 'public.nokey', 'db=A', '--force'));
    assert.match(r.out, /no key: fullcopy only/);
    const [t] = await json('list', 'tables', 'nokey');
    assert.equal(t!.key, null);
  });

  it('refuses partitions, inheritance children, views; accepts partitioned parents and sequences', async () => {
    await refused(['add', 'table', 'public.parted_1', 'db=A'], 2, /is a partition: add its partitioned parent/);
    await refused(['add', 'table', 'public.inh_child', 'db=A'], 2, /inherits from another table/);
    await refused(['add', 'table', 'public.v1', 'db=A'], 2, /is a view, not a table/);
    await refused(['add', 'table', 'public.seq1', 'db=A'], 2, /is a sequence.*ibex add sequence/);
    ok(await env.cli('add', 'table', 'public.parted', 'db=A'));
    ok(await env.cli('add', 'sequence', 'public.seq1', 'db=A'));
    const seqs = await json('list', 'sequences');
    assert.deepEqual(seqs.map((s) => [s.name, s.db]), [['public.seq1', 'A']]);
    assert.deepEqual(Object.keys(seqs[0]!), ['name', 'schema', 'sequence', 'db', 'relgroups', 'syncs']);
  });

  it('matches wildcards, and add all tables honours -n/-N/-t/-T', async () => {
    const r = ok(await env.cli('add', 'table', 's1.%', 'db=A'));
    assert.match(r.out, /registered table s1\.a/);
    assert.match(r.out, /registered table s1\.b/);
    // Wildcards skip what is registered or unusable instead of failing.
    const r2 = ok(await env.cli('add', 'table', 'public.inh%', 's*.%', 'db=A'));
    assert.match(r2.out, /skipped table public\.inh_child: it inherits/);
    assert.match(r2.out, /registered table public\.inh_parent/);
    assert.match(r2.out, /s1\.a is already registered/);
    assert.match(r2.out, /registered table s2\.c/);
    ok(await env.cli('add', 'all', 'tables', 'db=B', '-n', 's1', '--schema=s2', '-T', 'b'));
    ok(await env.cli('add', 'all', 'tables', 'db=C', '-N', 'public', '-N', 's2', '-t', 'b'));
    const onB = await json('list', 'tables', 'db=B');
    assert.deepEqual(onB.map((t) => t.name), ['s1.a', 's2.c']);
    const onC = await json('list', 'tables', 'db=C');
    assert.deepEqual(onC.map((t) => t.name), ['s1.b']);
    const all = ok(await env.cli('add', 'all', 'sequences', 'db=B'));
    assert.match(all.out, /new sequences: 1/);
    // One table registered on two dbs: listed twice; a relgroup of db B takes a table and a sequence.
    assert.deepEqual((await json('list', 'tables', 's1.a')).map((t) => t.db), ['A', 'B']);
    ok(await env.cli('add', 'relgroup', 'mixb', 'db=B', 's1.a', 'public.seq1'));
    const [mg] = await json('list', 'relgroups', 'mixb');
    assert.deepEqual([mg!.db, mg!.tables, mg!.sequences], ['B', ['s1.a'], ['public.seq1']]);
    await refused(['add', 'relgroup', 'amb', 's1.a'], 2, /registered on dbs A, B: say which with db=<db>/);
    // add all on A: the rest of public, keyless tables skipped, partitions never listed.
    const r3 = ok(await env.cli('add', 'all', 'tables', 'db=A', '-n', 'public'));
    assert.match(r3.out, /skipped table public\.uniq_nullable: it has no primary key/);
    assert.doesNotMatch(r3.out, /parted_1/);
  });

  it('handles mixed case, spaces, double quotes and 63-byte names', async () => {
    const tables = await json('list', 'tables', 'db=A');
    const names = tables.map((t) => t.name);
    for (const n of ['public."MixedCase"', 'public."with space"', 'public."quo""te"', `public."${LONG}"`]) assert.ok(names.includes(n), `${n} in ${names.join(' ')}`);
    const q = tables.find((t) => t.table === 'quo"te')!;
    assert.equal(q.schema, 'public');
    // Given back exactly as listed, or unquoted with its exact case.
    ok(await env.cli('add', 'relgroup', 'odd', 'public."MixedCase"', 'public.with space', 'public."quo""te"', `public.${LONG}`));
    const [g] = await json('list', 'relgroups', 'odd');
    assert.deepEqual(g!.tables, ['public."MixedCase"', `public."${LONG}"`, 'public."quo""te"', 'public."with space"']);
    await refused(['add', 'table', 'public.mixedcase', 'db=A'], 2, /no table named "public\.mixedcase"/);
  });

  it('creates relgroups and dbgroups, and changes their members', async () => {
    ok(await env.cli('add', 'relgroup', 'g1', 'public.t1', 'public.t2'));
    ok(await env.cli('add', 'relgroup', 'g2', 'db=A', 'public.ow2'));
    ok(await env.cli('add', 'dbgroup', 'dg1', 'A:source', 'B:target'));
    ok(await env.cli('add', 'dbgroup', 'dg2', 'A:source,B:source'));
    ok(await env.cli('update', 'dbgroup', 'dg1', 'add', 'C'));
    let [dg] = await json('list', 'dbgroups', 'dg1');
    assert.deepEqual(dg!.members, [{ db: 'A', role: 'source', priority: 0 }, { db: 'B', role: 'target', priority: 0 }, { db: 'C', role: 'target', priority: 0 }]);
    ok(await env.cli('update', 'dbgroup', 'dg1', 'remove', 'C'));
    ok(await env.cli('update', 'dbgroup', 'dg1', 'A:source', 'B:fullcopy'));
    [dg] = await json('list', 'dbgroups', 'dg1');
    assert.deepEqual(dg!.members, [{ db: 'A', role: 'source', priority: 0 }, { db: 'B', role: 'fullcopy', priority: 0 }]);
    const groups = await json('list', 'relgroups', 'g%');
    assert.deepEqual(groups.map((x) => [x.name, x.db, x.tables]), [['g1', 'A', ['public.t1', 'public.t2']], ['g2', 'A', ['public.ow2']]]);
    ok(await env.cli('update', 'relgroup', 'g2', 'add', 'public.ow1'));
    ok(await env.cli('update', 'relgroup', 'g2', 'remove', 'public.ow1'));
    // A relgroup holds the tables of one db.
    await refused(['update', 'relgroup', 'g2', 'add', 's1.a', 'db=B'], 2, /relgroup g2 would hold tables of dbs A and B/);
  });

  it('adds a multi-master sync and lists it', async () => {
    const r = ok(await env.cli('add', 'sync', 'mm', 'relgroup=g1', 'dbs=A:source,B:source,C:source', 'conflict_strategy=bucardo_latest', 'onetimecopy=1', 'onetimecopy_from=A', 'checktime=30s'));
    assert.match(r.out, /created dbgroup mm \(A:source B:source C:source\)/);
    assert.match(r.out, /added sync mm: relgroup g1/);
    const [s] = await json('list', 'syncs', 'mm');
    assert.equal(s!.status, 'active');
    assert.equal(s!.relgroup, 'g1');
    assert.deepEqual(s!.dbs, [{ db: 'A', role: 'source' }, { db: 'B', role: 'source' }, { db: 'C', role: 'source' }]);
    assert.deepEqual(s!.tables, ['public.t1', 'public.t2']);
    assert.equal(s!.conflict_strategy, 'latest');
    assert.deepEqual(s!.changed_options, { onetimecopy: 1, onetimecopy_from: 'A', checktime: '00:00:30' });
    assert.equal((s!.options as Record<string, unknown>).autokick, true);
    const text = ok(await env.cli('list', 'sync'));
    assert.match(text.out, /mm.*active.*A:source B:source C:source.*latest/);
  });

  it('reuses an identical relgroup or dbgroup, and creates one named after the sync otherwise', async () => {
    const r1 = ok(await env.cli('add', 'sync', 'ab', 'tables=public.ow1', 'dbs=A,B'));
    assert.match(r1.out, /created relgroup ab/);
    assert.match(r1.out, /created dbgroup ab \(A:source B:target\)/);
    const r2 = ok(await env.cli('add', 'sync', 'ac', 'tables=public.ow1', 'dbs=A:source,C:target'));
    assert.match(r2.out, /reusing relgroup ab/);
    assert.match(r2.out, /created dbgroup ac/);
    const r3 = ok(await env.cli('add', 'sync', 'ab2', 'relgroup=g2', 'dbs=A:source,B:target'));
    assert.match(r3.out, /reusing dbgroup ab/);
    const syncs = await json('list', 'syncs');
    assert.deepEqual(syncs.map((s) => [s.name, s.relgroup, s.dbgroup]), [['ab', 'ab', 'ab'], ['ab2', 'g2', 'ab'], ['ac', 'ab', 'ac'], ['mm', 'g1', 'mm']]);
  });

  it('refuses a second sync writing the same table on the same db', async () => {
    await refused(['add', 'sync', 'cb', 'tables=public.ow1', 'dbs=C:source,B:target'], 2, /sync ab already writes public\.ow1 on db B/);
    await refused(['add', 'sync', 'mm2', 'relgroup=g1', 'dbs=A:source,B:source'], 2, /sync mm already writes public\.t1 on db A/);
    // One-way from A writes only C: fine next to ab (which writes B).
    await refused(['update', 'sync', 'ab2', 'relgroup=ab'], 2, /sync ab already writes public\.ow1 on db B/);
  });

  it('reports exactly which column, type or key differs on which db', async () => {
    ok(await env.cli('add', 'table', 'mm_type', 'mm_col', 'mm_key', 'only_a', 'db=A'));
    await refused(['add', 'sync', 'x', 'tables=public.mm_type', 'dbs=A:source,B:target,C:target'], 2,
      /column v of table public\.mm_type is integer on db A but bigint on db B/);
    await refused(['add', 'sync', 'x', 'tables=public.mm_col', 'dbs=A:source,B:target'], 2, /column v of table public\.mm_col is missing on db B/);
    await refused(['add', 'sync', 'x', 'tables=public.mm_key', 'dbs=A:source,C:target,B:target'], 2,
      /table public\.mm_key on db B has no primary key or unique index on NOT NULL columns \(id\).*it has \(v\)/);
    await refused(['add', 'sync', 'x', 'tables=public.only_a', 'dbs=A,B'], 2, /table public\.only_a is missing on db B: create it there/);
    // Fine where the tables agree.
    ok(await env.cli('add', 'sync', 'x', 'tables=public.mm_type,public.mm_col,public.mm_key', 'dbs=A:source,C:target', '--dry-run'));
  });

  it('refuses clock=commit without track_commit_timestamp, and keyless tables outside fullcopy', async () => {
    await refused(['add', 'sync', 'x', 'tables=public.ms1', 'dbs=A:source,C:source', 'clock=commit'], 2, /track_commit_timestamp=on.*db A has it off/);
    await refused(['add', 'sync', 'x', 'tables=public.nokey', 'dbs=A:source,C:target'], 2, /table public\.nokey has no key/);
    ok(await env.cli('add', 'sync', 'x', 'tables=public.nokey', 'dbs=A:source,C:fullcopy', '--dry-run'));
  });

  it('updates options, dbs and tables with the same checks as add', async () => {
    let r = ok(await env.cli('update', 'sync', 'mm', 'autokick=0', 'checktime=30', 'conflict_strategy=C,B,A', 'isolation_level=serializable'));
    assert.match(r.out, /changed sync mm: autokick=0 conflict_strategy=C,B,A isolation_level=serializable/);
    assert.doesNotMatch(r.out, /checktime/);
    const [s] = await json('list', 'syncs', 'mm');
    assert.deepEqual(s!.changed_options, { conflict_strategy: 'C,B,A', onetimecopy: 1, onetimecopy_from: 'A', autokick: false, checktime: '00:00:30', isolation_level: 'serializable' });
    r = ok(await env.cli('update', 'sync', 'mm', 'autokick=no'));
    assert.match(r.out, /no change needed/);
    ok(await env.cli('update', 'db', 'B', 'about=the second node'));
    ok(await env.cli('update', 'db', 'C', `port=${env.clusters[2]!.port}`, 'status=inactive'));
    const dbs = await json('list', 'dbs', 'B', 'C');
    assert.deepEqual(dbs.map((d) => [d.about, d.status]), [['the second node', 'active'], [null, 'inactive']]);
    ok(await env.cli('update', 'table', 'public.t1', 'conflict_strategy=source'));
    const [t] = await json('list', 'tables', 'public.t1');
    assert.equal(t!.conflict_strategy, 'source');
    assert.deepEqual(t!.syncs, ['mm']);
    // A table added to a relgroup of a sync is checked on every db of it.
    await refused(['update', 'relgroup', 'g1', 'add', 'public.only_a'], 2, /table public\.only_a is missing on db B/);
    ok(await env.cli('add', 'table', 'public.ms1', 'db=A', 'relgroup=g1'));
    const [s2] = await json('list', 'syncs', 'mm');
    assert.deepEqual(s2!.tables, ['public.ms1', 'public.t1', 'public.t2']);
    // A dbgroup of a sync refuses to lose a member.
    await refused(['update', 'dbgroup', 'mm', 'remove', 'C'], 2, /used by sync mm/);
  });

  it('stores custom code with its language, mapped to a sync or a table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ibex-cc-'));
    writeFileSync(join(dir, 'pick.ts'), 'export default function conflict() { return "A"; }\n');
    writeFileSync(join(dir, 'log.mjs'), 'export default function () {}\n');
    ok(await env.cli('add', 'customcode', 'pick', 'whenrun=conflict', `src_code=${join(dir, 'pick.ts')}`, 'sync=mm', 'priority=5'));
    ok(await env.cli('add', 'customcode', 'logit', 'whenrun=after_txn', `src_code=${join(dir, 'log.mjs')}`, 'relation=public.t1'));
    const codes = await json('list', 'customcode');
    assert.deepEqual(codes, [
      { name: 'logit', whenrun: 'after_txn', language: 'javascript', src_path: join(dir, 'log.mjs'), status: 'active', priority: 0, syncs: [], tables: [{ table: 'public.t1', db: 'A' }], about: null },
      { name: 'pick', whenrun: 'conflict', language: 'typescript', src_path: join(dir, 'pick.ts'), status: 'active', priority: 5, syncs: ['mm'], tables: [], about: null },
    ]);
    const stored = await env.query(0, `SELECT src_code FROM ibex.customcode WHERE name = 'pick'`, [], 'ibexctl');
    assert.match(String(stored[0]!.src_code), /return "A"/);
    ok(await env.cli('update', 'customcode', 'logit', 'status=inactive', 'whenrun=before_commit'));
    await refused(['add', 'customcode', 'gone', 'whenrun=conflict', `src_code=${join(dir, 'missing.ts')}`], 2, /cannot read src_code=.*missing\.ts/);
    await refused(['add', 'customcode', 'bad', 'whenrun=sometimes', `src_code=${join(dir, 'pick.ts')}`], 2, /bad value "sometimes" for whenrun/);
    ok(await env.cli('remove', 'customcode', 'logit'));
  });

  it('changes nothing with --dry-run, but says what it would do', async () => {
    const before = await configDump(env);
    const runs = [
      ['add', 'db', 'E', ...dbArgs(2)],
      ['add', 'table', 'public.ow2', 'db=B', 'relgroup=newg'],
      ['add', 'sync', 'dry', 'tables=public.ow2', 'dbs=B:source,C:target'],
      ['update', 'sync', 'mm', 'autokick=1'],
      ['update', 'db', 'A', 'about=x'],
      ['remove', 'sync', 'mm'],
      ['remove', 'relgroup', 'g1', '--force'],
      ['remove', 'db', 'A', '--force'],
      ['remove', 'table', 'public.t1', '--force'],
    ];
    for (const args of runs) {
      const r = ok(await env.cli(...args, '--dry-run'));
      assert.match(r.out, /would /, args.join(' '));
      assert.match(r.out, /dry run: nothing was changed/);
    }
    assert.equal(await configDump(env), before);
  });
});

describe('bad input', () => {
  it('refuses an unknown verb', async () => {
    await refused(['frobnicate', 'db', 'A'], 2, /unknown verb "frobnicate"/);
  });
  it('refuses an unknown noun', async () => {
    await refused(['add', 'gizmo', 'x'], 2, /unknown noun "gizmo" for add: use one of db, table/);
  });
  it('refuses add db without dbname', async () => {
    await refused(['add', 'db', 'Z', 'host=localhost'], 2, /add db Z needs dbname=/);
  });
  it('refuses an unknown key=', async () => {
    await refused(['add', 'db', 'Z', 'dbname=x', 'colour=blue'], 2, /unknown option "colour" for add db: use one of dbname, host/);
    await refused(['add', 'sync', 'z', 'relgroup=g1', 'dbs=A,B', 'speed=fast'], 2, /unknown option "speed" for add sync/);
  });
  it('refuses badly typed values', async () => {
    await refused(['update', 'sync', 'mm', 'autokick=maybe'], 2, /bad value "maybe" for autokick/);
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=B,C', 'onetimecopy=7'], 2, /bad value "7" for onetimecopy: give a whole number from 0 to 2/);
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=B,C', 'checktime=soon'], 2, /bad duration "soon" for checktime/);
    await refused(['add', 'db', 'Z', 'dbname=x', 'port=http'], 2, /bad value "http" for port/);
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=B,C', 'conflict_strategy=whoever!'], 2, /bad conflict_strategy/);
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=B,C', 'conflict_strategy=B,Q'], 2, /conflict_strategy lists Q, which is not a db of sync z/);
    await refused(['add', 'db', 'bad-name', 'dbname=x'], 2, /bad db name "bad-name"/);
  });
  it('refuses a duplicate name', async () => {
    await refused(['add', 'db', 'A', ...dbArgs(0)], 2, /a db named A already exists: choose another name or change it with "ibex update db A"/);
    await refused(['add', 'sync', 'mm', 'relgroup=g1', 'dbs=A,B'], 2, /a sync named mm already exists/);
    await refused(['add', 'relgroup', 'g1'], 2, /a relgroup named g1 already exists/);
    await refused(['add', 'dbgroup', 'dg1', 'A'], 2, /a dbgroup named dg1 already exists/);
  });
  it('refuses an unknown db in dbs=', async () => {
    await refused(['add', 'sync', 'z', 'relgroup=g2', 'dbs=A:source,Zed:target'], 2, /no db named "Zed": list them with "ibex list dbs"/);
  });
  it('refuses a sync with no source', async () => {
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=B:target,C:target'], 2, /sync z has no source db: mark at least one db as source/);
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=M:source,C:target'], 2, /db M is a mariadb db and cannot be a source/);
  });
  it('refuses a table missing on one db', async () => {
    await refused(['add', 'sync', 'z', 'tables=public.only_a', 'dbs=A:source,C:target'], 2, /table public\.only_a is missing on db C: create it there \(same columns and key\) or leave it out of the sync/);
  });
  it('refuses to remove a db or relgroup still in use', async () => {
    await refused(['remove', 'db', 'A'], 2, /db A is still used by sync .*mm.*: remove those first, or use --force/);
    await refused(['remove', 'relgroup', 'g1'], 2, /relgroup g1 is used by sync mm: remove the sync first, or use --force/);
    await refused(['remove', 'dbgroup', 'mm'], 2, /dbgroup mm is used by sync mm/);
    await refused(['remove', 'table', 'public.t1'], 2, /public\.t1 is replicated by sync mm/);
  });
  it('reports an unreachable server with the libpq reason, exit 1', async () => {
    await refused(['add', 'db', 'Z', 'host=127.0.0.1', 'port=1', 'dbname=app'], 1, /cannot connect to 127\.0\.0\.1:1.*ECONNREFUSED.*--force/);
    await refused(['update', 'db', 'B', 'port=1', 'host=127.0.0.1'], 1, /ECONNREFUSED/);
    await refused(['add', 'db', 'Z', ...dbArgs(1).filter((a) => !a.startsWith('dbname=')), 'dbname=nosuchdb'], 1, /database "nosuchdb" does not exist/);
  });
  it('refuses other malformed input', async () => {
    await refused(['add'], 2, /needs a noun/);
    await refused(['add', 'table', 'a.b.c', 'db=A'], 2, /bad table name "a\.b\.c"/);
    await refused(['add', 'table', 'public."open', 'db=A'], 2, /double quote is not closed/);
    await refused(['add', 'all', 'tables', 'db=A', '-x', 'y'], 2, /unknown flag "-x"/);
    await refused(['add', 'table', 'public.t9', 'db=A'], 2, /no table named "public\.t9": it does not exist on db A/);
    await refused(['add', 'table', 'public.zz%', 'db=A'], 2, /nothing matches it on db A/);
    await refused(['add', 'table', 'public.t1'], 2, /add table needs db=<db>/);
    await refused(['update', 'sync', 'nosuch', 'autokick=0'], 2, /no sync named "nosuch"/);
    await refused(['remove', 'sync', 'nosuch'], 2, /no sync named "nosuch"/);
    await refused(['add', 'sync', 'sync', 'relgroup=g1', 'dbs=A,B'], 2, /"sync" cannot name a sync/);
    await refused(['add', 'sync', 'z', 'relgroup=g1'], 2, /needs dbs=/);
    await refused(['add', 'sync', 'z', 'dbs=A,B'], 2, /needs relgroup=/);
    await refused(['add', 'sync', 'z', 'tables=public.ow2', 'dbs=B,C', 'onetimecopy_from=A'], 2, /onetimecopy_from=A is not a db of sync z/);
  });
});

describe('capture', () => {
  before(() => {
    delete process.env.IBEX_SKIP_CAPTURE;
  });
  after(() => {
    process.env.IBEX_SKIP_CAPTURE = '1';
  });

  it('installs capture on add sync and removes it on remove sync', async () => {
    const dry = ok(await env.cli('add', 'sync', 'cap', 'tables=public.ow2', 'dbs=B:source,C:target', '--dry-run'));
    assert.match(dry.out, /would install/);
    ok(await env.cli('add', 'sync', 'cap', 'tables=public.ow2', 'dbs=B:source,C:target'));
    const [s] = await json('list', 'syncs', 'cap');
    assert.equal(s!.status, 'active');
    const onB = await env.query(1, `SELECT to_regnamespace('ibex') IS NOT NULL AS has`);
    assert.equal(onB[0]!.has, 't');
    ok(await env.cli('remove', 'sync', 'cap'));
    const after = await env.query(1, `SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'public.ow2'::regclass AND NOT tgisinternal`);
    assert.equal(after[0]!.n, '0');
  });

  it('leaves nothing behind when installing capture fails', async () => {
    // A key column named like one of the delta table's own columns makes capture refuse the table.
    for (const i of [1, 2]) await env.clusters[i]!.psql(`CREATE TABLE public.capfail ("${META_COLUMNS[0]}" int PRIMARY KEY)`, 'app');
    await refused(['add', 'sync', 'capf', 'tables=public.capfail', 'dbs=B:source,C:target'], 2, new RegExp(META_COLUMNS[0]));
  });
});

describe('removal', () => {
  it('removes a sync, then its groups, then tables and dbs', async () => {
    let r = ok(await env.cli('remove', 'sync', 'ab2'));
    assert.match(r.out, /removed sync ab2/);
    r = ok(await env.cli('remove', 'relgroup', 'g2'));
    assert.match(r.out, /removed relgroup g2 \(its tables stay registered\)/);
    ok(await env.cli('remove', 'table', 'public.ow2', 'db=A'));
    ok(await env.cli('remove', 'sequence', 'public.seq1', 'db=B'));
    const seqs = await json('list', 'sequences');
    assert.deepEqual(seqs.map((s) => s.db), ['A']);
  });

  it('removes what uses a relgroup, dbgroup or db with --force, and says what', async () => {
    let r = ok(await env.cli('remove', 'relgroup', 'g1', '--force'));
    assert.match(r.out, /removed sync mm/);
    r = ok(await env.cli('remove', 'dbgroup', 'ac', '--force'));
    assert.match(r.out, /removed sync ac/);
    r = ok(await env.cli('remove', 'table', 'public.ow1', '--force', 'db=A'));
    assert.match(r.out, /removed table public\.ow1 from relgroup ab/);
    assert.match(r.out, /note: sync ab no longer carries it/);
    r = ok(await env.cli('remove', 'db', 'A', '--force'));
    assert.match(r.out, /removed sync ab/);
    assert.match(r.out, /removed db A from dbgroup dg1/);
    assert.match(r.out, /table\(s\)\/sequence\(s\) of db A/);
    assert.match(r.out, /removed db A$/m);
    const rows = await env.query(0, `SELECT (SELECT count(*) FROM ibex.relation WHERE db = 'A') AS rels, (SELECT count(*) FROM ibex.sync) AS syncs,
      (SELECT count(*) FROM ibex.customcode_map) AS maps`, [], 'ibexctl');
    assert.deepEqual(rows[0], { rels: '0', syncs: '0', maps: '0' });
    assert.deepEqual((await json('list', 'dbs')).map((d) => d.name), ['B', 'C', 'M']);
  });
});

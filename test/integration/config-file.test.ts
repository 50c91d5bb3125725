/**
 * Configuration as a file against real clusters: export, apply into an empty control database
 * (round trip), re-apply (no change), each kind of change (add, update, remove with and without
 * --prune), dry runs, and a bad file (one line naming its position; nothing changed).
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { useClusters, ok, fails, runCliInProcess, type CliResult } from '../helpers/env.js';

// Capture objects are the capture tests' subject: here syncs become active without them.
process.env.IBEX_SKIP_CAPTURE = '1';

const env = useClusters(2);
const dir = mkdtempSync(join(tmpdir(), 'ibex-config-file-'));
let url2 = '';

const cli2 = (...args: string[]): Promise<CliResult> => runCliInProcess(url2, args);

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

async function dump(url: string): Promise<string> {
  const r = ok(await runCliInProcess(url, ['export', '--format=json']));
  return r.out;
}

const SCHEMA = `
  CREATE TABLE public.t1 (id int PRIMARY KEY, v text);
  CREATE TABLE public.t2 (a int NOT NULL, b text NOT NULL, UNIQUE (a, b));
  CREATE TABLE public.t3 (id bigint PRIMARY KEY);
  CREATE SEQUENCE public.s1;
`;

describe('ibex export and ibex apply', () => {
  before(async () => {
    for (const i of [0, 1]) await env.query(i, SCHEMA);
    await env.query(0, 'CREATE DATABASE ibexctl2', [], 'postgres');
    url2 = env.clusters[0]!.url('ibexctl2');
    ok(await env.cli('install'));
    ok(await cli2('install'));
    for (const [name, i] of [['A', 0], ['B', 1]] as const) {
      const p = env.params(i);
      ok(await env.cli('add', 'db', name, `host=${p.host}`, `port=${p.port}`, `dbname=${p.dbname}`, `user=${p.user}`));
    }
    ok(await env.cli('add', 'table', 'public.t1', 'public.t2', 'db=A', 'relgroup=rg'));
    ok(await env.cli('add', 'sequence', 'public.s1', 'db=A', 'relgroup=rg'));
    ok(await env.cli('add', 'sync', 'mm', 'relgroup=rg', 'dbs=A:source,B:source', 'conflict_strategy=B,A', 'checktime=30s', 'autokick=0', 'maxkicks=5'));
    const code = file('pick.ts', 'export default () => [];\n');
    ok(await env.cli('add', 'customcode', 'pick', 'whenrun=conflict', `src_code=${code}`, 'sync=mm', 'priority=5'));
  });

  it('exports the whole configuration, without passwords', async () => {
    const r = ok(await env.cli('export'));
    const doc = parse(r.out) as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(doc.version as unknown, 1);
    assert.deepEqual(Object.keys(doc.dbs!), ['A', 'B']);
    assert.equal(doc.syncs!.mm!.conflict_strategy, 'B,A');
    assert.equal(doc.syncs!.mm!.checktime, '30 seconds');
    assert.equal(doc.syncs!.mm!.autokick, false);
    assert.equal(doc.customcodes!.pick!.whenrun, 'conflict');
    assert.deepEqual(doc.relgroups!.rg, { db: 'A', members: ['public.s1', 'public.t1', 'public.t2'] });
  });

  it('round trip: export, then apply into an empty control database, gives the same configuration', async () => {
    const f = file('all.yaml', ok(await env.cli('export')).out);
    const dry = ok(await cli2('apply', '-f', f, '--dry-run'));
    assert.match(dry.out, /\+ would add sync mm/);
    assert.match(dry.out, /dry run: nothing was changed/);
    assert.match(ok(await cli2('export')).out, /dbs: \{\}/);
    const r = ok(await cli2('apply', '-f', f));
    assert.match(r.out, /\+ add db A/);
    assert.match(r.out, /\+ add table public\.t1 \(db A\): key \(id\)/);
    assert.match(r.out, /\+ add customcode pick/);
    assert.equal(await dump(url2), await dump(env.controlUrl));
    const again = ok(await cli2('apply', '-f', f));
    assert.match(again.out, /no changes: the control database already matches the file/);
  });

  it('applies an add, an update and, only with --prune, a removal', async () => {
    const doc = parse(ok(await cli2('export')).out) as Record<string, Record<string, unknown>>;
    (doc.tables as unknown as unknown[]).push({ db: 'A', name: 'public.t3' });
    (doc.relgroups as Record<string, unknown>).rg2 = { db: 'A', members: ['public.t3'] };
    (doc.syncs as Record<string, unknown>).one = { relgroup: 'rg2', dbgroup: 'mm' };
    Object.assign((doc.syncs as Record<string, Record<string, unknown>>).mm!, { autokick: true, checktime: '1 minute' });
    const f = file('more.yaml', JSON.stringify(doc));
    const r = ok(await cli2('apply', '-f', f));
    assert.match(r.out, /\+ add table public\.t3 \(db A\)/);
    assert.match(r.out, /\+ add sync one: relgroup rg2, dbgroup mm/);
    assert.match(r.out, /~ update sync mm: autokick: false → true, checktime: 30 seconds → 60 seconds/);
    const syncs = JSON.parse(ok(await cli2('list', 'syncs', '--json')).out) as { name: string; status: string }[];
    assert.deepEqual(syncs.map((s) => [s.name, s.status]), [['mm', 'active'], ['one', 'active']]);

    delete (doc.syncs as Record<string, unknown>).one;
    const f2 = file('less.yaml', JSON.stringify(doc));
    const kept = ok(await cli2('apply', '-f', f2));
    assert.match(kept.out, /= keep sync one: not in the file: kept \(--prune removes it\)/);
    assert.match(kept.out, /no changes/);
    assert.equal((JSON.parse(ok(await cli2('list', 'syncs', '--json')).out) as unknown[]).length, 2);
    const pruned = ok(await cli2('apply', '-f', f2, '--prune'));
    assert.match(pruned.out, /- remove sync one/);
    assert.deepEqual((JSON.parse(ok(await cli2('list', 'syncs', '--json')).out) as { name: string }[]).map((s) => s.name), ['mm']);
    assert.match(ok(await cli2('apply', '-f', f2, '--prune')).out, /no changes/);
  });

  it('a bad file: one line naming its position, and nothing changed', async () => {
    const before = await dump(url2);
    const good = ok(await cli2('export')).out;
    const bad = file('bad.yaml', good.replace(/(\nsyncs:\n {2}mm:\n)/, '$1    clock: sundial\n'));
    const r = await cli2('apply', '-f', bad);
    fails(r, 2, /^ibex: .*bad\.yaml:\d+:\d+: syncs\.mm\.clock: /);
    const line = Number(/bad\.yaml:(\d+):/.exec(r.err)![1]);
    assert.equal(good.replace(/(\nsyncs:\n {2}mm:\n)/, '$1    clock: sundial\n').split('\n')[line - 1]!.trim(), 'clock: sundial');
    // A file that parses but names a db that is not defined.
    const dangling = file('dangling.yaml', good.replace(/dbgroup: mm/, 'dbgroup: nowhere'));
    fails(await cli2('apply', '-f', dangling), 2, /sync mm uses dbgroup nowhere, which is not under dbgroups/);
    assert.equal(await dump(url2), before);
  });

  it('a db whose password is a reference: kept as the reference, resolved when connecting', async () => {
    const doc = parse(ok(await cli2('export')).out) as { dbs: Record<string, Record<string, unknown>> };
    doc.dbs.B!.pass = 'env:IBEX_TEST_B_PASSWORD';
    const f = file('pass.yaml', JSON.stringify(doc));
    process.env.IBEX_TEST_B_PASSWORD = 'not-needed-by-trust-auth';
    const r = ok(await cli2('apply', '-f', f));
    assert.match(r.out, /~ update db B: pass: \(none\) → env:IBEX_TEST_B_PASSWORD/);
    assert.doesNotMatch(r.out + ok(await cli2('export')).out, /not-needed-by-trust-auth/);
    assert.match(ok(await cli2('export')).out, /pass: env:IBEX_TEST_B_PASSWORD/);
    delete process.env.IBEX_TEST_B_PASSWORD;
    fails(await cli2('validate', 'mm'), 2, /db B takes its password from env:IBEX_TEST_B_PASSWORD, which is not set/);
  });
});

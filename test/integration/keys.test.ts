import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners } from '../helpers/sync.js';
import { findBinDir } from '../../src/cluster/clusters.js';
import { keyRisks, planInterleave, restartAbove, type KeySequence } from '../../src/keys/sequences.js';

const env = useClusters(2);
const scratch = mkdtempSync(join(tmpdir(), 'ibex-keys-'));
const script = join(scratch, 'order.sql');
writeFileSync(script, `INSERT INTO orders (item) VALUES ('from ' || :client_id);\n`);
after(async () => {
  await closeRunners();
  rmSync(scratch, { recursive: true, force: true });
});

/** pgbench on cluster i: `clients` sessions each committing `txns` single-row inserts. */
async function pgbenchInserts(i: number, clients: number, txns: number): Promise<void> {
  const c = env.clusters[i]!;
  await promisify(execFile)(join(findBinDir(), 'pgbench'),
    ['-n', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', '-c', String(clients), '-j', String(clients), '-t', String(txns), '-f', script, 'app']);
}

const seq = (over: Partial<KeySequence>): KeySequence => ({
  table: 'public.orders', column: 'id', sequence: '"public"."orders_id_seq"', label: 'public.orders_id_seq',
  increment: 1n, min: 1n, max: 9223372036854775807n, next: 1n, highest: null, ...over,
});

describe('keys that cannot collide', () => {
  it('finds a key sequence that two masters hand out alike, and none once interleaved', () => {
    const alike = new Map([['A', [seq({ next: 5n })]], ['B', [seq({ next: 5n })]]]);
    const risks = keyRisks('shop', alike);
    assert.equal(risks.length, 1);
    assert.match(risks[0]!.message, /public\.orders.*orders_id_seq.*A, B.*ibex sequences shop --interleave/);
    const apart = new Map([['A', [seq({ increment: 2n, next: 101n })]], ['B', [seq({ increment: 2n, next: 102n })]]]);
    assert.deepEqual(keyRisks('shop', apart), []);
    // The same residue on both nodes still collides.
    assert.equal(keyRisks('shop', new Map([['A', [seq({ increment: 2n, next: 101n })]], ['B', [seq({ increment: 2n, next: 103n })]]])).length, 1);
  });

  it('plans restarts above every value handed out or held, one residue per node', () => {
    assert.equal(restartAbove(100n, 1, 3n), 103n);
    assert.equal(restartAbove(100n, 2, 3n), 101n);
    assert.equal(restartAbove(100n, 3, 3n), 102n);
    const plan = planInterleave(new Map([['A', [seq({ next: 41n, highest: 57n })]], ['B', [seq({ next: 12n, highest: 57n })]]]), ['A', 'B']);
    assert.equal(plan.highest, 57n);
    assert.deepEqual(plan.steps.map((s) => [s.node, s.increment, s.restart]), [['A', 2n, 59n], ['B', 2n, 58n]]);
    assert.throws(() => planInterleave(new Map([['A', [seq({ next: 5n, highest: 10n, max: 6n })]], ['B', [seq({})]]]), ['A', 'B']), /beyond its MAXVALUE/);
  });

  it('set up two masters with a bigserial key', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE orders (id bigserial PRIMARY KEY, item text, at timestamptz DEFAULT clock_timestamp())`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'shop', { dbs: { A: 'source', B: 'source' }, tables: ['public.orders'] });
  });

  it('warns at "ibex sequences" and refuses to interleave without --yes when it cannot ask', async () => {
    const r = await env.cli('sequences', 'shop');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /warning: table public\.orders: key id comes from sequence public\.orders_id_seq/);
    const v = await env.cli('validate', 'shop');
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /warning: table public\.orders: key id comes from sequence public\.orders_id_seq/);
    const refused = await env.cli('sequences', 'shop', '--interleave');
    assert.equal(refused.code, 2);
    assert.match(refused.err, /add --yes/);
    const dry = await env.cli('--dry-run', 'sequences', 'shop', '--interleave');
    assert.equal(dry.code, 0, dry.err);
    assert.match(dry.out, /INCREMENT BY 2 RESTART WITH/);
    assert.match(dry.out, /nothing was changed/);
    const s = await env.query(0, `SELECT increment_by::text AS i FROM pg_sequences WHERE sequencename = 'orders_id_seq'`);
    assert.equal(s[0]!.i, '1');
  });

  it('interleaves while one node writes, then both masters insert at once and every order reaches both', async () => {
    const r = runner(env, 'shop');
    // Writes on A go on while the plan is made and applied.
    const during = pgbenchInserts(0, 2, 300);
    const done = await env.cli('sequences', 'shop', '--interleave', '--yes');
    assert.equal(done.code, 0, done.err);
    await during;
    await runOk(r);
    const after1 = await env.cli('sequences', 'shop');
    assert.doesNotMatch(after1.out, /warning/);
    // The pgbench case of the issue: both masters insert orders at the same time.
    await Promise.all([pgbenchInserts(0, 2, 500), pgbenchInserts(1, 2, 500)]);
    for (let i = 0; i < 5; i++) await runOk(r);
    const counts = await Promise.all([0, 1].map(async (i) => Number((await env.query(i, `SELECT count(*)::int AS n FROM orders`))[0]!.n)));
    assert.deepEqual(counts, [2600, 2600]);
    const conflicts = await env.query(0, `SELECT count(*)::int AS n FROM ibex.conflict WHERE sync = 'shop'`, [], 'ibexctl');
    assert.equal(Number(conflicts[0]!.n), 0);
    const v = await env.cli('validate', 'shop');
    assert.equal(v.code, 0, v.out + v.err);
  });

  it('warns at add sync, and interleaves at once with keys=interleave', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE invoices (id serial PRIMARY KEY, total numeric)`);
    const warned = await env.cli('add', 'sync', 'bills', 'tables=public.invoices', 'dbs=A:source,B:source');
    assert.equal(warned.code, 0, warned.err);
    assert.match(warned.out, /warning: table public\.invoices: key id comes from sequence public\.invoices_id_seq/);
    assert.equal((await env.cli('remove', 'sync', 'bills')).code, 0);
    const bad = await env.cli('add', 'sync', 'bills', 'tables=public.invoices', 'dbs=A:source,B:source', 'keys=maybe');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /bad value "maybe" for keys/);
    const done = await env.cli('add', 'sync', 'bills', 'tables=public.invoices', 'dbs=A:source,B:source', 'keys=interleave');
    assert.equal(done.code, 0, done.err);
    assert.match(done.out, /INCREMENT BY 2 RESTART WITH/);
    const incs = await Promise.all([0, 1].map(async (i) => (await env.query(i, `SELECT increment_by::text AS i FROM pg_sequences WHERE sequencename = 'invoices_id_seq'`))[0]!.i));
    assert.deepEqual(incs, ['2', '2']);
    const after = await env.cli('sequences', 'bills');
    assert.doesNotMatch(after.out, /warning/);
  });

  it('installs a snowflake id function that keeps each node\'s id', async () => {
    const r = await env.cli('sequences', 'shop', '--snowflake');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /A: ibex_keys\.snowflake_id\(\) installed as node 1/);
    assert.match(r.out, /B: ibex_keys\.snowflake_id\(\) installed as node 2/);
    const again = await env.cli('sequences', 'shop', '--snowflake');
    assert.match(again.out, /A: .* as node 1/);
    const ids = await Promise.all([0, 1].map(async (i) => (await env.query(i, `SELECT ibex_keys.snowflake_id()::text AS a, ibex_keys.snowflake_id()::text AS b`))[0]!));
    const node = (id: unknown): bigint => (BigInt(String(id)) >> 12n) & 1023n;
    assert.deepEqual(ids.map((x) => node(x.a)), [1n, 2n]);
    assert.notEqual(ids[0]!.a, ids[0]!.b);
  });
});

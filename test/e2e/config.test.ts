/**
 * The configuration of a 3-master mesh through `bin/ibex` as a subprocess:
 * three dbs, eleven tables (foreign keys, composite keys, awkward names) and
 * one sync, then `list syncs --json`.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { runCliProcess, useClusters, type CliResult } from '../helpers/env.js';

const env = useClusters(3);
const LONG = 'ledger_' + 'x'.repeat(56);

const SCHEMA = `
  CREATE SCHEMA s2;
  CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
  CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, total numeric(12,2));
  CREATE TABLE products (sku text PRIMARY KEY, price numeric);
  CREATE TABLE order_items (order_id bigint REFERENCES orders, line int, sku text REFERENCES products, PRIMARY KEY (order_id, line));
  CREATE TABLE inventory (warehouse text, sku text REFERENCES products, qty int, PRIMARY KEY (warehouse, sku));
  CREATE TABLE "Mixed Case Table" (id int PRIMARY KEY, "Some Col" text);
  CREATE TABLE "quote""d" (id uuid PRIMARY KEY, v text);
  CREATE TABLE events (id bigint NOT NULL, ts timestamptz NOT NULL, payload jsonb, UNIQUE (id, ts));
  CREATE TABLE s2.audit (id bigserial PRIMARY KEY, note text);
  CREATE TABLE bin (k bytea PRIMARY KEY, v text);
  CREATE TABLE "${LONG}" (id int PRIMARY KEY, amount numeric);
`;

function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.err}${r.out}`);
  return r;
}

describe('bin/ibex configures a 3-master sync', () => {
  let ibex: (...args: string[]) => Promise<CliResult>;
  before(async () => {
    await Promise.all(env.clusters.map((c) => c.psql(SCHEMA, 'app')));
    ibex = (...args) => runCliProcess(['--control', env.controlUrl, ...args]);
  });

  it('installs, adds three dbs, eleven tables and a sync, and lists it as JSON', async () => {
    ok(await ibex('install'));
    for (const [i, name] of ['A', 'B', 'C'].entries()) {
      const p = env.params(i);
      ok(await ibex('add', 'db', name, `host=${p.host}`, `port=${p.port}`, 'dbname=app', 'user=postgres'));
    }
    const added = ok(await ibex('add', 'all', 'tables', 'db=A', 'relgroup=shop'));
    assert.match(added.out, /new tables: 11, already registered: 0, skipped: 0/);
    const sync = ok(await ibex('add', 'sync', 'mesh', 'relgroup=shop', 'dbs=A:source,B:source,C:source', 'conflict_strategy=latest', 'autokick=1'));
    assert.match(sync.out, /added sync mesh/);

    const list = ok(await ibex('list', 'syncs', '--json'));
    const syncs = JSON.parse(list.out) as Record<string, unknown>[];
    assert.equal(syncs.length, 1);
    const s = syncs[0]!;
    assert.equal(s.name, 'mesh');
    assert.equal(s.status, 'active');
    assert.equal(s.relgroup, 'shop');
    assert.equal(s.conflict_strategy, 'latest');
    assert.deepEqual(s.dbs, [{ db: 'A', role: 'source' }, { db: 'B', role: 'source' }, { db: 'C', role: 'source' }]);
    assert.deepEqual([...(s.tables as string[])].sort(), [
      'public."Mixed Case Table"', `public.${LONG}`, 'public."quote""d"', 'public.bin', 'public.customers', 'public.events',
      'public.inventory', 'public.order_items', 'public.orders', 'public.products', 's2.audit',
    ].sort());
    assert.deepEqual(s.changed_options, {});
    assert.deepEqual(Object.keys(s), ['name', 'status', 'status_reason', 'relgroup', 'dbgroup', 'dbs', 'tables', 'sequences',
      'conflict_strategy', 'clock', 'options', 'changed_options', 'about']);

    // The keys found: composite primary keys and the unique-index fallback.
    const control = await env.client(0, 'ibexctl');
    const keys = await control.query(`SELECT relname, key_columns::text AS k, key_kind FROM ibex.relation WHERE relname IN ('order_items', 'events') ORDER BY relname`);
    assert.deepEqual(keys.rows, [{ relname: 'events', k: '{id,ts}', key_kind: 'unique' }, { relname: 'order_items', k: '{order_id,line}', key_kind: 'primary' }]);
  });
});

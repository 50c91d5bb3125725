/**
 * `ibex quickstart`: the embedded default. Three throwaway local clusters, a
 * control database, a small shop schema with awkward names and key types, a
 * 3-master sync and the daemon, all in this process; then a live show: rows
 * written on each node arriving on the others, a conflict resolved per row,
 * and `status`. Runs until Ctrl-C (or to the end with --exit) and removes
 * everything it made unless --keep.
 */
import type pg from 'pg';
import { createClusters, type Cluster, type ClusterSet } from '../cluster/clusters.js';
import { listConflicts } from '../control/conflict-store.js';
import { connect, endQuietly } from '../db/connect.js';
import { createLogger } from '../log.js';
import { Daemon } from '../engine/daemon.js';
import { IbexError, usage } from '../errors.js';
import type { Context } from './context.js';

const SCHEMA = `
CREATE SCHEMA shop;
CREATE TABLE shop."Product Catalog" (
  sku        text PRIMARY KEY,
  "Name"     text NOT NULL UNIQUE,
  "Unit Price" numeric(12,2) NOT NULL,
  tags       text[],
  updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE shop.customer (
  id         uuid PRIMARY KEY,
  email      text NOT NULL UNIQUE,
  "Full Name" text,
  since      date NOT NULL DEFAULT current_date);
CREATE TABLE shop."order" (
  id          bigint PRIMARY KEY,
  customer_id uuid NOT NULL REFERENCES shop.customer (id),
  placed_at   timestamptz NOT NULL DEFAULT now(),
  note        text);
CREATE TABLE shop.order_line (
  order_id  bigint NOT NULL REFERENCES shop."order" (id) ON DELETE CASCADE,
  line_no   smallint NOT NULL,
  sku       text NOT NULL REFERENCES shop."Product Catalog" (sku),
  qty       integer NOT NULL CHECK (qty > 0),
  PRIMARY KEY (order_id, line_no));
`;

const NODES = ['A', 'B', 'C'] as const;

interface Show {
  set: ClusterSet;
  nodes: Map<string, pg.Client>;
  say: (line: string) => void;
}

/** Wait until `check` holds on every node, returning the milliseconds it took. */
async function arrival(show: Show, sql: string, want: string, timeoutMs = 20_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    let ok = true;
    for (const c of show.nodes.values()) {
      const r = await c.query(sql);
      if (String(r.rows[0]?.v) !== want) ok = false;
    }
    if (ok) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new IbexError('run_failed', `the change did not reach every node within ${timeoutMs / 1000} s (${sql})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every table identical on every node? Returns the tables that differ. */
async function differences(show: Show): Promise<string[]> {
  const out: string[] = [];
  for (const t of ['shop."Product Catalog"', 'shop.customer', 'shop."order"', 'shop.order_line']) {
    const sums = new Set<string>();
    for (const c of show.nodes.values()) {
      const r = await c.query(`SELECT count(*) || '/' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') AS v FROM ${t} x`);
      sums.add(String(r.rows[0].v));
    }
    if (sums.size > 1) out.push(t);
  }
  return out;
}

async function cli(ctx: Context, controlUrl: string, args: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await ctx.runCli(['--control', controlUrl, ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  if (code !== 0) throw new IbexError('internal', `quickstart step "ibex ${args.join(' ')}" failed: ${err.trim()}`);
  return out;
}

/** `ibex quickstart [--keep] [--exit]` */
export async function quickstart(ctx: Context, args: string[]): Promise<number> {
  const keep = args.includes('--keep');
  const exitAtEnd = args.includes('--exit');
  const unknown = args.filter((a) => a !== '--keep' && a !== '--exit');
  if (unknown.length) throw usage(`unknown argument "${unknown[0]}" for quickstart: use --keep and/or --exit`);
  const say = (line: string): void => ctx.say(line, true);
  say('ibex quickstart: creating 3 throwaway PostgreSQL clusters …');
  const set = await createClusters({ count: 3, label: 'ibex-quickstart' });
  const show: Show = { set, nodes: new Map(), say };
  let daemon: Daemon | undefined;
  let stopping = false;
  const onSignal = (): void => {
    if (stopping) return;
    stopping = true;
    say('\nstopping …');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const [a] = set.clusters as [Cluster, Cluster, Cluster];
    await a.createDatabase('ibex');
    const controlUrl = a.url('ibex');
    for (const [i, c] of set.clusters.entries()) {
      await c.createDatabase('shop');
      await c.psql(SCHEMA, 'shop');
      show.nodes.set(NODES[i]!, await connect(c.params('shop'), { applicationName: 'ibex-quickstart' }));
    }
    say(`control database: ${controlUrl}`);
    await cli(ctx, controlUrl, ['install']);
    for (const [i, c] of set.clusters.entries()) {
      await cli(ctx, controlUrl, ['add', 'db', NODES[i]!, 'dbname=shop', `host=${c.socketDir}`, `port=${c.port}`, 'user=postgres']);
    }
    await cli(ctx, controlUrl, ['add', 'all', 'tables', 'db=A', '-n', 'shop', 'relgroup=shop']);
    await cli(ctx, controlUrl, ['add', 'sync', 'demo', 'relgroup=shop', 'dbs=A:source,B:source,C:source', 'conflict_strategy=latest']);
    say('configured: dbs A, B, C; relgroup "shop" (4 tables); 3-master sync "demo" (latest change wins, per row)');

    const log = createLogger({ level: process.env.IBEX_LOG_LEVEL ?? 'warn' });
    daemon = new Daemon({ controlUrl, log, checktimeMs: 2000 });
    await daemon.start();
    say('daemon started in this process\n');

    const A = show.nodes.get('A')!;
    const B = show.nodes.get('B')!;
    const C = show.nodes.get('C')!;
    await A.query(`INSERT INTO shop."Product Catalog" (sku, "Name", "Unit Price", tags) VALUES
      ('sku-1', 'Ibex horn polish', 9.90, '{care,"horn & hoof"}'), ('sku-2', 'Rope, 30 m', 54.00, '{climbing}')`);
    say(`1. two products inserted on A … on every node after ${await arrival(show, `SELECT count(*) AS v FROM shop."Product Catalog"`, '2')} ms`);
    await B.query(`INSERT INTO shop.customer (id, email, "Full Name") VALUES ('7e1c0a3e-5a8b-4d0e-9a55-2b4c6c1f0001', 'zoe@example.com', 'Zoë O''Brien')`);
    await B.query(`BEGIN;
      INSERT INTO shop."order" (id, customer_id, note) VALUES (1001, '7e1c0a3e-5a8b-4d0e-9a55-2b4c6c1f0001', E'gift \\\\ wrap it');
      INSERT INTO shop.order_line VALUES (1001, 1, 'sku-1', 2), (1001, 2, 'sku-2', 1);
      COMMIT;`);
    say(`2. a customer and an order with two lines written on B … on every node after ${await arrival(show, `SELECT count(*) AS v FROM shop.order_line`, '2')} ms`);
    await C.query(`UPDATE shop."Product Catalog" SET "Unit Price" = 49.50 WHERE sku = 'sku-2'`);
    say(`3. a price changed on C … on every node after ${await arrival(show, `SELECT "Unit Price" AS v FROM shop."Product Catalog" WHERE sku = 'sku-2'`, '49.50')} ms`);

    // A conflict: pause the sync, change the same row on A and B, resume.
    await cli(ctx, controlUrl, ['pause', 'demo']);
    await new Promise((r) => setTimeout(r, 300));
    await A.query(`UPDATE shop.customer SET "Full Name" = 'Zoë O''Brien (edited on A)' WHERE email = 'zoe@example.com'`);
    await B.query(`UPDATE shop.customer SET "Full Name" = 'Zoë O''Brien-Smith (edited on B, later)' WHERE email = 'zoe@example.com'`);
    await cli(ctx, controlUrl, ['resume', 'demo']);
    const ms = await arrival(show, `SELECT "Full Name" AS v FROM shop.customer WHERE email = 'zoe@example.com'`, `Zoë O'Brien-Smith (edited on B, later)`);
    const ctl = await connect(a.params('ibex'), { parseTypes: true });
    const [last] = await listConflicts(ctl, { sync: 'demo', schemaLike: null, relLike: null, sinceInterval: null, sinceTime: null, status: null, limit: 1 });
    await ctl.end();
    const loser = last?.losers[0];
    const lost = (loser?.row as Record<string, unknown> | null | undefined)?.['Full Name'];
    say(`4. the same customer edited on A and then on B while the sync was paused: resolved in ${ms} ms;` +
      (last && loser ? ` winner ${last.winner}, the version overwritten on ${loser.db} ("${String(lost)}") is kept in the conflict log` : ''));

    const diff = await differences(show);
    say(diff.length ? `\nNOT CONVERGED: ${diff.join(', ')} differ` : '\nall 4 tables are identical on A, B and C');
    say('\n' + (await cli(ctx, controlUrl, ['status'])).trimEnd());
    say('\nplay with it (each node is database "shop"):');
    for (const [i, c] of set.clusters.entries()) say(`  psql -h ${c.socketDir} -p ${c.port} -U postgres shop   # node ${NODES[i]}`);
    say(`  ibex --control '${controlUrl}' status`);
    if (exitAtEnd) return diff.length ? 1 : 0;
    say('\nreplicating live; Ctrl-C to stop' + (keep ? '' : ' and remove everything'));
    while (!stopping) await new Promise((r) => setTimeout(r, 200));
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // Cleanup of a demo that is ending anyway: its clusters are removed next, and the daemon's sessions with them.
    await daemon?.stop().catch(() => {});
    for (const c of show.nodes.values()) await endQuietly(c);
    if (keep) {
      set.detach();
      say(`kept the clusters under ${set.root} (stop each with: pg_ctl -D ${set.root}/n0 stop, n1, n2)`);
    }
    else await set.destroy();
  }
}

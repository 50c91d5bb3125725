/**
 * The real daemon (`bin/ibex start`, a child process) replicating to targets of other kinds: a
 * fresh database on the shared MariaDB, a SQLite file and a private Redis, configured through the
 * CLI; `ibex status` lists them like the PostgreSQL dbs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { useClusters, ok, waitFor } from '../helpers/env.js';
import { useDaemonProcess } from '../helpers/daemon.js';
import { adminConnection, freshDatabase } from '../helpers/mariadb-server.js';
import { privateRedis, type RedisServer } from '../helpers/redis-server.js';
import { canonicalText } from '../../src/targets/codec.js';
import { openTarget } from '../../src/targets/registry.js';
import type { TableSpec, TargetParams, TextRow } from '../../src/targets/target.js';

const env = useClusters(2);
const daemon = useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000' }, 'targets-daemon');

const COLS: [string, string][] = [['id', 'integer'], ['v', 'text'], ['at', 'timestamp with time zone']];
const SPEC: TableSpec = {
  label: 'public.item', schema: 'public', name: 'item', targetName: 'item',
  columns: COLS.map(([name, type]) => ({ name, type, notNull: name === 'id' })), keys: ['id'],
};

const sortRows = (rows: TextRow[]): TextRow[] => rows.map((r) => JSON.stringify(r)).sort().map((j) => JSON.parse(j) as TextRow);

async function sourceRows(i: number): Promise<TextRow[]> {
  const r = await env.query(i, `SELECT id::text AS c0, v AS c1, at::text AS c2 FROM item`);
  return sortRows(r.map((x) => COLS.map(([, type], n) => canonicalText(type, x[`c${n}`] === null ? null : String(x[`c${n}`])))));
}

async function targetRows(params: TargetParams): Promise<TextRow[]> {
  const t = await openTarget(params);
  try {
    const out: TextRow[] = [];
    for await (const row of t.scan(SPEC)) out.push(row);
    return sortRows(out);
  } finally {
    await t.close();
  }
}

let maria: { dbname: string; drop(): Promise<void> };
let redis: RedisServer;
let dir = '';
let targets: TargetParams[] = [];

before(async () => {
  maria = await freshDatabase();
  redis = await privateRedis();
  await redis.start();
  dir = mkdtempSync(join(tmpdir(), 'ibex-targets-daemon-'));
  targets = [
    { name: 'M', kind: 'mariadb', host: '127.0.0.1', port: 3306, user: 'root', dbname: maria.dbname },
    { name: 'S', kind: 'sqlite', dbname: join(dir, 'target.sqlite') },
    { name: 'R', kind: 'redis', host: '127.0.0.1', port: redis.port, dbname: '0' },
  ];
});
after(async () => {
  await maria?.drop();
  await redis?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Until every target holds what A holds (and B agrees). */
async function convergedEverywhere(): Promise<void> {
  await waitFor('the daemon to replicate to every target', async () => {
    const a = await sourceRows(0);
    if (JSON.stringify(await sourceRows(1)) !== JSON.stringify(a)) return false;
    for (const t of targets) if (JSON.stringify(await targetRows(t)) !== JSON.stringify(a)) return false;
    return true;
  }, 60_000, 250).catch((err: unknown) => {
    throw new Error(`${String(err)}\n--- daemon log ---\n${daemon.logTail()}`);
  });
}

describe('the daemon replicates to MariaDB, SQLite and Redis', () => {
  it('set up through the CLI, start, replicate inserts, updates and deletes from both masters', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE item (id int PRIMARY KEY, v text, at timestamptz)`);
    await env.query(0, `INSERT INTO item SELECT g, 'row ' || g, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute' FROM generate_series(1, 1000) g`);
    await env.query(1, `INSERT INTO item SELECT g, 'row ' || g, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute' FROM generate_series(1, 1000) g`);
    ok(await daemon.ibex('install'));
    for (const [name, i] of [['A', 0], ['B', 1]] as const) {
      const p = env.params(i);
      ok(await daemon.ibex('add', 'db', name, `host=${p.host}`, `port=${p.port}`, 'dbname=app', `user=${p.user}`));
    }
    ok(await daemon.ibex('add', 'db', 'M', 'type=mariadb', 'host=127.0.0.1', 'port=3306', 'user=root', `dbname=${maria.dbname}`));
    // add db opens only a file that exists: an empty one, its table made below from ibex schema.
    new Database(targets[1]!.dbname!).close();
    ok(await daemon.ibex('add', 'db', 'S', 'type=sqlite', `dbname=${targets[1]!.dbname}`));
    ok(await daemon.ibex('add', 'db', 'R', 'type=redis', 'host=127.0.0.1', `port=${redis.port}`, 'dbname=0'));
    ok(await daemon.ibex('add', 'table', 'public.item', 'db=A', 'relgroup=g'));
    const mddl = ok(await daemon.ibex('schema', '--db=M', 'relgroup=g')).out;
    const c = await adminConnection(3306, maria.dbname);
    for (const s of mddl.split(/;\s*\n/).map((x) => x.trim().replace(/;$/, '')).filter(Boolean)) await c.query(s);
    await c.end();
    const sq = new Database(targets[1]!.dbname!);
    sq.exec(ok(await daemon.ibex('schema', '--db=S', 'relgroup=g')).out);
    sq.close();
    ok(await daemon.ibex('add', 'sync', 'fan', 'relgroup=g', 'dbs=A:source,B:source,M:target,S:target,R:target', 'onetimecopy=1'));
    await daemon.start();
    await convergedEverywhere();
    await env.query(0, `UPDATE item SET v = 'A: it''s \\N' WHERE id <= 100; DELETE FROM item WHERE id BETWEEN 900 AND 950`);
    await env.query(1, `INSERT INTO item VALUES (5000, 'from B', now()); UPDATE item SET at = NULL WHERE id BETWEEN 200 AND 210`);
    await convergedEverywhere();
    // status shows the sync like one with PostgreSQL targets only: running, its last good run, no error.
    const status = ok(await daemon.ibex('status', 'fan'));
    assert.match(status.out, /daemon: running/, status.out);
    assert.match(status.out, /Last good run\s*│ #\d+/, status.out);
    assert.match(status.out, /Last error\s*│ -/, status.out);
    assert.doesNotMatch(status.out, /stalled|paused/, status.out);
    const dbs = ok(await daemon.ibex('list', 'dbs')).out;
    for (const [db, kind] of [['M', 'mariadb'], ['S', 'sqlite'], ['R', 'redis']]) assert.match(dbs, new RegExp(`\\b${db}\\b.*\\b${kind}\\b`), dbs);
    await daemon.stop();
  });

  it('refills a Redis that restarted empty together with the daemon (a new process has seen nothing there)', async () => {
    await redis.kill();
    await redis.start();
    assert.deepEqual(await targetRows(targets[2]!), [], 'the restarted Redis is empty');
    await env.query(0, `INSERT INTO item VALUES (6000, 'after both restarted', now())`);
    await daemon.start();
    await convergedEverywhere();
    const runs = await env.query(0, `SELECT details::text AS d FROM ibex.run WHERE sync = 'fan' AND details ? 'refilled'`, [], 'ibexctl');
    assert.match(String(runs[0]?.d), /"refilled": \["R"\]/);
    await daemon.stop();
  });
});

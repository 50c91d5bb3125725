/**
 * A onetimecopy to a MariaDB database and to a SQLite file by a runner that lost its lease in the
 * middle of the copy (in-process runners, so the moment is exact): the stale runner is held just
 * before it opens its next chunk on the target — its snapshot of that chunk on the source already
 * taken — while the new owner (a higher epoch) finishes the copy and applies newer changes to rows
 * of that chunk. Released, the stale runner must commit nothing there: its chunk, read before
 * those changes, would put the old rows back, and no later run would repair them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useClusters } from '../helpers/env.js';
import { addSync, setupControl, testLog } from '../helpers/sync.js';
import { adminConnection, freshDatabase } from '../helpers/mariadb-server.js';
import { SyncRunner } from '../../src/engine/runner.js';
import { openTarget } from '../../src/targets/registry.js';
import type { TableSpec, Target, TargetParams, TextRow } from '../../src/targets/target.js';

const env = useClusters(1);
const SPEC: TableSpec = {
  label: 'public.t', schema: 'public', name: 't', targetName: 't',
  columns: [{ name: 'id', type: 'integer', notNull: true }, { name: 'v', type: 'text', notNull: false }], keys: ['id'],
};

let maria: { dbname: string; drop(): Promise<void> };
let dir = '';
const runners: SyncRunner[] = [];
const chunkRows = process.env.IBEX_COPY_CHUNK_ROWS;
before(async () => {
  maria = await freshDatabase();
  dir = mkdtempSync(join(tmpdir(), 'ibex-fencing-copy-'));
  process.env.IBEX_COPY_CHUNK_ROWS = '500';
});
after(async () => {
  await Promise.all(runners.map((r) => r.close()));
  await maria?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (chunkRows === undefined) delete process.env.IBEX_COPY_CHUNK_ROWS;
  else process.env.IBEX_COPY_CHUNK_ROWS = chunkRows;
});

const ctl = (text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> => env.query(0, text, values, 'ibexctl');

async function rowsOf(params: TargetParams, spec: TableSpec): Promise<TextRow[]> {
  const t = await openTarget(params);
  try {
    const out: TextRow[] = [];
    for await (const row of t.scan(spec)) out.push(row);
    return out.sort((a, b) => Number(a[0]) - Number(b[0]));
  } finally {
    await t.close();
  }
}

/** Targets as the registry opens them, but the `holdAt`-th begin() waits until `release` is called. */
function gated(holdAt: number): { open: (p: TargetParams) => Promise<Target>; held: Promise<void>; release: () => void } {
  let begins = 0;
  let reached!: () => void;
  let release!: () => void;
  const held = new Promise<void>((r) => (reached = r));
  const gate = new Promise<void>((r) => (release = r));
  const open = async (p: TargetParams): Promise<Target> => {
    const t = await openTarget(p);
    const begin = t.begin.bind(t);
    t.begin = async () => {
      if (++begins === holdAt) {
        reached();
        await gate;
      }
      await begin();
    };
    return t;
  };
  return { open, held, release };
}

function newRunner(sync: string, epoch: number, open?: (p: TargetParams) => Promise<Target>): SyncRunner {
  const r = new SyncRunner({ controlUrl: env.controlUrl, sync, log: testLog, epoch, ...(open ? { openTarget: open } : {}) });
  runners.push(r);
  return r;
}

async function staleCopy(sync: string, params: TargetParams): Promise<void> {
  await env.query(0, `CREATE TABLE ${sync} (id int PRIMARY KEY, v text); INSERT INTO ${sync} SELECT g, 'old ' || g FROM generate_series(1, 3000) g`);
  const spec = { ...SPEC, label: `public.${sync}`, name: sync, targetName: sync };
  await addSync(env, sync, { dbs: { A: 'source', [params.name]: 'target' }, tables: [`public.${sync}`], options: { onetimecopy: 1 } });
  await ctl(`INSERT INTO ibex.sync_lease (sync, epoch, expires) VALUES ($1, 1, now() + interval '1 hour')`, [sync]);
  // Held at its 3rd begin on the target: after emptying it and committing chunk 1 (rows 1-500), before chunk 2.
  const g = gated(3);
  const stale = newRunner(sync, 1, g.open);
  const staleRun = stale.run('onetimecopy');
  await g.held;
  // Another daemon takes the lease, finishes the copy, and applies changes to rows of chunk 2.
  await ctl(`UPDATE ibex.sync_lease SET epoch = 2 WHERE sync = $1`, [sync]);
  const owner = newRunner(sync, 2);
  const copy = await owner.run('onetimecopy');
  assert.equal(copy.status, 'good', copy.error);
  await env.query(0, `UPDATE ${sync} SET v = 'new ' || id WHERE id BETWEEN 501 AND 1000`);
  const delta = await owner.run('delta');
  assert.equal(delta.status, 'good', delta.error);
  g.release();
  const res = await staleRun;
  assert.equal(res.status, 'failed', `the stale copy must not go on: ${JSON.stringify(res)}`);
  assert.equal(res.fenced, true, `fenced: ${res.error}`);
  assert.match(res.error ?? '', /ibex fencing: .* newer lease of sync/);
  const want = (await env.query(0, `SELECT id::text AS k, v FROM ${sync} ORDER BY ${sync}.id`)).map((r) => [String(r.k), String(r.v)]);
  const got = await rowsOf(params, spec);
  assert.equal(got.filter((r) => String(r[1]).startsWith('old') && Number(r[0]) >= 501 && Number(r[0]) <= 1000).length, 0, 'no row of chunk 2 went back to its old value');
  assert.deepEqual(got, want);
  assert.equal(Number((await ctl(`SELECT count(*) AS n FROM ibex.copy_progress WHERE sync = $1`, [sync]))[0]!.n), 0, 'the stale runner left no copy progress');
}

describe('fencing of a onetimecopy to targets of other kinds', () => {
  it('set up', async () => {
    await setupControl(env, { A: 0 });
    const p = { host: '127.0.0.1', port: 3306, user: 'root' };
    await ctl(`INSERT INTO ibex.db (name, dbtype, host, port, dbname, dbuser) VALUES ('M', 'mariadb', $1, $2, $3, $4), ('S', 'sqlite', NULL, NULL, $5, NULL)`,
      [p.host, p.port, maria.dbname, p.user, join(dir, 't.sqlite')]);
  });

  it('MariaDB: a runner that lost its lease mid-copy commits no further chunk', async () => {
    const params: TargetParams = { name: 'M', kind: 'mariadb', host: '127.0.0.1', port: 3306, user: 'root', dbname: maria.dbname };
    const t = await openTarget(params);
    const c = await adminConnection(3306, maria.dbname);
    try {
      for (const s of t.createTableSql({ ...SPEC, label: 'public.fm', name: 'fm', targetName: 'fm' })) await c.query(s);
    } finally {
      await c.end();
      await t.close();
    }
    await staleCopy('fm', params);
  });

  it('SQLite: a runner that lost its lease mid-copy commits no further chunk', async () => {
    const params: TargetParams = { name: 'S', kind: 'sqlite', dbname: join(dir, 't.sqlite') };
    const { default: Database } = await import('better-sqlite3');
    const t = await openTarget(params);
    const db = new Database(join(dir, 't.sqlite'));
    try {
      for (const s of t.createTableSql({ ...SPEC, label: 'public.fs', name: 'fs', targetName: 'fs' })) db.exec(s);
    } finally {
      db.close();
      await t.close();
    }
    await staleCopy('fs', params);
  });
});

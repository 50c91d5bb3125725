import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useClusters, runCliProcess, waitFor } from '../helpers/env.js';
import { setupControl, addSync } from '../helpers/sync.js';
import { daemonPaths, readPidFile } from '../../src/cli/daemon.js';

const env = useClusters(2);
const piddir = mkdtempSync(join(tmpdir(), 'ibex-crash-'));
const daemonEnv = { IBEX_PIDDIR: piddir, IBEX_CHECKTIME_MS: '1000' };

after(async () => {
  await runCliProcess(['--control', env.controlUrl, 'stop'], daemonEnv);
  const pid = readPidFile(daemonPaths(env.controlUrl, piddir).pidFile);
  if (pid) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(piddir, { recursive: true, force: true });
});

async function start(): Promise<number> {
  const r = await runCliProcess(['--control', env.controlUrl, 'start'], daemonEnv);
  assert.equal(r.code, 0, r.err + r.out);
  const pid = readPidFile(daemonPaths(env.controlUrl, piddir).pidFile);
  assert.ok(pid, 'start wrote a pid file');
  return pid;
}

async function checksum(i: number): Promise<string> {
  const r = await env.query(i, `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') AS s FROM item t`);
  return String(r[0]!.s);
}

describe('kill -9 of the daemon', () => {
  it('loses and duplicates nothing when the daemon is killed during large runs, again and again', async () => {
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE item (id bigint PRIMARY KEY, grp int, payload text, n bigint NOT NULL DEFAULT 0)`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'crash', { dbs: { A: 'source', B: 'source' }, tables: ['public.item'] });
    await env.query(0, `INSERT INTO item (id, grp, payload) SELECT g, g % 7, repeat(md5(g::text), 2) FROM generate_series(1, 200000) g`);
    let kills = 0;
    const expectedN = new Map<string, number>();
    const bump = (id: string, by: number): void => void expectedN.set(id, (expectedN.get(id) ?? 0) + by);
    const deleted = new Set<string>();
    for (let round = 0; round < 4; round++) {
      const pid = await start();
      // Kill while a run is in progress (or, if the run is too quick, right after it).
      await waitFor('a run to start', async () =>
        (await env.query(0, `SELECT 1 AS x FROM ibex.run WHERE sync = 'crash' AND status = 'running' AND kind = 'delta'`, [], 'ibexctl')).length > 0
        || (await env.query(0, `SELECT 1 AS x FROM ibex.run WHERE sync = 'crash' AND status = 'good' AND started > now() - interval '2 seconds'`, [], 'ibexctl')).length > 0,
      30_000, 5);
      process.kill(pid, 'SIGKILL');
      kills++;
      await waitFor('the daemon to die', async () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      });
      // More work for the next round, on disjoint rows so the expected end state is exact:
      // A updates and deletes even ids, B updates odd ids and inserts its own.
      for (const row of await env.query(0, `UPDATE item SET n = n + 1 WHERE id % 2 = 0 AND id % 5 = ${round} RETURNING id`)) bump(String(row.id), 1);
      for (const row of await env.query(1, `UPDATE item SET n = n + 100 WHERE id % 2 = 1 AND id % 11 = ${round} RETURNING id`)) bump(String(row.id), 100);
      await env.query(1, `INSERT INTO item (id, grp, payload) SELECT 300000 + g + ${round} * 10000, -1, 'from B' FROM generate_series(1, 5000) g`);
      for (const row of await env.query(0, `DELETE FROM item WHERE id % 2 = 0 AND id % 97 = ${round} AND id <= 200000 RETURNING id`)) deleted.add(String(row.id));
    }
    assert.equal(kills, 4);
    await start();
    const want = await waitFor('both masters to converge', async () => {
      const [a, b] = [await checksum(0), await checksum(1)];
      return a === b ? a : undefined;
    }, 120_000, 200);
    assert.ok(want.startsWith(`${200000 - deleted.size + 20000}:`), `${want} vs ${200000 - deleted.size + 20000} rows expected`);
    for (const id of deleted) expectedN.delete(id);
    // Every update landed exactly once on both masters: no change lost, none applied twice.
    const ids = [...expectedN.keys()];
    for (const i of [0, 1]) {
      const bad = await env.query(i, `SELECT count(*) AS n FROM item t JOIN unnest($1::bigint[], $2::bigint[]) AS e(id, n) ON e.id = t.id WHERE t.n <> e.n`,
        [ids, ids.map((id) => expectedN.get(id))]);
      assert.equal(bad[0]!.n, '0');
      const stray = await env.query(i, `SELECT count(*) AS n FROM item WHERE n <> 0 AND NOT id = ANY($1::bigint[])`, [ids]);
      assert.equal(stray[0]!.n, '0');
    }
    assert.equal(await checksum(0), await checksum(1));
  });
});

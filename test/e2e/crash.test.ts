/**
 * kill -9 of the real daemon process (`bin/ibex start`) at random moments of
 * large runs, ten times in a row (DESIGN invariant 3): in the middle of a
 * COPY, or a random time after a run began (gather, apply, commit, cursors).
 * Random choices come from IBEX_TEST_SEED (printed, and named in a failure).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters, waitFor } from '../helpers/env.js';
import { useDaemonProcess } from '../helpers/daemon.js';
import { rng, testSeed, withSeed } from '../helpers/seed.js';
import { setupControl, addSync } from '../helpers/sync.js';

const env = useClusters(2);
const daemon = useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000' }, 'crash');
const seed = testSeed();
const random = rng(seed);
const KILLS = 10;

async function checksum(i: number): Promise<string> {
  const r = await env.query(i, `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') AS s FROM item t`);
  return String(r[0]!.s);
}

const ctl = (text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> => env.query(0, text, values, 'ibexctl');

/** The largest number of rows an ibex COPY on cluster i has processed right now. */
async function copyProgress(i: number): Promise<number> {
  const r = await env.query(i, `SELECT coalesce(max(p.tuples_processed), 0) AS n FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)
                                 WHERE a.application_name LIKE 'ibex/%'`);
  return Number(r[0]!.n);
}

/**
 * Wait for a random moment of the first delta run after run id `after`:
 * either once an ibex COPY has moved a random number of rows, or a random
 * time after the run began. Returns how the moment was chosen.
 */
async function randomMoment(after: number): Promise<string> {
  const run = await waitFor('a delta run to start', async () =>
    (await ctl(`SELECT id FROM ibex.run WHERE sync = 'crash' AND kind = 'delta' AND id > $1 ORDER BY id LIMIT 1`, [after]))[0]?.id,
  60_000, 5);
  if (random.next() < 0.5) {
    const rows = random.int(1, 15_000);
    const ended = async (): Promise<boolean> => (await ctl(`SELECT 1 FROM ibex.run WHERE id = $1 AND ended IS NOT NULL`, [run])).length > 0;
    await waitFor('a COPY to move some rows, or the run to end', async () =>
      (await copyProgress(1)) >= rows || (await copyProgress(0)) >= rows || (await ended()), 60_000, 5);
    return `after ${rows} rows copied`;
  }
  const ms = random.int(0, 1500);
  await new Promise((r) => setTimeout(r, ms));
  return `${ms} ms into the run`;
}

describe('kill -9 of the daemon', () => {
  it(`loses and duplicates nothing when the daemon is killed at random moments of large runs, ${KILLS} times in a row`, () => withSeed(seed, async () => {
    console.log(`# IBEX_TEST_SEED=${seed}`);
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE item (id bigint PRIMARY KEY, grp int, payload text, n bigint NOT NULL DEFAULT 0)`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'crash', { dbs: { A: 'source', B: 'source' }, tables: ['public.item'] });
    await env.query(0, `INSERT INTO item (id, grp, payload) SELECT g, g % 7, repeat(md5(g::text), 2) FROM generate_series(1, 200000) g`);
    const expectedN = new Map<string, number>();
    const bump = (id: string, by: number): void => void expectedN.set(id, (expectedN.get(id) ?? 0) + by);
    const deleted = new Set<string>();
    const moments: string[] = [];
    let inserted = 0;
    for (let round = 0; round < KILLS; round++) {
      const lastRun = Number((await ctl(`SELECT coalesce(max(id), 0) AS id FROM ibex.run`))[0]!.id);
      await daemon.start();
      moments.push(await randomMoment(lastRun));
      await daemon.kill();
      // More work for the next round, on disjoint rows so the expected end state is exact:
      // A updates and deletes even ids, B updates odd ids and inserts its own.
      for (const row of await env.query(0, `UPDATE item SET n = n + 1 WHERE id % 2 = 0 AND id % 5 = ${round % 5} AND id <= 200000 RETURNING id`)) bump(String(row.id), 1);
      for (const row of await env.query(1, `UPDATE item SET n = n + 100 WHERE id % 2 = 1 AND id % 11 = ${round} AND id <= 200000 RETURNING id`)) bump(String(row.id), 100);
      await env.query(1, `INSERT INTO item (id, grp, payload) SELECT 300000 + g + ${round} * 10000, -1, 'from B' FROM generate_series(1, 3000) g`);
      inserted += 3000;
      for (const row of await env.query(0, `DELETE FROM item WHERE id % 2 = 0 AND id % 97 = ${round} AND id <= 200000 RETURNING id`)) deleted.add(String(row.id));
    }
    await daemon.start();
    const want = await waitFor('both masters to converge', async () => {
      const [a, b] = [await checksum(0), await checksum(1)];
      return a === b ? a : undefined;
    }, 120_000, 200);
    // Runs a kill cut short are closed as failed by the next daemon: how many kills hit a run.
    const cut = Number((await ctl(`SELECT count(*) AS n FROM ibex.run WHERE sync = 'crash' AND error LIKE 'the daemon running this ended before the run did%'`))[0]!.n);
    console.log(`# kills: ${moments.join('; ')}; ${cut} of them cut a run short`);
    assert.ok(cut >= KILLS / 2, `only ${cut} of ${KILLS} kills hit a run in progress`);
    assert.ok(want.startsWith(`${200000 - deleted.size + inserted}:`), `${want} vs ${200000 - deleted.size + inserted} rows expected`);
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
  }, () => `daemon log (last lines):\n${daemon.logTail(30)}`));
});

/**
 * Randomized hot keys across three masters: writers on every node change the same ten keys
 * (updates, deletes, inserts) while the runs apply — between runs and, through the afterGather
 * hook, between a run's gather and its apply, the race that used to fail whole runs. Two syncs:
 * latest, and an ordered list of dbs. Every run must end good or empty (a race costs keys, not
 * runs), and after the writers stop the dbs converge: `ibex validate` exits 0 for both syncs.
 *
 * IBEX_TEST_SEED=<n> replays a writer script (timing still varies).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { rng, testSeed } from '../helpers/seed.js';
import { setupControl, addSync, runner, closeRunners } from '../helpers/sync.js';

const env = useClusters(3);
after(closeRunners);

const ALL = [0, 1, 2];
const SEED = testSeed();
const ROUNDS = 40;
const KEYS = 10;

const random = rng(SEED);
const int = (lo: number, hi: number): number => random.int(lo, hi);

/** Keys written since the last run, with the node that wrote them. */
const touched: { id: number; node: number }[] = [];

/** One random write to a hot key of `table`: on a random node, or (`race`) on another node than one that just wrote it. */
async function write(table: string, tag: string, race = false): Promise<void> {
  const prior = race && touched.length ? touched[int(0, touched.length - 1)]! : undefined;
  const node = prior ? (prior.node + int(1, 2)) % 3 : int(0, 2);
  const id = prior ? prior.id : int(1, KEYS);
  if (!race) touched.push({ id, node });
  const op = random.next();
  const v = `${tag} on ${'ABC'[node]}`;
  if (op < 0.6) await env.query(node, `UPDATE ${table} SET v = $2, n = n + 1 WHERE id = $1`, [id, v]);
  else if (op < 0.75) await env.query(node, `DELETE FROM ${table} WHERE id = $1`, [id]);
  else await env.query(node, `INSERT INTO ${table} VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = ${table}.n + 1`, [id, v]);
}

describe(`randomized hot keys on three masters (IBEX_TEST_SEED=${SEED})`, () => {
  it('set up', async () => {
    for (const i of ALL) {
      await env.query(i, `
        CREATE TABLE hr (id int PRIMARY KEY, v text, n int NOT NULL);
        CREATE TABLE hq (id int PRIMARY KEY, v text, n int NOT NULL);
        INSERT INTO hr SELECT g, 'start', 0 FROM generate_series(1, ${KEYS}) g;
        INSERT INTO hq SELECT g, 'start', 0 FROM generate_series(1, ${KEYS}) g;`);
    }
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'rl', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.hr'] });
    await addSync(env, 'rq', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.hq'], options: { conflict_strategy: 'B,C,A' } });
  });

  for (const [sync, table] of [['rl', 'hr'], ['rq', 'hq']] as const) {
    it(`${sync}: every run ends good or empty under racing writes, and the dbs converge`, async () => {
      let round = 0;
      let attempts = 0;
      let racing = true;
      const r = runner(env, sync, {
        hooks: {
          afterGather: async () => {
            if (!racing) return;
            attempts++;
            // Local writes between this run's gather and its apply: they race the apply.
            for (let k = int(1, 3); k > 0; k--) await write(table, `race ${round}`, true);
          },
        },
      });
      const statuses: string[] = [];
      for (round = 0; round < ROUNDS; round++) {
        for (let k = int(1, 6); k > 0; k--) await write(table, `round ${round}`);
        const res = await r.run('delta');
        touched.length = 0;
        statuses.push(res.status);
        assert.ok(res.status === 'good' || res.status === 'empty', `round ${round}: ${res.status} ${res.error ?? ''} (IBEX_TEST_SEED=${SEED})`);
      }
      // Writers stopped: run until two runs in a row are empty.
      racing = false;
      let quiet = 0;
      for (let n = 0; quiet < 2; n++) {
        assert.ok(n < 20, `${sync} did not settle (IBEX_TEST_SEED=${SEED})`);
        const res = await r.run('delta');
        assert.ok(res.status === 'good' || res.status === 'empty', `settling: ${res.status} ${res.error ?? ''}`);
        quiet = res.status === 'empty' ? quiet + 1 : 0;
      }
      const v = await env.cli('validate', sync, '--json');
      assert.equal(v.code, 0, `ibex validate ${sync} exited ${v.code}: ${v.out.slice(0, 3000)} ${v.err} (IBEX_TEST_SEED=${SEED})`);
      // A race costs keys, not runs: the runs were (nearly) never repeated.
      assert.ok(attempts <= ROUNDS + 2, `${attempts} attempts for ${statuses.length} runs (IBEX_TEST_SEED=${SEED})`);
    });
  }
});

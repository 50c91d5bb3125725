/**
 * Soak (IBEX_SOAK=1, about 20 s an iteration): a source of a two-master sync is stopped
 * (immediate) in the middle of runs while both masters keep writing, again and again; after each
 * restart the masters must converge within 40 s. It found a run that went on for minutes on CPU
 * after a restart: the conflict query planned over temp tables without statistics
 * (run/resolve.ts, ANALYZE_KEYS). IBEX_SOAK_ITERATIONS sets the count (default 20);
 * IBEX_TEST_SEED reproduces the timings.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useDaemonProcess } from '../helpers/daemon.js';
import { faultKit, type Place } from '../helpers/faults.js';
import { useClusters, waitFor } from '../helpers/env.js';
import { rng, testSeed, withSeed } from '../helpers/seed.js';

describe('soak: source restarts under writes', { skip: process.env.IBEX_SOAK !== '1' && 'set IBEX_SOAK=1', timeout: 3_600_000 }, () => {
  const env = useClusters(3);
  const daemon = useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000' }, 'restart-soak');
  const kit = faultKit(env);
  const seed = testSeed();
  const random = rng(seed);
  const [A, B] = [1, 2];
  const places: Place[] = [[A, 'app'], [B, 'app']];

  before(async () => {
    console.log(`# IBEX_TEST_SEED=${seed}`);
    const schema = `CREATE TABLE item (id bigint PRIMARY KEY, grp int, payload text, n bigint NOT NULL DEFAULT 0)`;
    await Promise.all([A, B].map((i) => env.clusters[i]!.psql(schema, 'app')));
    const ok = async (...args: string[]): Promise<void> => {
      const r = await env.cli(...args);
      assert.equal(r.code, 0, `ibex ${args.join(' ')}: ${r.err}${r.out}`);
    };
    await ok('install');
    for (const [name, i] of [['A', A], ['B', B]] as const) {
      const p = env.params(i, 'app');
      await ok('add', 'db', name, `host=${p.host}`, `port=${p.port}`, 'dbname=app', 'user=postgres');
    }
    await ok('add', 'table', 'public.item', 'db=A', 'relgroup=mm');
    await ok('add', 'sync', 'mm', 'relgroup=mm', 'dbs=A:source,B:source');
    await daemon.start();
  });

  it('converges after every restart', () => withSeed(seed, async () => {
    const iterations = Number(process.env.IBEX_SOAK_ITERATIONS ?? 20);
    for (let k = 0; k < iterations; k++) {
      const base = 10_000_000 * (k + 1);
      await kit.q(A, `INSERT INTO item (id, grp, payload) SELECT g, 0, md5(g::text) FROM generate_series(${base}, ${base + random.int(1000, 60000)}) g`);
      const wa = kit.writer(A, base + 1_000_000);
      const wb = kit.writer(B, base + 2_000_000);
      try {
        await waitFor('a run of mm in progress', () => kit.runningRun('mm'), 60_000, 5);
        await new Promise((r) => setTimeout(r, random.int(0, 800)));
        await env.clusters[random.next() < 0.5 ? A : B]!.stop('immediate');
        await new Promise((r) => setTimeout(r, random.int(100, 1500)));
        // Only the stopped one starts; starting a running cluster fails harmlessly.
        await env.clusters[A]!.start().catch(() => {});
        await env.clusters[B]!.start().catch(() => {});
        await new Promise((r) => setTimeout(r, 1500));
      } finally {
        await wa.stop();
        await wb.stop();
      }
      await kit.converged('item', 'id, grp, payload, n', places, 40_000);
      console.log(`# iteration ${k} converged`);
    }
    assert.ok(daemon.alive(), 'the daemon is still running');
  }, () => `daemon log (last lines):\n${daemon.logTail(60)}`));
});

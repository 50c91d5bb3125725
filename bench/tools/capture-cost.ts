/**
 * Where capture overhead comes from (a diagnostic, not a scenario): the
 * overhead scenario's pgbench load on A (random single-row UPDATEs, -c 4 -j 2)
 * with ibex's capture installed by `ibex add sync` and no daemon, in phases:
 *
 *   base        no capture objects
 *   idle=true   capture as installed (the wake-up flag says "daemon idle": every statement NOTIFYs)
 *   idle=false  the flag as a busy daemon sets it (no NOTIFY)
 *   nomask      idle=false, with bench_item's trigger replaced by one that records no column
 *               mask (what capture cost before conflict_strategy=merge needed one)
 *   counters    idle=false, the trigger also recording amount's difference (delta_columns=amount)
 *   base2       capture removed again
 *
 * and, once per capture variant, one 100k-row UPDATE of bench_item (ms: bulk_*).
 *
 *   node --import tsx bench/tools/capture-cost.ts [SECONDS per phase, default 15] [ROUNDS, default 2]
 */
import { rmSync } from 'node:fs';
import { BenchEnv, RUN_ROOT } from '../lib/env.js';
import { IbexSystem, srcFingerprint } from '../systems/ibex.js';
import { topologyOf } from '../systems/system.js';
import { tableDdl, type CaptureTable } from '../../src/capture/objects.js';

const secs = Number(process.argv[2] ?? 15);
const rounds = Number(process.argv[3] ?? 2);
const rows = 100_000;
const env = await BenchEnv.create({ nodes: 2, seedRows: rows, label: 'capture-cost' });
const sys = new IbexSystem();
const tps: Record<string, number[]> = {};
const bulk: Record<string, number[]> = {};
try {
  /** Time one statement updating every row of bench_item (rolled back: the table stays as seeded). */
  const bulkUpdate = async (name: string): Promise<void> => {
    await env.q(1, 'VACUUM ANALYZE bench_item');
    const t0 = performance.now();
    await env.q(1, `BEGIN; UPDATE bench_item SET amount = amount + 1; ROLLBACK`);
    (bulk[name] ??= []).push(Math.round(performance.now() - t0));
  };
  /** Replace bench_item's capture trigger function (columns: a mask; counters: amount's difference). */
  const variant = async (v: 'mask' | 'nomask' | 'counters'): Promise<void> => {
    const role = String((await env.q(1, `SELECT session_user AS u`))[0]!.u);
    const cols = await env.q(1, `SELECT attname AS name FROM pg_attribute WHERE attrelid = 'bench_item'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`);
    const t: CaptureTable = {
      schema: 'public', name: 'bench_item', keyColumns: ['id'], keyTypes: ['bigint'], partitioned: false,
      ...(v === 'nomask' ? {} : { columns: cols.map((c) => ({ name: String(c.name), eq: true })) }),
      ...(v === 'counters' ? { deltaColumns: ['amount'] } : {}),
    };
    await env.q(1, tableDdl(t, role));
  };
  const phase = async (name: string): Promise<void> => {
    await env.q(1, 'CHECKPOINT');
    await env.q(1, 'VACUUM ANALYZE bench_item');
    const r = await env.pgbench(1, ['-c', '4', '-j', '2', '-T', String(secs), '-D', `nrows=${rows}`, '-f', env.script('overhead.sql')], name);
    (tps[name] ??= []).push(r.tps);
    console.error(`${name}: ${r.tps.toFixed(0)} tps`);
  };
  await phase('base');
  await bulkUpdate('bulk_base');
  await sys.setup(env, topologyOf(2, 'mesh'), env.tables());
  for (let i = 0; i < rounds; i++) {
    await env.q(1, 'UPDATE ibex.wakeup SET idle = true');
    await phase('idle=true');
    await env.q(1, 'UPDATE ibex.wakeup SET idle = false');
    await variant('mask');
    await phase('idle=false');
    await bulkUpdate('bulk_mask');
    await variant('nomask');
    await phase('nomask');
    await bulkUpdate('bulk_nomask');
    await variant('counters');
    await phase('counters');
    await bulkUpdate('bulk_counters');
  }
  await sys.teardown();
  await phase('base2');
  await bulkUpdate('bulk_base2');
  const base = ((tps.base?.[0] ?? 0) + (tps.base2?.[0] ?? 0)) / 2;
  const out: Record<string, unknown> = { src_sha: srcFingerprint(), secs, rounds, tps_base: Math.round(base) };
  for (const [k, v] of Object.entries(tps)) out[k] = { tps: v.map(Math.round), ratio: v.map((x) => Math.round((x / base) * 1000) / 1000) };
  for (const [k, v] of Object.entries(bulk)) out[k] = { ms: v };
  console.log(JSON.stringify(out));
} finally {
  await sys.teardown().catch(() => {});
  await env.destroy();
  rmSync(RUN_ROOT, { recursive: true, force: true });
}

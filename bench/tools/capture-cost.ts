/**
 * Where capture overhead comes from (a diagnostic, not a scenario): the
 * overhead scenario's pgbench load on A (random single-row UPDATEs, -c 4 -j 2)
 * with ibex's capture installed by `ibex add sync` and no daemon, in phases:
 *
 *   base        no capture objects
 *   idle=true   capture as installed (the wake-up flag says "daemon idle": every statement NOTIFYs)
 *   idle=false  the flag as a busy daemon sets it (no NOTIFY)
 *   base2       capture removed again
 *
 *   node --import tsx bench/tools/capture-cost.ts [SECONDS per phase, default 15] [ROUNDS, default 2]
 */
import { rmSync } from 'node:fs';
import { BenchEnv, RUN_ROOT } from '../lib/env.js';
import { IbexSystem, srcFingerprint } from '../systems/ibex.js';
import { topologyOf } from '../systems/system.js';

const secs = Number(process.argv[2] ?? 15);
const rounds = Number(process.argv[3] ?? 2);
const rows = 100_000;
const env = await BenchEnv.create({ nodes: 2, seedRows: rows, label: 'capture-cost' });
const sys = new IbexSystem();
const tps: Record<string, number[]> = {};
try {
  const phase = async (name: string): Promise<void> => {
    await env.q(1, 'CHECKPOINT');
    await env.q(1, 'VACUUM ANALYZE bench_item');
    const r = await env.pgbench(1, ['-c', '4', '-j', '2', '-T', String(secs), '-D', `nrows=${rows}`, '-f', env.script('overhead.sql')], name);
    (tps[name] ??= []).push(r.tps);
    console.error(`${name}: ${r.tps.toFixed(0)} tps`);
  };
  await phase('base');
  await sys.setup(env, topologyOf(2, 'mesh'), env.tables());
  for (let i = 0; i < rounds; i++) {
    await env.q(1, 'UPDATE ibex.wakeup SET idle = true');
    await phase('idle=true');
    await env.q(1, 'UPDATE ibex.wakeup SET idle = false');
    await phase('idle=false');
  }
  await sys.teardown();
  await phase('base2');
  const base = ((tps.base?.[0] ?? 0) + (tps.base2?.[0] ?? 0)) / 2;
  const out: Record<string, unknown> = { src_sha: srcFingerprint(), secs, rounds, tps_base: Math.round(base) };
  for (const [k, v] of Object.entries(tps)) out[k] = { tps: v.map(Math.round), ratio: v.map((x) => Math.round((x / base) * 1000) / 1000) };
  console.log(JSON.stringify(out));
} finally {
  await sys.teardown().catch(() => {});
  await env.destroy();
  rmSync(RUN_ROOT, { recursive: true, force: true });
}

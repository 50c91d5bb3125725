/**
 * overhead: pgbench TPS of random single-row UPDATEs on A (OVERHEAD_CLIENTS=4,
 * -j OVERHEAD_JOBS=2, OVERHEAD_SECS=20 s per phase, OVERHEAD_ROWS=100,000 rows)
 * in four phases: base1 (no system) → capture (capture installed, daemon
 * stopped) → running (daemon started and the capture backlog drained first) →
 * base2 (system removed). Ratios are against mean(base1, base2). CHECKPOINT and
 * VACUUM ANALYZE before each phase; B is re-synced from A by COPY after base1.
 */
import { BenchEnv } from '../lib/env.js';
import { round } from '../lib/stats.js';
import { cpuMark, cpuSince, phaseSummary, runsSince, withEnv, type Scenario } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';

export const overhead: Scenario = {
  name: 'overhead',
  needsSystem: true,
  metrics: [['ratio_capture', 'TPS ratio, capture only'], ['ratio_running', 'TPS ratio, replicating'], ['tps_base', 'TPS base'],
    ['backlog_drain_s', 'capture backlog drain s'], ['catchup_after_running_s', 'catch-up after running s']],
  async run(ctx) {
    const k = ctx.knobs;
    const sys = ctx.system!;
    const nodes = ctx.knobs.nodes ?? 2;
    const label = `overhead-${sys.name}-${ctx.rep}`;
    const env = await BenchEnv.create({ nodes, seedRows: k.overheadRows, label });
    return withEnv(ctx, env, label, async () => {
      const phase = async (name: string): Promise<number> => {
        await env.q(1, 'CHECKPOINT');
        await env.q(1, 'VACUUM ANALYZE bench_item');
        const r = await env.pgbench(1, ['-c', String(k.overheadClients), '-j', String(k.overheadJobs), '-T', String(k.overheadSecs),
          '-D', `nrows=${k.overheadRows}`, '-f', env.script('overhead.sql')], `${label}-${name}`);
        ctx.log(`  overhead ${name}: ${r.tps.toFixed(0)} tps`);
        return r.tps;
      };
      const b1 = await phase('base1');
      // base1 changed A only: make the other nodes exact copies before the system is installed.
      for (const i of env.nodeIdx().slice(1)) {
        await env.q(i, 'TRUNCATE bench_item');
        await env.psqlCopy(1, i, 'SELECT * FROM bench_item', 'bench_item');
        await env.q(i, 'VACUUM ANALYZE bench_item');
      }
      if ((await env.checksumsEqual()) === null) throw new Error('overhead: nodes differ after the re-sync');
      const t0 = performance.now();
      await sys.setup(env, topologyOf(nodes, 'mesh'), env.tables());
      const setupS = (performance.now() - t0) / 1000;
      const cap = await phase('capture');
      const t1 = performance.now();
      await sys.start();
      const drainS = await env.waitConverged(k.drainTimeoutS * 1000);
      const drainTotal = drainS === null ? null : (performance.now() - t1) / 1000;
      if (drainS === null) ctx.log(`  overhead: the capture backlog did not drain within ${k.drainTimeoutS} s; measuring the running phase anyway`);
      const mark = await sys.mark?.();
      const cpu0 = cpuMark(env, sys);
      const run = await phase('running');
      const cpu = cpuSince(env, sys, cpu0, Math.round(run * k.overheadSecs));
      const t2 = performance.now();
      const after = await env.waitConverged(k.drainTimeoutS * 1000);
      const catchup = after === null ? null : (performance.now() - t2) / 1000;
      const runs = await runsSince(sys, mark);
      await sys.stop();
      await sys.teardown();
      const b2 = await phase('base2');
      const base = (b1 + b2) / 2;
      return [{
        rows: k.overheadRows, secs: k.overheadSecs, clients: k.overheadClients,
        tps_base1: round(b1, 1), tps_base2: round(b2, 1), tps_base: round(base, 1), tps_capture: round(cap, 1), tps_running: round(run, 1),
        ratio_capture: round(cap / base, 3), ratio_running: round(run / base, 3),
        backlog_drain_s: round(drainTotal, 2), catchup_after_running_s: round(catchup, 2), converged_after_running: after !== null,
        setup_s: round(setupS, 2), ...cpu, run_phases: phaseSummary(runs),
      }];
    });
  },
};

/**
 * stream: SEED_ROWS (10,000) identical rows; A and B each run STREAM_TXNS
 * (3,000) single-row transactions at STREAM_RATE (100/s, Poisson arrivals,
 * `pgbench -R`): half UPDATEs of a seed row only that writer touches, half
 * INSERTs of fresh ids. Per change: lag = destination commit − origin commit;
 * p50/p95/p99 overall and per direction, catch-up time, missing/mismatched.
 */
import { BenchEnv, ORIGIN_BASE, sequencesSql } from '../lib/env.js';
import { measureLag } from '../lib/lag.js';
import { round } from '../lib/stats.js';
import { cpuMark, cpuSince, phaseSummary, runsSince, systemUp, withEnv, type Scenario, type ScenarioContext } from '../lib/context.js';
import { topologyOf, type Topology } from '../systems/system.js';

/** The shared load of stream and mesh: every writer at `rate` for `txns` transactions. */
export async function streamLoad(ctx: ScenarioContext, env: BenchEnv, topo: Topology, writers: number[], txns: number, rate: number, label: string) {
  const sys = ctx.system!;
  const up = await systemUp(env, sys, topo);
  const mark = await sys.mark?.();
  const cpu0 = cpuMark(env, sys);
  const t0 = performance.now();
  const results = await Promise.all(writers.map((i) => env.pgbench(i, [
    '-c', '1', '-j', '1', '-R', String(rate), '-t', String(txns), '-D', `origin=${ORIGIN_BASE + i}`,
    '-f', `${env.script('stream_update.sql')}@1`, '-f', `${env.script('stream_insert.sql')}@1`,
  ], `${label}-${i}`)));
  const loadS = (performance.now() - t0) / 1000;
  const convergeS = await env.waitConverged(ctx.knobs.drainTimeoutS * 1000);
  const cpu = cpuSince(env, sys, cpu0, writers.length * txns);
  const lag = await measureLag(env, writers);
  const runs = await runsSince(sys, mark);
  return {
    writers: writers.length, txns_per_writer: txns, rate_per_writer: rate,
    achieved_tps: results.map((r) => round(r.tps, 1)),
    changes_measured: lag.all.n, missing: lag.missing, mismatched: lag.mismatched,
    lag_p50_s: lag.all.p50, lag_p95_s: lag.all.p95, lag_p99_s: lag.all.p99, lag_max_s: lag.all.max, catchup_s: lag.catchup_s,
    load_s: round(loadS, 2), converge_poll_s: round(convergeS, 3), converged: convergeS !== null,
    lag, ...cpu, ...up, run_phases: phaseSummary(runs),
  };
}

export function sequencesFor(env: BenchEnv, seedRows: number, writers: number): Promise<unknown> {
  const per = Math.floor(seedRows / writers);
  return Promise.all(env.nodeIdx().map((i) => env.q(i, sequencesSql((i - 1) * per + 1, i * 1_000_000_000 + 1))));
}

export const stream: Scenario = {
  name: 'stream',
  needsSystem: true,
  metrics: [['lag_p50_s', 'lag p50 s'], ['lag_p95_s', 'lag p95 s'], ['lag_p99_s', 'lag p99 s'], ['catchup_s', 'catch-up s'], ['cpu_daemon_s', 'daemon CPU s']],
  async run(ctx) {
    const k = ctx.knobs;
    const nodes = ctx.knobs.nodes ?? 2;
    const writers = Array.from({ length: Math.min(k.streamWriters, nodes) }, (_, i) => i + 1);
    if (k.streamTxns / 2 > k.seedRows / writers.length) throw new Error('stream: STREAM_TXNS/2 must be <= SEED_ROWS / writers');
    const label = `stream-${ctx.system!.name}-${ctx.rep}`;
    const env = await BenchEnv.create({ nodes, seedRows: k.seedRows, label });
    return withEnv(ctx, env, label, async () => {
      await sequencesFor(env, k.seedRows, writers.length);
      return [await streamLoad(ctx, env, topologyOf(nodes, 'mesh'), writers, k.streamTxns, k.streamRate, label)];
    });
  },
};

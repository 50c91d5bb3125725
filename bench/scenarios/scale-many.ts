/**
 * Two parts of the `scale` scenario (scale.ts runs them):
 *
 * - syncs: 100 tables (bench_t1..100) split over 1, 10 or 50 syncs, on 2, 3 or 5 masters, run
 *   by one daemon and then by three on the same control db (ibex only: SCALE_DAEMONS). Every
 *   master inserts single rows at SCALE_SYNCS_RATE (1,000) writes/s in total, spread evenly over
 *   the masters and at random over the tables, for SCALE_SYNCS_SECS (20) s (pgbench -R); lag of
 *   every change to every other master from commit timestamps (lib/lag.ts), catch-up after the
 *   load, daemon CPU, peak RSS and runs. Points: SCALE_SYNCS_GRID (syncs x masters, default
 *   1x2,10x2,50x2,10x3,10x5: the syncs curve at 2 masters and the masters curve at 10 syncs).
 * - load: pgbench with SCALE_LOAD_CLIENTS (4) clients on each of two masters, random single-row
 *   UPDATEs of 100k rows (pgbench/overhead.sql), for SCALE_LOAD_SECS (60) s; each master also
 *   writes a marker row every second, whose commit time on the other master gives the lag of
 *   that second; then the time until both masters are identical once the load stopped. Runs for
 *   ibex and Bucardo (--system both).
 */
import { BenchEnv, CORE_TABLES, COMMIT_TS, nodeName } from '../lib/env.js';
import { measureLag } from '../lib/lag.js';
import { sleep } from '../lib/proc.js';
import { lagStats, round } from '../lib/stats.js';
import { cpuMark, cpuSince, daemonPeakRssMb, phaseSummary, runsSince, systemUp, withEnv, type Line, type ScenarioContext } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';
import { IbexSystem } from '../systems/ibex.js';

const envNum = (name: string, def: number): number => Number(process.env[name] ?? def) || def;

/** One row into a table chosen by number (pgbench cannot name tables from variables). */
const WRITE_FN = `CREATE FUNCTION bench_local.w(t int, id bigint, g int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN EXECUTE format('INSERT INTO public.bench_t%s (id, grp, payload, amount) VALUES ($1, $2, md5($1::text), 1)', t) USING id, g; END $$;
CREATE SEQUENCE bench_local.seq_w;`;
const WRITE_SCRIPT = `\\set t random(1, 100)
SELECT bench_local.w(:t, nextval('bench_local.seq_w'), :grp);
`;

/** The grid of the syncs part: [syncs, masters] points. */
export function syncsGrid(): [number, number][] {
  return (process.env.SCALE_SYNCS_GRID ?? '1x2,10x2,50x2,10x3,10x5').split(',').map((p) => p.split('x').map(Number) as [number, number]);
}

/** Rows with grp > 1000 in these tables on node i. */
async function written(env: BenchEnv, i: number, tables: string[]): Promise<number> {
  return Number(await env.one(i, `SELECT (${tables.map((t) => `(SELECT count(*) FROM ${t} WHERE grp > 1000)`).join(' + ')})::int`));
}

export async function manySyncs(ctx: ScenarioContext, syncs: number, masters: number, daemons: number): Promise<Line | null> {
  const sys = ctx.system!;
  if (!(sys instanceof IbexSystem)) return null;
  const secs = envNum('SCALE_SYNCS_SECS', 20);
  const rate = envNum('SCALE_SYNCS_RATE', 1000);
  const label = `scale-syncs${syncs}-m${masters}-d${daemons}-${ctx.rep}`;
  const env = await BenchEnv.create({ nodes: masters, extraTables: 100, label });
  return withEnv(ctx, env, label, async () => {
    const tables = Array.from({ length: 100 }, (_, k) => `public.bench_t${k + 1}`);
    const groups: string[][] = Array.from({ length: syncs }, () => []);
    tables.forEach((t, k) => groups[k % syncs]!.push(t));
    groups[0]!.push(...CORE_TABLES); // the readiness canary goes through bench_pair
    const topo = topologyOf(masters, 'mesh');
    sys.daemons = daemons;
    const t0 = performance.now();
    await sys.setupSyncs(env, topo, groups);
    const setupS = (performance.now() - t0) / 1000;
    await sys.start();
    const { waitCanaries } = await import('../lib/context.js');
    await waitCanaries(env, topo);
    // Several daemons share the syncs out within a few seconds of starting.
    if (daemons > 1) await sleep(5_000);
    for (const i of env.nodeIdx()) {
      await env.q(i, WRITE_FN);
      await env.q(i, `ALTER SEQUENCE bench_local.seq_w RESTART ${i * 1_000_000_000}`);
    }
    const script = `${env.dir}/write.sql`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(script, WRITE_SCRIPT);
    const mark = await sys.mark();
    const cpu0 = cpuMark(env, sys);
    const perMaster = rate / masters;
    const loads = await Promise.all(env.nodeIdx().map((i) => env.pgbench(i, ['-c', '2', '-j', '1', '-R', String(perMaster), '-T', String(secs),
      '-D', `grp=${1000 + i}`, '-f', script], `${label}-${nodeName(i)}`)));
    const loadEnd = Date.now() / 1000;
    const total = loads.reduce((a, l) => a + l.txns, 0);
    let caughtUp: number | null = null;
    try {
      caughtUp = await env.waitFor(async () => (await Promise.all(env.nodeIdx().map((i) => written(env, i, tables)))).every((n) => n === total),
        `${total} rows on every master`, ctx.knobs.drainTimeoutS * 1000, 250);
    } catch (err) {
      ctx.log(`  ${label}: ${String(err)}`);
    }
    const cpu = cpuSince(env, sys, cpu0);
    const lag = await measureLag(env, env.nodeIdx(), tables);
    const runs = await runsSince(sys, mark);
    return {
      variant: `${syncs} syncs, ${masters} masters, ${daemons} daemon(s)`, part: 'syncs', syncs, masters, daemons, tables: 100,
      writes_per_s: round(total / secs, 0), load_s: secs, setup_s: round(setupS, 1),
      lag_p50_s: lag.all.p50, lag_p95_s: lag.all.p95, lag_p99_s: lag.all.p99, lag_max_s: lag.all.max, missing: lag.missing, mismatched: lag.mismatched,
      catchup_after_load_s: caughtUp === null ? null : round(caughtUp, 2), catchup_s: lag.catchup_s,
      good_runs: runs.length, runs_per_sync_s: round(runs.length / syncs / (secs + (caughtUp ?? 0)), 2),
      load_end: loadEnd, ...cpu, cpu_daemon_per_1k_writes_s: cpu.cpu_daemon_s === null ? null : round(cpu.cpu_daemon_s / (total / 1000), 3),
      daemon_peak_rss_mb: daemonPeakRssMb(sys), run_phases: phaseSummary(runs),
    };
  });
}

export async function sustainedLoad(ctx: ScenarioContext): Promise<Line> {
  const sys = ctx.system!;
  const secs = envNum('SCALE_LOAD_SECS', 60);
  const clients = envNum('SCALE_LOAD_CLIENTS', 4);
  const rows = 100_000;
  const label = `scale-load-${sys.name}-${ctx.rep}`;
  const env = await BenchEnv.create({ nodes: 2, seedRows: rows, label });
  return withEnv(ctx, env, label, async () => {
    const up = await systemUp(env, sys, topologyOf(2, 'mesh'));
    const cpu0 = cpuMark(env, sys);
    const mark = await sys.mark?.();
    let second = 0;
    let loading = true;
    // A marker row per master and second: its commit time on the other master is that second's lag.
    const markers = (async () => {
      const t0 = Date.now();
      while (loading) {
        second++;
        for (const i of [1, 2]) await env.q(i, `INSERT INTO bench_pair (a, b, val) VALUES ($1, $2, 'marker')`, [-(1000 + second), -i]);
        await sleep(Math.max(0, t0 + second * 1000 - Date.now()));
      }
    })();
    const loads = await Promise.all([1, 2].map((i) => env.pgbench(i, ['-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(secs),
      '-D', `nrows=${rows}`, '-f', env.script('overhead.sql')], `${label}-${nodeName(i)}`)));
    loading = false;
    await markers;
    const loadEnd = Date.now() / 1000;
    const converge = await env.waitConverged(ctx.knobs.drainTimeoutS * 1000);
    const cpu = cpuSince(env, sys, cpu0);
    const ts = async (i: number): Promise<Map<string, number>> => new Map((await env.q<{ k: string; ts: number }>(i,
      `SELECT a || ':' || b AS k, ${COMMIT_TS} AS ts FROM bench_pair WHERE val = 'marker'`)).map((r) => [String(r.k), Number(r.ts)]));
    const [onA, onB] = [await ts(1), await ts(2)];
    const bySecond: { s: number; a_to_b: number | null; b_to_a: number | null }[] = [];
    const all: number[] = [];
    for (let s = 1; s <= second; s++) {
      const lagOf = (from: number, there: Map<string, number>, here: Map<string, number>): number | null => {
        const k = `${-(1000 + s)}:${-from}`;
        const a = here.get(k);
        const b = there.get(k);
        return a === undefined || b === undefined ? null : round(b - a, 3);
      };
      const ab = lagOf(1, onB, onA);
      const ba = lagOf(2, onA, onB);
      bySecond.push({ s, a_to_b: ab, b_to_a: ba });
      for (const v of [ab, ba]) if (v !== null) all.push(v);
    }
    const st = lagStats(all);
    const runs = await runsSince(sys, mark);
    return {
      variant: `pgbench ${clients} clients x 2 masters, ${secs} s`, part: 'load', clients_per_master: clients, load_s: secs, rows,
      tps_A: round(loads[0]!.tps, 0), tps_B: round(loads[1]!.tps, 0),
      lag_p50_s: st.p50, lag_p95_s: st.p95, lag_max_s: st.max, markers: all.length,
      converge_after_load_s: converge === null ? null : round(converge, 2), load_end: loadEnd,
      lag_by_second: bySecond, good_runs: runs.length, run_phases: phaseSummary(runs), ...cpu, daemon_peak_rss_mb: daemonPeakRssMb(sys), ...up,
    };
  });
}

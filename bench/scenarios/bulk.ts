/**
 * bulk: `--rows` rows (default 100,000, ~100-byte payload) inserted on A in
 * one transaction while the system runs; time until every other node has all
 * of them, from commit timestamps (last applied commit − A's commit), then
 * checksums. Two nodes: an A↔B multi-master sync; more (`--nodes 4`): fan-out
 * A → B, C, D (BULK_TOPOLOGY=mesh|fanout overrides). In the same clusters it
 * then measures the COPY floor (A's rows COPYed into an empty twin table on
 * B), so `ratio_vs_copy` compares like with like.
 */
import { BenchEnv, bulkSql, COMMIT_TS } from '../lib/env.js';
import { round } from '../lib/stats.js';
import { sleep } from '../lib/proc.js';
import { cpuMark, cpuSince, daemonPeakRssMb, phaseSummary, runsSince, systemUp, withEnv, type Scenario } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';

export const bulk: Scenario = {
  name: 'bulk',
  needsSystem: true,
  metrics: [['rows_per_s', 'rows/s A→all'], ['repl_s', 'replication s'], ['ratio_vs_copy', 'ratio vs COPY'], ['cpu_daemon_s', 'daemon CPU s'], ['daemon_cpu_per_100k_s', 'daemon CPU s / 100k rows']],
  async run(ctx) {
    const sys = ctx.system!;
    const rows = ctx.knobs.rows ?? 100_000;
    const nodes = ctx.knobs.nodes ?? 2;
    const kind = (process.env.BULK_TOPOLOGY as 'mesh' | 'fanout' | undefined) ?? (nodes > 2 ? 'fanout' : 'mesh');
    const topo = topologyOf(nodes, kind);
    const label = `bulk-${sys.name}-${ctx.rep}`;
    const env = await BenchEnv.create({ nodes, label });
    return withEnv(ctx, env, label, async () => {
      const up = await systemUp(env, sys, topo);
      const mark = await sys.mark?.();
      const cpu0 = cpuMark(env, sys);
      const t0 = performance.now();
      await env.q(1, bulkSql(1, rows));
      const insertS = (performance.now() - t0) / 1000;
      const commitA = Number(await env.one(1, `SELECT ${COMMIT_TS} FROM bench_item WHERE id = 1`));
      const others = env.nodeIdx().slice(1);
      const poll = rows >= 500_000 ? 250 : 50;
      const waitS = await env.waitFor(async () => {
        for (const i of others) if (!(await env.one<boolean>(i, 'SELECT EXISTS (SELECT 1 FROM bench_item WHERE id = $1)', [rows]))) return false;
        const n = await Promise.all(others.map((i) => env.one(i, 'SELECT count(*)::int FROM bench_item')));
        return n.every((x) => Number(x) === rows);
      }, `${rows} rows on every node`, 1_800_000, poll);
      await sleep(500); // the run's bookkeeping after its commits belongs to its CPU cost
      const cpu = cpuSince(env, sys, cpu0, rows);
      const rss = daemonPeakRssMb(sys);
      const ok = (await env.checksumsEqual()) !== null;
      let first = Infinity;
      let last = 0;
      for (const i of others) {
        const r = (await env.q(i, `SELECT min(${COMMIT_TS}) AS lo, max(${COMMIT_TS}) AS hi FROM bench_item`))[0]!;
        first = Math.min(first, Number(r.lo));
        last = Math.max(last, Number(r.hi));
      }
      const runs = await runsSince(sys, mark);
      await sys.stop();
      // The COPY floor, same clusters, same moment: A's rows into an empty twin table on B.
      await env.q(2, 'CREATE TABLE bench_copy (LIKE bench_item INCLUDING ALL)');
      const copyS = await env.psqlCopy(1, 2, 'SELECT * FROM bench_item', 'bench_copy');
      const replS = last - commitA;
      return [{
        rows, topology: kind, insert_s: round(insertS), repl_s: round(replS), first_row_s: round(first - commitA),
        poll_s: round(waitS + insertS), rows_per_s: Math.round(rows / replS), checksum_ok: ok,
        copy_floor_s: round(copyS), copy_floor_rows_per_s: Math.round(rows / copyS), ratio_vs_copy: round(copyS / replS, 3),
        ...cpu, daemon_cpu_per_100k_s: cpu.cpu_daemon_s === null ? null : round(cpu.cpu_daemon_s * 100_000 / rows, 3),
        daemon_peak_rss_mb: rss, ...up, run_phases: phaseSummary(runs),
      }];
    });
  },
};

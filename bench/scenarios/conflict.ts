/**
 * conflict: the same CONFLICT_ROWS (1,000) keys updated on A and B at once,
 * one single-row transaction per key, unthrottled: A walks the keys
 * ascending, B descending, so each row is written on both sides, by one side
 * early and the other late. Measures the time until both nodes converge (and
 * stay converged STABLE_S later), which db won each row, and whether the
 * winner of each row is its latest write (each writer notes its write time in
 * a local, never replicated table).
 */
import { BenchEnv, COMMIT_TS, ORIGIN_BASE, sequencesSql, sleep } from '../lib/env.js';
import { round } from '../lib/stats.js';
import { cpuMark, cpuSince, phaseSummary, runsSince, systemUp, withEnv, type Scenario } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';

export const conflict: Scenario = {
  name: 'conflict',
  needsSystem: true,
  metrics: [['converge_commit_s', 'converged after writes (commit ts) s'], ['converge_s', 'converged (poll) s'], ['winners_A', 'rows won by A'],
    ['winners_B', 'rows won by B'], ['latest_won', 'rows won by the later write']],
  async run(ctx) {
    const k = ctx.knobs;
    const sys = ctx.system!;
    const n = k.conflictRows;
    const label = `conflict-${sys.name}-${ctx.rep}`;
    const env = await BenchEnv.create({ nodes: 2, seedRows: Math.max(k.seedRows, n), label });
    return withEnv(ctx, env, label, async () => {
      await env.q(1, sequencesSql(1, 1_000_000_001, 1, 1));
      await env.q(2, sequencesSql(5001, 2_000_000_001, n, -1));
      const up = await systemUp(env, sys, topologyOf(2, 'mesh'));
      const mark = await sys.mark?.();
      const cpu0 = cpuMark(env, sys);
      const t0 = performance.now();
      await Promise.all([1, 2].map((i) => env.pgbench(i, ['-c', '1', '-j', '1', '-t', String(n), '-D', `origin=${ORIGIN_BASE + i}`,
        '-f', env.script('conflict.sql')], `${label}-${i}`)));
      const writeS = (performance.now() - t0) / 1000;
      const convergeS = await env.waitConverged(k.drainTimeoutS * 1000);
      const sum = await env.checksumsEqual();
      await sleep(k.stableS * 1000);
      const stable = sum !== null && (await env.checksumsEqual()) === sum;
      const cpu = cpuSince(env, sys, cpu0, 2 * n);
      // The end of the writes: the last commit of a writer (its own wlog row's xmin), exact.
      let writeEnd = 0;
      for (const i of [1, 2]) writeEnd = Math.max(writeEnd, Number(await env.one(i, `SELECT max(${COMMIT_TS}) FROM bench_local.wlog`)));
      let last = 0;
      for (const i of [1, 2]) last = Math.max(last, Number(await env.one(i, `SELECT max(${COMMIT_TS}) FROM bench_item WHERE id <= ${n}`)));
      const final = await env.q<{ id: string; grp: number }>(1, `SELECT id::text, grp FROM bench_item WHERE id <= ${n}`);
      const wlog = async (i: number): Promise<Map<string, number>> => new Map((await env.q<{ id: string; ts: number }>(i,
        `SELECT id::text, extract(epoch FROM ts)::float8 AS ts FROM bench_local.wlog`)).map((r) => [r.id, Number(r.ts)]));
      const [la, lb] = [await wlog(1), await wlog(2)];
      let latest = 0;
      for (const r of final) {
        const later = (la.get(r.id) ?? 0) >= (lb.get(r.id) ?? 0) ? ORIGIN_BASE + 1 : ORIGIN_BASE + 2;
        if (Number(r.grp) === later) latest++;
      }
      const runs = await runsSince(sys, mark);
      return [{
        rows: n, write_s: round(writeS, 3), converged: convergeS !== null, stable,
        converge_s: round(convergeS, 3), converge_commit_s: round(last - writeEnd, 3),
        winners_A: final.filter((r) => Number(r.grp) === ORIGIN_BASE + 1).length,
        winners_B: final.filter((r) => Number(r.grp) === ORIGIN_BASE + 2).length,
        latest_won: latest,
        conflicts_logged: sys.conflictsLogged && mark !== undefined ? await sys.conflictsLogged(mark) : null,
        ...cpu, ...up, run_phases: phaseSummary(runs),
      }];
    });
  },
};

/**
 * hotkeys: two masters update the same few rows at once — pgbench on each, HOTKEYS_RATE (200) TPS
 * per node for HOTKEYS_SECS (90) s, each transaction updating one of the first K rows of
 * bench_item (K from HOTKEYS_KEYS, default 10 and 1,000) and journaling itself in bench_pair.
 * The journal rows give the exact lag of every transaction from commit timestamps (origin commit
 * to commit on the other node, bench/lib/lag.ts's rule); the run history gives the share of
 * failed runs and the longest stretch of time without a good run. Ends when both nodes are
 * identical (and stay so STABLE_S later).
 */
import { BenchEnv, COMMIT_TS, ORIGIN_BASE, sleep } from '../lib/env.js';
import { lagStats, round } from '../lib/stats.js';
import { cpuMark, cpuSince, systemUp, withEnv, type Line, type Scenario, type ScenarioContext } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';

/** Per-transaction lag (s) of the journal rows node `w` wrote, seen on node `d`. */
async function journalLags(env: BenchEnv, w: number, d: number): Promise<{ lags: number[]; missing: number }> {
  const q = `SELECT b, ${COMMIT_TS} AS ts FROM bench_pair t WHERE a = ${ORIGIN_BASE + w}`;
  const there = new Map((await env.q<{ b: number; ts: number }>(d, q)).map((r) => [Number(r.b), Number(r.ts)]));
  const lags: number[] = [];
  let missing = 0;
  for (const r of await env.q<{ b: number; ts: number }>(w, q)) {
    const t = there.get(Number(r.b));
    if (t === undefined) missing++;
    else lags.push(t - Number(r.ts));
  }
  return { lags, missing };
}

/** The longest time within [from, to] (epoch s) not covered by the end of a good run. */
export function longestWithoutGood(runs: { status: string; ended: number | null }[], from: number, to: number): number {
  const goods = runs.filter((r) => (r.status === 'good' || r.status === 'empty') && r.ended !== null).map((r) => r.ended!).filter((t) => t >= from && t <= to).sort((a, b) => a - b);
  let last = from;
  let longest = 0;
  for (const t of [...goods, to]) {
    longest = Math.max(longest, t - last);
    last = t;
  }
  return longest;
}

async function one(ctx: ScenarioContext, keys: number): Promise<Line> {
  const k = ctx.knobs;
  const sys = ctx.system!;
  const label = `hotkeys-${keys}-${sys.name}-${ctx.rep}`;
  const env = await BenchEnv.create({ nodes: 2, seedRows: Math.max(k.seedRows, keys), label });
  return withEnv(ctx, env, label, async () => {
    for (const i of [1, 2]) await env.q(i, `CREATE SEQUENCE bench_local.seq_hot`);
    const up = await systemUp(env, sys, topologyOf(2, 'mesh'));
    const mark = await sys.mark?.();
    const cpu0 = cpuMark(env, sys);
    const from = Date.now() / 1000;
    const bench = await Promise.all([1, 2].map((i) => env.pgbench(i, ['-c', '2', '-j', '1', '-R', String(k.hotkeysRate), '-T', String(k.hotkeysSecs),
      '-D', `origin=${ORIGIN_BASE + i}`, '-D', `keys=${keys}`, '-f', env.script('hotkeys.sql')], `${label}-${i}`)));
    const to = Date.now() / 1000;
    const convergeS = await env.waitConverged(k.drainTimeoutS * 1000);
    const sum = await env.checksumsEqual();
    await sleep(k.stableS * 1000);
    const stable = sum !== null && (await env.checksumsEqual()) === sum;
    const cpu = cpuSince(env, sys, cpu0);
    const ab = await journalLags(env, 1, 2);
    const ba = await journalLags(env, 2, 1);
    const lag = lagStats([...ab.lags, ...ba.lags]);
    const runs = mark !== undefined && sys.runTimeline ? await sys.runTimeline(mark) : null;
    const during = runs?.filter((r) => r.started >= from && r.started <= to) ?? null;
    const failed = during?.filter((r) => r.status === 'failed').length ?? null;
    return {
      variant: `${keys} keys`, keys, rate_per_node: k.hotkeysRate, secs: k.hotkeysSecs,
      tps_A: round(bench[0]!.tps, 1), tps_B: round(bench[1]!.tps, 1), txns: bench[0]!.txns + bench[1]!.txns,
      converged: convergeS !== null, stable, converge_s: round(convergeS, 3),
      lag_p50_s: lag.p50, lag_p95_s: lag.p95, lag_max_s: lag.max, lag_n: lag.n, missing: ab.missing + ba.missing,
      runs: during?.length ?? null, failed_runs: failed,
      failed_run_ratio: during && during.length ? round(failed! / during.length, 3) : null,
      longest_no_good_s: runs ? round(longestWithoutGood(runs, from, to), 2) : null,
      conflicts_logged: sys.conflictsLogged && mark !== undefined ? await sys.conflictsLogged(mark) : null,
      ...cpu, ...up,
    };
  });
}

export const hotkeys: Scenario = {
  name: 'hotkeys',
  needsSystem: true,
  metrics: [['lag_p95_s', 'lag p95 s'], ['lag_p50_s', 'lag p50 s'], ['lag_max_s', 'lag max s'], ['failed_run_ratio', 'failed runs (share)'],
    ['longest_no_good_s', 'longest stretch without a good run s']],
  async run(ctx) {
    const out: Line[] = [];
    for (const keys of ctx.knobs.hotkeysKeys) out.push(await one(ctx, keys));
    return out;
  },
};

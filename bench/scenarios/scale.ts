/**
 * scale: how cost grows. Parts (SCALE_PARTS, default all):
 * - backlog: SCALE_BACKLOGS (10k, 100k, 1M) rows written on A in 10,000-row
 *   transactions while the daemon is stopped; then start it and measure the
 *   drain (start → last row committed on B), daemon CPU and peak RSS (VmHWM).
 * - masters: 100k rows inserted on A in a 2-, 3- and 5-master sync; time until
 *   every other master has them.
 * - tables: 100k rows in one table vs 1k rows in each of 100 tables, one
 *   transaction, one sync over 102 tables; time until all are on B.
 * - syncs: 1/10/50 syncs over 100 tables, 2/3/5 masters, 1 and 3 daemons, lag at 1,000
 *   writes/s (scale-many.ts).
 * - load: pgbench 4 clients on each of two masters, lag every second, convergence after (scale-many.ts).
 */
import { BenchEnv, bulkSql, COMMIT_TS } from '../lib/env.js';
import { round } from '../lib/stats.js';
import { sleep } from '../lib/proc.js';
import { cpuMark, cpuSince, daemonPeakRssMb, phaseSummary, runsSince, systemUp, withEnv, type Line, type Scenario, type ScenarioContext } from '../lib/context.js';
import { topologyOf } from '../systems/system.js';
import { manySyncs, sustainedLoad, syncsGrid } from './scale-many.js';

async function lastCommit(env: BenchEnv, i: number, tables: string[]): Promise<{ first: number; last: number; rows: number }> {
  const parts = tables.map((t) => `SELECT ${COMMIT_TS} AS ts FROM ${t}`).join(' UNION ALL ');
  const r = (await env.q(i, `SELECT min(ts) AS lo, max(ts) AS hi, count(*)::int AS n FROM (${parts}) x`))[0]!;
  return { first: Number(r.lo), last: Number(r.hi), rows: Number(r.n) };
}

async function waitRows(env: BenchEnv, nodes: number[], tables: string[], rows: number, lastId: number, pollMs: number): Promise<void> {
  const sql = `SELECT (${tables.map((t) => `(SELECT count(*) FROM ${t})`).join(' + ')})::int`;
  // A cheap probe first (the last id of the last table), the full count only once it is there.
  const probe = `SELECT EXISTS (SELECT 1 FROM ${tables[tables.length - 1]} WHERE id = $1) AS e`;
  await env.waitFor(async () => {
    for (const i of nodes) if (!(await env.one<boolean>(i, probe, [lastId]))) return false;
    return (await Promise.all(nodes.map((i) => env.one(i, sql)))).every((n) => Number(n) === rows);
  }, `${rows} rows on every node`, 3_600_000, pollMs);
}

async function waitRowsExact(env: BenchEnv, nodes: number[], tables: string[], rows: number): Promise<void> {
  const sql = `SELECT (${tables.map((t) => `(SELECT count(*) FROM ${t})`).join(' + ')})::int`;
  await env.waitFor(async () => (await Promise.all(nodes.map((i) => env.one(i, sql)))).every((n) => Number(n) === rows), `${rows} rows`, 600_000, 100);
}

async function backlog(ctx: ScenarioContext, rows: number): Promise<Line> {
  const sys = ctx.system!;
  const label = `scale-backlog${rows}-${sys.name}-${ctx.rep}`;
  const env = await BenchEnv.create({ nodes: 2, label });
  return withEnv(ctx, env, label, async () => {
    await sys.setup(env, topologyOf(2, 'mesh'), env.tables());
    const t0 = performance.now();
    for (let from = 1; from <= rows; from += 10_000) await env.q(1, bulkSql(from, Math.min(10_000, rows - from + 1)));
    const writeS = (performance.now() - t0) / 1000;
    const cpu0 = cpuMark(env, null); // the daemon is not running yet: all its CPU from now on counts
    const startAt = Date.now() / 1000;
    await sys.start();
    const startedAt = Date.now() / 1000;
    const mark = 0;
    await waitRows(env, [2], ['bench_item'], rows, rows, rows >= 500_000 ? 250 : 50);
    const pollS = Date.now() / 1000 - startAt;
    await sleep(500);
    const cpu = cpuSince(env, sys, { ...cpu0, daemon: 0 }, rows);
    const rss = daemonPeakRssMb(sys);
    const b = await lastCommit(env, 2, ['bench_item']);
    const ok = (await env.checksumsEqual()) !== null;
    const runs = await runsSince(sys, mark);
    return {
      variant: `backlog ${rows}`, part: 'backlog', rows, write_s: round(writeS, 2), txns: Math.ceil(rows / 10_000),
      drain_s: round(b.last - startAt, 3), start_s: round(startedAt - startAt, 3), drain_after_start_s: round(b.last - startedAt, 3), drain_poll_s: round(pollS, 3), rows_per_s: Math.round(rows / (b.last - startAt)),
      checksum_ok: ok, ...cpu, daemon_peak_rss_mb: rss, run_phases: phaseSummary(runs),
    };
  });
}

async function masters(ctx: ScenarioContext, nodes: number): Promise<Line> {
  const sys = ctx.system!;
  const rows = 100_000;
  const label = `scale-masters${nodes}-${sys.name}-${ctx.rep}`;
  const env = await BenchEnv.create({ nodes, label });
  return withEnv(ctx, env, label, async () => {
    const up = await systemUp(env, sys, topologyOf(nodes, 'mesh'));
    const mark = await sys.mark?.();
    const cpu0 = cpuMark(env, sys);
    await env.q(1, bulkSql(1, rows));
    const commitA = Number(await env.one(1, `SELECT ${COMMIT_TS} FROM bench_item WHERE id = 1`));
    const others = env.nodeIdx().slice(1);
    await waitRows(env, others, ['bench_item'], rows, rows, 50);
    await sleep(500);
    const cpu = cpuSince(env, sys, cpu0, rows);
    let last = 0;
    for (const i of others) last = Math.max(last, (await lastCommit(env, i, ['bench_item'])).last);
    const runs = await runsSince(sys, mark);
    return {
      variant: `${nodes} masters`, part: 'masters', nodes, rows, repl_s: round(last - commitA), rows_per_s: Math.round(rows / (last - commitA)),
      checksum_ok: (await env.checksumsEqual()) !== null, ...cpu, ...up, run_phases: phaseSummary(runs),
    };
  });
}

async function tables(ctx: ScenarioContext, spread: 1 | 100): Promise<Line> {
  const sys = ctx.system!;
  const rows = 100_000;
  const label = `scale-tables${spread}-${sys.name}-${ctx.rep}`;
  const env = await BenchEnv.create({ nodes: 2, extraTables: 100, label });
  return withEnv(ctx, env, label, async () => {
    const up = await systemUp(env, sys, topologyOf(2, 'mesh'));
    const mark = await sys.mark?.();
    const written = spread === 1 ? ['public.bench_item'] : Array.from({ length: 100 }, (_, k) => `public.bench_t${k + 1}`);
    // Warm-up: one row in each of the 101 item tables, so the measured run is not the first to touch them.
    const warm = ['public.bench_item', ...Array.from({ length: 100 }, (_, k) => `public.bench_t${k + 1}`)];
    await env.q(1, `BEGIN; ${warm.map((t) => `INSERT INTO ${t} (id, grp) VALUES (0, 0)`).join('; ')}; COMMIT`);
    await waitRowsExact(env, [2], warm, warm.length);
    const warmRuns = await runsSince(sys, mark);
    const mark2 = await sys.mark?.();
    const cpu0 = cpuMark(env, sys);
    const per = rows / written.length;
    const t0 = Date.now() / 1000;
    await env.q(1, `BEGIN; ${written.map((t) => bulkSql(1, per, t)).join('; ')}; COMMIT`);
    const writeS = Date.now() / 1000 - t0;
    const a = await lastCommit(env, 1, written);
    await waitRows(env, [2], written, rows + written.length, per, 50);
    await sleep(500);
    const cpu = cpuSince(env, sys, cpu0, rows);
    const b = await lastCommit(env, 2, written);
    const runs = await runsSince(sys, mark2);
    return {
      variant: `${rows} rows in ${spread} table(s) of 102`, part: 'tables', tables_written: spread, tables_in_sync: env.tables().length, rows,
      write_s: round(writeS, 2), repl_s: round(b.last - a.last), rows_per_s: Math.round(rows / (b.last - a.last)),
      checksum_ok: (await env.checksumsEqual()) !== null, ...cpu, ...up, run_phases: phaseSummary(runs), warmup_run_phases: phaseSummary(warmRuns),
    };
  });
}

export const scale: Scenario = {
  name: 'scale',
  needsSystem: true,
  metrics: [['drain_s', 'backlog drain s'], ['repl_s', 'replication s'], ['lag_p50_s', 'lag p50 s'], ['lag_p95_s', 'lag p95 s'],
    ['converge_after_load_s', 'converge after load s'], ['catchup_after_load_s', 'catch-up after load s'], ['rows_per_s', 'rows/s'], ['cpu_daemon_s', 'daemon CPU s'], ['daemon_peak_rss_mb', 'daemon peak RSS MB']],
  async run(ctx) {
    const k = ctx.knobs;
    const out: Line[] = [];
    if (k.scaleParts.includes('backlog')) for (const n of k.scaleBacklogs) out.push(await backlog(ctx, n));
    if (k.scaleParts.includes('masters')) for (const n of [2, 3, 5]) out.push(await masters(ctx, n));
    if (k.scaleParts.includes('tables')) for (const s of [1, 100] as const) out.push(await tables(ctx, s));
    if (k.scaleParts.includes('syncs')) {
      for (const d of (process.env.SCALE_DAEMONS ?? '1,3').split(',').map(Number)) {
        for (const [syncs, masters] of syncsGrid()) {
          const line = await manySyncs(ctx, syncs, masters, d);
          if (line) out.push(line);
        }
      }
    }
    if (k.scaleParts.includes('load')) out.push(await sustainedLoad(ctx));
    return out;
  },
};

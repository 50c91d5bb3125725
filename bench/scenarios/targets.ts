/**
 * targets: `--rows` rows (100,000) inserted on A in one transaction, replicated one way to a
 * non-PostgreSQL target (TARGET_KINDS, default mariadb,sqlite,redis: the kinds with a live
 * server here); time from A's commit until the target holds every row, beside the target's own
 * floor for the same rows in the same run (bench/lib/foreign.ts), and the daemon's CPU.
 */
import { BenchEnv, bulkSql } from '../lib/env.js';
import { round } from '../lib/stats.js';
import { sleep } from '../lib/proc.js';
import { createStore, type BenchRow, type ForeignKind } from '../lib/foreign.js';
import { cpuMark, cpuSince, daemonPeakRssMb, systemUp, withEnv, type Line, type Scenario } from '../lib/context.js';

const KINDS: readonly ForeignKind[] = ['mariadb', 'sqlite', 'redis'];

export const targets: Scenario = {
  name: 'targets',
  needsSystem: true,
  metrics: [['rows_per_s', 'rows/s A→target'], ['floor_rows_per_s', 'target floor rows/s'], ['ratio_vs_floor', 'ratio vs floor'], ['cpu_daemon_s', 'daemon CPU s']],
  async run(ctx) {
    const sys = ctx.system!;
    if (!sys.addForeignTarget) {
      ctx.log(`targets: ${sys.name} is not set up for non-PostgreSQL targets in this harness; skipped`);
      return [];
    }
    const rows = ctx.knobs.rows ?? 100_000;
    const kinds = (process.env.TARGET_KINDS?.split(',') ?? [...KINDS]) as ForeignKind[];
    const out: Line[] = [];
    for (const kind of kinds) {
      if (!KINDS.includes(kind)) throw new Error(`TARGET_KINDS: unknown kind ${kind} (one of ${KINDS.join(', ')})`);
      const label = `targets-${kind}-${sys.name}-${ctx.rep}`;
      const env = await BenchEnv.create({ nodes: 1, label });
      const line = await withEnv(ctx, env, label, async () => {
        const store = await createStore(kind, env.dir);
        try {
          sys.addForeignTarget!('M', store.addDbArgs);
          const up = await systemUp(env, sys, { sources: [1], targets: [] }, { ready: false });
          // Ready: a canary row reaches the target.
          await env.q(1, `INSERT INTO bench_item (id, grp, payload) VALUES (-1, 0, 'canary')`);
          await env.waitFor(() => store.has(-1), `canary on ${kind}`, 120_000, 50);
          await env.q(1, `DELETE FROM bench_item WHERE id = -1`);
          await env.waitFor(async () => !(await store.has(-1)), `canary delete on ${kind}`, 120_000, 50);
          const cpu0 = cpuMark(env, sys);
          await env.q(1, bulkSql(1, rows));
          const t0 = performance.now();
          const waitS = await env.waitFor(async () => (await store.has(rows)) && (await store.count()) === rows, `${rows} rows on ${kind}`, 1_800_000, 50);
          const replS = (performance.now() - t0) / 1000;
          await sleep(500);
          const cpu = cpuSince(env, sys, cpu0, rows);
          const rss = daemonPeakRssMb(sys);
          await sys.stop();
          const text = await env.q(1, `SELECT id::text, grp::text, payload, amount::text,
                                             to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts
                                        FROM bench_item ORDER BY id`);
          const floorRows = text.map((r) => [r.id, r.grp, r.payload, r.amount, r.ts] as BenchRow);
          const floorS = await store.floor(floorRows, env.dir);
          return {
            kind, rows, repl_s: round(replS), poll_s: round(waitS), rows_per_s: Math.round(rows / replS),
            floor_s: round(floorS), floor_rows_per_s: Math.round(rows / floorS), ratio_vs_floor: round(floorS / replS, 3),
            ...cpu, daemon_cpu_per_100k_s: cpu.cpu_daemon_s === null ? null : round(cpu.cpu_daemon_s * 100_000 / rows, 3),
            daemon_peak_rss_mb: rss, ...up,
          };
        } finally {
          await store.close();
        }
      });
      out.push(line);
    }
    return out;
  },
};

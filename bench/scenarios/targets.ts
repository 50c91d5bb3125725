/**
 * targets: `--rows` rows (100,000) inserted on A in one transaction, replicated one way to a
 * non-PostgreSQL target (TARGET_KINDS, default mariadb,sqlite,redis: the kinds with a live
 * server here); time from A's commit until the target holds every row, beside the target's own
 * floor for the same rows in the same run (bench/lib/foreign.ts), and the daemon's CPU. A kind
 * the system cannot write here (Bucardo without DBD::mysql) gives a line with `unsupported`.
 *
 * targets-stream: the stream scenario's load (A and B each STREAM_TXNS single-row transactions
 * at STREAM_RATE/s) on a 2-master pair A, B that also writes one target of another kind. Lag to
 * the target = the time a poll first sees the row there − the row's commit time on its origin
 * (pg_xact_commit_timestamp; one clock). The target starts without the seed rows, so every
 * change appears there as a new id; a poll every TARGET_POLL_MS (20) lists the ids. A row
 * committed on the target between the last poll that missed it and the first that saw it: the
 * lag reported is the midpoint − the origin commit (off by at most half that gap,
 * `poll_gap_p95_s`), and `lag_upper_*` the first sighting − the origin commit (an upper bound).
 * The PostgreSQL lag A↔B of the same run (exact, from commit timestamps) is reported beside it.
 */
import { BenchEnv, bulkSql, COMMIT_TS, ORIGIN_BASE } from '../lib/env.js';
import { lagStats, round } from '../lib/stats.js';
import { sleep } from '../lib/proc.js';
import { measureLag } from '../lib/lag.js';
import { createStore, type BenchRow, type ForeignKind, type ForeignStore } from '../lib/foreign.js';
import { cpuMark, cpuSince, daemonPeakRssMb, phaseSummary, runsSince, systemUp, withEnv, type Line, type Scenario, type ScenarioContext } from '../lib/context.js';
import { sequencesFor } from './stream.js';

const KINDS: readonly ForeignKind[] = ['mariadb', 'sqlite', 'redis'];

/** Why the scenario's system cannot write this kind here (it says so itself), else undefined. */
async function unsupportedHere(ctx: ScenarioContext, kind: ForeignKind): Promise<string | undefined> {
  const why = await ctx.system!.foreignUnsupported?.([`type=${kind}`]);
  if (why !== undefined) ctx.log(`targets: ${ctx.system!.name} cannot write ${kind} here: ${why}`);
  return why;
}

/**
 * The reference system failing on one kind is a result (a line with `error`), not the end of the
 * scenario: the other kinds still run. ibex failing fails the scenario.
 */
function failedKind(ctx: ScenarioContext, kind: ForeignKind, err: unknown): Line {
  if (ctx.system!.name === 'ibex') throw err;
  const error = String((err as Error).message ?? err).split('\n')[0]!;
  ctx.log(`targets: ${ctx.system!.name} failed on ${kind}: ${error}`);
  return { kind, error };
}

/** Ready: a canary row reaches the target, and its delete too. */
async function canary(env: BenchEnv, store: ForeignStore, kind: ForeignKind): Promise<void> {
  await env.q(1, `INSERT INTO bench_item (id, grp, payload) VALUES (-1, 0, 'canary')`);
  await env.waitFor(() => store.has(-1), `canary on ${kind}`, 120_000, 50);
  await env.q(1, `DELETE FROM bench_item WHERE id = -1`);
  await env.waitFor(async () => !(await store.has(-1)), `canary delete on ${kind}`, 120_000, 50);
}

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
      const unsupported = await unsupportedHere(ctx, kind);
      if (unsupported !== undefined) {
        out.push({ kind, rows, unsupported });
        continue;
      }
      const label = `targets-${kind}-${sys.name}-${ctx.rep}`;
      const env = await BenchEnv.create({ nodes: 1, label });
      const line = await withEnv(ctx, env, label, async (): Promise<Line> => {
        const store = await createStore(kind, env.dir);
        try {
          sys.addForeignTarget!('M', store.addDbArgs);
          const up = await systemUp(env, sys, { sources: [1], targets: [] }, { ready: false });
          await canary(env, store, kind);
          const mark = await sys.mark?.();
          const cpu0 = cpuMark(env, sys);
          await env.q(1, bulkSql(1, rows));
          const t0 = performance.now();
          // Polled every 10 ms (a key lookup; the count only once the last row is there): the time is
          // at most 10 ms late, against a floor timed in-process.
          const waitS = await env.waitFor(async () => (await store.has(rows)) && (await store.count()) === rows, `${rows} rows on ${kind}`, 1_800_000, 10);
          const replS = (performance.now() - t0) / 1000;
          await sleep(500);
          const cpu = cpuSince(env, sys, cpu0, rows);
          const rss = daemonPeakRssMb(sys);
          const runs = await runsSince(sys, mark);
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
            daemon_peak_rss_mb: rss, ...up, run_phases: phaseSummary(runs),
          };
        } finally {
          await store.close();
        }
      }).catch((err: unknown) => failedKind(ctx, kind, err));
      out.push(line);
    }
    return out;
  },
};

export const targetsStream: Scenario = {
  name: 'targets-stream',
  needsSystem: true,
  metrics: [['lag_p50_s', 'target lag p50 s'], ['lag_p95_s', 'target lag p95 s'], ['pg_lag_p50_s', 'PostgreSQL lag p50 s (same run)'],
    ['pg_lag_p95_s', 'PostgreSQL lag p95 s (same run)'], ['ratio_p95_vs_pg', 'target p95 / PostgreSQL p95']],
  async run(ctx) {
    const sys = ctx.system!;
    if (!sys.addForeignTarget) {
      ctx.log(`targets-stream: ${sys.name} is not set up for non-PostgreSQL targets in this harness; skipped`);
      return [];
    }
    const k = ctx.knobs;
    const pollMs = Number(process.env.TARGET_POLL_MS ?? 20);
    const kinds = (process.env.TARGET_KINDS?.split(',') ?? [...KINDS]) as ForeignKind[];
    const writers = [1, 2];
    const out: Line[] = [];
    for (const kind of kinds) {
      if (!KINDS.includes(kind)) throw new Error(`TARGET_KINDS: unknown kind ${kind} (one of ${KINDS.join(', ')})`);
      const unsupported = await unsupportedHere(ctx, kind);
      if (unsupported !== undefined) {
        out.push({ kind, unsupported });
        continue;
      }
      const label = `targets-stream-${kind}-${sys.name}-${ctx.rep}`;
      const env = await BenchEnv.create({ nodes: 2, seedRows: k.seedRows, label });
      const line = await withEnv(ctx, env, label, async (): Promise<Line> => {
        const store = await createStore(kind, env.dir);
        try {
          await sequencesFor(env, k.seedRows, writers.length);
          sys.addForeignTarget!('M', store.addDbArgs);
          const up = await systemUp(env, sys, { sources: writers, targets: [] });
          await canary(env, store, kind);
          // The poll: every id's first sighting on the target (the target has no seed rows).
          // seen: [the last poll that did not see the row, the first that did] (start times, s).
          const seen = new Map<string, [number, number]>();
          const gaps: number[] = [];
          let polling = true;
          const poll = (async () => {
            let last = Date.now() / 1000;
            while (polling) {
              const at = Date.now() / 1000;
              for (const id of await store.ids()) if (!seen.has(id)) seen.set(id, [last, at]);
              gaps.push(at - last);
              last = at;
              await sleep(Math.max(0, pollMs - (Date.now() / 1000 - at) * 1000));
            }
          })();
          const cpu0 = cpuMark(env, sys);
          const results = await Promise.all(writers.map((i) => env.pgbench(i, [
            '-c', '1', '-j', '1', '-R', String(k.streamRate), '-t', String(k.streamTxns), '-D', `origin=${ORIGIN_BASE + i}`,
            '-f', `${env.script('stream_update.sql')}@1`, '-f', `${env.script('stream_insert.sql')}@1`,
          ], `${label}-${i}`)));
          const origin = new Map<string, number>();
          for (const i of writers) {
            const rows = await env.q<{ id: string; ts: number }>(i, `SELECT id::text AS id, ${COMMIT_TS} AS ts FROM bench_item WHERE grp = ${ORIGIN_BASE + i}`);
            for (const r of rows) origin.set(r.id, Number(r.ts));
          }
          await env.waitFor(async () => [...origin.keys()].every((id) => seen.has(id)), `${origin.size} changes on ${kind}`,
            k.drainTimeoutS * 1000, 200).catch(() => {});
          polling = false;
          await poll;
          const cpu = cpuSince(env, sys, cpu0);
          // The row committed on the target between the two polls: the midpoint is the estimate
          // (off by at most half the gap), the later poll an upper bound.
          const lags: number[] = [];
          const upper: number[] = [];
          let missing = 0;
          for (const [id, ts] of origin) {
            const at = seen.get(id);
            if (at === undefined) {
              missing++;
              continue;
            }
            lags.push(Math.max(0, (at[0] + at[1]) / 2 - ts));
            upper.push(at[1] - ts);
          }
          const lag = lagStats(lags);
          const ub = lagStats(upper);
          const pg = await measureLag(env, writers);
          return {
            kind, writers: writers.length, txns_per_writer: k.streamTxns, rate_per_writer: k.streamRate,
            achieved_tps: results.map((r) => round(r.tps, 1)), changes: origin.size, missing,
            lag_p50_s: lag.p50, lag_p95_s: lag.p95, lag_p99_s: lag.p99, lag_max_s: lag.max,
            lag_upper_p50_s: ub.p50, lag_upper_p95_s: ub.p95, poll_ms: pollMs, poll_gap_p95_s: lagStats(gaps).p95,
            pg_lag_p50_s: pg.all.p50, pg_lag_p95_s: pg.all.p95, pg_missing: pg.missing,
            ratio_p95_vs_pg: lag.p95 !== null && pg.all.p95 ? round(lag.p95 / pg.all.p95, 2) : null,
            ...cpu, ...up,
          };
        } finally {
          await store.close();
        }
      }).catch((err: unknown) => failedKind(ctx, kind, err));
      out.push(line);
    }
    return out;
  },
};

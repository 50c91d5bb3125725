/**
 * What replicating costs the application (a diagnostic, not a scenario): the overhead scenario's
 * pgbench load on A (random single-row UPDATEs, -c 4 -j 2) alternating, in one environment,
 *
 *   capture   ibex's capture installed, no daemon (triggers only)
 *   running   the daemon replicating the 2-master sync A↔B (drained before the phase)
 *   running, B and ctl without fsync
 *             the same with the other two clusters not flushing their WAL (all three clusters
 *             share one disk here; in production B is another machine)
 *
 * between base phases without capture that open and close. Per phase: TPS, its ratio to the base,
 * the CPU seconds of every cluster (A holds the application's backends and the daemon's sessions)
 * and of the daemon; each cluster's WAL per application transaction and its WAL fsyncs (all three
 * share one disk here); A's WAL per transaction by record type (pg_walinspect); what the
 * application's backends wait on (pg_stat_activity sampled every 20 ms); and how often
 * ibex.wakeup on A was written — each write is the daemon going idle or busy; while the flag says
 * busy, no statement NOTIFYs (src/capture/wakeup.ts).
 *
 *   node --import tsx bench/tools/replicating-cost.ts [SECONDS per phase, default 10] [ROUNDS, default 2]
 */
import { rmSync } from 'node:fs';
import pg from 'pg';
import { BenchEnv, RUN_ROOT } from '../lib/env.js';
import { IbexSystem, srcFingerprint } from '../systems/ibex.js';
import { topologyOf } from '../systems/system.js';
import { cpuMark, cpuSince } from '../lib/context.js';
import { sleep } from '../lib/proc.js';

const secs = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 2);
const rows = 100_000;
const env = await BenchEnv.create({ nodes: 2, seedRows: rows, label: 'wake-cost' });
const sys = new IbexSystem();
const out: Record<string, { tps: number[]; ratio?: number[]; cpu: Record<string, number | null>[]; flag_writes: number[]; wal: Record<string, string>[]; a_wal_by_record: Record<string, number | string>[]; waits: Record<string, number>[] }> = {};
try {
  const flagWrites = async (): Promise<number> =>
    Number((await env.q(1, `SELECT coalesce(sum(n_tup_upd), 0) AS n FROM pg_stat_user_tables WHERE schemaname = 'ibex' AND relname = 'wakeup'`))[0]!.n);
  /** WAL written and WAL fsyncs of every cluster (pg_stat_wal is cluster-wide; all share one disk here). */
  const walStats = async (): Promise<Record<string, [number, number]>> => {
    const o: Record<string, [number, number]> = {};
    for (const [name, i] of [['ctl', 0], ['A', 1], ['B', 2]] as const) {
      const p = env.cluster(i).params('postgres');
      const c = new pg.Client({ host: p.host, port: p.port, database: 'postgres', user: 'postgres' });
      await c.connect();
      const r = (await c.query(`SELECT wal_bytes::bigint AS b, wal_sync::bigint AS s FROM pg_stat_wal`)).rows[0] as { b: string; s: string };
      await c.end();
      o[name] = [Number(r.b), Number(r.s)];
    }
    return o;
  };
  /** Turn WAL flushing of ctl and B off (fsync, synchronous_commit: both take effect on reload) or back on. */
  const flushing = async (on: boolean): Promise<void> => {
    for (const i of [0, 2]) {
      const p = env.cluster(i).params('postgres');
      const c = new pg.Client({ host: p.host, port: p.port, database: 'postgres', user: 'postgres' });
      await c.connect();
      for (const g of ['fsync', 'synchronous_commit']) await c.query(on ? `ALTER SYSTEM RESET ${g}` : `ALTER SYSTEM SET ${g} = off`);
      await c.query('SELECT pg_reload_conf()');
      await c.end();
    }
    await sleep(500);
  };
  const lsn = async (): Promise<string> => String((await env.q(1, 'SELECT pg_current_wal_flush_lsn() AS l'))[0]!.l);
  const phase = async (name: string, daemon: boolean): Promise<void> => {
    await env.q(1, 'CHECKPOINT');
    const w0 = await walStats();
    const l0 = await lsn();
    const f0 = await flagWrites();
    const c0 = cpuMark(env, daemon ? sys : null);
    // What the application's backends wait on, sampled every 20 ms while pgbench runs.
    const waits: Record<string, number> = {};
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const rs = await env.q(1, `SELECT coalesce(wait_event_type || ':' || wait_event, state) AS w FROM pg_stat_activity WHERE application_name = 'pgbench' AND pid <> pg_backend_pid()`);
        for (const x of rs) waits[String(x.w)] = (waits[String(x.w)] ?? 0) + 1;
        await sleep(20);
      }
    })();
    const r = await env.pgbench(1, ['-c', '4', '-j', '2', '-T', String(secs), '-D', `nrows=${rows}`, '-f', env.script('overhead.sql')], name);
    const used = cpuSince(env, daemon ? sys : null, c0);
    const w1 = await walStats();
    const txns = r.tps * secs;
    // A's WAL by record type, per application transaction (the biggest ten; full-page images as "+fpi").
    const recs = await env.q<{ t: string; rec: string; fpi: string }>(1, `SELECT "resource_manager/record_type" AS t, record_size AS rec, fpi_size AS fpi
      FROM pg_get_wal_stats($1, $2, true) ORDER BY combined_size DESC LIMIT 10`, [l0, await lsn()]);
    const byRecord = Object.fromEntries(recs.map((x) => [x.t, Number(x.fpi) > 0 ? `${Math.round(Number(x.rec) / txns)}+fpi ${Math.round(Number(x.fpi) / txns)}` : Math.round(Number(x.rec) / txns)]));
    const wal: Record<string, string> = {};
    for (const k of Object.keys(w1)) wal[k] = `${Math.round((w1[k]![0] - w0[k]![0]) / txns)} B/txn, ${w1[k]![1] - w0[k]![1]} fsyncs`;
    sampling = false;
    await sampler;
    await sleep(600); // the statistics collector's delay
    const o = (out[name] ??= { tps: [], cpu: [], flag_writes: [], wal: [], a_wal_by_record: [], waits: [] });
    o.tps.push(Math.round(r.tps));
    o.cpu.push({ daemon: used.cpu_daemon_s, ...used.cpu_pg_s });
    o.flag_writes.push((await flagWrites()) - f0);
    o.waits.push(waits);
    o.wal.push(wal);
    o.a_wal_by_record.push(byRecord);
    console.error(`${name}: ${r.tps.toFixed(0)} tps, cpu ${JSON.stringify(o.cpu.at(-1))}, ${o.flag_writes.at(-1)} flag writes, wal ${JSON.stringify(wal)}, A's WAL per transaction by record ${JSON.stringify(byRecord)}, waits ${JSON.stringify(waits)}`);
  };
  await env.q(1, 'CREATE EXTENSION IF NOT EXISTS pg_walinspect');
  await phase('base', false);
  await env.q(2, 'TRUNCATE bench_item');
  await env.psqlCopy(1, 2, 'SELECT * FROM bench_item', 'bench_item');
  await sys.setup(env, topologyOf(2, 'mesh'), env.tables());
  for (let i = 0; i < rounds; i++) {
    await phase('capture', false);
    await sys.start();
    await env.waitConverged(300_000);
    await phase('running', true);
    await env.waitConverged(300_000);
    // The same with B and ctl not flushing their WAL: what is left when A's disk is A's alone.
    await flushing(false);
    await phase('running, B and ctl without fsync', true);
    await flushing(true);
    await env.waitConverged(300_000);
    await sys.stop();
  }
  await sys.teardown();
  await phase('base2', false);
  const base = ((out.base?.tps[0] ?? 0) + (out.base2?.tps[0] ?? 0)) / 2;
  for (const o of Object.values(out)) o.ratio = o.tps.map((x) => Math.round((x / base) * 1000) / 1000);
  console.log(JSON.stringify({ src_sha: srcFingerprint(), secs, rounds, tps_base: Math.round(base), ...out }));
} finally {
  await sys.stop().catch(() => {});
  await sys.teardown().catch(() => {});
  await env.destroy();
  rmSync(RUN_ROOT, { recursive: true, force: true });
}

/**
 * Where the time of one run goes: a two-master sync on throwaway clusters, N runs of one
 * insert batch each (ROWS rows, alternating sources when ROWS=1), printing the run time and
 * the median of each phase recorded in ibex.run.details.phases. A profiling aid, not a figure
 * of issue #5 (those come from `npm run bench`).
 * Run: N=100 ROWS=1 node --import tsx bench/tools/run-phases.ts      (per-run latency)
 *      N=100 ROWS=1 BOTH=1 node --import tsx bench/tools/run-phases.ts   (both sources change every run, as in `stream`)
 *      … TRACE=1 …   prints every statement of the last run with its start and duration (ms) and its length
 *      N=5 ROWS=100000 node --import tsx bench/tools/run-phases.ts   (bulk)
 *      … PROFILE=/tmp/runs.cpuprofile …   a CPU profile of the N runs (open in Chrome's DevTools)
 * Besides wall time it prints this process's CPU per run (process.cpuUsage around runner.run()):
 */
import { createClusters } from '../../src/cluster/clusters.js';
import { connect } from '../../src/db/connect.js';
import { migrate } from '../../src/control/migrate.js';
import { installCapture } from '../../src/capture/install.js';
import { SyncRunner } from '../../src/engine/runner.js';
import pino from 'pino';
import pg from 'pg';
import { copyFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

// TRACE=1: time every statement (start offset and duration, per session) of the last run.
const trace: { at: number; ms: number; db: string; sql: string }[] = [];
let tracing = false;
if (process.env.TRACE === '1') {
  const orig = pg.Client.prototype.query as (...a: unknown[]) => unknown;
  (pg.Client.prototype as unknown as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    const t0 = performance.now();
    const ret = orig.apply(this, args);
    const first = args[0];
    const sql = typeof first === 'string' ? first : String((first as { text?: string }).text ?? (first as { constructor: { name: string } }).constructor.name);
    const rec = { at: t0, ms: -1, db: `${this.port}`, sql: process.env.TRACE_FULL === "1" ? `${String(sql.length).padStart(6)} B  ${sql}` : `${String(sql.length).padStart(6)} B  ${sql.replace(/\s+/g, " ").slice(0, 100)}` };
    if (tracing) trace.push(rec);
    if (ret && typeof (ret as Promise<unknown>).then === 'function') (ret as Promise<unknown>).then(() => { rec.ms = performance.now() - t0; }, () => { rec.ms = performance.now() - t0; });
    else if (ret && typeof (ret as { on?: unknown }).on === 'function') {
      const done = (): void => { if (rec.ms < 0) rec.ms = performance.now() - t0; };
      (ret as NodeJS.EventEmitter).on('finish', done).on('end', done);
    }
    return ret;
  };
}

// DURABLE=1: fsync and synchronous_commit on (as in `npm run bench`), the control db on a third cluster.
const durable = process.env.DURABLE === '1';
const set = await createClusters({ count: durable ? 3 : 2, durable });
try {
  for (const c of set.clusters.slice(0, 2)) await c.createDatabase('app');
  const ctlCluster = set.clusters[durable ? 2 : 0]!;
  await ctlCluster.createDatabase('ctl');
  const ctl = await connect(ctlCluster.params('ctl'), { parseTypes: true });
  await migrate(ctl);
  const apps = await Promise.all(set.clusters.slice(0, 2).map((c) => connect(c.params('app'))));
  for (const a of apps) await a.query(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
  for (const [i, n] of ['A', 'B'].entries()) {
    const p = set.clusters[i]!.params('app');
    await ctl.query(`INSERT INTO ibex.db (name, host, port, dbname, dbuser, can_replica, is_superuser) VALUES ($1,$2,$3,$4,$5,true,true)`, [n, p.host, p.port, p.dbname, p.user]);
  }
  const r = await ctl.query(`INSERT INTO ibex.relation (db, schemaname, relname, reltype, key_columns, key_types, key_kind) VALUES ('A','public','t','table','{id}','{integer}','primary') RETURNING id`);
  await ctl.query(`INSERT INTO ibex.relgroup (name) VALUES ('s'); INSERT INTO ibex.dbgroup (name) VALUES ('s')`);
  await ctl.query(`INSERT INTO ibex.relgroup_member (relgroup, relation, priority) VALUES ('s', $1, 0)`, [r.rows[0].id]);
  await ctl.query(`INSERT INTO ibex.dbgroup_member (dbgroup, db, role, priority) VALUES ('s','A','source',0),('s','B','source',0)`);
  await ctl.query(`INSERT INTO ibex.sync (name, relgroup, dbgroup) VALUES ('s','s','s')`);
  await installCapture(ctl, 's');
  const log = pino({ level: process.env.LOG ?? 'silent' });
  const runner = new SyncRunner({ controlUrl: ctlCluster.url('ctl'), sync: 's', log });
  // SEED=n: start from n rows on both dbs (as the stream scenario does).
  const SEED = Number(process.env.SEED ?? 0);
  if (SEED > 0) {
    for (const a of apps) await a.query(`INSERT INTO t SELECT -g, md5(g::text) FROM generate_series(1, $1::int) g`, [SEED]);
  }
  // EXPLAIN=1: auto_explain logs the plan of every statement over 1 ms (server.log of each cluster).
  if (process.env.EXPLAIN === '1') {
    for (const a of apps) {
      await a.query(`LOAD 'auto_explain'`);
      await a.query(`ALTER SYSTEM SET session_preload_libraries = 'auto_explain'`);
      await a.query(`ALTER SYSTEM SET auto_explain.log_min_duration = '1ms'`);
      await a.query(`ALTER SYSTEM SET auto_explain.log_analyze = on`);
      await a.query(`SELECT pg_reload_conf()`);
    }
  }
  await runner.run();
  const N = Number(process.env.N ?? 100);
  const ROWS = Number(process.env.ROWS ?? 1);
  const times: number[] = [];
  // This process's CPU (user+sys) over each runner.run(): the engine's own cost of a run, in ms.
  const cpus: number[] = [];
  const phases: Record<string, number[]> = {};
  const BOTH = process.env.BOTH === '1';
  // PROFILE=file.cpuprofile: a CPU profile of the N runs only (not of the clusters' set-up).
  const profiler = process.env.PROFILE ? new Session() : undefined;
  if (profiler) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  for (let i = 0; i < N; i++) {
    if (BOTH) {
      // One insert on A and one update on B (of a row inserted on B earlier): the stream mix.
      await apps[0]!.query(`INSERT INTO t VALUES ($1, 'a')`, [2 * i + 1]);
      await apps[1]!.query(i === 0 ? `INSERT INTO t VALUES ($1, 'b')` : `UPDATE t SET v = v || 'x' WHERE id = $1`, [i === 0 ? 0 : 2 * i - 2]);
      if (i > 0) await apps[1]!.query(`INSERT INTO t VALUES ($1, 'b')`, [2 * i]);
    } else {
      await apps[ROWS === 1 ? i % 2 : 0]!.query(`INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int * $2::int + 1, ($1::int + 1) * $2::int) g`, [i, ROWS]);
    }
    tracing = i === N - 1;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const res = await runner.run();
    const c1 = process.cpuUsage(c0);
    times.push(performance.now() - t0);
    cpus.push((c1.user + c1.system) / 1000);
    if (res.status !== 'good') throw new Error(JSON.stringify(res));
    const d = await ctl.query(`SELECT details FROM ibex.run WHERE id = $1`, [res.runId]);
    for (const [k, v] of Object.entries((d.rows[0].details as { phases?: Record<string, number> }).phases ?? {})) (phases[k] ??= []).push(v);
  }
  tracing = false;
  if (profiler) {
    const { profile } = await profiler.post('Profiler.stop');
    writeFileSync(process.env.PROFILE!, JSON.stringify(profile));
    profiler.disconnect();
  }
  if (trace.length) {
    const base = trace[0]!.at;
    for (const r of trace) console.log(`${(r.at - base).toFixed(2).padStart(7)} ${r.ms.toFixed(2).padStart(6)} ${r.db.padEnd(6)} ${r.sql}`);
  }
  times.sort((a, b) => a - b);
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(`run ms: p50 ${med(times)!.toFixed(1)} p90 ${times[Math.floor(N * 0.9)]!.toFixed(1)}`);
  console.log(`run CPU ms (this process, user+sys): p50 ${med(cpus)!.toFixed(2)} mean ${(cpus.reduce((a, b) => a + b, 0) / N).toFixed(2)}`);
  console.log('phase medians', Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, med(v)])));
  await runner.close();
  if (process.env.EXPLAIN === '1') {
    for (const [i, c] of set.clusters.slice(0, 2).entries()) copyFileSync(join(c.dataDir, 'server.log'), `/tmp/run-phases-explain-${i}.log`);
    console.log('plans: /tmp/run-phases-explain-0.log, /tmp/run-phases-explain-1.log');
  }
  for (const a of apps) await a.end();
  await ctl.end();
} finally {
  await set.destroy();
}

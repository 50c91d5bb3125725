/**
 * Where the time of one run goes: a two-master sync on throwaway clusters, N runs of one
 * insert batch each (ROWS rows, alternating sources when ROWS=1), printing the run time and
 * the median of each phase recorded in ibex.run.details.phases. A profiling aid, not a figure
 * of issue #5 (those come from `npm run bench`).
 * Run: N=100 ROWS=1 node --import tsx bench/tools/run-phases.ts      (per-run latency)
 *      N=5 ROWS=100000 node --import tsx bench/tools/run-phases.ts   (bulk)
 */
import { createClusters } from '../../src/cluster/clusters.js';
import { connect } from '../../src/db/connect.js';
import { migrate } from '../../src/control/migrate.js';
import { installCapture } from '../../src/capture/install.js';
import { SyncRunner } from '../../src/engine/runner.js';
import pino from 'pino';

const set = await createClusters({ count: 2 });
try {
  for (const c of set.clusters) await c.createDatabase('app');
  await set.clusters[0]!.createDatabase('ctl');
  const ctl = await connect(set.clusters[0]!.params('ctl'), { parseTypes: true });
  await migrate(ctl);
  const apps = await Promise.all(set.clusters.map((c) => connect(c.params('app'))));
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
  const runner = new SyncRunner({ controlUrl: set.clusters[0]!.url('ctl'), sync: 's', log });
  await runner.run();
  const N = Number(process.env.N ?? 100);
  const ROWS = Number(process.env.ROWS ?? 1);
  const times: number[] = [];
  const phases: Record<string, number[]> = {};
  for (let i = 0; i < N; i++) {
    await apps[ROWS === 1 ? i % 2 : 0]!.query(`INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int * $2::int + 1, ($1::int + 1) * $2::int) g`, [i, ROWS]);
    const t0 = performance.now();
    const res = await runner.run();
    times.push(performance.now() - t0);
    if (res.status !== 'good') throw new Error(JSON.stringify(res));
    const d = await ctl.query(`SELECT details FROM ibex.run WHERE id = $1`, [res.runId]);
    for (const [k, v] of Object.entries((d.rows[0].details as { phases?: Record<string, number> }).phases ?? {})) (phases[k] ??= []).push(v);
  }
  times.sort((a, b) => a - b);
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(`run ms: p50 ${med(times)!.toFixed(1)} p90 ${times[Math.floor(N * 0.9)]!.toFixed(1)}`);
  console.log('phase medians', Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, med(v)])));
  await runner.close();
  for (const a of apps) await a.end();
  await ctl.end();
} finally {
  await set.destroy();
}

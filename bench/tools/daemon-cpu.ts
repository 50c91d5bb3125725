/**
 * The daemon's CPU per replicated change under a light two-master stream (a diagnostic beside
 * `npm run bench -- stream`, smaller and quicker to set up: rows are registered with SQL, not
 * through the CLI). Three throwaway clusters (A, B, control; fsync on), a table of SEED rows on
 * A and B, the daemon started as users run it in the foreground (`bin/ibex run`, a child process
 * whose CPU is read from /proc after it replicated a canary, so start-up is not counted), then
 * two writers in this process, one per master, each RATE transactions a second (exponential
 * gaps) for TXNS transactions: half INSERTs of fresh ids, half UPDATEs of rows only that writer
 * touches. Prints the daemon's user+sys CPU, per change, the runs by status, and the lag of the
 * inserted rows (commit timestamp on the other master − on the origin); user_share is the part
 * of the daemon's CPU spent in user mode (the rest is the kernel's: socket reads and writes).
 *
 *   node --import tsx bench/tools/daemon-cpu.ts
 *   RATE=100 TXNS=3000 SEED=10000 PROFILE_DIR=/tmp/prof node --import tsx bench/tools/daemon-cpu.ts
 *
 * PROFILE_DIR: the daemon runs with `--cpu-prof` and writes its profile there when it stops.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClusters } from '../../src/cluster/clusters.js';
import { connect } from '../../src/db/connect.js';
import { migrate } from '../../src/control/migrate.js';
import { installCapture } from '../../src/capture/install.js';
import { readFileSync } from 'node:fs';
import { cpuOf, loadavg, sleep } from '../lib/proc.js';
import { quantile } from '../lib/stats.js';

/** utime and stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function ticks(pid: number): { user: number; sys: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(f[11]), sys: Number(f[12]) };
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RATE = Number(process.env.RATE ?? 100);
const TXNS = Number(process.env.TXNS ?? 3000);
const SEED = Number(process.env.SEED ?? 10_000);

const set = await createClusters({ count: 3, durable: true, label: 'daemon-cpu', settings: { track_commit_timestamp: 'on' } });
try {
  for (const c of set.clusters.slice(0, 2)) await c.createDatabase('app');
  const ctlCluster = set.clusters[2]!;
  await ctlCluster.createDatabase('ctl');
  const ctl = await connect(ctlCluster.params('ctl'), { parseTypes: true });
  await migrate(ctl);
  const apps = await Promise.all(set.clusters.slice(0, 2).map((c) => connect(c.params('app'))));
  for (const a of apps) {
    await a.query(`CREATE TABLE t (id bigint PRIMARY KEY, v text)`);
    await a.query(`INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, $1::int) g`, [SEED]);
  }
  for (const [i, n] of ['A', 'B'].entries()) {
    const p = set.clusters[i]!.params('app');
    await ctl.query(`INSERT INTO ibex.db (name, host, port, dbname, dbuser, can_replica, is_superuser) VALUES ($1,$2,$3,$4,$5,true,true)`, [n, p.host, p.port, p.dbname, p.user]);
  }
  const r = await ctl.query(`INSERT INTO ibex.relation (db, schemaname, relname, reltype, key_columns, key_types, key_kind) VALUES ('A','public','t','table','{id}','{bigint}','primary') RETURNING id`);
  await ctl.query(`INSERT INTO ibex.relgroup (name) VALUES ('s'); INSERT INTO ibex.dbgroup (name) VALUES ('s')`);
  await ctl.query(`INSERT INTO ibex.relgroup_member (relgroup, relation, priority) VALUES ('s', $1, 0)`, [r.rows[0].id]);
  await ctl.query(`INSERT INTO ibex.dbgroup_member (dbgroup, db, role, priority) VALUES ('s','A','source',0),('s','B','source',0)`);
  await ctl.query(`INSERT INTO ibex.sync (name, relgroup, dbgroup) VALUES ('s','s','s')`);
  await installCapture(ctl, 's');

  const prof = process.env.PROFILE_DIR ? [`--cpu-prof`, `--cpu-prof-dir=${process.env.PROFILE_DIR}`] : [];
  const logFile = join(set.root, 'daemon.log');
  const fd = openSync(logFile, 'a');
  const child = spawn('node', [...prof, '--no-warnings=ExperimentalWarning', '--import', join(ROOT, 'node_modules/tsx/dist/loader.mjs'),
    join(ROOT, 'src/cli/main.ts'), '--control', ctlCluster.url('ctl'), 'run'], { stdio: ['ignore', fd, fd], cwd: ROOT });
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  try {
    // Ready: a canary written on A arrives on B.
    await apps[0]!.query(`INSERT INTO t VALUES (-1, 'canary')`);
    for (let i = 0; ; i++) {
      if ((await apps[1]!.query(`SELECT 1 FROM t WHERE id = -1`)).rowCount) break;
      if (i > 1200) throw new Error(`the daemon did not replicate a canary in 120 s (log: ${logFile})`);
      await sleep(100);
    }
    await sleep(1000);
    const mark = Number((await ctl.query(`SELECT coalesce(max(id), 0) AS id FROM ibex.run`)).rows[0].id);
    const load0 = loadavg();
    const cpu0 = cpuOf(child.pid!);
    const ticks0 = ticks(child.pid!);
    const t0 = performance.now();
    // Writer w inserts ids w*1e9 + k and updates the seed rows of its half.
    const writer = async (w: number): Promise<number> => {
      const c = apps[w]!;
      const half = Math.floor(SEED / 2);
      let last = 0;
      for (let k = 1; k <= TXNS; k++) {
        await sleep(-Math.log(1 - Math.random()) * (1000 / RATE));
        if (k % 2) await c.query(`INSERT INTO t VALUES ($1, 'new')`, [(w + 1) * 1e9 + k]);
        else await c.query(`UPDATE t SET v = v || 'x' WHERE id = $1`, [w * half + 1 + ((k / 2) % half)]);
        last = k;
      }
      return last;
    };
    await Promise.all([writer(0), writer(1)]);
    const loadS = (performance.now() - t0) / 1000;
    // Converged: both masters hold every row with the same text.
    const sum = 'SELECT count(*) AS n, md5(string_agg(id::text || v, \',\' ORDER BY id)) AS h FROM t';
    for (let i = 0; ; i++) {
      const [a, b] = await Promise.all(apps.map((c) => c.query(sum)));
      if (a!.rows[0].h === b!.rows[0].h) break;
      if (i > 6000) throw new Error('no convergence in 120 s');
      await sleep(20);
    }
    await sleep(500);
    const cpu = cpuOf(child.pid!) - cpu0;
    const ticks1 = ticks(child.pid!);
    const userShare = (ticks1.user - ticks0.user) / Math.max(1, ticks1.user - ticks0.user + ticks1.sys - ticks0.sys);
    const changes = 2 * TXNS;
    const runs = (await ctl.query(`SELECT status, count(*)::int AS n FROM ibex.run WHERE id > $1 GROUP BY 1 ORDER BY 1`, [mark])).rows;
    // Lag of the inserted rows: commit time on the receiving master − on the origin.
    const ts = async (i: number): Promise<Map<string, number>> => new Map((await apps[i]!.query(
      `SELECT id::text, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS ts FROM t WHERE id >= 1e9`)).rows.map((x) => [String(x.id), Number(x.ts)]));
    const [ta, tb] = [await ts(0), await ts(1)];
    const lags: number[] = [];
    for (const [id, a] of ta) {
      const b = tb.get(id);
      if (b === undefined) continue;
      lags.push(Number(id) < 2e9 ? b - a : a - b);
    }
    lags.sort((x, y) => x - y);
    console.log(JSON.stringify({
      rate_per_writer: RATE, txns_per_writer: TXNS, load_s: Math.round(loadS * 10) / 10, changes, loadavg_start: load0, loadavg_end: loadavg(),
      cpu_daemon_s: Math.round(cpu * 100) / 100, user_share: Math.round(userShare * 100) / 100, cpu_daemon_ms_per_change: Math.round((cpu * 1e6) / changes) / 1000,
      runs: Object.fromEntries(runs.map((x) => [x.status, x.n])),
      lag_p50_ms: Math.round((quantile(lags, 0.5) ?? NaN) * 1e4) / 10, lag_p95_ms: Math.round((quantile(lags, 0.95) ?? NaN) * 1e4) / 10, lag_n: lags.length,
    }));
  } finally {
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(20_000)]);
    for (const a of apps) await a.end();
    await ctl.end();
  }
} finally {
  await set.destroy();
}

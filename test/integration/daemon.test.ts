import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type pg from 'pg';
import { daemonPaths, readPidFile } from '../../src/cli/daemon.js';
import { processAlive } from '../../src/control/daemon-store.js';
import { installCapture } from '../../src/capture/install.js';
import { openControl } from '../../src/control/connection.js';
import { connect } from '../../src/db/connect.js';
import { Daemon, type DaemonRunner } from '../../src/engine/daemon.js';
import type { RunnerOptions } from '../../src/engine/runner.js';
import type { RunKind, RunResult } from '../../src/engine/types.js';
import { runCliProcess, useClusters, waitFor } from '../helpers/env.js';

const env = useClusters(2);
const log = pino({ level: process.env.IBEX_TEST_LOG ?? 'silent' });

/** Rows of a query on cluster i, on a fresh session (pooled ones would not survive the restarts below). */
async function q(i: number, text: string, values: unknown[] = [], dbname = 'app'): Promise<Record<string, unknown>[]> {
  const c = await connect(env.params(i, dbname), { applicationName: 'ibex-test' });
  try {
    return (await c.query(text, values)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

/** The control database, as rows. */
const ctl = (text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> => q(0, text, values, 'ibexctl');

/** A runner that records real ibex.run rows (so kicks get answers) without replicating anything. */
class RecordingRunner implements DaemonRunner {
  static behaviour: (sync: string, kind: RunKind) => Partial<RunResult> = () => ({ status: 'empty' });
  static gate: Promise<void> | undefined;
  static runs: { sync: string; kind: RunKind; kickId: number | undefined }[] = [];
  static pending = false;
  constructor(readonly opts: RunnerOptions) {}
  async load(): Promise<void> {}
  async hasPending(): Promise<boolean> {
    return RecordingRunner.pending;
  }
  async run(kind: RunKind, opts: { kickId?: number }): Promise<RunResult> {
    RecordingRunner.runs.push({ sync: this.opts.sync, kind, kickId: opts.kickId });
    const started = Date.now();
    if (RecordingRunner.gate) await RecordingRunner.gate;
    const b = { status: 'empty' as RunResult['status'], inserted: 0, ...RecordingRunner.behaviour(this.opts.sync, kind) };
    const tables = { 'public.t': { inserted: b.inserted, deleted: 0, conflicts: 0, truncates: 0 } };
    const row = await ctl(
      `INSERT INTO ibex.run (sync, kind, started, ended, status, inserted, details, error)
       VALUES ($1, $2, now(), clock_timestamp(), $3, $4, $5::jsonb, $6) RETURNING id`,
      [this.opts.sync, kind, b.status, b.inserted, JSON.stringify({ tables }), b.error ?? null],
    );
    return { runId: Number(row[0]!.id), sync: this.opts.sync, kind, deleted: 0, conflicts: 0, truncates: 0, tables, durationMs: Date.now() - started, ...b };
  }
  async close(): Promise<void> {}
}

describe('the daemon and its command-line verbs', () => {
  let piddir: string;
  let cliEnv: Record<string, string>;
  let stale: pg.Client | undefined;
  let stalePid = 0;
  const inProcess: Daemon[] = [];
  const cli = (...args: string[]) => runCliProcess(['--control', env.controlUrl, ...args], cliEnv);
  /** `--json` output of a read command, run in-process (fast enough to poll). */
  const json = async (...args: string[]) => {
    const r = await env.cli(...args, '--json');
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as {
      daemon: { running: boolean; pid?: number };
      syncs: { name: string; status: string; state: string | null; lastRun: { status: string; tables: Record<string, unknown> } | null; lastGood: unknown }[];
    };
  };
  const syncDoc = async (name: string) => (await json('status')).syncs.find((s) => s.name === name);

  before(async () => {
    piddir = mkdtempSync(join(tmpdir(), 'ibex-piddir-'));
    cliEnv = { IBEX_PIDDIR: piddir, IBEX_CHECKTIME_MS: '2000', IBEX_CONTROL_URL: '' };
    const install = await env.cli('install');
    assert.equal(install.code, 0, install.err);
    for (const i of [0, 1]) await q(i, `CREATE TABLE public.t (id int PRIMARY KEY, v text); CREATE TABLE public.u (id int PRIMARY KEY, v text)`);
    const [a, b] = [env.params(0), env.params(1)];
    await ctl(`INSERT INTO ibex.db (name, host, port, dbname, dbuser) VALUES ('A', $1, $2, 'app', 'postgres'), ('B', $3, $4, 'app', 'postgres')`,
      [a.host, a.port, b.host, b.port]);
    // s1: t, A and B both sources (runs on changes). manual: u, A to B, only when kicked. half: never finished installing.
    for (const [table, group] of [['t', 'rg'], ['u', 'rg2']] as const) {
      const rel = await ctl(`INSERT INTO ibex.relation (db, schemaname, relname, reltype, key_columns, key_types, key_kind, key_index)
        VALUES ('A', 'public', $1, 'table', '{id}', '{integer}', 'primary', $2) RETURNING id`, [table, `${table}_pkey`]);
      await ctl(`INSERT INTO ibex.relgroup (name) VALUES ($1)`, [group]);
      await ctl(`INSERT INTO ibex.relgroup_member (relgroup, relation) VALUES ($1, $2)`, [group, rel[0]!.id]);
    }
    await ctl(`INSERT INTO ibex.dbgroup (name) VALUES ('dg'), ('dg2')`);
    await ctl(`INSERT INTO ibex.dbgroup_member (dbgroup, db, role) VALUES ('dg', 'A', 'source'), ('dg', 'B', 'source'), ('dg2', 'A', 'source'), ('dg2', 'B', 'target')`);
    await ctl(`INSERT INTO ibex.sync (name, relgroup, dbgroup, status) VALUES ('s1', 'rg', 'dg', 'installing')`);
    await ctl(`INSERT INTO ibex.sync (name, relgroup, dbgroup, status, autokick) VALUES ('manual', 'rg2', 'dg2', 'installing', false)`);
    await ctl(`INSERT INTO ibex.sync (name, relgroup, dbgroup, status) VALUES ('half', 'rg', 'dg', 'installing')`);
    const control = await openControl(env.controlUrl);
    try {
      await installCapture(control, 's1');
      await installCapture(control, 'manual');
    } finally {
      await control.end();
    }
    // What a daemon killed mid-run leaves behind: a session of its runner.
    stale = await connect(env.params(1), { applicationName: 'ibex/s1' });
    stale.on('error', () => {});
    stalePid = Number((await stale.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  });

  after(async () => {
    await Promise.all(inProcess.map((d) => d.stop()));
    const pid = readPidFile(daemonPaths(env.controlUrl, piddir).pidFile);
    if (pid !== undefined && processAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      await waitFor('the daemon to exit', async () => !processAlive(pid), 30_000).catch(() => process.kill(pid, 'SIGKILL'));
    }
    await stale?.end().catch(() => {});
    rmSync(piddir, { recursive: true, force: true });
  });

  it('refuses every daemon verb that needs a running daemon while none runs', async () => {
    const reload = await cli('reload');
    assert.equal(reload.code, 1);
    assert.match(reload.err, /no ibex daemon is running/);
    const kick = await cli('kick', 's1');
    assert.equal(kick.code, 1);
    assert.match(kick.err, /no ibex daemon is running: start it with "?ibex start"?/);
    const stop = await cli('stop');
    assert.equal(stop.code, 0);
    assert.match(stop.out, /no ibex daemon is running/);
  });

  it('says why the daemon could not start, from its log, and leaves no pid file', async () => {
    const r = await runCliProcess(['--control', env.controlUrl, 'start'], { ...cliEnv, IBEX_CHECKTIME_MS: 'soon' });
    assert.equal(r.code, 1);
    assert.match(r.err, /the ibex daemon could not start: IBEX_CHECKTIME_MS="soon" is not a number/);
    assert.match(r.out, /\| ibex: IBEX_CHECKTIME_MS/, 'the last lines of its log');
    assert.equal(existsSync(daemonPaths(env.controlUrl, piddir).pidFile), false);
  });

  it('starts the daemon detached, returning once it is ready, with a pid file', async () => {
    const r = await cli('start');
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /ibex daemon started \(pid \d+\)/);
    const pidFile = daemonPaths(env.controlUrl, piddir).pidFile;
    assert.ok(existsSync(pidFile), 'pid file written');
    const pid = readPidFile(pidFile)!;
    assert.ok(processAlive(pid));
    const rows = await ctl(`SELECT pid, stopped FROM ibex.daemon WHERE pid = $1`, [pid]);
    assert.equal(rows.length, 1, 'registered before it said it was ready');
    assert.equal(rows[0]!.stopped, null);
    // The control URL (which may hold a password) reaches the daemon through its environment, not its command line.
    assert.ok(!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(env.controlUrl), 'the control URL is not in the process title');
  });

  it('ends the sessions a previous daemon left behind for its syncs', async () => {
    await waitFor('the stale ibex/s1 session to be ended', async () =>
      Number((await q(1, `SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1`, [stalePid]))[0]!.n) === 0);
  });

  it('refuses a second start while the daemon runs', async () => {
    const r = await cli('start');
    assert.equal(r.code, 1);
    assert.match(r.err, /already running/);
  });

  it('shows the syncs and the live daemon in status --json', async () => {
    const doc = await json('status');
    assert.equal(doc.daemon.running, true);
    assert.equal(doc.daemon.pid, readPidFile(daemonPaths(env.controlUrl, piddir).pidFile));
    assert.deepEqual(doc.syncs.map((s) => s.name), ['half', 'manual', 's1']);
    assert.equal(doc.syncs.find((s) => s.name === 'half')!.state, null, 'an installing sync is ignored by the daemon');
    await waitFor('the daemon to record the state of s1', async () => (await syncDoc('s1'))?.state);
    const one = await cli('status', 's1');
    assert.equal(one.code, 0, one.err);
    assert.match(one.out, /daemon: running/);
    assert.match(one.out, /s1/);
    const table = await cli('status');
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, /manual/);
    const unknown = await cli('status', 'nosuch');
    assert.equal(unknown.code, 2);
  });

  it('refuses to kick an unknown sync or one that is not active (exit 2)', async () => {
    const unknown = await cli('kick', 'nosuch');
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /no sync named "nosuch"/);
    const half = await cli('kick', 'half');
    assert.equal(half.code, 2);
    const bad = await cli('kick', 's1', 'soon');
    assert.equal(bad.code, 2);
  });

  it('pauses and resumes syncs, and the daemon follows', async () => {
    const p = await cli('pause', 's1');
    assert.equal(p.code, 0, p.err);
    assert.match(p.out, /paused sync "s1"/);
    assert.equal((await syncDoc('s1'))!.status, 'paused');
    await waitFor('the daemon to mark s1 paused', async () => (await syncDoc('s1'))!.state === 'paused');
    const k = await cli('kick', 's1');
    assert.equal(k.code, 2);
    assert.match(k.err, /paused.*resume it first/);
    const again = await cli('pause', 's1');
    assert.match(again.out, /already paused/);
    const r = await cli('resume', 's1');
    assert.equal(r.code, 0, r.err);
    assert.equal((await syncDoc('s1'))!.status, 'active');
    await waitFor('the daemon to resume s1', async () => (await syncDoc('s1'))!.state !== 'paused');
    const unknown = await cli('pause', 's1', 'nosuch');
    assert.equal(unknown.code, 2);
    assert.equal((await syncDoc('s1'))!.status, 'active', 'nothing half-done');
  });

  it('runs a sync on a wake-up from its capture triggers, without a kick', async () => {
    await q(0, `INSERT INTO public.t VALUES (1, 'from A')`);
    await waitFor('the row on B', async () => (await q(1, `SELECT v FROM public.t WHERE id = 1`))[0]?.v === 'from A');
    await q(1, `UPDATE public.t SET v = 'from B' WHERE id = 1`);
    await waitFor('the change back on A', async () => (await q(0, `SELECT v FROM public.t WHERE id = 1`))[0]?.v === 'from B');
  });

  it('kicks a sync and waits for its run, exiting 0 with the run\'s counts', async () => {
    const since = String((await ctl(`SELECT clock_timestamp() AS t`))[0]!.t);
    await q(0, `INSERT INTO public.u VALUES (1, 'kicked'), (2, 'kicked')`);
    // The insert woke the daemon (its triggers notify), which ran s1, a sync of that db: manual must not have run.
    await waitFor('a run of s1 after the insert', async () =>
      (await ctl(`SELECT 1 FROM ibex.run WHERE sync = 's1' AND started > $1 AND ended IS NOT NULL`, [since])).length > 0);
    assert.equal((await q(1, `SELECT count(*) AS n FROM public.u`))[0]!.n, '0', 'a sync with autokick off waits for its kick');
    assert.equal((await ctl(`SELECT count(*) AS n FROM ibex.run WHERE sync = 'manual'`))[0]!.n, '0');
    const r = await cli('kick', 'manual', '20');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /sync "manual": run \d+ \(delta\) good in \d+ ms: 2 inserted, 0 deleted, 0 conflicts, 0 truncates/);
    assert.equal((await q(1, `SELECT count(*) AS n FROM public.u`))[0]!.n, '2', 'applied when the kick returns');
    const kick = (await ctl(`SELECT k.taken, r.status FROM ibex.kick k JOIN ibex.run r ON r.id = k.run WHERE k.sync = 'manual' ORDER BY k.id DESC LIMIT 1`))[0];
    assert.equal(kick?.status, 'good', 'ibex.kick names its run');
    const plain = await cli('kick', 'manual');
    assert.equal(plain.code, 0, plain.err);
    assert.match(plain.out, /kicked sync "manual"/);
  });

  it('reloads the running daemon', async () => {
    const r = await cli('reload');
    assert.equal(r.code, 0, r.err);
  });

  it('restarts the daemon: a new process, ready when the command returns', async () => {
    const pidFile = daemonPaths(env.controlUrl, piddir).pidFile;
    const old = readPidFile(pidFile)!;
    const r = await cli('restart');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ibex daemon stopped[\s\S]*ibex daemon started/);
    const pid = readPidFile(pidFile)!;
    assert.notEqual(pid, old);
    assert.equal(processAlive(old), false);
    assert.equal((await json('status')).daemon.pid, pid);
  });

  it('stops the daemon, returning once the process has exited', async () => {
    const pidFile = daemonPaths(env.controlUrl, piddir).pidFile;
    const pid = readPidFile(pidFile)!;
    const r = await cli('stop');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ibex daemon stopped/);
    assert.equal(processAlive(pid), false, 'the process is gone');
    assert.equal(existsSync(pidFile), false, 'the pid file is gone');
    const rows = await ctl(`SELECT stopped FROM ibex.daemon WHERE pid = $1`, [pid]);
    assert.notEqual(rows[0]!.stopped, null);
    const locks = await ctl(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1`, [0x69626578]);
    assert.equal(Number(locks[0]!.n), 0, 'every lease released');
    const status = await json('status');
    assert.equal(status.daemon.running, false);
  });

  describe('running in-process with a recording runner', () => {
    const listeners = async (i: number): Promise<number> =>
      Number((await q(i, `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'ibex/listen'`))[0]!.n);

    /** Run `fn` with a fresh in-process daemon, always stopped afterwards. */
    const withDaemon = async (fn: (d: Daemon) => Promise<void>): Promise<void> => {
      const d = new Daemon({
        controlUrl: env.controlUrl, log, runnerFactory: (o) => new RecordingRunner(o), kickPollMs: 200, heartbeatMs: 300, checktimeMs: 3_600_000,
      });
      inProcess.push(d);
      RecordingRunner.runs = [];
      await d.start();
      try {
        await fn(d);
      } finally {
        await d.stop();
        RecordingRunner.behaviour = () => ({ status: 'empty' });
      }
    };
    const runsOf = (sync: string): number => RecordingRunner.runs.filter((r) => r.sync === sync).length;

    it('answers a kick with a good run: exit 0 and the run\'s counts', () => withDaemon(async () => {
      RecordingRunner.behaviour = () => ({ status: 'good', inserted: 3 });
      const r = await env.cli('kick', 'manual', '20');
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /good in \d+ ms: 3 inserted, 0 deleted, 0 conflicts, 0 truncates/);
      const doc = JSON.parse((await env.cli('status', 'manual', '--json')).out) as { syncs: { lastRun: { status: string; tables: Record<string, { inserted: number }> } }[] };
      assert.equal(doc.syncs[0]!.lastRun.status, 'good');
      assert.equal(doc.syncs[0]!.lastRun.tables['public.t']!.inserted, 3, 'per-table counts');
    }));

    it('runs the syncs of a source on a wake-up, then marks the db idle', () => withDaemon(async () => {
      const idle = async (i: number) => (await q(i, `SELECT idle FROM ibex.wakeup`))[0]!.idle === 't';
      await waitFor('both sources to go idle after the catch-up runs', async () => (await idle(0)) && (await idle(1)));
      const before = runsOf('s1');
      const manual = runsOf('manual');
      await q(1, `NOTIFY ibex_wake`);
      await waitFor('a run of s1 after the wake-up', async () => runsOf('s1') > before);
      assert.equal(runsOf('manual'), manual, 'a sync with autokick off does not run on wake-ups');
      await waitFor('db B to be idle again', () => idle(1));
    }));

    it('marks its sources busy when it stops, so triggers stop notifying', async () => {
      assert.deepEqual((await q(0, `SELECT idle FROM ibex.wakeup`)).map((r) => r.idle), ['f']);
      assert.deepEqual((await q(1, `SELECT idle FROM ibex.wakeup`)).map((r) => r.idle), ['f']);
    });

    it('catches up after its LISTEN session is lost', () => withDaemon(async () => {
      await waitFor('the LISTEN session on B', async () => (await listeners(1)) === 1);
      const before = runsOf('s1');
      await q(1, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ibex/listen'`);
      await waitFor('a catch-up run after the reconnect', async () => runsOf('s1') > before);
      await waitFor('the LISTEN session to be back', async () => (await listeners(1)) === 1);
    }));

    it('shares the syncs with a second daemon, each run by exactly one, and takes them all once the other stops', () => withDaemon(async (first) => {
      await withDaemon(async (second) => {
        // Rendezvous hashing decides who runs what; the owner hands a sync over between runs.
        await waitFor('the two daemons to agree', async () => {
          const a = first.syncs();
          const b = second.syncs();
          return a.length + b.length === 2 && !a.some((x) => b.includes(x));
        });
        const owners = await ctl(`SELECT sync, daemon FROM ibex.sync_lease WHERE expires > now() ORDER BY sync`);
        assert.deepEqual(owners.map((o) => o.sync), ['manual', 's1'], 'one lease per sync');
        await first.stop();
        await waitFor('the second daemon to take every sync', async () => second.syncs().length === 2, 15_000);
        assert.deepEqual(second.syncs().sort(), ['manual', 's1']);
      });
    }));

    it('pauses a sync whose run aborts on a conflict, and kick exits 3', () => withDaemon(async () => {
      RecordingRunner.behaviour = (sync) => (sync === 'manual'
        ? { status: 'aborted', error: 'conflict on public.t (id)=(1) under strategy abort', pause: true }
        : { status: 'empty' });
      try {
        const r = await env.cli('kick', 'manual', '20');
        assert.equal(r.code, 3, r.err);
        assert.match(r.err, /stopped on a conflict/);
        const row = await ctl(`SELECT status, status_reason FROM ibex.sync WHERE name = 'manual'`);
        assert.equal(row[0]!.status, 'paused');
        assert.match(String(row[0]!.status_reason), /conflict on public.t/);
      } finally {
        assert.equal((await env.cli('resume', 'manual')).code, 0);
      }
    }));

    it('stops gracefully only after the run in progress ended', async () => {
      let open!: () => void;
      RecordingRunner.gate = new Promise((r) => (open = r));
      let kicked: Promise<{ code: number; err: string }> | undefined;
      try {
        await withDaemon(async (d) => {
          kicked = env.cli('kick', 'manual', '20');
          await waitFor('the kicked run to start', async () => RecordingRunner.runs.some((r) => r.sync === 'manual' && r.kickId !== undefined));
          let stopped = false;
          const stopping = d.stop().then(() => (stopped = true));
          // A round trip to the control database: the stop had every chance to finish, were it not waiting.
          const row = await ctl(`SELECT count(*) AS n FROM ibex.daemon WHERE stopped IS NULL AND pid = $1`, [process.pid]);
          assert.equal(Number(row[0]!.n), 1, 'still registered as running');
          assert.equal(stopped, false, 'still waiting for the run');
          RecordingRunner.gate = undefined;
          open();
          await stopping;
        });
      } finally {
        RecordingRunner.gate = undefined;
        open();
      }
      assert.equal((await kicked!).code, 0, 'the kick got its answer');
    });

    it('survives its source and its control database going away, and catches up when they return', () => withDaemon(async (d) => {
      await waitFor('the LISTEN session on B', async () => (await listeners(1)) === 1);
      const before = runsOf('s1');
      await env.clusters[1]!.stop();
      await env.clusters[1]!.start();
      await waitFor('the LISTEN session on B to be back', async () => (await listeners(1)) === 1, 60_000);
      await waitFor('a catch-up run of s1', async () => runsOf('s1') > before);

      const beat = async () => Date.parse(String((await ctl(`SELECT heartbeat FROM ibex.daemon WHERE pid = $1 AND stopped IS NULL`, [process.pid]))[0]?.heartbeat));
      const lastBeat = await beat();
      await env.clusters[0]!.stop();
      await env.clusters[0]!.start();
      await waitFor('the heartbeat to resume', async () => (await beat()) > lastBeat, 60_000);
      assert.deepEqual(d.syncs().sort(), ['manual', 's1'], 'still running both syncs');
      await waitFor('the liveness lock and both leases to be held again', async () =>
        Number((await ctl(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND granted`, [0x69626578]))[0]!.n) === 1 &&
        Number((await ctl(`SELECT count(*) AS n FROM ibex.sync_lease l JOIN ibex.daemon d ON d.id = l.daemon
                            WHERE d.pid = $1 AND d.stopped IS NULL AND l.expires > now()`, [process.pid]))[0]!.n) === 2, 30_000);
      RecordingRunner.behaviour = () => ({ status: 'good', inserted: 1 });
      const r = await env.cli('kick', 'manual', '30');
      assert.equal(r.code, 0, r.err);
    }));
  });
});

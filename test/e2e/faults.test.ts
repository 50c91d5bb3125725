/**
 * Fault injection against the real daemon process (`bin/ibex start`) and real
 * clusters (DESIGN invariants 1, 2, 6, 7): a database or the control database
 * going away in the middle of large runs, ibex's sessions killed during a
 * COPY, a transaction kept open across runs, and a target that lost a column
 * or a privilege. Each case ends with every db holding exactly the same rows.
 *
 * Clusters: 0 holds the control database and C (database app), 1 holds A,
 * 2 holds B (database app) and BT (database tgt, reached as the
 * non-superuser role ibex_tgt). Syncs: mm (item, A and B both sources),
 * fan (big, A to target B), priv (acct, A to targets BT and C).
 *
 * Random moments come from IBEX_TEST_SEED (printed, and named in every failure).
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../src/db/connect.js';
import { useDaemonProcess } from '../helpers/daemon.js';
import { faultKit, type Place } from '../helpers/faults.js';
import { useClusters, waitFor } from '../helpers/env.js';
import { rng, testSeed, withSeed } from '../helpers/seed.js';

const env = useClusters(3);
const daemon = useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000' }, 'faults');
const seed = testSeed();
const random = rng(seed);
const CTL = 0;
const A = 1;
const B = 2;

const { q, ctl, converged, copyReaches, runningRun, writer } = faultKit(env, CTL);

const ITEM = 'id, grp, payload, n';
const mm: Place[] = [[A, 'app'], [B, 'app']];

interface StatusDoc {
  daemon: { running: boolean; pid?: number };
  syncs: { name: string; status: string; statusReason: string | null; state: string | null; attempts: number; lastError: { message: string } | null;
    lastRun: { status: string; error: string | null } | null }[];
}

async function status(sync: string): Promise<StatusDoc['syncs'][number]> {
  const r = await env.cli('status', sync, '--json');
  assert.equal(r.code, 0, r.err);
  return (JSON.parse(r.out) as StatusDoc).syncs[0]!;
}

/** The daemon started before the tests is the one still running: it survived by itself. */
let daemonPid = 0;
function sameDaemon(): void {
  assert.equal(daemon.pid(), daemonPid, 'the daemon was not restarted');
  assert.ok(daemon.alive(), 'the daemon is still running');
}

/** Run a test body with the seed and the daemon's log named on failure. */
const seeded = (fn: () => Promise<void>) => () => withSeed(seed, fn, () => `daemon log (last lines):\n${daemon.logTail(30)}`);

describe('faults survived by the running daemon', { timeout: 600_000 }, () => {
  before(async () => {
    console.log(`# IBEX_TEST_SEED=${seed}`);
    const schema = `
      CREATE TABLE item (id bigint PRIMARY KEY, grp int, payload text, n bigint NOT NULL DEFAULT 0);
      CREATE TABLE big (id bigint PRIMARY KEY, payload text);
      CREATE TABLE acct (id int PRIMARY KEY, v text, note text);`;
    await Promise.all([A, B].map((i) => env.clusters[i]!.psql(schema, 'app')));
    await env.clusters[CTL]!.psql(`CREATE TABLE acct (id int PRIMARY KEY, v text, note text)`, 'app');
    // BT: a target reached as a role with exactly the documented target privileges.
    await env.clusters[B]!.createDatabase('tgt');
    await env.clusters[B]!.psql(`CREATE ROLE ibex_tgt LOGIN; GRANT CREATE ON DATABASE tgt TO ibex_tgt`);
    await env.clusters[B]!.psql(`CREATE TABLE acct (id int PRIMARY KEY, v text, note text);
      GRANT USAGE ON SCHEMA public TO ibex_tgt;
      GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON acct TO ibex_tgt`, 'tgt');
    const ok = async (...args: string[]): Promise<void> => {
      const r = await env.cli(...args);
      assert.equal(r.code, 0, `ibex ${args.join(' ')}: ${r.err}${r.out}`);
    };
    await ok('install');
    const db = async (name: string, i: number, dbname: string, user: string): Promise<void> => {
      const p = env.params(i, dbname);
      await ok('add', 'db', name, `host=${p.host}`, `port=${p.port}`, `dbname=${dbname}`, `user=${user}`);
    };
    await db('A', A, 'app', 'postgres');
    await db('B', B, 'app', 'postgres');
    await db('C', CTL, 'app', 'postgres');
    await db('BT', B, 'tgt', 'ibex_tgt');
    await ok('add', 'table', 'public.item', 'db=A', 'relgroup=mm');
    await ok('add', 'table', 'public.big', 'db=A', 'relgroup=fan');
    await ok('add', 'table', 'public.acct', 'db=A', 'relgroup=priv');
    await ok('add', 'sync', 'mm', 'relgroup=mm', 'dbs=A:source,B:source');
    await ok('add', 'sync', 'fan', 'relgroup=fan', 'dbs=A:source,B:target');
    await ok('add', 'sync', 'priv', 'relgroup=priv', 'dbs=A:source,BT:target,C:target');
    daemonPid = await daemon.start();
  });

  it('recovers by itself when a target cluster stops in the middle of a large run', seeded(async () => {
    const rows = 150_000;
    await q(A, `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g`);
    const at = Math.round(rows * (0.05 + 0.6 * random.next()));
    await copyReaches(B, at, 'fan');
    await env.clusters[B]!.stop('immediate');
    try {
      // Changes go on while the target is away.
      await q(A, `INSERT INTO big SELECT g, 'while B was down' FROM generate_series(${rows + 1}, ${rows + 1000}) g`);
      await q(A, `DELETE FROM big WHERE id % 1000 = 7`);
      await q(A, `UPDATE big SET payload = 'updated while B was down' WHERE id % 1000 = 8`);
      const s = await waitFor('fan to stall on the missing target', async () => {
        const st = await status('fan');
        return st.state === 'stalled' && st.lastError ? st : undefined;
      }, 60_000, 200);
      assert.doesNotMatch(s.lastError!.message, /\n/, 'one line');
    } finally {
      await env.clusters[B]!.start();
    }
    const sum = await converged('big', 'id, payload', [[A, 'app'], [B, 'app']]);
    assert.ok(sum.startsWith(`${rows + 1000 - (rows + 1000) / 1000}:`), sum);
    await converged('item', ITEM, mm);
    sameDaemon();
  }));

  it('keeps replicating through a source cluster restart while writes go on', seeded(async () => {
    await q(A, `INSERT INTO item (id, grp, payload) SELECT g, 0, md5(g::text) FROM generate_series(1, 50000) g`);
    const wa = writer(A, 1_000_000);
    const wb = writer(B, 2_000_000);
    let ackedA: number[] = [];
    let ackedB: number[] = [];
    try {
      await waitFor('a run of mm in progress', () => runningRun('mm'), 60_000, 5);
      await new Promise((r) => setTimeout(r, random.int(0, 1500)));
      await env.clusters[A]!.stop('immediate');
      const before = wb.acked();
      await waitFor('writes to go on at B', async () => wb.acked() >= before + 100, 30_000);
      await env.clusters[A]!.start();
      const afterA = wa.acked();
      await waitFor('writes to go on at A after its restart', async () => wa.acked() >= afterA + 200, 60_000);
    } finally {
      ackedA = await wa.stop();
      ackedB = await wb.stop();
    }
    await converged('item', ITEM, mm);
    for (const i of [A, B]) {
      const missing = await q(i, `SELECT count(*) AS n FROM unnest($1::bigint[]) g WHERE NOT EXISTS (SELECT 1 FROM item WHERE id = g)`, [[...ackedA, ...ackedB]]);
      assert.equal(missing[0]!.n, '0', `every committed write is on cluster ${i}`);
    }
    sameDaemon();
  }));

  it('goes on by itself when the control database\'s cluster restarts under it', seeded(async () => {
    await q(B, `INSERT INTO item (id, grp, payload) SELECT g, 1, md5(g::text) FROM generate_series(3000001, 3080000) g`);
    await waitFor('a run of mm in progress', () => runningRun('mm'), 60_000, 5);
    await new Promise((r) => setTimeout(r, random.int(0, 1000)));
    await env.clusters[CTL]!.stop('immediate');
    try {
      // Changes keep being captured meanwhile.
      await q(A, `INSERT INTO item (id, grp, payload) SELECT g, 2, 'while the control db was down' FROM generate_series(3100001, 3100500) g`);
      await q(B, `UPDATE item SET n = n + 1 WHERE id BETWEEN 1 AND 1000`);
      await new Promise((r) => setTimeout(r, random.int(500, 3000)));
    } finally {
      await env.clusters[CTL]!.start();
    }
    const sum = await converged('item', ITEM, mm);
    assert.equal(Number((await q(A, `SELECT count(*) AS n FROM item WHERE id BETWEEN 1 AND 1000 AND n = 1`))[0]!.n), 1000);
    assert.ok(sum);
    sameDaemon();
    const doc = await waitFor('status to show the daemon running', async () => {
      const r = await env.cli('status', '--json');
      const d = JSON.parse(r.out) as StatusDoc;
      return d.daemon.running ? d : undefined;
    }, 30_000, 500);
    assert.equal(doc.daemon.pid, daemonPid);
    // A run whose end could not be recorded while the control database was away is closed, not shown running forever.
    await waitFor('no run left open', async () =>
      Number((await ctl(`SELECT count(*) AS n FROM ibex.run WHERE ended IS NULL`))[0]!.n) === 0, 30_000, 200);
  }));

  it('recovers when ibex\'s sessions are killed during the COPY of a large run', seeded(async () => {
    const rows = 200_000;
    await q(A, `INSERT INTO item (id, grp, payload) SELECT g, 3, md5(g::text) FROM generate_series(5000001, ${5000000 + rows}) g`);
    const at = Math.round(rows * (0.05 + 0.6 * random.next()));
    await copyReaches(B, at, 'mm');
    let killed = 0;
    for (const [i, db] of [[A, 'app'], [B, 'app'], [CTL, 'ibexctl'], [CTL, 'app'], [B, 'tgt']] as const) {
      const r = await q(i, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity
                             WHERE application_name LIKE 'ibex/%' AND pid <> pg_backend_pid() AND datname = current_database()`, [], db);
      killed += Number(r[0]!.n);
    }
    assert.ok(killed >= 4, `ended ${killed} ibex sessions`);
    const sum = await converged('item', ITEM, mm);
    const n = Number(sum.split(':')[0]);
    assert.equal(Number((await q(A, `SELECT count(*) AS n FROM item WHERE id > 5000000`))[0]!.n), rows);
    assert.ok(n > rows);
    sameDaemon();
  }));

  it('leaves an open transaction\'s rows for a later run, replicating the rest meanwhile, and delivers them once committed', seeded(async () => {
    const long = await connect(env.params(A), { applicationName: 'ibex-test-long' });
    try {
      await long.query('BEGIN');
      await long.query(`INSERT INTO item (id, grp, payload) SELECT g, 4, 'long transaction' FROM generate_series(6000001, 6000100) g`);
      await long.query(`UPDATE item SET n = n + 7 WHERE id BETWEEN 5000001 AND 5000050`);
      const goodBefore = Number((await ctl(`SELECT count(*) AS n FROM ibex.run WHERE sync = 'mm' AND status = 'good'`))[0]!.n);
      for (let k = 0; k < 3; k++) {
        await q(A, `INSERT INTO item (id, grp, payload) VALUES ($1, 5, 'beside the long transaction')`, [6100000 + k]);
        await q(B, `INSERT INTO item (id, grp, payload) VALUES ($1, 5, 'beside the long transaction')`, [6200000 + k]);
        await waitFor(`round ${k} to replicate`, async () =>
          (await q(B, `SELECT 1 FROM item WHERE id = $1`, [6100000 + k])).length > 0 && (await q(A, `SELECT 1 FROM item WHERE id = $1`, [6200000 + k])).length > 0,
        30_000, 100);
      }
      const goodAfter = Number((await ctl(`SELECT count(*) AS n FROM ibex.run WHERE sync = 'mm' AND status = 'good'`))[0]!.n);
      assert.ok(goodAfter - goodBefore >= 3, `${goodAfter - goodBefore} good runs while the transaction was open`);
      assert.equal((await q(B, `SELECT count(*) AS n FROM item WHERE id BETWEEN 6000001 AND 6000100`))[0]!.n, '0', 'nothing of the open transaction');
      assert.equal((await q(B, `SELECT count(*) AS n FROM item WHERE id BETWEEN 5000001 AND 5000050 AND n >= 7`))[0]!.n, '0');
      await long.query('COMMIT');
    } finally {
      await long.end().catch(() => {});
    }
    await converged('item', ITEM, mm);
    assert.equal((await q(B, `SELECT count(*) AS n FROM item WHERE id BETWEEN 6000001 AND 6000100`))[0]!.n, '100');
    assert.equal((await q(B, `SELECT count(*) AS n FROM item WHERE id BETWEEN 5000001 AND 5000050 AND n = 7`))[0]!.n, '50');
    sameDaemon();
  }));

  describe('a target that no longer fits', () => {
    const priv: Place[] = [[A, 'app'], [B, 'tgt'], [CTL, 'app']];
    const ACCT = 'id, v, note';
    const countOn = async ([i, db]: Place, where = 'true'): Promise<number> =>
      Number((await q(i, `SELECT count(*) AS n FROM acct WHERE ${where}`, [], db))[0]!.n);

    before(async () => {
      await q(A, `INSERT INTO acct (id, v) SELECT g, 'v' || g FROM generate_series(1, 100) g`);
      await converged('acct', ACCT, priv);
    });

    it('pauses with a one-line reason when a target lost a column, applies nothing, and converges after the fix and resume', seeded(async () => {
      await q(CTL, `ALTER TABLE acct DROP COLUMN note`);
      await q(A, `INSERT INTO acct (id, v, note) SELECT g, 'v' || g, 'note ' || g FROM generate_series(101, 200) g`);
      await q(A, `UPDATE acct SET v = 'changed' WHERE id <= 10`);
      const st = await waitFor('priv to pause', async () => {
        const s = await status('priv');
        return s.status === 'paused' ? s : undefined;
      }, 60_000, 200);
      assert.ok(st.statusReason, 'a reason');
      assert.doesNotMatch(st.statusReason!, /\n/, 'one line');
      assert.match(st.statusReason!, /acct on db C .*note/);
      assert.match(st.statusReason!, /ibex resume priv/);
      const text = await env.cli('status', 'priv');
      assert.equal(text.code, 0, text.err);
      assert.match(text.out, /paused \(table public\.acct on db C/);
      // Nothing half-applied: neither target got any of it, though BT could have taken it.
      for (const p of priv.slice(1)) {
        assert.equal(await countOn(p), 100);
        assert.equal(await countOn(p, `v = 'changed'`), 0);
      }
      await q(CTL, `ALTER TABLE acct ADD COLUMN note text`);
      const r = await env.cli('resume', 'priv');
      assert.equal(r.code, 0, r.err);
      await converged('acct', ACCT, priv);
      assert.equal(await countOn([CTL, 'app'], `note IS NOT NULL`), 100);
      assert.equal((await status('priv')).status, 'active');
      sameDaemon();
    }));

    it('fails with a one-line error when ibex lost a privilege on a target, applies nothing, and converges once it is granted again', seeded(async () => {
      await env.clusters[B]!.psql(`REVOKE INSERT, UPDATE ON acct FROM ibex_tgt`, 'tgt');
      await q(A, `INSERT INTO acct (id, v) SELECT g, 'v' || g FROM generate_series(201, 300) g`);
      await q(A, `UPDATE acct SET note = 'changed again' WHERE id BETWEEN 11 AND 20`);
      const st = await waitFor('priv to fail on the missing privilege', async () => {
        const s = await status('priv');
        return s.lastError && /permission denied/.test(s.lastError.message) ? s : undefined;
      }, 60_000, 200);
      assert.doesNotMatch(st.lastError!.message, /\n/, 'one line');
      assert.match(st.lastError!.message, /permission denied for table acct/);
      assert.match(st.lastError!.message, /\bBT\b/, 'names the db');
      assert.ok(st.state === 'stalled' || st.status === 'paused', `state ${st.state}, status ${st.status}`);
      const text = await env.cli('status', 'priv');
      assert.match(text.out, /permission denied/);
      for (const p of priv.slice(1)) {
        assert.equal(await countOn(p), 200, 'nothing half-applied');
        assert.equal(await countOn(p, `note = 'changed again'`), 0);
      }
      await env.clusters[B]!.psql(`GRANT INSERT, UPDATE ON acct TO ibex_tgt`, 'tgt');
      if ((await status('priv')).status === 'paused') assert.equal((await env.cli('resume', 'priv')).code, 0);
      await converged('acct', ACCT, priv);
      assert.equal(await countOn([B, 'tgt']), 300);
      await waitFor('priv to be idle again', async () => (await status('priv')).state === 'idle', 30_000, 200);
      sameDaemon();
    }));
  });
});

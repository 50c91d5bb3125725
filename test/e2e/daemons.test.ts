/**
 * Several daemons on one control database (real `bin/ibex start` processes):
 * every sync run by exactly one; kill -9 of an owner mid-run, a frozen owner
 * (SIGSTOP past its lease, SIGCONT while its run is in apply), the control
 * database down for 20 s, and a rolling restart under writes — each ending
 * with every row exactly once on the target (`ibex validate` exit 0).
 *
 * Cluster 0 holds only the control database (so stopping it stops nothing
 * else); A (cluster 1) is the source and B (cluster 2) the target of six syncs.
 * The daemons reach the control database through a service file, which the
 * last test repoints after moving the server to another port (a switchover).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/cluster/ports.js';
import { useClusters, waitFor } from '../helpers/env.js';
import { useDaemonProcess, type DaemonProcess } from '../helpers/daemon.js';
import { setupControl, addSync } from '../helpers/sync.js';
import { writeProgressSql } from '../../src/targets/postgres/postgres-dialect.js';

const env = useClusters(3);
const LEASE_S = 6;
const serviceDir = mkdtempSync(join(tmpdir(), 'ibex-service-'));
const serviceFile = join(serviceDir, 'pg_service.conf');
after(() => rmSync(serviceDir, { recursive: true, force: true }));
/** Point the `ibexctl` service at the control database on this port. */
const pointService = (port: number): void =>
  writeFileSync(serviceFile, `[ibexctl]\nhost=${env.clusters[0]!.socketDir}\nport=${port}\ndbname=ibexctl\nuser=postgres\n`);
const daemons: DaemonProcess[] = [0, 1, 2].map((i) =>
  useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000', PGSERVICEFILE: serviceFile }, `daemons-${i}`, { controlUrl: 'postgresql:///?service=ibexctl' }));
const SYNCS = ['s1', 's2', 's3', 's4', 's5', 's6'];
const A = 1;
const B = 2;

const ctl = (text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> => env.query(0, text, values, 'ibexctl');

/** sync -> owning daemon id, for leases a live daemon holds. */
async function owners(): Promise<Map<string, number>> {
  const r = await ctl(`SELECT l.sync, l.daemon FROM ibex.sync_lease l JOIN ibex.daemon d ON d.id = l.daemon
                        WHERE l.expires > now() AND d.stopped IS NULL`);
  return new Map(r.map((x) => [String(x.sync), Number(x.daemon)]));
}

/** The test's daemon process that owns a sync now. */
async function ownerOf(sync: string): Promise<{ proc: DaemonProcess; id: number }> {
  const id = await waitFor(`an owner of ${sync}`, async () => (await owners()).get(sync), 20_000);
  const pid = Number((await ctl(`SELECT pid FROM ibex.daemon WHERE id = $1`, [id]))[0]!.pid);
  const proc = daemons.find((d) => d.pid() === pid);
  assert.ok(proc, `daemon #${id} (pid ${pid}) is one of the test's`);
  return { proc, id };
}

/** Every sync owned by exactly one live daemon, and every test daemon registered live. */
async function allOwnedOnce(): Promise<boolean> {
  const doc = JSON.parse((await daemons[0]!.ibex('status', '--json')).out) as {
    daemons: { pid: number; owns: string[] }[]; syncs: { name: string; owner: { pid: number } | null }[];
  };
  const live = daemons.filter((d) => d.alive()).map((d) => d.pid());
  if (doc.daemons.length !== live.length || !live.every((p) => doc.daemons.some((d) => d.pid === p))) return false;
  if (!doc.syncs.every((s) => s.owner !== null)) return false;
  const owned = doc.daemons.flatMap((d) => d.owns).sort();
  return JSON.stringify(owned) === JSON.stringify([...SYNCS].sort());
}

async function count(i: number, table: string): Promise<number> {
  return Number((await env.query(i, `SELECT count(*) AS n FROM ${table}`))[0]!.n);
}

/** Wait until B has what A has for these syncs, then `ibex validate` each (exit 0: identical row by row). */
async function converged(syncs: string[], timeoutMs = 60_000): Promise<void> {
  for (const s of syncs) {
    const t = `t_${s}`;
    await waitFor(`${s} to converge`, async () => (await count(A, t)) === (await count(B, t)), timeoutMs, 200);
    const v = await daemons[0]!.ibex('validate', s, 'wait=30');
    assert.equal(v.code, 0, `validate ${s}: ${v.out}${v.err}`);
  }
}

const logs = (): string => daemons.map((d, i) => `--- daemon ${i}:\n${d.logTail(25)}`).join('\n');

describe('several daemons on one control database', () => {
  it('runs every sync on exactly one of three daemons', async () => {
    for (const i of [A, B]) {
      for (const s of SYNCS) await env.query(i, `CREATE TABLE t_${s} (id bigint PRIMARY KEY, payload text, n int NOT NULL DEFAULT 0)`);
    }
    pointService(env.clusters[0]!.port);
    await setupControl(env, { A, B });
    for (const s of SYNCS) await addSync(env, s, { dbs: { A: 'source', B: 'target' }, tables: [`public.t_${s}`] });
    const set = await daemons[0]!.ibex('set', `lease_seconds=${LEASE_S}`);
    assert.equal(set.code, 0, set.err);
    await Promise.all(daemons.map((d) => d.start()));
    await waitFor('every sync owned exactly once', allOwnedOnce, 30_000, 200).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
    const doc = JSON.parse((await daemons[0]!.ibex('status', '--json')).out) as { daemons: { owns: string[]; versionDiffers: boolean; host: string }[] };
    assert.equal(doc.daemons.length, 3);
    assert.ok(doc.daemons.every((d) => !d.versionDiffers && d.host));
    await env.query(A, `INSERT INTO t_s3 (id, payload) SELECT g, 'x' FROM generate_series(1, 100) g`);
    await converged(['s3']);
  });

  it('finishes a large run on another daemon within 10 s of kill -9 of its owner, every row exactly once', async () => {
    const { proc, id } = await ownerOf('s1');
    const lastRun = Number((await ctl(`SELECT coalesce(max(id), 0) AS id FROM ibex.run`))[0]!.id);
    await env.query(A, `INSERT INTO t_s1 (id, payload) SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g`);
    await waitFor('the large run to start', async () =>
      (await ctl(`SELECT 1 FROM ibex.run WHERE sync = 's1' AND id > $1 AND ended IS NULL`, [lastRun])).length > 0, 30_000, 20);
    // Into the run: its COPY to B under way, or a moment later.
    await waitFor('the run to be writing on B', async () =>
      (await env.query(B, `SELECT 1 FROM pg_stat_activity WHERE application_name = 'ibex/s1' AND state = 'active'`)).length > 0, 10_000, 10).catch(() => undefined);
    await proc.kill();
    const killed = Date.now();
    const next = await waitFor('another daemon to own s1', async () => {
      const o = (await owners()).get('s1');
      return o !== undefined && o !== id ? o : undefined;
    }, 10_000, 50).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
    assert.ok(Date.now() - killed <= 10_000, `taken over after ${Date.now() - killed} ms`);
    await converged(['s1'], 90_000);
    assert.equal(await count(B, 't_s1'), 100_000);
    assert.ok((await ctl(`SELECT 1 FROM ibex.run WHERE sync = 's1' AND status = 'good' AND id > $1`, [lastRun])).length > 0, `a good run by daemon #${next}`);
    await proc.start();
    await waitFor('every sync owned exactly once again', allOwnedOnce, 30_000, 200);
  });

  it('fences a frozen owner: SIGSTOP past its lease, SIGCONT while its run is in apply; nothing applied twice, nothing lost', async () => {
    // The first row the owner applies holds its apply transaction on B (once: a sequence is not rolled back).
    await env.query(B, `CREATE SEQUENCE slow_once;
      CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.payload = 'slow' AND nextval('slow_once') = 1 THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$;
      CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON t_s2 FOR EACH ROW EXECUTE FUNCTION slow()`);
    const { proc, id } = await ownerOf('s2');
    const pid = proc.pid()!;
    await env.query(A, `INSERT INTO t_s2 (id, payload) SELECT g, CASE WHEN g = 1 THEN 'slow' ELSE 'x' END FROM generate_series(1, 5000) g`);
    await waitFor('the owner\'s run to be held in apply', async () =>
      (await env.query(B, `SELECT 1 FROM pg_stat_activity WHERE application_name = 'ibex/s2' AND wait_event = 'PgSleep'`)).length > 0, 30_000, 20);
    const stale = Number((await ctl(`SELECT id FROM ibex.run WHERE sync = 's2' AND ended IS NULL ORDER BY id DESC LIMIT 1`))[0]!.id);
    process.kill(pid, 'SIGSTOP');
    const frozen = Date.now();
    try {
      await waitFor('another daemon to take s2 from the frozen one', async () => {
        const o = (await owners()).get('s2');
        return o !== undefined && o !== id;
      }, (LEASE_S + 10) * 1000, 100).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
      assert.ok(Date.now() - frozen <= (LEASE_S + 10) * 1000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await converged(['s2'], 60_000);
    assert.equal(await count(B, 't_s2'), 5000);
    // The frozen daemon's run committed nothing (it may run the sync again later: the hashing may hand it back).
    await waitFor('the stale run to be closed', async () => (await ctl(`SELECT 1 FROM ibex.run WHERE id = $1 AND ended IS NOT NULL`, [stale])).length > 0, 20_000);
    const run = (await ctl(`SELECT status, inserted FROM ibex.run WHERE id = $1`, [stale]))[0]!;
    assert.equal(run.status, 'failed');
    // The new owner's commit on B carries its epoch, newer than the frozen one's.
    const epoch = Number((await env.query(B, `SELECT max(epoch) AS e FROM ibex.progress WHERE sync = 's2'`))[0]!.e);
    assert.ok(epoch >= 2, `the lease changed hands (epoch ${epoch} on B)`);
    // A commit carrying the old epoch is refused by B itself, inside its transaction.
    const c = await env.client(B);
    await c.query('BEGIN');
    await assert.rejects(c.query(`${writeProgressSql('s2', [{ source: 'A', snapshot: '1:1:', run: 1, epoch: epoch - 1 }])}`), /ibex fencing/);
    await c.query('ROLLBACK');
    await env.query(B, `DROP TRIGGER slow ON t_s2`);
    await waitFor('every sync owned exactly once again', allOwnedOnce, 40_000, 200);
  });

  it('resumes by itself after the control database was down for 20 s', async () => {
    await env.clusters[0]!.stop();
    await env.query(A, `INSERT INTO t_s4 (id, payload) SELECT g, 'while away' FROM generate_series(1, 1000) g`);
    await new Promise((r) => setTimeout(r, 20_000));
    await env.clusters[0]!.start();
    await env.query(A, `INSERT INTO t_s5 (id, payload) SELECT g, 'after' FROM generate_series(1, 1000) g`);
    await converged(['s4', 's5'], 90_000).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
    assert.ok(daemons.every((d) => d.alive()), 'every daemon still runs');
    await waitFor('every sync owned exactly once again', allOwnedOnce, 40_000, 200);
  });

  it('loses nothing in a rolling restart under writes', async () => {
    let writing = true;
    let next = 1_000_000;
    const writer = (async () => {
      while (writing) {
        const s = SYNCS[next % SYNCS.length]!;
        await env.query(A, `INSERT INTO t_${s} (id, payload) SELECT g, 'rolling' FROM generate_series($1::bigint, $1::bigint + 49) g`, [next]);
        await env.query(A, `UPDATE t_${s} SET n = n + 1 WHERE id BETWEEN $1::bigint - 500 AND $1::bigint`, [next]);
        next += 50;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      for (const d of daemons) {
        await d.stop();
        await waitFor('the stopped daemon\'s syncs to move', allOwnedOnce, 20_000, 100);
        await d.start();
        await waitFor('every sync owned exactly once', allOwnedOnce, 20_000, 100);
      }
    } finally {
      writing = false;
      await writer;
    }
    await converged(SYNCS, 90_000);
  });

  it('follows the control database to another port after a switchover, once the service file is repointed', async () => {
    const c0 = env.clusters[0]!;
    const port = await freePort();
    await c0.stop();
    // The "promoted" server listens elsewhere; the name the daemons use is moved to it.
    appendFileSync(join(c0.dataDir, 'postgresql.conf'), `\nport = ${port}\n`);
    await c0.start();
    pointService(port);
    await env.query(A, `INSERT INTO t_s6 (id, payload) SELECT g, 'after the switchover' FROM generate_series(5000000, 5000999) g`);
    await converged(['s6'], 90_000).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
    assert.ok(daemons.every((d) => d.alive()), 'every daemon still runs');
    await waitFor('every sync owned exactly once on the moved control database', allOwnedOnce, 40_000, 200);
  });
});

/**
 * Fencing of copies and of targets of other kinds, with real daemons (`bin/ibex start`): two
 * daemons on one control database; the owner of a sync is frozen (SIGSTOP) in the middle of its
 * onetimecopy to a PostgreSQL db, to a MariaDB database and to a SQLite file, kept frozen past its
 * lease until the other daemon runs the sync, then resumed (SIGCONT). The resumed daemon must step
 * back without finishing its copy, exactly one copy completes (the new owner's), and the target
 * ends identical to the source, row by row (`ibex validate`). The exact interleaving (a stale
 * chunk refused by the target's own check) is in test/integration/fencing-copy-targets.test.ts;
 * here the new owner also ends the frozen daemon's PostgreSQL sessions, so which guard stops the
 * resumed one depends on where it was frozen.
 *
 * Each target gets a trigger that slows every write a little, so the copy (500-row chunks) lasts
 * long enough to be frozen in its middle. Cluster 0 holds the control database and the PostgreSQL
 * target B; cluster 1 holds the source A.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ok, useClusters, waitFor } from '../helpers/env.js';
import { useDaemonProcess, type DaemonProcess } from '../helpers/daemon.js';
import { adminConnection, freshDatabase } from '../helpers/mariadb-server.js';

const env = useClusters(2);
const LEASE_S = 6;
const daemons: DaemonProcess[] = [0, 1].map((i) =>
  useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000', IBEX_COPY_CHUNK_ROWS: '500' }, `fencing-copies-${i}`));
const A = 1;
const ROWS = 8000;

let maria: { dbname: string; drop(): Promise<void> };
let dir = '';
before(async () => {
  maria = await freshDatabase();
  dir = mkdtempSync(join(tmpdir(), 'ibex-fencing-copies-'));
});
after(async () => {
  await maria?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ctl = (text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> => env.query(0, text, values, 'ibexctl');
const logs = (): string => daemons.map((d, i) => `--- daemon ${i}:\n${d.logTail(25)}`).join('\n');

/** The daemon id holding a live lease of the sync, if any. */
async function ownerId(sync: string): Promise<number | undefined> {
  const r = await ctl(`SELECT l.daemon FROM ibex.sync_lease l JOIN ibex.daemon d ON d.id = l.daemon
                        WHERE l.sync = $1 AND l.expires > now() AND d.stopped IS NULL`, [sync]);
  return r[0] ? Number(r[0].daemon) : undefined;
}

/**
 * Add a sync copying `table` (ROWS rows on A) to `db` with onetimecopy=1, freeze its owner once
 * the copy is well under way, resume it after the other daemon took the sync, and check the outcome.
 */
async function freezeMidCopy(sync: string, table: string, db: string, prepareTarget: () => Promise<void>): Promise<void> {
  await env.query(A, `CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
  await env.query(A, `INSERT INTO ${table} SELECT g, 'row ' || g FROM generate_series(1, ${ROWS}) g`);
  ok(await daemons[0]!.ibex('add', 'table', `public.${table}`, 'db=A', `relgroup=${sync}`));
  await prepareTarget();
  ok(await daemons[0]!.ibex('add', 'sync', sync, `relgroup=${sync}`, `dbs=A:source,${db}:target`, 'onetimecopy=1'));
  // Well into the copy: some chunks committed, most still to come.
  await waitFor(`${sync}: the copy to be under way`, async () => {
    const r = await ctl(`SELECT coalesce(sum(rows_copied), 0) AS n FROM ibex.copy_progress WHERE sync = $1`, [sync]);
    return Number(r[0]!.n) >= 1500;
  }, 60_000, 20).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
  const id = await waitFor(`${sync}: an owner`, () => ownerId(sync), 10_000);
  const pid = Number((await ctl(`SELECT pid FROM ibex.daemon WHERE id = $1`, [id]))[0]!.pid);
  const stale = await ctl(`SELECT id FROM ibex.run WHERE sync = $1 AND kind = 'onetimecopy' AND ended IS NULL`, [sync]);
  assert.equal(stale.length, 1, 'one onetimecopy run under way');
  const staleRun = Number(stale[0]!.id);
  process.kill(pid, 'SIGSTOP');
  const frozen = Date.now();
  try {
    await waitFor(`${sync}: the other daemon to take the sync`, async () => {
      const o = await ownerId(sync);
      return o !== undefined && o !== id;
    }, (LEASE_S + 10) * 1000, 100).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
    assert.ok(Date.now() - frozen <= (LEASE_S + 10) * 1000);
    // Let the new owner's copy start (it may also wait for the frozen one's open transaction).
    await new Promise((r) => setTimeout(r, 2_000));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  // The resumed daemon steps back: it says so in its log, and its copy run never ends good.
  const stopped = (): boolean => daemons.some((d) => d.logTail(400).split('\n').some((l) =>
    l.includes(`"sync":"${sync}"`) && l.includes(`"pid":${pid}`) && /another daemon took the lease|a newer owner of this sync exists/.test(l)));
  await waitFor(`${sync}: the resumed daemon to step back`, async () => stopped(), 30_000, 200).catch((err) => assert.fail(`${String(err)}\n${logs()}`));
  // The new owner finishes the copy; the target is the source, row by row.
  await waitFor(`${sync}: the onetimecopy to finish`, async () =>
    Number((await ctl(`SELECT onetimecopy FROM ibex.sync WHERE name = $1`, [sync]))[0]!.onetimecopy) === 0, 120_000, 200)
    .catch((err) => assert.fail(`${String(err)}\n${logs()}`));
  await env.query(A, `UPDATE ${table} SET v = v || ' after' WHERE id % 97 = 0`);
  await waitFor(`${sync}: validate`, async () => (await daemons[0]!.ibex('validate', sync, 'wait=30')).code === 0, 90_000, 1_000)
    .catch(async (err) => assert.fail(`${String(err)}\n${(await daemons[0]!.ibex('validate', sync, 'wait=30')).out}\n${logs()}`));
  const good = await ctl(`SELECT id FROM ibex.run WHERE sync = $1 AND kind = 'onetimecopy' AND status = 'good'`, [sync]);
  assert.equal(good.length, 1, 'exactly one onetimecopy run completed');
  assert.notEqual(Number(good[0]!.id), staleRun, 'by the new owner, not by the frozen one');
}

describe('fencing of copies and of targets of other kinds', () => {
  it('starts two daemons on one control database', async () => {
    ok(await daemons[0]!.ibex('install'));
    for (const [name, i] of [['A', A], ['B', 0]] as const) {
      const p = env.params(i);
      ok(await daemons[0]!.ibex('add', 'db', name, `host=${p.host}`, `port=${p.port}`, 'dbname=app', `user=${p.user}`));
    }
    ok(await daemons[0]!.ibex('add', 'db', 'M', 'type=mariadb', 'host=127.0.0.1', 'port=3306', 'user=root', `dbname=${maria.dbname}`));
    // add db opens only a file that exists: an empty one, its table made from ibex schema.
    new Database(join(dir, 'target.sqlite')).close();
    ok(await daemons[0]!.ibex('add', 'db', 'S', 'type=sqlite', `dbname=${join(dir, 'target.sqlite')}`));
    ok(await daemons[0]!.ibex('set', `lease_seconds=${LEASE_S}`));
    await Promise.all(daemons.map((d) => d.start()));
  });

  it('stops a frozen daemon\'s onetimecopy to PostgreSQL after SIGCONT: it steps back, one copy completes, nothing lost', async () => {
    await freezeMidCopy('cpg', 't_pg', 'B', async () => {
      // Every chunk's upsert sleeps a little (a statement trigger): the copy takes several seconds.
      await env.query(0, `CREATE TABLE t_pg (id int PRIMARY KEY, v text NOT NULL);
        CREATE FUNCTION slow_chunk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$;
        CREATE TRIGGER slow AFTER INSERT ON t_pg FOR EACH STATEMENT EXECUTE FUNCTION slow_chunk()`);
    });
  });

  it('stops a frozen daemon\'s onetimecopy to MariaDB after SIGCONT: it steps back, one copy completes, nothing lost', async () => {
    await freezeMidCopy('cmy', 't_my', 'M', async () => {
      const c = await adminConnection(3306, maria.dbname);
      try {
        await c.query('CREATE TABLE t_my (id INT PRIMARY KEY, v LONGTEXT NOT NULL) ENGINE=InnoDB');
        await c.query('CREATE TRIGGER slow BEFORE INSERT ON t_my FOR EACH ROW SET @ibex_test_slow = SLEEP(0.0003)');
      } finally {
        await c.end();
      }
    });
  });

  it('stops a frozen daemon\'s onetimecopy to SQLite after SIGCONT: it steps back, one copy completes, nothing lost', async () => {
    await freezeMidCopy('csq', 't_sq', 'S', async () => {
      const sq = new Database(join(dir, 'target.sqlite'));
      try {
        // SQLite has no sleep: each row's trigger scans a table of 30,000 rows instead.
        sq.exec(`CREATE TABLE t_sq (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
          CREATE TABLE burn (x INTEGER);
          WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000) INSERT INTO burn SELECT x FROM c;
          CREATE TRIGGER slow AFTER INSERT ON t_sq BEGIN SELECT count(*) FROM burn WHERE x % 1000 = NEW.id % 1000; END;`);
      } finally {
        sq.close();
      }
    });
  });
});

/**
 * Randomized convergence against the real daemon (`bin/ibex start`): a 3-master sync (A, B, C)
 * over a parent table, a child table (FK ON DELETE CASCADE), a plain table with a composite key
 * and an insert-only ledger.
 *
 * Writers on every node (two each, plus a "burster" that changes one key on all three nodes at
 * once) run random transactions over a small key space for IBEX_SOAK_SECONDS (default 25 s), in
 * busy and quiet waves (under steady writes to hot keys most runs lose the race and retry):
 * inserts, upserts, updates, key changes, deletes, a parent with its children in one transaction,
 * parent deletes that cascade, and rare TRUNCATEs of the composite-key table (about one per 10 s).
 * Meanwhile `ibex kick rnd` arrives at random moments (in-process, not waiting) and now and then
 * `ibex kick rnd 30` (the real CLI, waiting). Application errors (unique and FK violations,
 * serialization failures, deadlocks) roll the writer's transaction back and are counted.
 *
 * Every written value `v` is a unique token; the test journals every token whose transaction
 * COMMITTED, with its table and key. After the writers stop, `ibex kick rnd 60` runs until two runs
 * in a row are empty. Then:
 *  1. `ibex validate rnd --json` exits 0: every table equal, nothing in flight;
 *  2. every table is identical on A, B and C (count and md5 of the ordered rows);
 *  3. every ledger row committed is there, and no other; every final `v` is a committed token of
 *     that table and key; every version in the conflict log (winner row and each loser's row) is
 *     null or holds a committed token of that table and key; no conflict is left pending and none
 *     concerns the ledger (its rows are only ever written on one node);
 *  4. the daemon is the one started (same pid, alive), `ibex status rnd --json` shows it running,
 *     the sync active and idle, and the last run not failed.
 *
 * IBEX_TEST_SEED=<n> replays the writers' choices (timing still varies).
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { useDaemonProcess } from '../helpers/daemon.js';
import { useClusters, waitFor, type CliResult } from '../helpers/env.js';
import { rng, testSeed, withSeed, type Rng } from '../helpers/seed.js';
import { captureNames } from '../../src/capture/objects.js';

const env = useClusters(3);
const daemon = useDaemonProcess(env, { IBEX_CHECKTIME_MS: '1000' }, 'random-daemon');
const seed = testSeed();
const SOAK_MS = Math.round(Number(process.env.IBEX_SOAK_SECONDS ?? 25) * 1000);
const SYNC = 'rnd';

/** db name -> cluster index (database `app`; the control database is on cluster 0 too). */
const NODES = [['A', 0], ['B', 1], ['C', 2]] as const;
type Node = (typeof NODES)[number][0];

const DDL = `
  CREATE TABLE parent (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
  CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) ON DELETE CASCADE, v text NOT NULL);
  CREATE TABLE comp (region text, num int, v text NOT NULL, PRIMARY KEY (region, num));
  CREATE TABLE ledger (writer text, seq int, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (writer, seq));`;
const TABLES = ['parent', 'child', 'comp', 'ledger'];
/** Tables whose rows carry a token in `v`. */
const TOKEN_TABLES = ['parent', 'child', 'comp'];

const P = 10; // parent ids 1..P
const C = 24; // child ids 1..C
const REGIONS = ['eu', "o'hara", 'ü ☃'];
const NUMS = 5; // comp keys: REGIONS × 1..NUMS

/** SQLSTATEs that are the application's business on the writing node, not ibex's. */
const APP_ERRORS = new Set(['23505', '23503', '40001', '40P01']);

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r.next() * xs.length)]!;
const sqlstate = (err: unknown): string => String((err as { code?: unknown } | null)?.code ?? '');
const why = (msg: string): string => `${msg} [IBEX_TEST_SEED=${seed}]`;

/** The journal's key of a row: `id`, or `region|num`. */
function keyOf(table: string, row: Record<string, unknown>): string {
  return table === 'comp' ? `${String(row.region)}|${String(row.num)}` : String(row.id);
}

/** A committed token: where it was written. */
interface Written {
  db: Node | 'seed';
  table: string;
  key: string;
}

interface Shared {
  stop: boolean;
  /** Load comes in waves: while quiet, writers pause between transactions (so runs can win the race). */
  quiet: boolean;
  /** token -> where it was committed (tokens are unique). */
  tokens: Map<string, Written>;
  /** Committed ledger rows: `writer/seq`. */
  ledger: Set<string>;
  commits: number;
  rollbacks: number;
  appErrors: Record<string, number>;
  truncates: number;
  kicks: number;
  waitedKicks: Record<string, number>;
  /** In-process kicks that did not exit 0 (they must all succeed). */
  badKicks: string[];
}

/** A write in an open transaction, journaled once the transaction commits. */
type Pending = { table: string; key: string; token: string }[];

/** Run a statement; every returned row gets `token` in the journal (under the key it has now). */
async function write(c: pg.Client, pending: Pending, table: string, token: string, text: string, values: unknown[]): Promise<void> {
  const r = await c.query(text, values);
  for (const row of r.rows as Record<string, unknown>[]) pending.push({ table, key: keyOf(table, row), token });
}

/** One random operation inside the writer's open transaction. */
async function randomOp(c: pg.Client, r: Rng, tok: () => string, pending: Pending): Promise<void> {
  const x = r.next();
  const y = r.next();
  if (x < 0.35) {
    const id = r.int(1, P);
    if (y < 0.2) {
      const t = tok();
      return write(c, pending, 'parent', t, `INSERT INTO parent (id, v) VALUES ($1, $2) RETURNING id`, [id, t]);
    }
    if (y < 0.35) {
      const t = tok();
      return write(c, pending, 'parent', t, `INSERT INTO parent (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = parent.n + 1 RETURNING id`, [id, t]);
    }
    if (y < 0.6) {
      const t = tok();
      return write(c, pending, 'parent', t, `UPDATE parent SET v = $2, n = n + 1 WHERE id = $1 RETURNING id`, [id, t]);
    }
    if (y < 0.8) {
      // A parent and its children in one transaction.
      const t = tok();
      await write(c, pending, 'parent', t, r.next() < 0.5
        ? `INSERT INTO parent (id, v) VALUES ($1, $2) RETURNING id`
        : `INSERT INTO parent (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = parent.n + 1 RETURNING id`, [id, t]);
      const kids = r.int(1, 3);
      for (let k = 0; k < kids; k++) {
        const ct = tok();
        await write(c, pending, 'child', ct, `INSERT INTO child (id, parent_id, v) VALUES ($1, $2, $3)
          ON CONFLICT (id) DO UPDATE SET parent_id = EXCLUDED.parent_id, v = EXCLUDED.v RETURNING id`, [r.int(1, C), id, ct]);
      }
      return;
    }
    // Deleting a parent cascades to its children.
    await c.query(`DELETE FROM parent WHERE id = $1`, [id]);
    return;
  }
  if (x < 0.65) {
    const id = r.int(1, C);
    const t = tok();
    if (y < 0.3) return write(c, pending, 'child', t, `INSERT INTO child (id, parent_id, v) VALUES ($1, $2, $3) RETURNING id`, [id, r.int(1, P), t]);
    if (y < 0.55) return write(c, pending, 'child', t, `UPDATE child SET v = $2 WHERE id = $1 RETURNING id`, [id, t]);
    if (y < 0.8) return write(c, pending, 'child', t, `UPDATE child SET parent_id = $2, v = $3 WHERE id = $1 RETURNING id`, [id, r.int(1, P), t]);
    await c.query(`DELETE FROM child WHERE id = $1`, [id]);
    return;
  }
  const region = pick(r, REGIONS);
  const num = r.int(1, NUMS);
  const t = tok();
  if (y < 0.35) {
    return write(c, pending, 'comp', t, `INSERT INTO comp (region, num, v) VALUES ($1, $2, $3)
      ON CONFLICT (region, num) DO UPDATE SET v = EXCLUDED.v RETURNING region, num`, [region, num, t]);
  }
  if (y < 0.6) return write(c, pending, 'comp', t, `UPDATE comp SET v = $3 WHERE region = $1 AND num = $2 RETURNING region, num`, [region, num, t]);
  if (y < 0.8) {
    // A key change: the row moves to another key with a new token (journaled under the new key).
    return write(c, pending, 'comp', t, `UPDATE comp SET region = $3, num = $4, v = $5 WHERE region = $1 AND num = $2 RETURNING region, num`,
      [region, num, pick(r, REGIONS), r.int(1, NUMS), t]);
  }
  await c.query(`DELETE FROM comp WHERE region = $1 AND num = $2`, [region, num]);
}

function countAppError(sh: Shared, err: unknown): void {
  const s = sqlstate(err);
  if (!APP_ERRORS.has(s)) throw err;
  sh.appErrors[s] = (sh.appErrors[s] ?? 0) + 1;
}

/** One writer session: random transactions of 1 to 3 operations plus a ledger row, until stopped. */
async function writer(node: Node, i: number, w: number, r: Rng, sh: Shared): Promise<void> {
  const c = await env.client(i);
  const tag = `${node}${w}`;
  let seq = 0;
  let txn = 0;
  const tok = (): string => `${tag}.${++seq}`;
  while (!sh.stop) {
    if (sh.quiet) {
      await sleep(20);
      continue;
    }
    const pending: Pending = [];
    txn++;
    try {
      await c.query('BEGIN');
      const ops = r.int(1, 3);
      for (let k = 0; k < ops; k++) {
        await randomOp(c, r, tok, pending);
        if (r.next() < 0.1) await sleep(r.int(5, 60)); // now and then a transaction stays open a little
      }
      await c.query(`INSERT INTO ledger (writer, seq) VALUES ($1, $2)`, [tag, txn]);
      if (r.next() < 0.05) {
        await c.query('ROLLBACK');
        sh.rollbacks++;
      } else {
        await c.query('COMMIT');
        sh.commits++;
        for (const p of pending) sh.tokens.set(p.token, { db: node, table: p.table, key: p.key });
        sh.ledger.add(`${tag}/${txn}`);
      }
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      countAppError(sh, err);
    }
    await sleep(r.int(2, 30));
  }
}

/** Now and then the same key changed on every node at (nearly) the same moment: conflicts. */
async function burster(r: Rng, sh: Shared): Promise<void> {
  const cs = await Promise.all(NODES.map(([, i]) => env.client(i)));
  let seq = 0;
  while (!sh.stop) {
    await sleep(r.int(150, 700));
    if (sh.stop) break;
    if (sh.quiet) continue;
    const onParent = r.next() < 0.5;
    const id = r.int(1, P);
    const region = pick(r, REGIONS);
    const num = r.int(1, NUMS);
    await Promise.all(cs.map(async (c, n) => {
      const node = NODES[n]![0];
      const t = `burst${node}.${++seq}`;
      try {
        // Autocommit: a statement that returned is committed.
        const res = onParent
          ? await c.query(`UPDATE parent SET v = $2, n = n + 1 WHERE id = $1 RETURNING id`, [id, t])
          : await c.query(`UPDATE comp SET v = $3 WHERE region = $1 AND num = $2 RETURNING region, num`, [region, num, t]);
        const table = onParent ? 'parent' : 'comp';
        for (const row of res.rows as Record<string, unknown>[]) sh.tokens.set(t, { db: node, table, key: keyOf(table, row) });
        sh.commits++;
      } catch (err) {
        countAppError(sh, err);
      }
    }));
  }
}

/** Busy and quiet periods in turn. */
async function waves(r: Rng, sh: Shared): Promise<void> {
  while (!sh.stop) {
    sh.quiet = false;
    await sleep(r.int(800, 3000));
    sh.quiet = true;
    await sleep(r.int(300, 1500));
  }
  sh.quiet = false;
}

/** About one TRUNCATE of the composite-key table per 10 s, on a random node. */
async function truncator(r: Rng, sh: Shared): Promise<void> {
  const cs = await Promise.all(NODES.map(([, i]) => env.client(i)));
  while (!sh.stop) {
    const at = Date.now() + r.int(4000, 16000);
    while (!sh.stop && Date.now() < at) await sleep(100);
    if (sh.stop) break;
    try {
      await pick(r, cs).query('TRUNCATE comp');
      sh.truncates++;
    } catch (err) {
      countAppError(sh, err);
    }
  }
}

/** Random kicks: in-process, not waiting; now and then the real CLI waiting up to 30 s. */
async function kicker(r: Rng, sh: Shared, waited: Promise<void>[]): Promise<void> {
  while (!sh.stop) {
    await sleep(r.int(150, 1500));
    if (sh.stop) break;
    if (r.next() < 0.15) {
      waited.push(daemon.ibex('kick', SYNC, '30').then((res: CliResult) => {
        sh.waitedKicks[res.code] = (sh.waitedKicks[res.code] ?? 0) + 1;
        // 0 good or empty, 4 timed out, 5 a run failed (transient failures are allowed during the soak).
        if (![0, 4, 5].includes(res.code)) sh.badKicks.push(`kick ${SYNC} 30 exited ${res.code}: ${res.err}${res.out}`);
      }));
    } else {
      const res = await env.cli('kick', SYNC);
      sh.kicks++;
      if (res.code !== 0) sh.badKicks.push(`kick ${SYNC} exited ${res.code}: ${res.err}${res.out}`);
    }
  }
}

interface StatusSync {
  name: string;
  status: string;
  state: string | null;
  attempts: number;
  lastError: { message: string } | null;
  lastRun: { run: number; status: string; error: string | null } | null;
  backlog: { db: string; keys: number }[];
}
interface StatusDoc {
  daemon: { running: boolean; pid?: number };
  syncs: StatusSync[];
}

/** Count and md5 of a table's rows on cluster i, in a collation-independent order. */
async function checksum(i: number, table: string): Promise<string> {
  const r = await env.query(i, `SELECT count(*) || ':' || coalesce(md5(string_agg(to_jsonb(t)::text, '|' ORDER BY to_jsonb(t)::text COLLATE "C")), '') AS s FROM ${table} t`);
  return String(r[0]!.s);
}

const KEYS: Record<string, string[]> = { parent: ['id'], child: ['id'], comp: ['region', 'num'], ledger: ['writer', 'seq'] };

/** For a failure message: one key's rows, captured changes and truncates on every node, its conflict log, who wrote its tokens. */
async function keyHistory(table: string, key: Record<string, unknown>, tokens: Map<string, Written>): Promise<string> {
  const k = JSON.stringify(Object.fromEntries((KEYS[table] ?? []).map((c) => [c, table === 'comp' && c === 'num' || c === 'id' || c === 'seq' ? Number(key[c]) : key[c]])));
  const lines = [`history of ${table} ${k}:`];
  for (const [name, i] of NODES) {
    const cur = await env.query(i, `SELECT to_jsonb(t)::text AS j FROM ${table} t WHERE to_jsonb(t) @> $1::jsonb`, [k]);
    const d = await env.query(i, `SELECT ibex_op, ibex_origin, ibex_by, to_char(ibex_ts, 'HH24:MI:SS.US') AS ts, ibex_txid::text AS txid
                                    FROM ibex."${captureNames('public', table).delta}" t WHERE to_jsonb(t) @> $1::jsonb ORDER BY ibex_ts`, [k]);
    const tr = await env.query(i, `SELECT to_char(ibex_ts, 'HH24:MI:SS.US') AS ts, ibex_origin, ibex_txid::text AS txid FROM ibex.truncates WHERE relname = $1`, [table]);
    lines.push(`  ${name}: row ${cur.map((x) => String(x.j)).join(' ') || '(none)'}`);
    lines.push(`     deltas ${d.map((x) => `${String(x.ibex_op)}@${String(x.ts)} o=${String(x.ibex_origin)} by=${String(x.ibex_by)} tx=${String(x.txid)}`).join(', ')}`);
    if (tr.length) lines.push(`     truncates ${tr.map((x) => `${String(x.ts)} o=${String(x.ibex_origin)} tx=${String(x.txid)}`).join(', ')}`);
  }
  const cl = await env.query(0, `SELECT run, kind, winner, winner_row::text AS w, losers::text AS l, status FROM ibex.conflict WHERE relname = $1 AND key @> $2::jsonb ORDER BY id`,
    [table, JSON.stringify(key)], 'ibexctl');
  lines.push(`  conflicts:${cl.map((x) => `\n    run ${String(x.run)} ${String(x.kind)} winner ${String(x.winner)} ${String(x.w)} losers ${String(x.l)} ${String(x.status)}`).join('')}`);
  const mine = [...tokens].filter(([, w]) => w.table === table && w.key === keyOf(table, key)).map(([t, w]) => `${t}@${w.db}`);
  lines.push(`  committed tokens at this key (in commit order per writer): ${mine.slice(-30).join(' ')}`);
  return lines.join('\n');
}

describe('randomized 3-master convergence with the real daemon', { timeout: 300_000 }, () => {
  let daemonPid = 0;

  before(async () => {
    console.log(`# IBEX_TEST_SEED=${seed} (soak ${SOAK_MS} ms)`);
    // The same starting rows everywhere, before capture exists.
    const seedRows = `
      INSERT INTO parent (id, v) SELECT g, 'seed:parent:' || g FROM generate_series(1, ${P / 2}) g;
      INSERT INTO child (id, parent_id, v) SELECT g, 1 + g % ${P / 2}, 'seed:child:' || g FROM generate_series(1, ${C / 2}) g;
      INSERT INTO comp (region, num, v) SELECT r, g, 'seed:comp:' || r || '|' || g
        FROM unnest(ARRAY[${REGIONS.map((x) => `'${x.replaceAll("'", "''")}'`).join(', ')}]) r, generate_series(1, 3) g;`;
    await Promise.all(NODES.map(([, i]) => env.clusters[i]!.psql(DDL + seedRows, 'app')));
    const ok = async (...args: string[]): Promise<void> => {
      const r = await env.cli(...args);
      assert.equal(r.code, 0, `ibex ${args.join(' ')}: ${r.err}${r.out}`);
    };
    await ok('install');
    for (const [name, i] of NODES) {
      const p = env.params(i);
      await ok('add', 'db', name, `host=${p.host}`, `port=${p.port}`, 'dbname=app', 'user=postgres');
    }
    await ok('add', 'table', ...TABLES.map((t) => `public.${t}`), 'db=A', `relgroup=${SYNC}`);
    await ok('add', 'sync', SYNC, `relgroup=${SYNC}`, 'dbs=A:source,B:source,C:source');
    daemonPid = await daemon.start();
  });

  it(`converges under concurrent writers, kicks and truncates (seed ${seed})`, () => withSeed(seed, async () => {
    const t0 = Date.now();
    const sh: Shared = {
      stop: false, quiet: false, tokens: new Map(), ledger: new Set(), commits: 0, rollbacks: 0, appErrors: {}, truncates: 0,
      kicks: 0, waitedKicks: {}, badKicks: [],
    };
    // Seed rows' tokens.
    for (let g = 1; g <= P / 2; g++) sh.tokens.set(`seed:parent:${g}`, { db: 'seed', table: 'parent', key: String(g) });
    for (let g = 1; g <= C / 2; g++) sh.tokens.set(`seed:child:${g}`, { db: 'seed', table: 'child', key: String(g) });
    for (const r of REGIONS) for (let g = 1; g <= 3; g++) sh.tokens.set(`seed:comp:${r}|${g}`, { db: 'seed', table: 'comp', key: `${r}|${g}` });

    const master = rng(seed);
    const sub = (): Rng => rng(Math.floor(master.next() * 2 ** 32));
    const waited: Promise<void>[] = [];
    const tasks: Promise<void>[] = [];
    for (const [node, i] of NODES) for (const w of [0, 1]) tasks.push(writer(node, i, w, sub(), sh));
    tasks.push(burster(sub(), sh), truncator(sub(), sh), kicker(sub(), sh, waited), waves(sub(), sh));
    let taskError: unknown;
    const all = Promise.all(tasks).catch((err) => {
      taskError ??= err;
      sh.stop = true;
    });
    const deadline = Date.now() + SOAK_MS;
    while (Date.now() < deadline && !sh.stop) await sleep(100);
    sh.stop = true;
    await all;
    await Promise.all(waited);
    if (taskError !== undefined) throw new Error(why(`a writer failed unexpectedly: ${String(taskError)}`), { cause: taskError });
    const soakMs = Date.now() - t0;

    // Drain: `ibex kick rnd 60` until two runs in a row are empty.
    const drained: string[] = [];
    let empties = 0;
    const drainDeadline = Date.now() + 120_000;
    while (empties < 2) {
      assert.ok(Date.now() < drainDeadline, why(`the sync did not drain: ${drained.join(', ')}`));
      const r = await env.cli('kick', SYNC, '60', '--json');
      if (r.code === 0) {
        const status = String((JSON.parse(r.out) as { status: string }).status);
        drained.push(status);
        empties = status === 'empty' ? empties + 1 : 0;
      } else {
        // A failed run (5) or a timeout (4) while draining: try again; anything else is wrong.
        assert.ok([4, 5].includes(r.code), why(`ibex kick ${SYNC} 60 exited ${r.code}: ${r.err}${r.out}`));
        drained.push(`exit ${r.code}`);
        empties = 0;
      }
    }

    const runs = await env.query(0, `SELECT status, count(*)::int AS n FROM ibex.run WHERE sync = $1 GROUP BY status ORDER BY status`, [SYNC], 'ibexctl');
    const conflicts = await env.query(0, `SELECT id, relname, key::text AS key, kind, strategy, winner, winner_row::text AS winner_row, losers::text AS losers, status
                                            FROM ibex.conflict WHERE sync = $1 ORDER BY id`, [SYNC], 'ibexctl');
    const byStatus: Record<string, number> = {};
    for (const x of conflicts) byStatus[String(x.status)] = (byStatus[String(x.status)] ?? 0) + 1;
    const summary = `soak ${soakMs} ms; commits=${sh.commits} rollbacks=${sh.rollbacks} appErrors=${JSON.stringify(sh.appErrors)} truncates=${sh.truncates} `
      + `kicks=${sh.kicks} waitedKicks=${JSON.stringify(sh.waitedKicks)} runs=${runs.map((x) => `${String(x.status)}:${String(x.n)}`).join(',')} `
      + `conflicts=${JSON.stringify(byStatus)} drain=${drained.join(',')}`;
    const fail = (msg: string): string => why(`${msg}; ${summary}`);
    assert.deepEqual(sh.badKicks.slice(0, 5), [], fail('kicks during the soak failed'));

    // 1. ibex validate: every table equal, nothing in flight.
    const v = await env.cli('validate', SYNC, '--json');
    type VTable = { table: string; status: string; inFlight: number; keys?: { key: Record<string, unknown>; versions: unknown[] }[] };
    const vdoc = JSON.parse(v.out || '{}') as { equal: boolean; inFlight: number; syncs: { tables: VTable[] }[] };
    if (v.code !== 0) {
      const diffs: string[] = [];
      for (const t of vdoc.syncs?.[0]?.tables ?? []) {
        for (const k of (t.keys ?? []).slice(0, 3)) {
          diffs.push(`${t.table} ${JSON.stringify(k.key)}: ${JSON.stringify(k.versions)}`);
          diffs.push(await keyHistory(t.table.replace(/^public\./, ''), k.key, sh.tokens));
        }
      }
      const runLog = await env.query(0, `SELECT id, status, inserted, deleted, conflicts, truncates, to_char(started, 'HH24:MI:SS.US') AS at, error FROM ibex.run WHERE sync = $1 ORDER BY id`, [SYNC], 'ibexctl');
      assert.fail(fail(`ibex validate ${SYNC} exited ${v.code}: ${v.err}\n${diffs.join('\n')}\nruns:\n${runLog.map((x) => `  #${String(x.id)} ${String(x.at)} ${String(x.status)} +${String(x.inserted)} -${String(x.deleted)} c${String(x.conflicts)} t${String(x.truncates)} ${x.error ? String(x.error) : ''}`).join('\n')}`));
    }
    assert.equal(vdoc.equal, true, fail(v.out.slice(0, 4000)));
    assert.equal(vdoc.inFlight, 0, fail(`keys in flight after the drain: ${v.out.slice(0, 4000)}`));
    assert.deepEqual(vdoc.syncs[0]!.tables.map((t) => [t.table, t.status]).sort(), TABLES.map((t) => [`public.${t}`, 'equal']).sort(), fail(v.out.slice(0, 4000)));

    // 2. Row-by-row equality on A, B and C.
    for (const t of TABLES) {
      const sums = await Promise.all(NODES.map(([, i]) => checksum(i, t)));
      assert.ok(sums.every((s) => s === sums[0]), fail(`table ${t} differs: ${NODES.map(([n], k) => `${n} ${sums[k]}`).join(' / ')}`));
    }

    // 3a. No lost and no phantom transaction: the ledger holds exactly the committed transactions.
    const ledger = new Set((await env.query(0, `SELECT writer || '/' || seq AS k FROM ledger`)).map((x) => String(x.k)));
    const lost = [...sh.ledger].filter((k) => !ledger.has(k));
    const phantom = [...ledger].filter((k) => !sh.ledger.has(k));
    assert.deepEqual(lost.slice(0, 10), [], fail(`${lost.length} committed transactions are missing from the ledger`));
    assert.deepEqual(phantom.slice(0, 10), [], fail(`${phantom.length} ledger rows of transactions that did not commit`));

    // 3b. Every final value is a committed token of that table and key.
    const tokenOk = (table: string, key: string, v: unknown): boolean => {
      const w = sh.tokens.get(String(v));
      return w !== undefined && w.table === table && w.key === key;
    };
    let finalRows = 0;
    for (const t of TOKEN_TABLES) {
      const rows = await env.query(0, `SELECT * FROM ${t}`);
      finalRows += rows.length;
      const bad = rows.filter((row) => !tokenOk(t, keyOf(t, row), row.v));
      assert.deepEqual(bad.slice(0, 5), [], fail(`${bad.length} rows of ${t} hold a value that no committed write put at that key`));
    }

    // 3c. The conflict log records only versions that were committed at that key (or deletions).
    assert.equal(byStatus.pending ?? 0, 0, fail('conflicts left pending after the drain'));
    const badLog: string[] = [];
    let versionsChecked = 0;
    for (const x of conflicts) {
      const table = String(x.relname);
      const ctx = `conflict ${String(x.id)} ${table} ${String(x.key)} ${String(x.kind)} ${String(x.strategy)} ${String(x.status)} winner ${String(x.winner)}`;
      if (table === 'ledger') {
        badLog.push(`${ctx}: a ledger row is only ever written on one node`);
        continue;
      }
      const keyJson = JSON.parse(String(x.key)) as Record<string, unknown>;
      const key = keyOf(table, keyJson);
      const winnerRow = JSON.parse(String(x.winner_row)) as Record<string, unknown> | null;
      if (winnerRow !== null) versionsChecked++;
      if (winnerRow !== null && (keyOf(table, winnerRow) !== key || !tokenOk(table, key, winnerRow.v))) {
        badLog.push(`${ctx}: winner row ${String(x.winner_row)} holds no committed write of that key`);
      }
      const losers = JSON.parse(String(x.losers)) as { db: string; row: Record<string, unknown> | null }[];
      if (losers.length === 0) badLog.push(`${ctx}: no loser`);
      for (const l of losers) {
        if (l.row === null) continue;
        versionsChecked++;
        if (keyOf(table, l.row) !== key || !tokenOk(table, key, l.row.v)) {
          badLog.push(`${ctx}: loser ${l.db} recorded ${JSON.stringify(l.row)}, no committed write of that key`);
        }
      }
    }
    assert.deepEqual(badLog.slice(0, 10), [], fail(`${badLog.length} inconsistent conflict log entries`));
    assert.ok(conflicts.length > 0, fail('no conflict was provoked'));

    // 4. The same daemon, alive; the sync active and idle, its last run not failed.
    assert.equal(daemon.pid(), daemonPid, fail('the daemon was restarted'));
    assert.ok(daemon.alive(), fail('the daemon is no longer running'));
    const st = await waitFor('status to show the sync idle', async () => {
      const r = await env.cli('status', SYNC, '--json');
      if (r.code !== 0) return undefined;
      const d = JSON.parse(r.out) as StatusDoc;
      return d.syncs[0]?.state === 'idle' ? d : undefined;
    }, 30_000, 200);
    assert.equal(st.daemon.running, true, fail('status: daemon not running'));
    assert.equal(st.daemon.pid, daemonPid, fail('status: another daemon'));
    const s = st.syncs[0]!;
    assert.equal(s.status, 'active', fail(`status: sync ${s.status}`));
    assert.ok(s.lastRun && !['failed', 'aborted'].includes(s.lastRun.status), fail(`status: last run ${JSON.stringify(s.lastRun)}`));
    assert.equal(s.attempts, 0, fail(`status: ${s.attempts} failed runs in a row`));

    console.log(`# random-daemon seed=${seed} ${summary} final token rows=${finalRows} ledger=${ledger.size} conflict versions checked=${versionsChecked} in ${Date.now() - t0} ms`);
    await daemon.stop();
    assert.ok(!daemon.alive(), fail('the daemon did not stop'));
  }, () => `daemon log (last lines):\n${daemon.logTail(30)}`));
});

/**
 * Conflict resolution with the standard strategies (issue #4): per row, the exact winner of every
 * key and the exact rows left on every db, on two and on three masters, and the conflict log.
 *
 * Change times are set deterministically, never by the machine's speed: every write runs in one
 * transaction whose statements each set `ibex.clock_offset` locally (the capture's test clock
 * hook, compiled in with IBEX_TEST_CLOCK_OFFSET=1), minutes ahead of the real clock. Exact ties
 * are made by pinning the change time of the pending delta rows.
 *
 * Every test has its own tables and its own sync on the shared clusters (A = 0, B = 1, C = 2).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners } from '../helpers/sync.js';
import type { SyncRunner } from '../../src/engine/runner.js';

// Compile the clock-offset hook into the capture triggers (a test-only switch, read at install).
process.env.IBEX_TEST_CLOCK_OFFSET = '1';
const env = useClusters(3);
after(closeRunners);

type Db = 'A' | 'B' | 'C';
const IDX: Record<Db, number> = { A: 0, B: 1, C: 2 };
/** id -> v of a table on one db. */
type Rows = Record<number, string>;

/** One transaction on `db`; each statement's changes are stamped `minutes` ahead of the real clock. */
async function writeTx(db: Db, steps: [minutes: number, sql: string][]): Promise<void> {
  const body = steps.map(([m, s]) => `SELECT set_config('ibex.clock_offset', '${m} minutes', true); ${s};`).join('\n');
  try {
    await env.query(IDX[db], `BEGIN;\n${body}\nCOMMIT;`);
  } catch (err) {
    await env.query(IDX[db], 'ROLLBACK').catch(() => {});
    throw err;
  }
}

const upd = (t: string, id: number, v: string): string => `UPDATE ${t} SET v = '${v}' WHERE id = ${id}`;
const ins = (t: string, id: number, v: string): string => `INSERT INTO ${t} (id, v) VALUES (${id}, '${v}')`;
const del = (t: string, id: number): string => `DELETE FROM ${t} WHERE id = ${id}`;

async function rows(db: Db, table: string): Promise<Rows> {
  const r = await env.query(IDX[db], `SELECT id, v FROM ${table} ORDER BY id`);
  return Object.fromEntries(r.map((x) => [Number(x.id), String(x.v)]));
}

async function expectRows(dbs: Db[], table: string, want: Rows | Record<string, Rows>): Promise<void> {
  for (const d of dbs) {
    const w = (d in want ? (want as Record<string, Rows>)[d] : want) as Rows;
    assert.deepEqual(await rows(d, table), w, `rows of ${table} on ${d}`);
  }
}

let control: Promise<void> | undefined;

/** Create `tables` (id int PRIMARY KEY, v text) on the dbs, and a multi-master sync of them. */
async function makeSync(name: string, dbs: Db[], strategy: string, o: { tables?: string[]; priority?: Record<string, number>; columns?: string } = {}): Promise<SyncRunner> {
  control ??= setupControl(env, { A: 0, B: 1, C: 2 });
  await control;
  const tables = o.tables ?? [name];
  for (const d of dbs) for (const t of tables) await env.query(IDX[d], `CREATE TABLE ${t} (${o.columns ?? 'id int PRIMARY KEY, v text NOT NULL'})`);
  await addSync(env, name, {
    dbs: Object.fromEntries(dbs.map((d) => [d, 'source' as const])),
    tables: tables.map((t) => `public.${t}`),
    options: { conflict_strategy: strategy },
    ...(o.priority ? { priority: o.priority } : {}),
  });
  return runner(env, name);
}

/** Insert ids with v = 'seed' on the first db, replicate them, and check they are everywhere. */
async function seed(r: SyncRunner, dbs: Db[], tables: string[], ids: number[]): Promise<void> {
  await writeTx(dbs[0]!, tables.map((t) => [0, `INSERT INTO ${t} (id, v) SELECT g, 'seed' FROM unnest('{${ids.join(',')}}'::int[]) g`]));
  const res = await runOk(r);
  assert.equal(res.status, 'good');
  assert.equal(res.conflicts, 0);
  for (const t of tables) await expectRows(dbs, t, Object.fromEntries(ids.map((i) => [i, 'seed'])));
}

interface Loser { db: string; row: Record<string, unknown> | null; changed_at: string | null }
interface Logged {
  sync: string; run: number; schemaname: string; relname: string; key: Record<string, unknown>; id: number; kind: string; strategy: string;
  winner: string | null; winnerRow: Record<string, unknown> | null; winnerTime: string | null; losers: Loser[]; status: string;
}

/** The conflict log of a sync (optionally of one run), by table then key. */
async function conflictLog(sync: string, run?: number): Promise<Logged[]> {
  const r = await env.query(0,
    `SELECT sync, run, schemaname, relname, key::text AS key, kind, strategy, winner, winner_row::text AS winner_row,
            winner_time::text AS winner_time, losers::text AS losers, status
       FROM ibex.conflict WHERE sync = $1 AND ($2::bigint IS NULL OR run = $2) ORDER BY relname, (key->>'id')::int, id`,
    [sync, run ?? null], 'ibexctl');
  return r.map((x) => {
    const key = JSON.parse(String(x.key)) as Record<string, unknown>;
    return {
      sync: String(x.sync), run: Number(x.run), schemaname: String(x.schemaname), relname: String(x.relname), key, id: Number(key.id),
      kind: String(x.kind), strategy: String(x.strategy), winner: x.winner === null ? null : String(x.winner),
      winnerRow: x.winner_row === null ? null : JSON.parse(String(x.winner_row)), winnerTime: x.winner_time === null ? null : String(x.winner_time),
      losers: (JSON.parse(String(x.losers)) as Loser[]).sort((a, b) => a.db.localeCompare(b.db)), status: String(x.status),
    };
  });
}

/** Per key: "winner>losers" (winner '-' when none), e.g. { 1: 'B>A' }. */
function outcome(log: Logged[]): Record<number, string> {
  return Object.fromEntries(log.map((c) => [c.id, `${c.winner ?? '-'}>${c.losers.map((l) => l.db).join(',')}`]));
}

async function cursorsOf(sync: string): Promise<Record<string, string>> {
  const r = await env.query(0, `SELECT db, snapshot FROM ibex.cursor WHERE sync = $1 ORDER BY db`, [sync], 'ibexctl');
  return Object.fromEntries(r.map((x) => [String(x.db), String(x.snapshot)]));
}

async function syncStatus(sync: string): Promise<{ status: string; reason: string | null }> {
  const r = await env.query(0, `SELECT status, status_reason FROM ibex.sync WHERE name = $1`, [sync], 'ibexctl');
  return { status: String(r[0]!.status), reason: r[0]!.status_reason === null ? null : String(r[0]!.status_reason) };
}

/** The delta table of a table on a db, schema-qualified and quoted. */
async function deltaOf(db: Db, table: string): Promise<string> {
  const r = await env.query(IDX[db], `SELECT delta FROM ibex.captured WHERE schemaname = 'public' AND relname = $1`, [table]);
  return `ibex."${String(r[0]!.delta)}"`;
}

/** The change time ibex will use for a key on a db (its latest pending change), as text. */
async function changeTime(db: Db, table: string, id: number): Promise<string> {
  const r = await env.query(IDX[db], `SELECT max(ibex_ts)::text AS ts FROM ${await deltaOf(db, table)} WHERE id = $1`, [id]);
  return String(r[0]!.ts);
}

/** `random`'s documented rule: the lowest md5 of "(key)/db" among the dbs that changed the key. */
function md5Winner(id: number, changers: Db[]): Db {
  const h = (d: Db): string => createHash('md5').update(`(${id})/${d}`).digest('hex');
  return [...changers].sort((a, b) => (h(a) < h(b) ? -1 : h(a) > h(b) ? 1 : 0))[0]!;
}

// ---- the standard scenarios -------------------------------------------------------------------

/**
 * Two masters, seeded ids 1-4. One transaction per db (so the time is per row, not per transaction):
 * key 1: A +10, B +20 · key 2: A +30, B +20 · key 3: A only · key 4: B only · key 5 inserted on both: A +10, B +20.
 */
async function twoMasterWrites(t: string): Promise<void> {
  await writeTx('A', [[10, upd(t, 1, 'A1')], [30, upd(t, 2, 'A2')], [10, upd(t, 3, 'A3')], [10, ins(t, 5, 'A5')]]);
  await writeTx('B', [[20, upd(t, 1, 'B1')], [20, upd(t, 2, 'B2')], [20, upd(t, 4, 'B4')], [20, ins(t, 5, 'B5')]]);
}
const TWO_SEED = [1, 2, 3, 4];
/** What each db holds after twoMasterWrites, before any run. */
const TWO_BEFORE: Record<Db, Rows> = {
  A: { 1: 'A1', 2: 'A2', 3: 'A3', 4: 'seed', 5: 'A5' },
  B: { 1: 'B1', 2: 'B2', 3: 'seed', 4: 'B4', 5: 'B5' },
  C: {},
};

/**
 * Three masters, seeded ids 1-8 (minutes ahead of now per db; '-' = not changed):
 *        A    B    C
 *   1   +10  +20  +30     three-way
 *   2   +30  +10  +20     three-way
 *   3    -   +10  +20
 *   4   +10   -   +20
 *   5    -    -   +10     no conflict
 *   6   +20  +10   -
 *   7    -    -    -      untouched
 *   8    -   +30  +10
 *   9   +10   -   +20     inserted on A and C
 */
async function threeMasterWrites(t: string): Promise<void> {
  await writeTx('A', [[10, upd(t, 1, 'A1')], [30, upd(t, 2, 'A2')], [10, upd(t, 4, 'A4')], [20, upd(t, 6, 'A6')], [10, ins(t, 9, 'A9')]]);
  await writeTx('B', [[20, upd(t, 1, 'B1')], [10, upd(t, 2, 'B2')], [10, upd(t, 3, 'B3')], [10, upd(t, 6, 'B6')], [30, upd(t, 8, 'B8')]]);
  await writeTx('C', [[30, upd(t, 1, 'C1')], [20, upd(t, 2, 'C2')], [20, upd(t, 3, 'C3')], [20, upd(t, 4, 'C4')], [10, upd(t, 5, 'C5')],
    [10, upd(t, 8, 'C8')], [20, ins(t, 9, 'C9')]]);
}
const THREE_SEED = [1, 2, 3, 4, 5, 6, 7, 8];
const THREE_CHANGED: Record<number, Db[]> = { 1: ['A', 'B', 'C'], 2: ['A', 'B', 'C'], 3: ['B', 'C'], 4: ['A', 'C'], 5: ['C'], 6: ['A', 'B'], 8: ['B', 'C'], 9: ['A', 'C'] };
const THREE_BEFORE: Record<Db, Rows> = {
  A: { 1: 'A1', 2: 'A2', 3: 'seed', 4: 'A4', 5: 'seed', 6: 'A6', 7: 'seed', 8: 'seed', 9: 'A9' },
  B: { 1: 'B1', 2: 'B2', 3: 'B3', 4: 'seed', 5: 'seed', 6: 'B6', 7: 'seed', 8: 'B8' },
  C: { 1: 'C1', 2: 'C2', 3: 'C3', 4: 'C4', 5: 'C5', 6: 'seed', 7: 'seed', 8: 'C8', 9: 'C9' },
};
/** The converged rows of the three-master scenario for given winners of its conflicting keys. */
function threeConverged(winners: Record<number, Db>): Rows {
  const out: Rows = { 5: 'C5', 7: 'seed' };
  for (const [k, w] of Object.entries(winners)) out[Number(k)] = `${w}${k}`;
  return out;
}

// ---- the tests --------------------------------------------------------------------------------

describe('latest', () => {
  it('two masters: the later change of each row wins, per row even inside one transaction', async () => {
    const r = await makeSync('lat2', ['A', 'B'], 'latest');
    await seed(r, ['A', 'B'], ['lat2'], TWO_SEED);
    await twoMasterWrites('lat2');
    await expectRows(['A', 'B'], 'lat2', TWO_BEFORE);
    const res = await runOk(r);
    assert.equal(res.status, 'good');
    assert.equal(res.conflicts, 3);
    await expectRows(['A', 'B'], 'lat2', { 1: 'B1', 2: 'A2', 3: 'A3', 4: 'B4', 5: 'B5' });
    const log = await conflictLog('lat2', res.runId);
    assert.deepEqual(outcome(log), { 1: 'B>A', 2: 'A>B', 5: 'B>A' });
    // Key 5 was inserted on both sides: insert_insert.
    assert.deepEqual(log.map((c) => [c.strategy, c.status, c.kind]), [['latest', 'applied', 'update_update'], ['latest', 'applied', 'update_update'], ['latest', 'applied', 'insert_insert']]);
    assert.equal((await runOk(r)).status, 'empty', 'nothing comes back');
  });

  it('three masters: the later change wins among the dbs that changed the row; a three-way conflict logs two losers with their versions and times', async () => {
    const r = await makeSync('lat3', ['A', 'B', 'C'], 'latest');
    await seed(r, ['A', 'B', 'C'], ['lat3'], THREE_SEED);
    await threeMasterWrites('lat3');
    await expectRows(['A', 'B', 'C'], 'lat3', THREE_BEFORE);
    const times: Record<string, string> = {};
    for (const [k, dbs] of Object.entries(THREE_CHANGED)) for (const d of dbs) times[`${d}${k}`] = await changeTime(d, 'lat3', Number(k));
    const res = await runOk(r);
    assert.equal(res.conflicts, 7);
    await expectRows(['A', 'B', 'C'], 'lat3', threeConverged({ 1: 'C', 2: 'A', 3: 'C', 4: 'C', 6: 'A', 8: 'B', 9: 'C' }));
    const log = await conflictLog('lat3', res.runId);
    assert.deepEqual(outcome(log), { 1: 'C>A,B', 2: 'A>B,C', 3: 'C>B', 4: 'C>A', 6: 'A>B', 8: 'B>C', 9: 'C>A' });
    const three = log.filter((c) => c.id === 1 || c.id === 2);
    assert.deepEqual(three.map((c) => ({ winnerRow: c.winnerRow, winnerTime: c.winnerTime, losers: c.losers, kind: c.kind, status: c.status })), [
      { winnerRow: { id: 1, v: 'C1' }, winnerTime: times.C1, kind: 'update_update', status: 'applied', losers: [
        { db: 'A', row: { id: 1, v: 'A1' }, changed_at: times.A1 },
        { db: 'B', row: { id: 1, v: 'B1' }, changed_at: times.B1 }] },
      { winnerRow: { id: 2, v: 'A2' }, winnerTime: times.A2, kind: 'update_update', status: 'applied', losers: [
        { db: 'B', row: { id: 2, v: 'B2' }, changed_at: times.B2 },
        { db: 'C', row: { id: 2, v: 'C2' }, changed_at: times.C2 }] },
    ]);
    // Per row: the winner's time is the latest of the versions, the losers' are earlier.
    for (const c of log) for (const l of c.losers) assert.ok(l.changed_at! < c.winnerTime!, `key ${c.id}: ${l.db} ${l.changed_at} < ${c.winnerTime}`);
    assert.equal((await runOk(r)).status, 'empty');
  });

  it('a clock ahead wins whatever the real order of the commits (the change time, not the arrival, decides)', async () => {
    const r = await makeSync('latclk', ['A', 'B'], 'latest');
    await seed(r, ['A', 'B'], ['latclk'], [1, 2]);
    // B's clock runs an hour ahead: B's earlier commit is the later change.
    await writeTx('B', [[60, upd('latclk', 1, 'B first, clock ahead')]]);
    await writeTx('A', [[0, upd('latclk', 1, 'A second, true clock')]]);
    // Several changes of one row between two runs: the latest of them counts.
    await writeTx('A', [[5, upd('latclk', 2, 'A early')]]);
    await writeTx('B', [[10, upd('latclk', 2, 'B middle')]]);
    await writeTx('A', [[15, upd('latclk', 2, 'A late')]]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 2);
    await expectRows(['A', 'B'], 'latclk', { 1: 'B first, clock ahead', 2: 'A late' });
    assert.deepEqual(outcome(await conflictLog('latclk', res.runId)), { 1: 'B>A', 2: 'A>B' });
  });

  it('breaks exact ties by db priority, then by db name', async () => {
    const r = await makeSync('tie3', ['A', 'B', 'C'], 'latest', { priority: { C: 1 } });
    await seed(r, ['A', 'B', 'C'], ['tie3'], [1, 2, 3]);
    // key 1 on A, B, C; key 2 on A, B; key 3 on B, C.
    await writeTx('A', [[10, upd('tie3', 1, 'A1')], [10, upd('tie3', 2, 'A2')]]);
    await writeTx('B', [[10, upd('tie3', 1, 'B1')], [10, upd('tie3', 2, 'B2')], [10, upd('tie3', 3, 'B3')]]);
    await writeTx('C', [[10, upd('tie3', 1, 'C1')], [10, upd('tie3', 3, 'C3')]]);
    const tie = '2040-01-01 00:00:00+00';
    for (const d of ['A', 'B', 'C'] as Db[]) await env.query(IDX[d], `UPDATE ${await deltaOf(d, 'tie3')} SET ibex_ts = $1`, [tie]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 3);
    // 1: C (priority 1 beats 0) · 2: A (same priority, name first) · 3: C (priority).
    await expectRows(['A', 'B', 'C'], 'tie3', { 1: 'C1', 2: 'A2', 3: 'C3' });
    const log = await conflictLog('tie3', res.runId);
    assert.deepEqual(outcome(log), { 1: 'C>A,B', 2: 'A>B', 3: 'C>B' });
    assert.deepEqual(log.map((c) => c.winnerTime), [tie, tie, tie]);

    const r2 = await makeSync('tie2', ['A', 'B'], 'latest', { priority: { B: 2 } });
    await seed(r2, ['A', 'B'], ['tie2'], [1]);
    await writeTx('A', [[10, upd('tie2', 1, 'A1')]]);
    await writeTx('B', [[10, upd('tie2', 1, 'B1')]]);
    for (const d of ['A', 'B'] as Db[]) await env.query(IDX[d], `UPDATE ${await deltaOf(d, 'tie2')} SET ibex_ts = $1`, [tie]);
    // A tie: B's priority 2 beats A's 0 although A sorts first.
    const res2 = await runOk(r2);
    await expectRows(['A', 'B'], 'tie2', { 1: 'B1' });
    assert.deepEqual(outcome(await conflictLog('tie2', res2.runId)), { 1: 'B>A' });
  });

  it('priority only breaks ties: a later change on a lower-priority db still wins', async () => {
    const r = await makeSync('prio', ['A', 'B'], 'latest', { priority: { B: 5 } });
    await seed(r, ['A', 'B'], ['prio'], [1]);
    await writeTx('B', [[10, upd('prio', 1, 'B, high priority, earlier')]]);
    await writeTx('A', [[20, upd('prio', 1, 'A, low priority, later')]]);
    const res = await runOk(r);
    await expectRows(['A', 'B'], 'prio', { 1: 'A, low priority, later' });
    assert.deepEqual(outcome(await conflictLog('prio', res.runId)), { 1: 'A>B' });
  });
});

describe('an ordered db list', () => {
  it('two masters B,A: B wins every row it changed, even with the older change', async () => {
    const r = await makeSync('lst2', ['A', 'B'], 'B,A');
    await seed(r, ['A', 'B'], ['lst2'], TWO_SEED);
    await twoMasterWrites('lst2');
    const res = await runOk(r);
    assert.equal(res.conflicts, 3);
    await expectRows(['A', 'B'], 'lst2', { 1: 'B1', 2: 'B2', 3: 'A3', 4: 'B4', 5: 'B5' });
    const log = await conflictLog('lst2', res.runId);
    assert.deepEqual(outcome(log), { 1: 'B>A', 2: 'B>A', 5: 'B>A' });
    assert.deepEqual(log.map((c) => [c.strategy, c.status]), Array(3).fill(['list', 'applied']));
  });

  it('three masters B,A,C: the first listed db that changed the row wins', async () => {
    const r = await makeSync('lst3', ['A', 'B', 'C'], 'B,A,C');
    await seed(r, ['A', 'B', 'C'], ['lst3'], THREE_SEED);
    await threeMasterWrites('lst3');
    const res = await runOk(r);
    assert.equal(res.conflicts, 7);
    // 4 and 9: A (+10) beats C (+20), listed before it.
    await expectRows(['A', 'B', 'C'], 'lst3', threeConverged({ 1: 'B', 2: 'B', 3: 'B', 4: 'A', 6: 'B', 8: 'B', 9: 'A' }));
    assert.deepEqual(outcome(await conflictLog('lst3', res.runId)), { 1: 'B>A,C', 2: 'B>A,C', 3: 'B>C', 4: 'A>C', 6: 'B>A', 8: 'B>C', 9: 'A>C' });
  });

  it('a db left out of the list comes after the listed ones, then by latest', async () => {
    const r = await makeSync('lstpart', ['A', 'B', 'C'], 'C');
    await seed(r, ['A', 'B', 'C'], ['lstpart'], [1, 2]);
    await writeTx('A', [[30, upd('lstpart', 1, 'A1')], [30, upd('lstpart', 2, 'A2')]]);
    await writeTx('B', [[20, upd('lstpart', 1, 'B1')], [10, upd('lstpart', 2, 'B2')]]);
    await writeTx('C', [[10, upd('lstpart', 1, 'C1')]]);
    const res = await runOk(r);
    await expectRows(['A', 'B', 'C'], 'lstpart', { 1: 'C1', 2: 'A2' });
    assert.deepEqual(outcome(await conflictLog('lstpart', res.runId)), { 1: 'C>A,B', 2: 'A>B' });
  });
});

describe('random', () => {
  const KEYS = Array.from({ length: 24 }, (_, i) => i + 1);

  it('two masters: the winner of a key is fixed by key and db, whatever the times, and not always the same db', async () => {
    const winners: Record<string, Record<number, string>> = {};
    for (const [name, aMin, bMin] of [['rnda', 20, 10], ['rndb', 10, 20]] as const) {
      const r = await makeSync(name, ['A', 'B'], 'random');
      await seed(r, ['A', 'B'], [name], KEYS);
      await writeTx('A', [[aMin, `UPDATE ${name} SET v = 'A' || id`]]);
      await writeTx('B', [[bMin, `UPDATE ${name} SET v = 'B' || id`]]);
      const res = await runOk(r);
      assert.equal(res.conflicts, KEYS.length);
      const log = await conflictLog(name, res.runId);
      winners[name] = Object.fromEntries(log.map((c) => [c.id, c.winner!]));
      assert.deepEqual(log.map((c) => [c.strategy, c.status]), Array(KEYS.length).fill(['random', 'applied']));
      await expectRows(['A', 'B'], name, Object.fromEntries(KEYS.map((k) => [k, `${md5Winner(k, ['A', 'B'])}${k}`])));
    }
    assert.deepEqual(winners.rnda, winners.rndb, 'the same winners whoever changed later');
    assert.deepEqual(winners.rnda, Object.fromEntries(KEYS.map((k) => [k, md5Winner(k, ['A', 'B'])])));
    const counts = Object.values(winners.rnda!).reduce<Record<string, number>>((a, w) => ({ ...a, [w]: (a[w] ?? 0) + 1 }), {});
    assert.ok((counts.A ?? 0) > 0 && (counts.B ?? 0) > 0, `both dbs win some keys: ${JSON.stringify(counts)}`);
  });

  it('three masters: the winner is drawn among the dbs that changed the key, and each db wins some', async () => {
    const r = await makeSync('rnd3', ['A', 'B', 'C'], 'random');
    const all = Array.from({ length: 40 }, (_, i) => i + 1);
    await seed(r, ['A', 'B', 'C'], ['rnd3'], all);
    // 1-30 changed on A, B and C; 31-40 on A and C only.
    await writeTx('A', [[10, `UPDATE rnd3 SET v = 'A' || id`]]);
    await writeTx('B', [[20, `UPDATE rnd3 SET v = 'B' || id WHERE id <= 30`]]);
    await writeTx('C', [[30, `UPDATE rnd3 SET v = 'C' || id`]]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 40);
    const want = Object.fromEntries(all.map((k) => [k, md5Winner(k, k <= 30 ? ['A', 'B', 'C'] : ['A', 'C'])]));
    await expectRows(['A', 'B', 'C'], 'rnd3', Object.fromEntries(all.map((k) => [k, `${want[k]}${k}`])));
    const log = await conflictLog('rnd3', res.runId);
    assert.deepEqual(Object.fromEntries(log.map((c) => [c.id, c.winner])), want);
    assert.deepEqual(new Set(Object.values(want).slice(0, 30)), new Set(['A', 'B', 'C']), 'each db wins some keys');
    assert.ok(log.every((c) => c.losers.length === (c.id <= 30 ? 2 : 1)));
  });
});

describe('skip', () => {
  it('two masters: conflicting rows stay as they are on each db and are logged skipped; the others are applied', async () => {
    const r = await makeSync('skp2', ['A', 'B'], 'skip');
    await seed(r, ['A', 'B'], ['skp2'], TWO_SEED);
    await twoMasterWrites('skp2');
    const res = await runOk(r);
    assert.equal(res.status, 'good');
    assert.equal(res.conflicts, 3);
    await expectRows(['A', 'B'], 'skp2', {
      A: { 1: 'A1', 2: 'A2', 3: 'A3', 4: 'B4', 5: 'A5' },
      B: { 1: 'B1', 2: 'B2', 3: 'A3', 4: 'B4', 5: 'B5' },
    });
    const log = await conflictLog('skp2', res.runId);
    assert.deepEqual(outcome(log), { 1: '->A,B', 2: '->A,B', 5: '->A,B' });
    assert.deepEqual(log.map((c) => [c.strategy, c.status, c.winnerRow]), Array(3).fill(['skip', 'skipped', null]));
    assert.deepEqual(log.map((c) => c.losers.map((l) => l.row)), [
      [{ id: 1, v: 'A1' }, { id: 1, v: 'B1' }], [{ id: 2, v: 'A2' }, { id: 2, v: 'B2' }], [{ id: 5, v: 'A5' }, { id: 5, v: 'B5' }]]);
    assert.equal((await runOk(r)).status, 'empty', 'a skipped key is not retried without a new change');
  });

  it('three masters: each db keeps its own version of a conflicting row, including one that did not change it', async () => {
    const r = await makeSync('skp3', ['A', 'B', 'C'], 'skip');
    await seed(r, ['A', 'B', 'C'], ['skp3'], THREE_SEED);
    await threeMasterWrites('skp3');
    const res = await runOk(r);
    assert.equal(res.conflicts, 7);
    // Only key 5 (changed on C alone) is applied.
    await expectRows(['A', 'B', 'C'], 'skp3', { ...THREE_BEFORE, A: { ...THREE_BEFORE.A, 5: 'C5' }, B: { ...THREE_BEFORE.B, 5: 'C5' } });
    const log = await conflictLog('skp3', res.runId);
    assert.deepEqual(outcome(log), { 1: '->A,B,C', 2: '->A,B,C', 3: '->B,C', 4: '->A,C', 6: '->A,B', 8: '->B,C', 9: '->A,C' });
    assert.ok(log.every((c) => c.status === 'skipped' && c.strategy === 'skip'));
  });

  it('logs the kind of a skipped conflict from the versions (two updates: update_update)', async () => {
    const r = await makeSync('skpkind', ['A', 'B'], 'skip');
    await seed(r, ['A', 'B'], ['skpkind'], [1, 2]);
    await writeTx('A', [[10, upd('skpkind', 1, 'A1')], [10, del('skpkind', 2)]]);
    await writeTx('B', [[20, upd('skpkind', 1, 'B1')], [20, upd('skpkind', 2, 'B2')]]);
    const res = await runOk(r);
    await expectRows(['A', 'B'], 'skpkind', { A: { 1: 'A1' }, B: { 1: 'B1', 2: 'B2' } });
    const log = await conflictLog('skpkind', res.runId);
    assert.deepEqual(log.map((c) => [c.id, c.winner, c.winnerRow, c.losers.map((l) => l.row)]), [
      [1, null, null, [{ id: 1, v: 'A1' }, { id: 1, v: 'B1' }]],
      [2, null, null, [null, { id: 2, v: 'B2' }]],
    ]);
    // Nothing was deleted on either side of key 1: two updates. Key 2 (A deleted, B updated) has no
    // winner to order the pair by, but it is certainly not two deletes.
    assert.equal(log[0]!.kind, 'update_update');
    assert.ok(['update_delete', 'delete_update'].includes(log[1]!.kind), log[1]!.kind);
  });
});

/**
 * abort on `dbs`: the run fails with nothing applied anywhere and the cursors unmoved, and the sync
 * is paused with a reason naming the keys (the first five of them).
 */
async function abortScenario(name: string, dbs: Db[], seeded: number[], writes: (t: string) => Promise<void>, before: Record<Db, Rows>,
  conflicting: number[]): Promise<SyncRunner> {
  const r = await makeSync(name, dbs, 'abort');
  await seed(r, dbs, [name], seeded);
  const cursors = await cursorsOf(name);
  assert.deepEqual(Object.keys(cursors), dbs);
  await writes(name);
  await expectRows(dbs, name, before);
  const res = await r.run('delta');
  assert.equal(res.status, 'aborted', res.error);
  assert.equal(res.pause, true);
  assert.equal(res.conflicts, conflicting.length);
  await expectRows(dbs, name, before);
  assert.deepEqual(await cursorsOf(name), cursors, 'cursors did not move');
  const st = await syncStatus(name);
  assert.equal(st.status, 'paused');
  assert.equal(st.reason, res.error);
  assert.match(st.reason!, new RegExp(`^${conflicting.length} conflicting key\\(s\\) and conflict_strategy=abort: .*; make each row identical on the dbs that changed it, then "ibex resume ${name}"$`));
  const named = [...st.reason!.matchAll(new RegExp(`public\\.${name} \\{"id":(\\d+)\\}`, 'g'))].map((m) => Number(m[1]));
  assert.equal(named.length, Math.min(5, conflicting.length), st.reason!);
  assert.ok(named.every((k) => conflicting.includes(k)), st.reason!);
  assert.equal(st.reason!.includes(', …;'), conflicting.length > 5);
  const run = await env.query(0, `SELECT status FROM ibex.run WHERE id = $1`, [res.runId], 'ibexctl');
  assert.equal(run[0]!.status, 'aborted');
  const log = await conflictLog(name, res.runId);
  assert.deepEqual(log.map((c) => c.id), conflicting);
  for (const c of log) {
    assert.equal(c.status, 'aborted');
    assert.equal(c.strategy, 'abort');
    // Nothing was written: no winner is named, and every changed version is kept among the losers.
    assert.equal(c.winner, null);
    assert.equal(c.winnerRow, null);
    const versions = c.losers.map((l) => ({ db: l.db, row: l.row })).sort((x, y) => x.db.localeCompare(y.db));
    const changers = dbs.filter((d) => before[d][c.id] !== undefined && before[d][c.id] !== 'seed');
    assert.deepEqual(versions, changers.map((d) => ({ db: d, row: { id: c.id, v: before[d][c.id] } })), `versions of key ${c.id}`);
  }
  return r;
}

/** After an abort: make the conflicting rows equal on every db by hand, resume, run: converged. */
async function fixAndResume(r: SyncRunner, name: string, dbs: Db[], conflicting: number[], fixed: Rows): Promise<void> {
  for (const d of dbs) await writeTx(d, conflicting.map((k) => [0, `INSERT INTO ${name} (id, v) VALUES (${k}, 'fixed${k}') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v`]));
  const resumed = await env.cli('resume', name);
  assert.equal(resumed.code, 0, resumed.err);
  assert.deepEqual(await syncStatus(name), { status: 'active', reason: null });
  const again = await r.run('delta');
  assert.equal(again.status, 'good', again.error);
  await expectRows(dbs, name, fixed);
  assert.equal((await syncStatus(name)).status, 'active');
  assert.equal((await runOk(r)).status, 'empty');
}

const TWO_FIXED: Rows = { 1: 'fixed1', 2: 'fixed2', 3: 'A3', 4: 'B4', 5: 'fixed5' };
const THREE_FIXED: Rows = { 1: 'fixed1', 2: 'fixed2', 3: 'fixed3', 4: 'fixed4', 5: 'C5', 6: 'fixed6', 7: 'seed', 8: 'fixed8', 9: 'fixed9' };

describe('abort', () => {
  it('two masters: nothing is applied anywhere, cursors stay, the sync pauses naming the keys', async () => {
    await abortScenario('abt2', ['A', 'B'], TWO_SEED, twoMasterWrites, TWO_BEFORE, [1, 2, 5]);
  });

  it('three masters: the same, on every db', async () => {
    await abortScenario('abt3', ['A', 'B', 'C'], THREE_SEED, threeMasterWrites, THREE_BEFORE, [1, 2, 3, 4, 6, 8, 9]);
  });

  it('two masters: rows fixed by hand, resumed, the next run is good and converged', async () => {
    const r = await abortScenario('abt2fix', ['A', 'B'], TWO_SEED, twoMasterWrites, TWO_BEFORE, [1, 2, 5]);
    await fixAndResume(r, 'abt2fix', ['A', 'B'], [1, 2, 5], TWO_FIXED);
  });

  it('three masters: rows fixed by hand, resumed, the next run is good and converged', async () => {
    const r = await abortScenario('abt3fix', ['A', 'B', 'C'], THREE_SEED, threeMasterWrites, THREE_BEFORE, [1, 2, 3, 4, 6, 8, 9]);
    await fixAndResume(r, 'abt3fix', ['A', 'B', 'C'], [1, 2, 3, 4, 6, 8, 9], THREE_FIXED);
  });
});

describe('many conflicts in one run', () => {
  it('1,000 keys updated on both masters: converged, 1,000 records, each row won by its later side', async () => {
    const r = await makeSync('big', ['A', 'B'], 'latest');
    await seed(r, ['A', 'B'], ['big'], Array.from({ length: 1000 }, (_, i) => i + 1));
    await writeTx('A', [[20, `UPDATE big SET v = 'A' WHERE id <= 500`], [10, `UPDATE big SET v = 'A' WHERE id > 500`]]);
    await writeTx('B', [[10, `UPDATE big SET v = 'B' WHERE id <= 500`], [20, `UPDATE big SET v = 'B' WHERE id > 500`]]);
    const res = await runOk(r);
    assert.equal(res.status, 'good');
    assert.equal(res.conflicts, 1000);
    for (const d of ['A', 'B'] as Db[]) {
      const c = await env.query(IDX[d], `SELECT count(*) AS n, count(*) FILTER (WHERE v = CASE WHEN id <= 500 THEN 'A' ELSE 'B' END) AS ok FROM big`);
      assert.deepEqual(c[0], { n: '1000', ok: '1000' }, `rows on ${d}`);
    }
    const log = await env.query(0, `
      SELECT count(*) AS n, count(DISTINCT key) AS keys, count(*) FILTER (WHERE status = 'applied' AND kind = 'update_update') AS applied,
             count(*) FILTER (WHERE (key->>'id')::int <= 500 AND winner = 'A' AND winner_row->>'v' = 'A'
                               AND jsonb_array_length(losers) = 1 AND losers->0->>'db' = 'B' AND losers->0->'row'->>'v' = 'B') AS won_by_a,
             count(*) FILTER (WHERE (key->>'id')::int > 500 AND winner = 'B' AND winner_row->>'v' = 'B'
                               AND jsonb_array_length(losers) = 1 AND losers->0->>'db' = 'A' AND losers->0->'row'->>'v' = 'A') AS won_by_b
        FROM ibex.conflict WHERE sync = 'big' AND run = $1`, [res.runId], 'ibexctl');
    assert.deepEqual(log[0], { n: '1000', keys: '1000', applied: '1000', won_by_a: '500', won_by_b: '500' });
  });
});

describe('update versus delete', () => {
  it('under latest, in both orders, on three masters; the kinds are recorded', async () => {
    const r = await makeSync('ud', ['A', 'B', 'C'], 'latest');
    await seed(r, ['A', 'B', 'C'], ['ud'], [1, 2, 3, 4]);
    // 1: A deletes, B updates later · 2: B updates, A deletes later · 3: A and C delete · 4: C updates, then A and B delete later.
    await writeTx('A', [[10, del('ud', 1)], [20, del('ud', 2)], [10, del('ud', 3)], [30, del('ud', 4)]]);
    await writeTx('B', [[20, upd('ud', 1, 'B1')], [10, upd('ud', 2, 'B2')], [20, del('ud', 4)]]);
    await writeTx('C', [[20, del('ud', 3)], [10, upd('ud', 4, 'C4')]]);
    const times = { A1: await changeTime('A', 'ud', 1), B1: await changeTime('B', 'ud', 1), A2: await changeTime('A', 'ud', 2), B2: await changeTime('B', 'ud', 2) };
    const res = await runOk(r);
    // Key 3 was deleted on A and on C: the versions agree, nothing is overwritten, no conflict.
    assert.equal(res.conflicts, 3);
    await expectRows(['A', 'B', 'C'], 'ud', { 1: 'B1' });
    const log = await conflictLog('ud', res.runId);
    assert.deepEqual(log.map((c) => ({ id: c.id, kind: c.kind, winner: c.winner, winnerRow: c.winnerRow, losers: c.losers.map((l) => ({ db: l.db, row: l.row })) })), [
      { id: 1, kind: 'update_delete', winner: 'B', winnerRow: { id: 1, v: 'B1' }, losers: [{ db: 'A', row: null }] },
      { id: 2, kind: 'delete_update', winner: 'A', winnerRow: null, losers: [{ db: 'B', row: { id: 2, v: 'B2' } }] },
      // Key 4: the winner deleted the row C had updated: delete_update, although B deleted it too.
      { id: 4, kind: 'delete_update', winner: 'A', winnerRow: null, losers: [{ db: 'B', row: null }, { db: 'C', row: { id: 4, v: 'C4' } }] },
    ]);
    assert.deepEqual([log[0]!.winnerTime, log[0]!.losers[0]!.changed_at, log[1]!.winnerTime, log[1]!.losers[0]!.changed_at], [times.B1, times.A1, times.A2, times.B2]);
    assert.equal((await runOk(r)).status, 'empty');
  });
});

describe('per row, not per table', () => {
  it('two tables of one sync, each with rows won by different dbs', async () => {
    const r = await makeSync('pr', ['A', 'B'], 'latest', { tables: ['pr_one', 'pr_two'] });
    await seed(r, ['A', 'B'], ['pr_one', 'pr_two'], [1, 2]);
    await writeTx('A', [[10, upd('pr_one', 1, 'A1')], [20, upd('pr_one', 2, 'A2')], [20, upd('pr_two', 1, 'A1')], [10, upd('pr_two', 2, 'A2')]]);
    await writeTx('B', [[20, upd('pr_one', 1, 'B1')], [10, upd('pr_one', 2, 'B2')], [10, upd('pr_two', 1, 'B1')], [20, upd('pr_two', 2, 'B2')]]);
    const res = await runOk(r);
    assert.equal(res.conflicts, 4);
    assert.deepEqual(res.tables['public.pr_one']?.conflicts, 2);
    assert.deepEqual(res.tables['public.pr_two']?.conflicts, 2);
    await expectRows(['A', 'B'], 'pr_one', { 1: 'B1', 2: 'A2' });
    await expectRows(['A', 'B'], 'pr_two', { 1: 'A1', 2: 'B2' });
    const log = await conflictLog('pr', res.runId);
    assert.deepEqual(log.map((c) => `${c.relname} ${c.id} ${c.winner}`), ['pr_one 1 B', 'pr_one 2 A', 'pr_two 1 A', 'pr_two 2 B']);
  });
});

describe('a per-table strategy', () => {
  it('overrides the sync\'s (Bucardo aliases accepted on both)', async () => {
    const r = await makeSync('ovr', ['A', 'B'], 'bucardo_latest', { tables: ['ovr_list', 'ovr_sync', 'ovr_skip'] });
    const setList = await env.cli('update', 'table', 'public.ovr_list', 'db=A', 'conflict_strategy=B,A');
    assert.equal(setList.code, 0, setList.err);
    const setSkip = await env.cli('update', 'table', 'public.ovr_skip', 'db=A', 'conflict_strategy=bucardo_skip');
    assert.equal(setSkip.code, 0, setSkip.err);
    await seed(r, ['A', 'B'], ['ovr_list', 'ovr_sync', 'ovr_skip'], [1, 2]);
    const tables = ['ovr_list', 'ovr_sync', 'ovr_skip'];
    await writeTx('A', tables.flatMap((t): [number, string][] => [[10, upd(t, 1, 'A1')], [20, upd(t, 2, 'A2')]]));
    await writeTx('B', tables.flatMap((t): [number, string][] => [[20, upd(t, 1, 'B1')], [10, upd(t, 2, 'B2')]]));
    const res = await runOk(r);
    assert.equal(res.conflicts, 6);
    await expectRows(['A', 'B'], 'ovr_list', { 1: 'B1', 2: 'B2' });
    await expectRows(['A', 'B'], 'ovr_sync', { 1: 'B1', 2: 'A2' });
    await expectRows(['A', 'B'], 'ovr_skip', { A: { 1: 'A1', 2: 'A2' }, B: { 1: 'B1', 2: 'B2' } });
    const log = await conflictLog('ovr', res.runId);
    assert.deepEqual(log.map((c) => `${c.relname} ${c.id} ${c.strategy} ${c.winner ?? '-'} ${c.status}`), [
      'ovr_list 1 list B applied', 'ovr_list 2 list B applied',
      'ovr_skip 1 skip - skipped', 'ovr_skip 2 skip - skipped',
      'ovr_sync 1 latest B applied', 'ovr_sync 2 latest A applied',
    ]);
  });
});

describe('the conflict log', () => {
  it('records exactly what a simple conflict did', async () => {
    const r = await makeSync('lg', ['A', 'B'], 'latest', { columns: 'id int PRIMARY KEY, v text NOT NULL, n int' });
    await seed(r, ['A', 'B'], ['lg'], [1]);
    await writeTx('A', [[10, `UPDATE lg SET v = 'from A', n = 1 WHERE id = 1`]]);
    await writeTx('B', [[20, `UPDATE lg SET v = 'from B', n = 2 WHERE id = 1`]]);
    const tA = await changeTime('A', 'lg', 1);
    const tB = await changeTime('B', 'lg', 1);
    assert.ok(tA < tB);
    const res = await runOk(r);
    assert.equal(res.conflicts, 1);
    for (const d of ['A', 'B'] as Db[]) {
      assert.deepEqual(await env.query(IDX[d], `SELECT id, v, n FROM lg`), [{ id: '1', v: 'from B', n: '2' }]);
    }
    const log = await conflictLog('lg');
    assert.deepEqual(log, [{
      sync: 'lg', run: res.runId, schemaname: 'public', relname: 'lg', key: { id: 1 }, id: 1, kind: 'update_update', strategy: 'latest',
      winner: 'B', winnerRow: { id: 1, v: 'from B', n: 2 }, winnerTime: tB,
      losers: [{ db: 'A', row: { id: 1, v: 'from A', n: 1 }, changed_at: tA }], status: 'applied',
    }]);
    // The CLI shows the same record.
    const cli = await env.cli('conflicts', 'lg', '--json');
    assert.equal(cli.code, 0, cli.err);
    const shown = JSON.parse(cli.out) as Record<string, unknown>[];
    assert.equal(shown.length, 1);
    assert.deepEqual({ ...shown[0], id: undefined, created: undefined, winnerTime: undefined }, {
      id: undefined, created: undefined, winnerTime: undefined,
      sync: 'lg', run: res.runId, table: 'public.lg', schema: 'public', relname: 'lg', key: { id: 1 }, kind: 'update_update', strategy: 'latest', winner: 'B',
      winnerRow: { id: 1, v: 'from B', n: 2 }, losers: [{ db: 'A', row: { id: 1, v: 'from A', n: 1 }, changed_at: tA }], status: 'applied',
    });
  });
});

/**
 * Randomized hot keys, unique claims and foreign-key orphans across three masters (latest): on
 * every node, writes to a few hot parents and hot claimants, new parents and children under
 * parents another node may be deleting, emails from a small pool; and, between each run's gather
 * and its apply (the afterGather hook), more writes to the hot keys, which race the apply.
 *
 * Every write puts a new token in its row and reads the token it replaces (or deletes), so the
 * test knows each version the application itself did away with. After the writers stop, the dbs
 * converge (`ibex validate` exits 0), nothing stays quarantined, and every version that was
 * committed but is neither in the final rows nor done away with by the application — removed by
 * ibex — is a losing version in the conflict log.
 *
 * IBEX_TEST_SEED=<n> replays the writes.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { useClusters } from '../helpers/env.js';
import { rng, testSeed } from '../helpers/seed.js';
import { setupControl, addSync, runner, closeRunners } from '../helpers/sync.js';

const env = useClusters(3);
after(closeRunners);

const ALL = [0, 1, 2];
const SEED = testSeed();
const ROUNDS = 20;
const HOT = 4; // hot parents 1..HOT and hot claimants 1..HOT
const EMAILS = 6;
const TABLES = ['hp', 'hu', 'hc'] as const;
type Table = (typeof TABLES)[number];

const random = rng(SEED);
const int = (lo: number, hi: number): number => random.int(lo, hi);
const why = (msg: string): string => `${msg} (IBEX_TEST_SEED=${SEED})`;

/** Tokens whose transaction committed, and those the application itself replaced or deleted. */
const committed = new Map<string, Table>();
const doneAway = new Set<string>();
let seq = 0;
let nextId = 1000;

/**
 * One write in its own transaction: lock the row, note the token it holds, write. An error of the
 * application's own (a unique value or parent missing on that node, a raced insert) rolls back.
 */
async function write(c: pg.Client, node: number, table: Table, id: number, op: 'upsert' | 'delete', cols: Record<string, unknown> = {}): Promise<void> {
  const tok = `n${node}#${++seq}`;
  try {
    await c.query('BEGIN');
    const old = (await c.query(`SELECT tok FROM ${table} WHERE id = $1 FOR UPDATE`, [id])).rows[0]?.tok as string | undefined;
    if (op === 'delete') {
      await c.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
    } else {
      const names = Object.keys(cols);
      const vals = Object.values(cols);
      if (old === undefined) {
        await c.query(`INSERT INTO ${table} (id, tok${names.map((n) => `, ${n}`).join('')}) VALUES ($1, $2${names.map((_, i) => `, $${i + 3}`).join('')})`, [id, tok, ...vals]);
      } else {
        await c.query(`UPDATE ${table} SET tok = $2${names.map((n, i) => `, ${n} = $${i + 3}`).join('')} WHERE id = $1`, [id, tok, ...vals]);
      }
    }
    await c.query('COMMIT');
    if (old !== undefined) doneAway.add(old);
    if (op === 'upsert') committed.set(tok, table);
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    const code = (err as { code?: string }).code ?? '';
    if (!['23505', '23503', '40001', '40P01'].includes(code)) throw err;
  }
}

/** Ids of a table on one node. */
async function ids(c: pg.Client, table: Table): Promise<number[]> {
  return (await c.query(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => Number(r.id));
}

/** One random write on a node. */
async function randomWrite(c: pg.Client, node: number, hotOnly: boolean): Promise<void> {
  const x = random.next();
  if (hotOnly || x < 0.35) {
    // A hot key: a parent's token, or a claimant's email.
    if (random.next() < 0.5) await write(c, node, 'hp', int(1, HOT), 'upsert');
    else await write(c, node, 'hu', int(1, HOT), 'upsert', { email: `e${int(1, EMAILS)}@x` });
    return;
  }
  if (x < 0.5) return write(c, node, 'hp', ++nextId, 'upsert');
  if (x < 0.62) {
    // Delete a parent (not a hot one): where another node just added a child under it, an orphan.
    const ps = (await ids(c, 'hp')).filter((id) => id > HOT);
    if (ps.length) await write(c, node, 'hp', ps[int(0, ps.length - 1)]!, 'delete');
    return;
  }
  if (x < 0.82) {
    const ps = await ids(c, 'hp');
    if (ps.length) await write(c, node, 'hc', ++nextId, 'upsert', { parent_id: ps[int(0, ps.length - 1)] });
    return;
  }
  if (x < 0.92) return write(c, node, 'hu', ++nextId, 'upsert', { email: `e${int(1, EMAILS)}@x` });
  const cs = await ids(c, 'hc');
  if (cs.length) await write(c, node, 'hc', cs[int(0, cs.length - 1)]!, 'delete');
}

describe(`randomized hot keys, unique claims and orphans on three masters (IBEX_TEST_SEED=${SEED})`, () => {
  it('converge, and every version ibex removed is in the conflict log', async () => {
    for (const i of ALL) {
      await env.query(i, `
        CREATE TABLE hp (id int PRIMARY KEY, tok text NOT NULL);
        CREATE TABLE hu (id int PRIMARY KEY, email text UNIQUE, tok text NOT NULL);
        CREATE TABLE hc (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES hp (id), tok text NOT NULL);
        INSERT INTO hp SELECT g, 'seed' || g FROM generate_series(1, ${HOT}) g;
        INSERT INTO hu SELECT g, 'seed' || g || '@x', 'seed' || g FROM generate_series(1, ${HOT}) g;`);
    }
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'claims3', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: TABLES.map((t) => `public.${t}`) });
    const cs = await Promise.all(ALL.map((i) => env.client(i)));
    let racing = true;
    // Attempts of the round's run the hook still races. Two: a repeated attempt is raced too, and
    // the third (of the four a run may take) is not. A key whose own row raced is left out, but
    // not in tables linked by a foreign key (run/raced.ts): there a parent deleted or re-keyed
    // after the snapshot fails the child's foreign-key check and the whole run is repeated
    // (design.md, "raced keys", point 3); raced on every attempt, such a run would fail by design.
    let racesLeft = 0;
    const r = runner(env, 'claims3', {
      hooks: {
        afterGather: async () => {
          if (!racing || racesLeft === 0) return;
          racesLeft--;
          // Local writes to hot keys between this run's gather and its apply: they race the apply.
          for (let k = int(0, 3); k > 0; k--) {
            const node = int(0, 2);
            await randomWrite(cs[node]!, node, true);
          }
        },
      },
    });
    const statuses: Record<string, number> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = int(4, 12); k > 0; k--) {
        const node = int(0, 2);
        await randomWrite(cs[node]!, node, false);
      }
      racesLeft = 2;
      const res = await r.run('delta');
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      assert.ok(res.status === 'good' || res.status === 'empty', why(`round ${round}: ${res.status} ${res.error ?? ''}`));
    }
    racing = false;
    let quiet = 0;
    for (let n = 0; quiet < 2; n++) {
      assert.ok(n < 20, why('the sync did not settle'));
      const res = await r.run('delta');
      assert.ok(res.status === 'good' || res.status === 'empty', why(`settling: ${res.status} ${res.error ?? ''}`));
      quiet = res.status === 'empty' ? quiet + 1 : 0;
    }
    const v = await env.cli('validate', 'claims3', '--json');
    assert.equal(v.code, 0, why(`ibex validate exited ${v.code}: ${v.out.slice(0, 3000)} ${v.err}`));

    const log = await env.query(0, `SELECT run, relname, kind, status, key::text AS key, winner, winner_row::text AS w, losers::text AS losers FROM ibex.conflict WHERE sync = 'claims3' ORDER BY id`, [], 'ibexctl');
    if (process.env.IBEX_TEST_TRACE === '1') for (const x of log) console.log(`# ${JSON.stringify(x)}`);
    assert.deepEqual(log.filter((x) => x.status === 'quarantined').map((x) => `${x.relname} ${x.kind}`), [], why('conflicts stayed quarantined'));
    const inLog = new Set(log.flatMap((x) => (JSON.parse(String(x.losers)) as { row: { tok?: string } | null }[]).map((l) => l.row?.tok).filter((t) => t !== undefined)));
    const final = new Set<string>();
    for (const t of TABLES) for (const row of (await cs[0]!.query(`SELECT tok FROM ${t}`)).rows) final.add(String(row.tok));
    const removed = [...committed.keys()].filter((tok) => !final.has(tok) && !doneAway.has(tok));
    const missing = removed.filter((tok) => !inLog.has(tok)).map((tok) => `${committed.get(tok)} ${tok}`);
    const kinds = [...new Set(log.map((x) => String(x.kind)))].sort();
    console.log(`# engine-random-claims seed=${SEED} runs=${JSON.stringify(statuses)} versions=${committed.size} removed=${removed.length} logged=${log.length} kinds=${kinds.join(',')}`);
    assert.deepEqual(missing, [], why(`versions removed by ibex but not in the conflict log (of ${removed.length} removed)`));
    assert.ok(removed.length > 0, why('ibex removed no version: the scenario made no conflict'));
  });

  it('a unique value claimed on a db after the run\'s snapshot is a race: reconsidered by the next run, not quarantined', async () => {
    let once = false;
    const r = runner(env, 'claims3', {
      hooks: {
        afterGather: async () => {
          if (!once) return;
          once = false;
          // B claims the value after this run read its snapshot: the run's unique check sees the
          // row, its snapshot does not.
          await env.query(1, `INSERT INTO hu VALUES (50002, 'race@x', 'B, after the snapshot')`);
        },
      },
    });
    // An update, not an insert: an insert would take the fast path, whose refusal repeats the run
    // with a fresh snapshot (and no race left).
    await env.query(0, `INSERT INTO hu VALUES (50001, 'before@x', 'A, before')`);
    await r.run('delta');
    await env.query(0, `UPDATE hu SET email = 'race@x', tok = 'A, first' WHERE id = 50001`);
    once = true;
    const first = await r.run('delta');
    assert.equal(first.status, 'good', first.error);
    for (let i = 0; i < 3; i++) assert.notEqual((await r.run('delta')).status, 'failed');
    const rows = await Promise.all(ALL.map(async (i) => (await env.query(i, `SELECT id, tok FROM hu WHERE email = 'race@x'`)).map((x) => `${x.id} ${x.tok}`)));
    assert.deepEqual(rows, ALL.map(() => ['50002 B, after the snapshot']), 'the later claim keeps the value everywhere');
    const log = await env.query(0, `SELECT status, losers::text AS losers FROM ibex.conflict WHERE sync = 'claims3' AND key = '{"id": 50001}'`, [], 'ibexctl');
    assert.deepEqual(log.filter((x) => x.status === 'quarantined'), [], JSON.stringify(log));
    assert.ok(log.some((x) => String(x.losers).includes('A, first')), `the removed version is not logged: ${JSON.stringify(log)}`);
  });
});

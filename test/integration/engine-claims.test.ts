/**
 * Unique claims the settle step meets on two masters: a claim raced by a local write is queued
 * again under its own key whatever the key's type; a claim with no holder to find (NULLS NOT
 * DISTINCT, a trigger's write to another table) settles or is quarantined, never re-queued for
 * ever; a raced claim on a table with counter columns repeats the run, so no increment is lost.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, closeRunners, tableRows } from '../helpers/sync.js';
import { openControl } from '../../src/control/connection.js';
import { installCapture } from '../../src/capture/install.js';
import type { SyncRunner } from '../../src/engine/runner.js';

const env = useClusters(2);
after(closeRunners);

const BOTH = [0, 1];

/** A runner whose afterGather hook runs `race` once when armed. */
function racing(sync: string): { r: SyncRunner; arm: (race: () => Promise<void>) => void } {
  let pending: (() => Promise<void>) | undefined;
  const r = runner(env, sync, {
    hooks: {
      afterGather: async () => {
        const race = pending;
        pending = undefined;
        if (race) await race();
      },
    },
  });
  return { r, arm: (race) => { pending = race; } };
}

/**
 * Run until two runs in a row find nothing to do (a run whose only work was raced applies nothing);
 * fails when that takes more than `max` runs (a change queued again for ever).
 */
async function settle(r: SyncRunner, max = 8): Promise<void> {
  for (let n = 0, quiet = 0; ; n++) {
    assert.ok(n < max, `the sync did not settle in ${max} runs: a change is queued again for ever`);
    const res = await r.run('delta');
    assert.ok(res.status === 'good' || res.status === 'empty', `${res.status} ${res.error ?? ''}`);
    if (process.env.IBEX_TEST_TRACE === '1') console.log(`# ${JSON.stringify(res)}`);
    quiet = res.status === 'empty' ? quiet + 1 : 0;
    if (quiet === 2) return;
  }
}

async function same(table: string): Promise<string[]> {
  const a = await tableRows(await env.client(0), table, '1');
  assert.deepEqual(await tableRows(await env.client(1), table, '1'), a, `${table} differs between A and B`);
  return a;
}

describe('unique claims on two masters', () => {
  // A key whose JSON form is not its text: timestamptz ('T'), numeric (1.50), bigint past 2^53.
  const KEYS = [
    { t: 'ck_ts', type: 'timestamptz', k1: '2024-05-01 12:00:00.25+00', k2: '2024-05-02 12:00:00+00' },
    { t: 'ck_num', type: 'numeric', k1: '1.50', k2: '2.50' },
    { t: 'ck_big', type: 'bigint', k1: '9007199254740993', k2: '9007199254740995' },
  ];

  it('set up', async () => {
    for (const i of BOTH) {
      for (const k of KEYS) await env.query(i, `CREATE TABLE ${k.t} (k ${k.type} PRIMARY KEY, email text UNIQUE, tok text NOT NULL)`);
      await env.query(i, `
        CREATE TABLE nn (id int PRIMARY KEY, code text, tok text NOT NULL, UNIQUE NULLS NOT DISTINCT (code));
        INSERT INTO nn VALUES (1, 'a', 'seed'), (2, 'b', 'seed');
        CREATE TABLE tg (id int PRIMARY KEY, email text, tok text NOT NULL);
        CREATE TABLE tg_side (email text CONSTRAINT tg_side_email UNIQUE);
        CREATE FUNCTION tg_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO tg_side VALUES (NEW.email); RETURN NEW; END $$;
        CREATE TRIGGER tg_note AFTER INSERT OR UPDATE ON tg FOR EACH ROW EXECUTE FUNCTION tg_note();
        ALTER TABLE tg ENABLE ALWAYS TRIGGER tg_note;
        CREATE TABLE cnt (id int PRIMARY KEY, email text UNIQUE, n int NOT NULL, tok text NOT NULL);
        INSERT INTO cnt VALUES (1, 'c1@x', 0, 'seed');`);
    }
    await env.query(1, `INSERT INTO tg_side VALUES ('taken@x')`);
    await setupControl(env, { A: 0, B: 1 });
    // Ordered dbs: A's claim beats B's, however late B's is.
    await addSync(env, 'keys', { dbs: { A: 'source', B: 'source' }, tables: KEYS.map((k) => `public.${k.t}`), options: { conflict_strategy: 'A,B' } });
    await addSync(env, 'nulls', { dbs: { A: 'source', B: 'source' }, tables: ['public.nn', 'public.tg'] });
    await addSync(env, 'counter', { dbs: { A: 'source', B: 'source' }, tables: ['public.cnt'], options: { conflict_strategy: 'A,B' } });
    const c = await openControl(env.controlUrl);
    try {
      await c.query(`UPDATE ibex.relation SET delta_columns = '{n}' WHERE schemaname = 'public' AND relname = 'cnt'`);
      await installCapture(c, 'counter', { upgrade: true });
    } finally {
      await c.end();
    }
  });

  it('a claim raced by a local write is queued again under its own key, whatever the key\'s type', async () => {
    const { r, arm } = racing('keys');
    for (const k of KEYS) await env.query(0, `INSERT INTO ${k.t} VALUES ($1, 'before@x', 'A, before')`, [k.k1]);
    await settle(r);
    // An update, not an insert: an insert would take the fast path, whose refusal repeats the run.
    for (const k of KEYS) await env.query(0, `UPDATE ${k.t} SET email = 'race@x', tok = 'A' WHERE k = $1`, [k.k1]);
    arm(async () => {
      // B claims the value after the run's snapshot: a race on B, and B's claim loses to A's.
      for (const k of KEYS) await env.query(1, `INSERT INTO ${k.t} VALUES ($1, 'race@x', 'B')`, [k.k2]);
    });
    await settle(r);
    for (const k of KEYS) {
      await same(k.t);
      const held = await env.query(1, `SELECT k::text AS k, tok FROM ${k.t} WHERE email = 'race@x'`);
      // Without A's change queued again, B's later claim would find no pending rival on A and win.
      assert.deepEqual(held.map((x) => String(x.tok)), ['A'], `${k.t}: A's claim (the preferred db) holds the value`);
    }
  });

  it('a claim of a NULLS NOT DISTINCT value settles, and is not queued again for ever', async () => {
    const r = runner(env, 'nulls');
    await env.query(0, `UPDATE nn SET code = NULL, tok = 'A' WHERE id = 1`);
    await env.query(1, `UPDATE nn SET code = NULL, tok = 'B, later' WHERE id = 2`);
    await settle(r);
    assert.deepEqual((await same('nn')).length, 1, 'one row holds the NULL');
    assert.deepEqual((await env.query(0, `SELECT id FROM nn WHERE code IS NULL`)).map((x) => Number(x.id)), [2], 'the later claim holds it');
  });

  it('a unique refusal from a trigger\'s write to another table is quarantined, not queued again for ever', async () => {
    const r = runner(env, 'nulls');
    await env.query(0, `INSERT INTO tg VALUES (1, 'free@x', 'A')`);
    await settle(r);
    await env.query(0, `UPDATE tg SET email = 'taken@x', tok = 'A, taken' WHERE id = 1`);
    await settle(r);
    const log = await env.query(0, `SELECT status, kind FROM ibex.conflict WHERE sync = 'nulls' AND relname = 'tg'`, [], 'ibexctl');
    assert.deepEqual(log.map((x) => `${x.status} ${x.kind}`), ['quarantined unique']);
  });

  it('a raced claim on a table with counter columns repeats the run: every increment is kept', async () => {
    const { r, arm } = racing('counter');
    await env.query(1, `UPDATE cnt SET n = n + 3 WHERE id = 1`);
    await env.query(0, `UPDATE cnt SET n = n + 5, email = 'race2@x', tok = 'A' WHERE id = 1`);
    arm(async () => {
      await env.query(1, `INSERT INTO cnt VALUES (2, 'race2@x', 0, 'B')`);
    });
    const first = await r.run('delta');
    assert.ok(first.status === 'good' || first.status === 'empty', first.error);
    // B counts on while A's change (had it been left out on B) waits to be reconsidered.
    await env.query(1, `UPDATE cnt SET n = n + 2 WHERE id = 1`);
    await settle(r);
    await env.query(0, `UPDATE cnt SET n = n + 7 WHERE id = 1`);
    await settle(r);
    const rows = await same('cnt');
    assert.deepEqual(rows.map((x) => { const o = JSON.parse(x) as { id: number; n: number }; return `${o.id} ${o.n}`; }), ['1 17'], 'increments of 3, 5, 2 and 7');
  });
});

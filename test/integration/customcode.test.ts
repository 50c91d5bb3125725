/**
 * Custom code: conflict handlers choosing per row and merging columns, hooks
 * around a run, and handlers that fail (nothing applied anywhere, the
 * handler named in the run's error).
 */
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';

const env = useClusters(2);
const dir = mkdtempSync(join(tmpdir(), 'ibex-cc-test-'));
after(async () => {
  await closeRunners();
  rmSync(dir, { recursive: true, force: true });
});

/** Write a hook file and register it. */
async function addCode(name: string, whenrun: string, file: string, src: string, mapTo: string): Promise<void> {
  const path = join(dir, file);
  writeFileSync(path, src);
  const r = await env.cli('add', 'customcode', name, `whenrun=${whenrun}`, `src_code=${path}`, mapTo);
  assert.equal(r.code, 0, r.err);
}

async function same(table: string): Promise<string[]> {
  const a = await tableRows(await env.client(0), table);
  assert.deepEqual(await tableRows(await env.client(1), table), a, `${table} differs between A and B`);
  return a;
}

const ctl = (sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> => env.query(0, sql, values, 'ibexctl');

describe('custom code', () => {
  before(async () => {
    for (const i of [0, 1]) {
      await env.query(i, `
        CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric(12,2));
        CREATE TABLE prof (id int PRIMARY KEY, name text, email text, tags text[], data jsonb, seen timestamptz);
        CREATE TABLE fail (id int PRIMARY KEY, v text);
        CREATE TABLE hk (id int PRIMARY KEY, v text);
      `);
    }
    await env.query(0, `CREATE TABLE audit (at text, sync text, info text)`);
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'pick', { dbs: { A: 'source', B: 'source' }, tables: ['public.acct'] });
    await addSync(env, 'merge', { dbs: { A: 'source', B: 'source' }, tables: ['public.prof'] });
    await addSync(env, 'bad', { dbs: { A: 'source', B: 'source' }, tables: ['public.fail'] });
    await addSync(env, 'hooks', { dbs: { A: 'source', B: 'source' }, tables: ['public.hk'] });
  });

  it('lets a TypeScript handler choose the winner per row, and falls back to latest where it does not decide', async () => {
    await addCode('richest', 'conflict', 'richest.ts', `
      import type { ConflictHook, ConflictDecision } from 'ibex/customcode';
      const hook: ConflictHook = (input) => input.conflicts.map((c): ConflictDecision => {
        if (c.key.id === '3') return null; // left to the fallback (latest)
        const alive = c.versions.filter((v) => v.row !== null);
        alive.sort((x, y) => Number(y.row!.balance) - Number(x.row!.balance));
        return { winner: alive[0]!.db };
      });
      export default hook;
    `, 'sync=pick');
    await env.query(0, `INSERT INTO acct VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cy', 30)`);
    const r = runner(env, 'pick');
    await runOk(r);
    // Key 1: A richer but B later. Key 2: B richer and later. Key 3: left to latest (B later).
    await env.query(0, `UPDATE acct SET balance = 100 WHERE id = 1; UPDATE acct SET balance = 5 WHERE id = 2; UPDATE acct SET owner = 'cy@A' WHERE id = 3`);
    await env.query(1, `UPDATE acct SET balance = 50 WHERE id = 1; UPDATE acct SET balance = 200 WHERE id = 2; UPDATE acct SET owner = 'cy@B' WHERE id = 3`);
    const res = await runOk(r);
    assert.equal(res.conflicts, 3);
    const rows = await same('acct');
    assert.deepEqual(rows.map((x) => JSON.parse(x)).sort((x: { id: number }, y: { id: number }) => x.id - y.id).map((x: { id: number; owner: string; balance: number }) => [x.id, x.owner, x.balance]),
      [[1, 'ann', 100], [2, 'bob', 200], [3, 'cy@B', 30]]);
    const log = await ctl(`SELECT key->>'id' AS id, strategy, winner, jsonb_array_length(losers) AS n, losers->0->>'db' AS loser, status
                             FROM ibex.conflict WHERE sync = 'pick' ORDER BY (key->>'id')::int`);
    assert.deepEqual(log.map((x) => [x.id, x.strategy, x.winner, x.n, x.loser, x.status]), [
      ['1', 'custom:richest', 'A', '1', 'B', 'applied'],
      ['2', 'custom:richest', 'B', '1', 'A', 'applied'],
      ['3', 'latest', 'B', '1', 'A', 'applied'],
    ]);
    assert.equal((await runOk(r)).status, 'empty', 'nothing loops back');
  });

  it('writes a merged row everywhere, with arrays, json and times read back exactly', async () => {
    await addCode('merger', 'conflict', 'merger.mjs', `
      export default function (input) {
        return input.conflicts.map((c) => {
          const a = c.versions.find((v) => v.db === 'A').row;
          const b = c.versions.find((v) => v.db === 'B').row;
          return { row: { name: a.name, email: b.email, tags: a.tags, data: b.data } }; // seen: from the latest version
        });
      }
    `, 'relation=public.prof');
    await env.query(0, `INSERT INTO prof VALUES (1, 'ann', 'ann@old', '{x}', '{"v": 1}', '2026-01-01 00:00:00+00')`);
    const r = runner(env, 'merge');
    await runOk(r);
    await env.query(0, `UPDATE prof SET name = 'Ann A', tags = '{"a b",NULL,c}', seen = '2026-02-02 02:02:02.5+00' WHERE id = 1`);
    await env.query(1, `UPDATE prof SET email = 'ann@b', data = '{"v": 2, "s": "q\\"uote"}', seen = '2026-03-03 03:03:03+00' WHERE id = 1`);
    const res = await runOk(r);
    assert.equal(res.conflicts, 1);
    const rows = await same('prof');
    const row = JSON.parse(rows[0]!) as Record<string, unknown>;
    assert.equal(row.name, 'Ann A');
    assert.equal(row.email, 'ann@b');
    assert.deepEqual(row.tags, ['a b', null, 'c']);
    assert.deepEqual(row.data, { v: 2, s: 'q"uote' });
    const seen = await env.query(0, `SELECT seen = '2026-03-03 03:03:03+00' AS later FROM prof WHERE id = 1`);
    assert.equal(seen[0]!.later, 't', 'a column the merge left out comes from the latest version');
    const log = await ctl(`SELECT strategy, winner, winner_row->>'name' AS name, winner_row->>'email' AS email,
                                  (SELECT array_agg(l->>'db' ORDER BY l->>'db') FROM jsonb_array_elements(losers) l)::text AS losers
                             FROM ibex.conflict WHERE sync = 'merge'`);
    assert.deepEqual(log, [{ strategy: 'custom:merger', winner: 'merge', name: 'Ann A', email: 'ann@b', losers: '{A,B}' }]);
    assert.equal((await runOk(r)).status, 'empty', 'the merged row does not loop back');
  });

  it('fails the run cleanly when a handler throws or returns nonsense: nothing applied, the handler named', async () => {
    await addCode('thrower', 'conflict', 'thrower.mjs', `export default function () { throw new Error('no idea what to do'); }`, 'sync=bad');
    await env.query(0, `INSERT INTO fail VALUES (1, 'x'), (2, 'x')`);
    const r = runner(env, 'bad');
    await runOk(r);
    await env.query(0, `UPDATE fail SET v = 'A' WHERE id = 1; INSERT INTO fail VALUES (3, 'only on A')`);
    await env.query(1, `UPDATE fail SET v = 'B' WHERE id = 1`);
    const before = [await tableRows(await env.client(0), 'fail'), await tableRows(await env.client(1), 'fail')];
    const res = await r.run('delta');
    assert.equal(res.status, 'failed');
    assert.match(res.error ?? '', /custom code "thrower" \(whenrun=conflict\) threw: no idea what to do/);
    assert.deepEqual([await tableRows(await env.client(0), 'fail'), await tableRows(await env.client(1), 'fail')], before, 'nothing applied anywhere');
    const st = await env.cli('status', 'bad', '--json');
    assert.match(st.out, /thrower/);

    // Nonsense: a db that did not change the row.
    writeFileSync(join(dir, 'nonsense.mjs'), `export default (input) => input.conflicts.map(() => ({ winner: 'Z' }))`);
    assert.equal((await env.cli('update', 'customcode', 'thrower', `src_code=${join(dir, 'nonsense.mjs')}`)).code, 0);
    const r2 = runner(env, 'bad');
    const res2 = await r2.run('delta');
    assert.equal(res2.status, 'failed');
    assert.match(res2.error ?? '', /custom code "thrower" \(whenrun=conflict\) chose winner "Z" for key \{"id":"1"\}: choose one of the dbs that changed it \(A, B\)/);
    assert.deepEqual([await tableRows(await env.client(0), 'fail'), await tableRows(await env.client(1), 'fail')], before);

    // Fixed: the same changes arrive (the cursors never moved).
    writeFileSync(join(dir, 'fixed.mjs'), `export default (input) => input.conflicts.map(() => ({ winner: 'A' }))`);
    assert.equal((await env.cli('update', 'customcode', 'thrower', `src_code=${join(dir, 'fixed.mjs')}`)).code, 0);
    const r3 = runner(env, 'bad');
    await runOk(r3);
    const rows = await same('fail');
    assert.deepEqual(rows.map((x) => JSON.parse(x)).sort((x: { id: number }, y: { id: number }) => x.id - y.id).map((x: { v: string }) => x.v), ['A', 'x', 'only on A']);
  });

  it('pauses a sync whose strategy is custom but has no conflict code', async () => {
    await ctl(`UPDATE ibex.sync SET conflict_strategy = 'custom' WHERE name = 'hooks'`);
    const r = runner(env, 'hooks');
    await env.query(0, `INSERT INTO hk VALUES (0, 'z')`);
    const res = await r.run('delta');
    assert.equal(res.status, 'failed');
    assert.equal(res.pause, true);
    assert.match(res.error ?? '', /conflict_strategy=custom but no active conflict customcode/);
    await ctl(`UPDATE ibex.sync SET conflict_strategy = 'latest', status = 'active', status_reason = NULL WHERE name = 'hooks'`);
  });

  it('runs hooks around a run: skip, audit inside the transaction, counts after it, and an exception hook that repairs and retries', async () => {
    await addCode('gate', 'before_sync', 'gate.mjs', `
      export default (ctx) => { ctx.shared.calls = (ctx.shared.calls ?? 0) + 1; if (ctx.shared.calls === 1) return { skipRun: true, message: 'maintenance window' }; }
    `, 'sync=hooks');
    await addCode('audit', 'before_commit', 'audit.mjs', `
      export default async (ctx) => { await ctx.query('A', 'INSERT INTO audit VALUES ($1, $2, $3)', ['before_commit', ctx.sync, String(ctx.result.inserted)]); }
    `, 'sync=hooks');
    await addCode('after', 'after_txn', 'after.mjs', `
      export default async (ctx) => { await ctx.query('A', 'INSERT INTO audit VALUES ($1, $2, $3)', ['after_txn', ctx.sync, ctx.result.status + '/' + ctx.result.inserted]); }
    `, 'sync=hooks');
    await addCode('fixer', 'exception', 'fixer.mjs', `
      export default async (ctx) => {
        if (ctx.sqlstate !== '23514') return;
        await ctx.query('B', 'ALTER TABLE hk DROP CONSTRAINT no_bad');
        await ctx.query('A', 'INSERT INTO audit VALUES ($1, $2, $3)', ['exception', ctx.sync, ctx.attempt + ' ' + ctx.error]);
        return { retry: true };
      }
    `, 'sync=hooks');
    await env.query(1, `ALTER TABLE hk ADD CONSTRAINT no_bad CHECK (v <> 'bad')`);
    // The run must fail on the refused row for the exception hook to be asked (the default,
    // on_row_error=quarantine, would set that one row aside and let the rest flow).
    await ctl(`UPDATE ibex.sync SET on_row_error = 'stall' WHERE name = 'hooks'`);
    await env.query(0, `INSERT INTO hk VALUES (1, 'ok'), (2, 'bad')`);
    const r = runner(env, 'hooks');
    const skipped = await r.run('delta');
    assert.equal(skipped.status, 'empty');
    assert.equal((await env.query(1, `SELECT count(*) AS n FROM hk`))[0]!.n, '0', 'a skipped run applies nothing');
    const res = await runOk(r);
    assert.equal(res.inserted, 3, 'rows 0, 1 and 2 arrive after the exception hook dropped the check on B');
    await same('hk');
    const audit = await env.query(0, `SELECT at, info FROM audit ORDER BY at`);
    assert.equal(audit.length, 3, JSON.stringify(audit));
    assert.deepEqual(audit.map((a) => a.at), ['after_txn', 'before_commit', 'exception']);
    assert.equal(audit[0]!.info, 'good/3');
    assert.equal(audit[1]!.info, '3');
    // Attempt 1 took the fast path (rows only inserted, on one source): a refused row there repeats
    // the run through staging (upsert.ts, fastPathConflict), where the failure reaches the hook.
    assert.match(String(audit[2]!.info), /^2 .*no_bad/);
    const runs = await ctl(`SELECT status, details->>'skipped' AS skipped FROM ibex.run WHERE sync = 'hooks' ORDER BY id`);
    assert.ok(runs.some((x) => x.status === 'empty' && /maintenance window/.test(String(x.skipped))), JSON.stringify(runs));
  });
});

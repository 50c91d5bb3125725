/**
 * One row must not stop a sync or leave the nodes different for ever: unique claims and foreign
 * key orphans are settled by the sync's strategy (every removed version in the conflict log), and
 * rows of any size COPY can carry replicate.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';
import { connect } from '../../src/db/connect.js';
import { inlineReadSql } from '../../src/engine/sql/apply.js';
import { INLINE_BYTES } from '../../src/engine/run/context.js';
import type { TablePlan } from '../../src/engine/plan.js';

const env = useClusters(3);
after(closeRunners);

const ALL = [0, 1, 2];
async function same(table: string, on = ALL): Promise<string[]> {
  const first = await tableRows(await env.client(on[0]!), table);
  for (const i of on.slice(1)) assert.deepEqual(await tableRows(await env.client(i), table), first, `${table} differs on cluster ${i}`);
  return first;
}

async function conflictLog(sync: string): Promise<{ kind: string; status: string; key: string; winner: string | null; losers: { db: string; row: Record<string, unknown> | null }[] }[]> {
  const rows = await env.query(0, `SELECT kind, status, key::text AS key, winner, losers::text AS losers FROM ibex.conflict WHERE sync = $1 ORDER BY id`, [sync], 'ibexctl');
  return rows.map((r) => ({ kind: String(r.kind), status: String(r.status), key: String(r.key), winner: r.winner === null ? null : String(r.winner), losers: JSON.parse(String(r.losers)) }));
}

/** Run until nothing is pending (settling writes replicate by the next run). */
async function settle(sync: string, runs = 3): Promise<void> {
  const r = runner(env, sync);
  for (let i = 0; i < runs; i++) await runOk(r);
}

describe('apply errors', () => {
  it('set up', async () => {
    for (const i of ALL) {
      await env.query(i, `
        CREATE TABLE un (id int PRIMARY KEY, email text UNIQUE, note text);
        CREATE TABLE uo (id int PRIMARY KEY, email text UNIQUE);
        CREATE TABLE big (id int PRIMARY KEY, body text);
        CREATE TABLE rp (id int PRIMARY KEY, name text);
        CREATE TABLE rc (id int PRIMARY KEY, parent_id int REFERENCES rp (id), note text);
        CREATE TABLE ck (id int PRIMARY KEY, v int);
        CREATE TABLE st (id int PRIMARY KEY, v int);
        CREATE TABLE lk (id int PRIMARY KEY, v text);
        CREATE TABLE rnd_p (id int PRIMARY KEY, name text);
        CREATE TABLE rnd_u (id int PRIMARY KEY, email text UNIQUE);
        CREATE TABLE rnd_c (id int PRIMARY KEY, parent_id int REFERENCES rnd_p (id), note text);
        CREATE ROLE app_owner NOLOGIN;
        CREATE TABLE ow (id int PRIMARY KEY, v text);
        ALTER TABLE ow OWNER TO app_owner;
      `);
    }
    await setupControl(env, { A: 0, B: 1, C: 2 });
    await addSync(env, 'claims', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.un'] });
    await addSync(env, 'ordered', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.uo'], options: { conflict_strategy: 'B,A,C' } });
    await addSync(env, 'orphans', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.rp', 'public.rc'] });
    await addSync(env, 'rowerr', { dbs: { A: 'source', B: 'target', C: 'target' }, tables: ['public.ck'] });
    await addSync(env, 'stall', { dbs: { A: 'source', B: 'target', C: 'target' }, tables: ['public.st'], options: { on_row_error: 'stall' } });
    await addSync(env, 'locks', { dbs: { A: 'source', B: 'target' }, tables: ['public.lk'] });
    await addSync(env, 'owners', { dbs: { A: 'source', B: 'target' }, tables: ['public.ow'] });
    await addSync(env, 'random3', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.rnd_p', 'public.rnd_u', 'public.rnd_c'] });
    await addSync(env, 'big', { dbs: { A: 'source', B: 'source', C: 'target' }, tables: ['public.big'] });
  });

  it('the later of two claims of one unique value keeps it on every node (latest)', async () => {
    await env.query(0, `INSERT INTO un VALUES (10, 'same@x', 'A, earlier')`);
    await env.query(1, `INSERT INTO un VALUES (11, 'same@x', 'B, later')`);
    await settle('claims');
    assert.deepEqual(await same('un'), ['{"id": 11, "note": "B, later", "email": "same@x"}']);
    const log = await conflictLog('claims');
    assert.ok(log.length > 0 && log.every((c) => c.kind === 'unique' && c.status === 'applied'), JSON.stringify(log));
    assert.ok(log.some((c) => c.losers.some((l) => l.row?.note === 'A, earlier')), `the removed version is not logged: ${JSON.stringify(log)}`);
    assert.ok(!log.some((c) => c.losers.some((l) => l.row?.note === 'B, later')), 'the winner was logged as removed');
  });

  it('… also when the earlier claim is on the node applied last', async () => {
    await env.query(2, `INSERT INTO un VALUES (20, 'other@x', 'C, earlier')`);
    await env.query(0, `INSERT INTO un VALUES (21, 'other@x', 'A, later')`);
    await settle('claims');
    const rows = await same('un');
    assert.ok(rows.includes('{"id": 21, "note": "A, later", "email": "other@x"}') && !rows.some((r) => r.includes('C, earlier')), rows.join('\n'));
  });

  it('conflicts restore puts a removed version back on every node; refused in one line while its value is taken', async () => {
    const ids = await env.query(0, `SELECT id FROM ibex.conflict WHERE sync = 'claims' AND losers::text LIKE '%A, earlier%' ORDER BY id`, [], 'ibexctl');
    const id = String(ids[0]!.id);
    const refused = await env.cli('conflicts', 'restore', id);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err, /would collide again on un_email_key/);
    assert.equal(refused.err.trim().split('\n').length, 1, refused.err);
    await env.query(1, `UPDATE un SET email = 'moved@x' WHERE id = 11`);
    await settle('claims', 1);
    const ok = await env.cli('conflicts', 'restore', id);
    assert.equal(ok.code, 0, ok.err);
    await settle('claims', 2);
    const rows = await same('un');
    assert.ok(rows.includes('{"id": 10, "note": "A, earlier", "email": "same@x"}'), rows.join('\n'));
  });

  it('the preferred db of an ordered strategy keeps the unique value, though its claim is older', async () => {
    await env.query(1, `INSERT INTO uo VALUES (1, 'pref@x')`);
    await env.query(0, `INSERT INTO uo VALUES (2, 'pref@x')`);
    await settle('ordered');
    assert.deepEqual(await same('uo'), ['{"id": 1, "email": "pref@x"}']);
    const log = await conflictLog('ordered');
    assert.ok(log.some((c) => c.winner === 'B' && c.losers.some((l) => l.row?.id === 2)), JSON.stringify(log));
  });

  it('a parent deleted after a child was added under it elsewhere: the child is removed everywhere, and logged', async () => {
    await env.query(0, `INSERT INTO rp VALUES (1, 'one')`);
    await settle('orphans', 1);
    await env.query(1, `INSERT INTO rc VALUES (100, 1, 'B, earlier')`);
    await env.query(0, `DELETE FROM rp WHERE id = 1`);
    await settle('orphans');
    assert.deepEqual(await same('rp'), []);
    assert.deepEqual(await same('rc'), []);
    const log = await conflictLog('orphans');
    assert.ok(log.some((c) => c.kind === 'foreign_key' && c.status === 'applied' && c.losers.some((l) => l.row?.note === 'B, earlier')), JSON.stringify(log));
    assert.ok(!log.some((c) => c.status === 'quarantined'), JSON.stringify(log));
  });

  it('a child added after its parent was deleted elsewhere: the parent is restored everywhere', async () => {
    await env.query(0, `INSERT INTO rp VALUES (2, 'two')`);
    await settle('orphans', 1);
    await env.query(0, `DELETE FROM rp WHERE id = 2`);
    await env.query(1, `INSERT INTO rc VALUES (200, 2, 'B, later')`);
    await settle('orphans');
    assert.deepEqual(await same('rp'), ['{"id": 2, "name": "two"}']);
    assert.deepEqual(await same('rc'), ['{"id": 200, "note": "B, later", "parent_id": 2}']);
    const log = await conflictLog('orphans');
    assert.ok(log.some((c) => c.kind === 'foreign_key' && c.key === '{"id": 2}' && c.losers.some((l) => l.db === 'A' && l.row === null)), JSON.stringify(log));
  });

  it('foreign-key conflicts on bigint keys beyond 2^53 remove and restore exactly the rows they name', async () => {
    const P = '9007199254740993';
    const C = '9007199254740995';
    for (const i of ALL) {
      await env.query(i, `CREATE TABLE bp (id bigint PRIMARY KEY, name text);
        CREATE TABLE bc (id bigint PRIMARY KEY, parent_id bigint REFERENCES bp (id), note text)`);
    }
    await addSync(env, 'bigorphans', { dbs: { A: 'source', B: 'source', C: 'source' }, tables: ['public.bp', 'public.bc'] });
    // Neighbours one below each key: what a key read back as a double (2^53 + 1 → 2^53) would name instead.
    await env.query(0, `INSERT INTO bp VALUES (${P}, 'parent'), (${P} - 1, 'neighbour');
      INSERT INTO bc VALUES (${C} - 1, ${P} - 1, 'neighbour child')`);
    await settle('bigorphans', 1);
    // A parent deleted after a child was added under it elsewhere: that child goes, its neighbour stays.
    await env.query(1, `INSERT INTO bc VALUES (${C}, ${P}, 'B, earlier')`);
    await env.query(0, `DELETE FROM bp WHERE id = ${P}`);
    await settle('bigorphans');
    assert.deepEqual(await same('bp'), [`{"id": 9007199254740992, "name": "neighbour"}`]);
    assert.deepEqual(await same('bc'), [`{"id": 9007199254740994, "note": "neighbour child", "parent_id": 9007199254740992}`]);
    // A child added after its parent was deleted elsewhere: that parent comes back.
    await env.query(0, `INSERT INTO bp VALUES (${P}, 'parent again')`);
    await settle('bigorphans', 1);
    await env.query(0, `DELETE FROM bp WHERE id = ${P}`);
    await env.query(1, `INSERT INTO bc VALUES (${C}, ${P}, 'B, later')`);
    await settle('bigorphans');
    assert.deepEqual(await same('bp'), [`{"id": 9007199254740992, "name": "neighbour"}`, `{"id": 9007199254740993, "name": "parent again"}`]);
    const log = await conflictLog('bigorphans');
    assert.ok(log.some((c) => c.kind === 'foreign_key' && c.key === `{"id": ${P}}`), JSON.stringify(log));
    assert.ok(log.some((c) => c.kind === 'foreign_key' && c.key === `{"id": ${C}}` && c.losers.some((l) => String(l.row?.note) === 'B, earlier')), JSON.stringify(log));
    // The log as `ibex conflicts` shows it, and the removed child put back by `conflicts restore` (its parent is back).
    const shown = await env.cli('conflicts', 'bigorphans', '--json');
    assert.equal(shown.code, 0, shown.err);
    assert.ok(shown.out.includes(`"id": ${C}`) && shown.out.includes(`"parent_id": ${P}`) && !shown.out.includes('9007199254740996'), shown.out);
    const id = String((await env.query(0, `SELECT id FROM ibex.conflict WHERE sync = 'bigorphans' AND losers::text LIKE '%B, earlier%'`, [], 'ibexctl'))[0]!.id);
    const restored = await env.cli('conflicts', 'restore', id);
    assert.equal(restored.code, 0, restored.err);
    assert.match(restored.out, new RegExp(`\\{"id":${C}\\}`));
    await settle('bigorphans', 2);
    assert.deepEqual(await same('bc'), [`{"id": 9007199254740994, "note": "neighbour child", "parent_id": 9007199254740992}`,
      `{"id": 9007199254740995, "note": "B, earlier", "parent_id": 9007199254740993}`]);
  });

  it('a row one target refuses (CHECK, trigger) is set aside with its error; the rest flows, and it goes in once fixed', async () => {
    await env.query(2, `ALTER TABLE ck ADD CONSTRAINT ck_small CHECK (v < 100)`);
    await env.query(1, `CREATE FUNCTION no_seven() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.v = 7 THEN RAISE EXCEPTION 'seven refused (test)'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER no_seven BEFORE INSERT OR UPDATE ON ck FOR EACH ROW EXECUTE FUNCTION no_seven()`);
    const r = runner(env, 'rowerr');
    await env.query(0, `INSERT INTO ck VALUES (1, 5), (2, 500), (3, 7), (4, 8)`);
    const res = await runOk(r);
    assert.equal(res.status, 'good');
    assert.deepEqual((await env.query(1, `SELECT id FROM ck ORDER BY 1`)).map((x) => Number(x.id)), [1, 2, 4]);
    assert.deepEqual((await env.query(2, `SELECT id FROM ck ORDER BY 1`)).map((x) => Number(x.id)), [1, 3, 4]);
    const aside = await env.query(0, `SELECT db, relname, key::text AS key, error FROM ibex.row_aside WHERE sync = 'rowerr' ORDER BY db`, [], 'ibexctl');
    assert.deepEqual(aside.map((x) => [x.db, x.relname, x.key]), [['B', 'ck', '{"id": 3}'], ['C', 'ck', '{"id": 2}']]);
    assert.match(String(aside[0]!.error), /seven refused/);
    assert.match(String(aside[1]!.error), /ck_small/);
    const list = await env.cli('quarantine', 'list', 'rowerr');
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /ck_small/);
    assert.match((await env.cli('status', 'rowerr')).out, /Rows set aside\s*│?\s*2/);
    // Fixed on both targets: re-queued after the next good run, applied by the one after.
    await env.query(1, `DROP TRIGGER no_seven ON ck`);
    await env.query(2, `ALTER TABLE ck DROP CONSTRAINT ck_small`);
    await settle('rowerr', 3);
    await same('ck');
    assert.deepEqual(await env.query(0, `SELECT id FROM ibex.row_aside WHERE sync = 'rowerr'`, [], 'ibexctl'), []);
  });

  it('a set-aside row keeps a bigint key beyond 2^53 exactly, in the record and in its retry', async () => {
    // Snowflake-style keys are larger than a JavaScript number holds exactly: 2^53 + 1 would read back as 2^53.
    for (const i of ALL) await env.query(i, `CREATE TABLE bk (id bigint PRIMARY KEY, v int)`);
    await addSync(env, 'bigkeys', { dbs: { A: 'source', B: 'target', C: 'target' }, tables: ['public.bk'] });
    await env.query(2, `ALTER TABLE bk ADD CONSTRAINT bk_small CHECK (v < 100)`);
    await env.query(0, `INSERT INTO bk VALUES (9007199254740993, 500), (9007199254740992, 1)`);
    await runOk(runner(env, 'bigkeys'));
    const aside = await env.query(0, `SELECT db, key::text AS key, row::text AS row FROM ibex.row_aside WHERE sync = 'bigkeys'`, [], 'ibexctl');
    assert.deepEqual(aside.map((x) => [x.db, x.key]), [['C', '{"id": 9007199254740993}']]);
    assert.match(String(aside[0]!.row), /9007199254740993/);
    await env.query(2, `ALTER TABLE bk DROP CONSTRAINT bk_small`);
    await settle('bigkeys', 3);
    assert.deepEqual(await same('bk'), ['{"v": 1, "id": 9007199254740992}', '{"v": 500, "id": 9007199254740993}']);
    assert.deepEqual(await env.query(0, `SELECT id FROM ibex.row_aside WHERE sync = 'bigkeys'`, [], 'ibexctl'), []);
  });

  it('on_row_error=stall: the run fails with one line naming the table, key and db', async () => {
    await env.query(2, `ALTER TABLE st ADD CONSTRAINT st_small CHECK (v < 100)`);
    const r = runner(env, 'stall');
    await env.query(0, `INSERT INTO st VALUES (1, 5), (2, 500)`);
    const res = await r.run('delta');
    assert.equal(res.status, 'failed');
    assert.match(res.error ?? '', /public\.st \{"id": 2\} on db C: .*st_small/);
    assert.ok(!(res.error ?? '').includes('\n'), res.error);
    assert.deepEqual((await env.query(1, `SELECT id FROM st`)), [], 'nothing was applied');
    await env.query(2, `ALTER TABLE st DROP CONSTRAINT st_small`);
    await runOk(r);
    await same('st');
    // The option through the CLI: checked, stored, shown.
    const bad = await env.cli('update', 'sync', 'stall', 'on_row_error=skip');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /bad value "skip" for on_row_error: use one of stall, quarantine/);
    assert.equal((await env.cli('update', 'sync', 'stall', 'on_row_error=quarantine')).code, 0);
    assert.deepEqual(await env.query(0, `SELECT on_row_error FROM ibex.sync WHERE name = 'stall'`, [], 'ibexctl'), [{ on_row_error: 'quarantine' }]);
  });

  it('a row locked on a target for long is set aside alone, and applied by a retry once the lock is gone', async () => {
    await env.query(0, `UPDATE ibex.config SET value = '300' WHERE name = 'row_lock_timeout_ms'`, [], 'ibexctl');
    const r = runner(env, 'locks');
    await env.query(0, `INSERT INTO lk VALUES (1, 'one'), (2, 'two')`);
    await runOk(r);
    const holder = await connect(env.params(1, 'app'));
    try {
      await holder.query(`BEGIN; SELECT * FROM lk WHERE id = 1 FOR UPDATE`);
      await env.query(0, `UPDATE lk SET v = v || ' changed'`);
      await runOk(r);
      assert.deepEqual((await env.query(1, `SELECT v FROM lk ORDER BY id`)).map((x) => x.v), ['one', 'two changed']);
      const aside = await env.query(0, `SELECT db, key::text AS key, sqlstate FROM ibex.row_aside WHERE sync = 'locks'`, [], 'ibexctl');
      assert.deepEqual(aside.map((x) => [x.db, x.key, x.sqlstate]), [['B', '{"id": 1}', '55P03']]);
      await holder.query('ROLLBACK');
    } finally {
      await holder.end();
    }
    await settle('locks', 3);
    await same('lk', [0, 1]);
    assert.deepEqual(await env.query(0, `SELECT id FROM ibex.row_aside WHERE sync = 'locks'`, [], 'ibexctl'), []);
  });

  it('a table owner\'s trigger runs as the owner during apply, and cannot write ibex\'s schema', async () => {
    await env.query(1, `
      CREATE TABLE ow_log (who text, ibex_write text);
      ALTER TABLE ow_log OWNER TO app_owner;
      CREATE FUNCTION ow_spy() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE w text;
      BEGIN
        BEGIN
          CREATE TABLE ibex.spy (x int);
          w := 'wrote ibex';
        EXCEPTION WHEN insufficient_privilege THEN w := 'denied';
        END;
        INSERT INTO public.ow_log VALUES (current_user, w);
        RETURN NEW;
      END $$;
      ALTER FUNCTION ow_spy() OWNER TO app_owner;
      CREATE TRIGGER ow_spy BEFORE INSERT OR UPDATE ON ow FOR EACH ROW EXECUTE FUNCTION ow_spy();`);
    const r = runner(env, 'owners');
    await env.query(0, `INSERT INTO ow VALUES (1, 'one'), (2, 'two')`);
    await runOk(r);
    await env.query(0, `UPDATE ow SET v = 'one, changed' WHERE id = 1`);
    await runOk(r);
    await same('ow', [0, 1]);
    const log = await env.query(1, `SELECT who, ibex_write FROM ow_log`);
    assert.ok(log.length >= 3, JSON.stringify(log));
    assert.deepEqual([...new Set(log.map((x) => `${x.who} ${x.ibex_write}`))], ['app_owner denied']);
    assert.equal((await env.query(1, `SELECT to_regclass('ibex.spy') AS t`))[0]!.t, null);
    assert.match((await env.cli('status', 'owners')).out, /Apply as\s*│?\s*B: table owners/);
  });

  it('the inline path measures rows by their text, not their compressed size', async () => {
    // 1 MB that compresses to a few KB: too large to travel inline.
    await env.query(0, `INSERT INTO big VALUES (1, repeat('x', 1000000))`);
    const c = await connect(env.params(0, 'app'));
    try {
      await c.query(`BEGIN; CREATE TEMP TABLE ibex_mine_0 (id int, ibex_origin text); INSERT INTO ibex_mine_0 VALUES (1, NULL)`);
      const p = { q: '"public"."big"', idx: 0, cols: ['id', 'body'], keyJoin: (a: string, b: string) => `${a}.id = ${b}.id` } as unknown as TablePlan;
      const r = await c.query(inlineReadSql(p, INLINE_BYTES));
      assert.equal(Number(r.rows[0].n), 1);
      assert.equal(r.rows[0].rows, null, 'a 1 MB row was read inline');
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
    await env.query(0, `DELETE FROM big`);
  });

  it('a 16 MB row replicates (COPY) to every node', async () => {
    const r = runner(env, 'big');
    await env.query(0, `INSERT INTO big SELECT 2, string_agg(md5(g::text), '') FROM generate_series(1, 500000) g`);
    await runOk(r);
    await env.query(1, `UPDATE big SET body = body || 'B' WHERE id = 2`);
    await runOk(r);
    for (const i of ALL) {
      const got = await env.query(i, `SELECT octet_length(body) AS n, right(body, 1) AS last FROM big WHERE id = 2`);
      assert.deepEqual(got.map((x) => [Number(x.n), x.last]), [[16_000_001, 'B']], `cluster ${i}`);
    }
  });

  it('randomized: unique claims and FK orphans across three masters converge, every removed version logged', async () => {
    let seed = Number(process.env.IBEX_TEST_SEED ?? 1) | 0 || 1;
    const rand = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const r = runner(env, 'random3');
    const inserted = { rnd_u: new Set<number>(), rnd_c: new Set<number>() };
    const deleted = { rnd_u: new Set<number>(), rnd_c: new Set<number>() };
    let next = 0;
    const tryQuery = async (i: number, sql: string, values: unknown[]): Promise<boolean> => {
      try {
        await env.query(i, sql, values);
        return true;
      } catch {
        return false; // refused on that node (its own unique value or parent): the app's error, not ibex's
      }
    };
    const ids = async (i: number, table: string): Promise<number[]> => (await env.query(i, `SELECT id FROM ${table} ORDER BY id`)).map((x) => Number(x.id));
    for (let round = 0; round < 6; round++) {
      for (const i of ALL) {
        for (let op = 0; op < 6; op++) {
          const id = (i + 1) * 100_000 + ++next;
          const parents = await ids(i, 'rnd_p');
          // Parents deleted and children added often: one node's delete meets another's new child.
          switch ([0, 1, 2, 3, 3, 4, 4, 5][rand(8)]) {
            case 0:
              if (await tryQuery(i, `INSERT INTO rnd_u VALUES ($1, $2)`, [id, `e${rand(8)}@x`])) inserted.rnd_u.add(id);
              break;
            case 1: {
              const us = await ids(i, 'rnd_u');
              if (us.length) await tryQuery(i, `UPDATE rnd_u SET email = $2 WHERE id = $1`, [us[rand(us.length)], `e${rand(8)}@x`]);
              break;
            }
            case 2:
              await tryQuery(i, `INSERT INTO rnd_p VALUES ($1, $2)`, [id, `p${id}`]);
              break;
            case 3:
              if (parents.length && (await tryQuery(i, `INSERT INTO rnd_c VALUES ($1, $2, $3)`, [id, parents[rand(parents.length)], `c${id}`]))) inserted.rnd_c.add(id);
              break;
            case 4:
              if (parents.length) await tryQuery(i, `DELETE FROM rnd_p WHERE id = $1`, [parents[rand(parents.length)]]);
              break;
            default: {
              const cs = await ids(i, 'rnd_c');
              const c = cs[rand(Math.max(1, cs.length))];
              if (c !== undefined && (await tryQuery(i, `DELETE FROM rnd_c WHERE id = $1`, [c]))) deleted.rnd_c.add(c);
            }
          }
        }
      }
      await runOk(r);
    }
    for (let i = 0; i < 4; i++) await runOk(r);
    const v = await env.cli('validate', 'random3');
    assert.equal(v.code, 0, `${v.out}\n${v.err}`);
    const log = await env.query(0, `SELECT relname, kind, status, losers::text AS losers FROM ibex.conflict WHERE sync = 'random3'`, [], 'ibexctl');
    if (process.env.IBEX_TEST_LOG_KINDS) console.log(JSON.stringify(log.map((x) => `${x.relname} ${x.kind} ${x.status}`)));
    assert.ok(log.some((x) => x.kind === 'unique'), 'the scenario made no unique claim');
    assert.ok(log.some((x) => x.kind === 'foreign_key'), 'the scenario made no orphan');
    assert.ok(!log.some((x) => x.status === 'quarantined'), 'a conflict stayed quarantined');
    const logged = (table: string): Set<number> => new Set(log.filter((x) => x.relname === table).flatMap((x) =>
      (JSON.parse(String(x.losers)) as { row: { id?: number } | null }[]).map((l) => Number(l.row?.id))));
    for (const table of ['rnd_u', 'rnd_c'] as const) {
      const present = new Set(await ids(0, table));
      const lost = [...inserted[table]].filter((id) => !present.has(id) && !deleted[table].has(id));
      const inLog = logged(table);
      const missing = lost.filter((id) => !inLog.has(id));
      assert.deepEqual(missing, [], `${table}: rows removed by ibex but not in the conflict log`);
    }
  });
});

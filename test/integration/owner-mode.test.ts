/**
 * Owner mode beyond the row apply: a replicated truncate (plain, and keeping rows the truncating
 * db still holds), a onetimecopy, a fullcopy and the foreign-key settle write the user's tables as
 * each table's owner, as the apply does: a trigger the owner wrote sees the owner as current_user,
 * never ibex's role (here the superuser postgres).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners } from '../helpers/sync.js';

const env = useClusters(2);
after(closeRunners);

const TABLES = ['tt', 'tk', 'oc', 'fc', 'ft', 'op', 'oh'];

/** Who ran each trigger on db B for `table` since the last call (TG_OP and current_user). */
async function whoRan(table: string): Promise<string[]> {
  const rows = await env.query(1, `DELETE FROM owner_log WHERE tab = $1 RETURNING op || ' by ' || who AS x`, [table]);
  return [...new Set(rows.map((r) => String(r.x)))].sort();
}

describe('owner mode for truncates, copies and the foreign-key settle', () => {
  it('set up', async () => {
    for (const i of [0, 1]) {
      await env.query(i, `
        CREATE ROLE app_owner NOLOGIN;
        CREATE TABLE tt (id int PRIMARY KEY, v text);
        CREATE TABLE tk (id int PRIMARY KEY, v text);
        CREATE TABLE oc (id int PRIMARY KEY, v text);
        CREATE TABLE fc (id int PRIMARY KEY, v text);
        CREATE TABLE ft (id int PRIMARY KEY, v text);
        CREATE TABLE op (id int PRIMARY KEY, v text);
        CREATE TABLE oh (id int PRIMARY KEY, parent_id int REFERENCES op (id), v text);
        ${TABLES.map((t) => `ALTER TABLE ${t} OWNER TO app_owner;`).join('\n')}
        CREATE TABLE owner_log (tab text, op text, who text);
        ALTER TABLE owner_log OWNER TO app_owner;
        CREATE FUNCTION owner_spy() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO public.owner_log VALUES (TG_TABLE_NAME, TG_OP, current_user); RETURN NULL; END $$;
        ALTER FUNCTION owner_spy() OWNER TO app_owner;`);
    }
    // The spies are on B only: what ibex writes there.
    for (const t of TABLES) {
      await env.query(1, `CREATE TRIGGER spy_rows AFTER INSERT OR UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION owner_spy();
                          CREATE TRIGGER spy_truncate AFTER TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION owner_spy();`);
    }
    await setupControl(env, { A: 0, B: 1 });
    await addSync(env, 'trunc', { dbs: { A: 'source', B: 'target' }, tables: ['public.tt', 'public.tk'] });
    await addSync(env, 'fk', { dbs: { A: 'source', B: 'source' }, tables: ['public.op', 'public.oh'] });
  });

  it('a replicated truncate runs as the owner', async () => {
    const r = runner(env, 'trunc');
    await env.query(0, `INSERT INTO tt VALUES (1, 'one'), (2, 'two')`);
    await runOk(r);
    await whoRan('tt');
    await env.query(0, `TRUNCATE tt`);
    await runOk(r);
    assert.deepEqual(await env.query(1, `SELECT * FROM tt`), []);
    assert.deepEqual(await whoRan('tt'), ['TRUNCATE by app_owner']);
  });

  it('a truncate that keeps the rows the truncating db holds runs as the owner', async () => {
    const r = runner(env, 'trunc');
    await env.query(0, `INSERT INTO tk VALUES (1, 'one'), (2, 'two')`);
    await runOk(r);
    await whoRan('tk');
    // A row written after the truncate, in the same window: the others keep it (DELETE … NOT EXISTS keep).
    await env.query(0, `TRUNCATE tk; INSERT INTO tk VALUES (3, 'after')`);
    await runOk(r);
    assert.deepEqual((await env.query(1, `SELECT id FROM tk ORDER BY id`)).map((x) => Number(x.id)), [3]);
    const ran = await whoRan('tk');
    assert.ok(ran.includes('DELETE by app_owner'), JSON.stringify(ran));
    assert.deepEqual(ran.filter((x) => !x.endsWith('by app_owner')), []);
  });

  it('a onetimecopy empties and fills the target as the owner', async () => {
    await env.query(0, `INSERT INTO oc SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    await env.query(1, `INSERT INTO oc VALUES (-1, 'stale')`);
    await whoRan('oc');
    await addSync(env, 'otc', { dbs: { A: 'source', B: 'target' }, tables: ['public.oc'], options: { onetimecopy: 1 } });
    const res = await runner(env, 'otc').run('onetimecopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal(Number((await env.query(1, `SELECT count(*) AS n FROM oc`))[0]!.n), 5);
    assert.deepEqual(await whoRan('oc'), ['DELETE by app_owner', 'INSERT by app_owner']);
  });

  it('a fullcopy empties and fills the target as the owner', async () => {
    await env.query(0, `INSERT INTO fc SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    await env.query(1, `INSERT INTO fc VALUES (-1, 'stale')`);
    await whoRan('fc');
    await addSync(env, 'full', { dbs: { A: 'source', B: 'fullcopy' }, tables: ['public.fc'] });
    const res = await runner(env, 'full').run('fullcopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal(Number((await env.query(1, `SELECT count(*) AS n FROM fc`))[0]!.n), 5);
    assert.deepEqual(await whoRan('fc'), ['DELETE by app_owner', 'INSERT by app_owner']);
  });

  it('a fullcopy with deletemethod=truncate truncates and fills the target as the owner', async () => {
    await env.query(0, `INSERT INTO ft SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    await env.query(1, `INSERT INTO ft VALUES (-1, 'stale')`);
    await whoRan('ft');
    await addSync(env, 'fullt', { dbs: { A: 'source', B: 'fullcopy' }, tables: ['public.ft'], options: { deletemethod: 'truncate' } });
    const res = await runner(env, 'fullt').run('fullcopy');
    assert.equal(res.status, 'good', res.error);
    assert.equal(Number((await env.query(1, `SELECT count(*) AS n FROM ft`))[0]!.n), 5);
    assert.deepEqual(await whoRan('ft'), ['INSERT by app_owner', 'TRUNCATE by app_owner']);
  });

  it('the foreign-key settle removes an orphan\'s child and restores a parent as the owner', async () => {
    const r = runner(env, 'fk');
    await env.query(0, `INSERT INTO op VALUES (1, 'one'), (2, 'two')`);
    await runOk(r);
    // A child on B first, then its parent deleted on A: the later delete wins, B removes the child.
    await env.query(1, `INSERT INTO oh VALUES (100, 1, 'B, earlier')`);
    await env.query(0, `DELETE FROM op WHERE id = 1`);
    await whoRan('oh');
    await runOk(r);
    await runOk(r);
    assert.deepEqual(await env.query(1, `SELECT id FROM oh WHERE id = 100`), []);
    const removed = await whoRan('oh');
    assert.ok(removed.includes('DELETE by app_owner'), JSON.stringify(removed));
    assert.deepEqual(removed.filter((x) => !x.endsWith('by app_owner')), []);
    // A parent deleted on A first, then a child added under it on B: B rewrites the parent (and
    // the child) as its own change, and the parent is restored everywhere.
    await env.query(0, `DELETE FROM op WHERE id = 2`);
    await env.query(1, `INSERT INTO oh VALUES (200, 2, 'B, later')`);
    await whoRan('op');
    await whoRan('oh');
    for (let i = 0; i < 3; i++) await runOk(r);
    assert.deepEqual((await env.query(0, `SELECT id FROM op ORDER BY id`)).map((x) => Number(x.id)), [2]);
    const restored = [...await whoRan('op'), ...await whoRan('oh')];
    assert.ok(restored.includes('UPDATE by app_owner'), JSON.stringify(restored));
    assert.deepEqual(restored.filter((x) => !x.endsWith('by app_owner')), []);
  });
});

/**
 * Taking over from a real Bucardo 5 (Debian's package): import every kind of object and every
 * sync option from its control database, then the cut-over while both masters take writes;
 * afterwards ibex validate passes and every write is on every db.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { main } from '../../src/cli/main.js';
import { bucardoMissing, TestBucardo } from '../helpers/bucardo.js';
import { useDaemonProcess } from '../helpers/daemon.js';
import { useClusters, ok, waitFor } from '../helpers/env.js';

const missing = bucardoMissing();
const env = useClusters(3);
const daemon = useDaemonProcess(env, { IBEX_CHECKTIME_MS: '500' }, 'bucardo');
let bucardo: TestBucardo;

const SCHEMA = `
  CREATE TABLE public.t1 (id text PRIMARY KEY, v int NOT NULL);
  CREATE TABLE public.t2 (id int PRIMARY KEY, v text);
  CREATE TABLE public.t3 (a int, b int, v text, PRIMARY KEY (a, b));
  CREATE TABLE public.t4 (id int PRIMARY KEY, v text);
  CREATE SEQUENCE public.s1;
`;

const PERL = `my ($info) = @_;\n$info->{message} = 'hello from Perl */ still a comment';\nreturn;\n`;

describe('ibex import-bucardo against Bucardo 5', { skip: missing }, () => {
  before(async () => {
    for (const i of [0, 1, 2]) await env.query(i, SCHEMA);
    await env.query(2, 'CREATE TABLE public.t4_on_c (id int PRIMARY KEY, v text)');
    bucardo = new TestBucardo(env);
    await bucardo.install();
    await bucardo.addDb('A', 0);
    await bucardo.addDb('B', 1);
    // A password Bucardo stores (trust authentication ignores it): imported, never printed.
    await bucardo.addDb('C', 2, 'app', 'pass=sekrit_pw_42');
    await bucardo.bc('add', 'table', 'public.t1', 'public.t2', 'public.t3', 'db=A', 'relgroup=herd1');
    await bucardo.bc('add', 'sequence', 'public.s1', 'db=A', 'relgroup=herd1');
    await bucardo.bc('add', 'table', 'public.t4', 'db=A', 'relgroup=herd2');
    await bucardo.bc('add', 'dbgroup', 'masters', 'A:source', 'B:source', 'C:target');
    await bucardo.bc('add', 'sync', 'mm', 'relgroup=herd1', 'dbs=masters', 'conflict_strategy=bucardo_latest');
    await bucardo.bc('add', 'sync', 'oneway', 'relgroup=herd2', 'dbs=A:source,C:target', 'status=inactive');
    // Every option of bucardo.sync away from its default.
    await env.query(0, `UPDATE bucardo.sync SET stayalive = false, kidsalive = false, conflict_strategy = 'C A', copyextra = 'FREEZE',
        deletemethod = 'truncate', autokick = false, checktime = '45 seconds', rebuild_index = 1, priority = 3, analyze_after_copy = false,
        vacuum_after_copy = true, strict_checking = false, overdue = '1 hour', expired = '2 hours', track_rates = true, onetimecopy = 2,
        lifetime = '1 day', maxkicks = 7, isolation_level = 'serializable' WHERE name = 'oneway'`, [], 'bucardo');
    await bucardo.bc('add', 'customname', 'public.t4', 't4_on_c', 'db=C');
    const perl = join(bucardo.dir, 'cc.pl');
    writeFileSync(perl, PERL);
    await bucardo.bc('add', 'customcode', 'hello', 'whenrun=before_txn', `src_code=${perl}`, 'sync=oneway');
    await bucardo.bc('add', 'customcode', 'never', 'whenrun=after_table_sync', `src_code=${perl}`, 'sync=oneway');
    await env.query(0, `INSERT INTO t2 SELECT g, 'from A' FROM generate_series(1, 20) g; SELECT nextval('s1')`);
    await bucardo.start();
    await waitFor('Bucardo to replicate', async () => Number((await env.query(2, 'SELECT count(*)::int AS n FROM t2'))[0]!.n) === 20, 60_000, 250)
      .catch(async (err: unknown) => {
        const activity: unknown[] = [];
        for (const i of [0, 1, 2]) activity.push(...await env.query(i, `SELECT ${i} AS c, datname, application_name, state, wait_event_type, wait_event, left(query, 200) AS q FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`));
        throw new Error(`${String(err)}\n${bucardo.logTail(10)}\n${JSON.stringify(activity, null, 1)}`);
      });
    ok(await env.cli('install'));
  });

  after(async () => {
    await bucardo?.remove();
  });

  it('a dry run prints the plan and changes nothing', async () => {
    const r = ok(await env.cli('import-bucardo', `--from=${bucardo.url()}`, '--dry-run'));
    assert.match(r.out, /\+ would add db A/);
    assert.match(r.out, /\+ would add sync mm: relgroup herd1, dbgroup masters, conflict_strategy latest, inactive/);
    assert.match(r.out, /dry run: nothing was changed/);
    assert.doesNotMatch(r.out + r.err, /sekrit_pw_42/);
    const dbs = JSON.parse(ok(await env.cli('list', 'dbs', '--json')).out) as unknown[];
    assert.equal(dbs.length, 0);
  });

  it('imports every kind of object, maps or names every sync option, and never prints a password', async () => {
    const r = ok(await env.cli('import-bucardo', `--from=${bucardo.url()}`));
    const out = r.out;
    assert.doesNotMatch(out + r.err, /sekrit_pw_42/);
    assert.match(out, /db C: its password is imported/);
    for (const line of [
      /\+ add db A: postgres/, /\+ add db B/, /\+ add db C/,
      /\+ add table public\.t1 \(db A\): key \(id\)/, /\+ add table public\.t3 \(db A\): key \(a, b\)/, /\+ add sequence public\.s1 \(db A\)/,
      /\+ add relgroup herd1: 4 member\(s\) of db A/, /\+ add relgroup herd2/, /\+ add dbgroup masters: A:source B:source C:target/,
      /\+ add sync mm/, /\+ add sync oneway/, /\+ add customcode hello: before_txn, inactive, 1 mapping/, /\+ add customname public\.t4 on db C: t4_on_c/,
    ]) assert.match(out, line);
    // Conflict strategies and their difference.
    assert.match(out, /sync mm: conflict_strategy bucardo_latest → latest: .*each row/);
    assert.match(out, /sync oneway: conflict_strategy "C A" → C,A/);
    // Every sync option: mapped, or not supported, one line each.
    for (const line of [
      /sync oneway: stayalive=off → stayalive=off/, /sync oneway: kidsalive=off → kidsalive=off/,
      /not supported: sync oneway copyextra=FREEZE/, /sync oneway: deletemethod=truncate → deletemethod=truncate/,
      /sync oneway: autokick=off → autokick=off/, /sync oneway: checktime=00:00:45 → checktime=45 seconds/,
      /sync oneway: rebuild_index=1 → rebuild_index=1/, /not supported: sync oneway priority=3/,
      /sync oneway: analyze_after_copy=off → analyze_after_copy=off/, /sync oneway: vacuum_after_copy=on → vacuum_after_copy=on/,
      /sync oneway: strict_checking=off → strict_checking=off/, /not supported: sync oneway overdue=01:00:00/,
      /not supported: sync oneway expired=02:00:00/, /not supported: sync oneway track_rates=on/, /sync oneway: onetimecopy=2 → onetimecopy=2/,
      /sync oneway: lifetime=1 day → lifetime=1 day/, /sync oneway: maxkicks=7 → maxkicks=7/,
      /sync oneway: isolation_level=serializable → isolation_level=serializable/, /sync oneway: inactive in Bucardo/,
    ]) assert.match(out, line);
    assert.match(out, /customcode hello: Perl cannot run in ibex: imported inactive .*docs\/customcode\.md/);
    assert.match(out, /not supported: customcode never: whenrun after_table_sync is never run by Bucardo/);

    const syncs = JSON.parse(ok(await env.cli('list', 'syncs', '--json')).out) as { name: string; status: string; conflict_strategy: string; options: Record<string, unknown> }[];
    assert.deepEqual(syncs.map((s) => [s.name, s.status, s.conflict_strategy]), [['mm', 'inactive', 'latest'], ['oneway', 'inactive', 'C,A']]);
    const o = syncs[1]!.options;
    for (const [k, v] of Object.entries({ stayalive: false, kidsalive: false, autokick: false, analyze_after_copy: false, vacuum_after_copy: true, strict_checking: false, rebuild_index: 1 })) {
      assert.equal(String(o[k]), String(v), k);
    }
    assert.equal(o.deletemethod, 'truncate');
    assert.equal(o.isolation_level, 'serializable');
    assert.equal(Number(o.maxkicks), 7);
    assert.equal(Number(o.onetimecopy), 2);
    const stored = await env.query(0, `SELECT dbpass FROM ibex.db WHERE name = 'C'`, [], 'ibexctl');
    assert.equal(stored[0]!.dbpass, 'sekrit_pw_42');
    const code = await env.query(0, `SELECT status, src_code FROM ibex.customcode WHERE name = 'hello'`, [], 'ibexctl');
    assert.equal(code[0]!.status, 'inactive');
    assert.match(String(code[0]!.src_code), /hello from Perl \* \/ still a comment/);
    // Importing again changes nothing.
    assert.match(ok(await env.cli('import-bucardo', `--from=${bucardo.url()}`)).out, /no changes/);
  });

  it('cuts over while both masters take writes: validate passes and every write is everywhere', async () => {
    await daemon.start();
    const writers: pg.Client[] = [await env.client(0), await env.client(1)];
    const written: string[] = [];
    let stop = false;
    let n = 0;
    const loop = async (c: pg.Client, side: string): Promise<void> => {
      while (!stop) {
        const id = `${side}-${n++}`;
        await c.query('INSERT INTO t1 (id, v) VALUES ($1, $2)', [id, n]);
        written.push(id);
        await new Promise((r) => setTimeout(r, 15));
      }
    };
    const loops = [loop(writers[0]!, 'A'), loop(writers[1]!, 'B')];
    await new Promise((r) => setTimeout(r, 1500));
    let out = '';
    const code = await main(['--control', env.controlUrl, 'import-bucardo', '--cutover', `--from=${bucardo.url()}`, '--yes'], {
      out: (s) => {
        out += s;
        // The writes run through the whole hand-over and stop when validation starts.
        if (/validating sync/.test(s)) stop = true;
      },
      err: (s) => (out += s),
    });
    stop = true;
    await Promise.all(loops);
    assert.equal(code, 0, `${out}\n${bucardo.logTail()}`);
    assert.match(out, /dropped Bucardo's trigger/);
    assert.match(out, /sync mm: Bucardo delivered its last changes/);
    assert.match(out, /sync mm: stopped in Bucardo/);
    assert.match(out, /sync mm: active in ibex/);
    assert.match(out, /sync oneway: inactive in Bucardo, so left inactive in ibex/);
    assert.ok(written.length > 20, `only ${written.length} writes`);
    const left = await env.query(0, `SELECT count(*)::int AS n FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
      JOIN pg_namespace s ON s.oid = p.pronamespace WHERE s.nspname = 'bucardo' AND t.tgrelid = 'public.t1'::regclass`);
    assert.equal(Number(left[0]!.n), 0);
    const status = await env.query(0, `SELECT status FROM bucardo.sync WHERE name = 'mm'`, [], 'bucardo');
    assert.equal(status[0]!.status, 'inactive');
    for (const i of [0, 1, 2]) {
      await waitFor(`every write on db ${'ABC'[i]}`, async () => {
        const rows = await env.query(i, `SELECT id FROM t1 WHERE id = ANY($1::text[])`, [written]);
        return rows.length === written.length;
      }, 60_000, 250);
    }
    ok(await env.cli('validate', 'mm'));
  });
});

/**
 * Every kind of PostgreSQL table a user's database holds, replicated on three masters, on two
 * masters and one way (A -> B, C, starting with a onetimecopy), or refused by `ibex add sync`
 * in one line: tables with rules, generated and identity columns, row-level security, user
 * triggers that write other tables, columns in another order or with dropped columns on some
 * dbs, partitioned tables with rows moving between partitions, awkward names, unlogged tables.
 * Each case ends with `ibex validate` saying the tables are equal.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { useClusters, fails, ok } from '../helpers/env.js';
import { setupControl, addSync, runner, runOk, closeRunners, tableRows } from '../helpers/sync.js';
import { connect } from '../../src/db/connect.js';
import { tableInfo } from '../../src/db/catalog.js';
import { ident, qualified } from '../../src/db/ident.js';
import type { SyncRunner } from '../../src/engine/runner.js';
import { buildPlans } from '../../src/engine/plan.js';
import type { SyncRelation } from '../../src/control/sync-config.js';

const env = useClusters(3);
after(closeRunners);

type Role = 'source' | 'target';
interface Topology {
  tag: string;
  dbs: Record<string, Role>;
  /** Clusters of the sync, and those that write (sources). */
  on: number[];
  sources: number[];
}
const TOPOLOGIES: Topology[] = [
  { tag: 'm3', dbs: { A: 'source', B: 'source', C: 'source' }, on: [0, 1, 2], sources: [0, 1, 2] },
  { tag: 'm2', dbs: { A: 'source', B: 'source' }, on: [0, 1], sources: [0, 1] },
  { tag: 'ow', dbs: { A: 'source', B: 'target', C: 'target' }, on: [0, 1, 2], sources: [0] },
];

/** A quoted table name: `name` in schema `schema`. */
const q = (schema: string, name: string): string => qualified(schema, name).text;

async function same(table: string, on: number[]): Promise<string[]> {
  const first = await tableRows(await env.client(on[0]!), table);
  for (const i of on.slice(1)) assert.deepEqual(await tableRows(await env.client(i), table), first, `${table} differs on cluster ${i}`);
  return first;
}

async function validateEqual(sync: string): Promise<void> {
  const res = await env.cli('validate', sync, '--json');
  assert.equal(res.code, 0, `ibex validate ${sync} exited ${res.code}: ${res.out.slice(0, 3000)} ${res.err}`);
  const doc = JSON.parse(res.out) as { equal: boolean };
  assert.equal(doc.equal, true, res.out.slice(0, 3000));
}

interface Kind {
  /** Base of the table and sync names. */
  name: string;
  schema?: string;
  /** DDL of the kind's tables on cluster i; `t` is the replicated table's name (unquoted). */
  ddl: (t: string, i: number) => string;
  /** Extra replicated tables, besides `t`, by name. */
  extra?: (t: string) => string[];
  /** Set on the update step, besides v (e.g. columns only this kind has). */
  set?: string;
  /** Skip the key update step (GENERATED ALWAYS identity keys cannot be updated to a value). */
  noKeyUpdate?: boolean;
  options?: Record<string, unknown>;
  /** Checks after the writes converged. */
  check?: (t: string, topo: Topology) => Promise<void>;
}

/**
 * The same writes for every kind: a batch of inserts from one source alone (the insert-only
 * COPY path), then small batches from every source (inline rows), a large one (COPY into
 * staging), updates from another source, a key update, deletes, and, with several sources, one
 * row updated on two masters in the same run (a conflict).
 */
async function writes(t: string, topo: Topology, r: SyncRunner, k: Kind): Promise<void> {
  const [first] = topo.sources as [number];
  const last = topo.sources.at(-1)!;
  const ins = (i: number, from: number, to: number): Promise<unknown> =>
    env.query(i, `INSERT INTO ${t} (id, v) OVERRIDING SYSTEM VALUE SELECT g, 'v' || g FROM generate_series(${from}, ${to}) g`);
  await ins(first, 1, 5);
  await runOk(r);
  for (const i of topo.sources) await ins(i, 100 * (i + 1), 100 * (i + 1) + 3);
  await runOk(r);
  await ins(last, 1000, 1299);
  await runOk(r);
  const set = k.set ? `, ${k.set}` : '';
  await env.query(last, `UPDATE ${t} SET v = 'updated on ${last}'${set} WHERE id IN (1, 2, 100)`);
  await env.query(first, `UPDATE ${t} SET v = 'bulk'${set} WHERE id BETWEEN 1000 AND 1099`);
  if (!k.noKeyUpdate) await env.query(first, `UPDATE ${t} SET id = id + 5000 WHERE id IN (3, 1200)`);
  await env.query(last, `DELETE FROM ${t} WHERE id IN (4, 1250)`);
  await runOk(r);
  if (topo.sources.length > 1) {
    await env.query(first, `UPDATE ${t} SET v = 'first wins?' WHERE id = 5`);
    await env.query(last, `UPDATE ${t} SET v = 'last wins?' WHERE id = 5`);
    await runOk(r);
  }
  await runOk(r);
}

/** Create the kind's tables, then replicate them on every topology and compare. */
function kindCase(k: Kind): void {
  for (const topo of TOPOLOGIES) {
    it(`${k.name}: ${topo.tag === 'ow' ? 'one way, after a onetimecopy' : `${topo.sources.length} masters`}`, async () => {
      const name = `${k.name}_${topo.tag}`;
      const schema = k.schema ?? 'public';
      for (const i of topo.on) await env.query(i, k.ddl(name, i));
      const t = q(schema, name);
      const tables: [string, string][] = [[schema, name], ...(k.extra?.(name) ?? []).map((x): [string, string] => [schema, x])];
      if (topo.tag === 'ow') {
        // Rows that exist before the sync reach the targets by onetimecopy.
        await env.query(0, `INSERT INTO ${t} (id, v) OVERRIDING SYSTEM VALUE SELECT g, 'old ' || g FROM generate_series(9000, 9020) g`);
        await env.query(1, `INSERT INTO ${t} (id, v) OVERRIDING SYSTEM VALUE VALUES (9999, 'only on B: the onetimecopy removes it')`);
      }
      await addSync(env, name, {
        dbs: topo.dbs, tables, options: { ...(k.options ?? {}), ...(topo.tag === 'ow' ? { onetimecopy: 1 } : {}) },
      });
      const r = runner(env, name);
      if (topo.tag === 'ow') {
        const copy = await r.run('onetimecopy');
        assert.notEqual(copy.status, 'failed', copy.error);
      }
      await writes(t, topo, r, k);
      const rows = await same(t, topo.on);
      assert.ok(rows.length > 300, `${t} has ${rows.length} rows`);
      for (const [s, x] of tables.slice(1)) await same(q(s, x), topo.on);
      await k.check?.(t, topo);
      await validateEqual(name);
    });
  }
}

describe('kinds of tables', () => {
  it('set up', async () => {
    await setupControl(env, { A: 0, B: 1, C: 2 });
  });

  // 1. INSERT and UPDATE rules: PostgreSQL refuses INSERT … ON CONFLICT on such a table.
  kindCase({
    name: 'rules',
    ddl: (t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text);
      CREATE TABLE ${t}_log (n bigserial PRIMARY KEY, what text);
      CREATE RULE ${t}_ins AS ON INSERT TO ${t} DO ALSO INSERT INTO ${t}_log (what) VALUES ('ins ' || NEW.id);
      CREATE RULE ${t}_upd AS ON UPDATE TO ${t} DO ALSO INSERT INTO ${t}_log (what) VALUES ('upd ' || NEW.id || ' ' || NEW.v);
      CREATE RULE ${t}_never AS ON INSERT TO ${t} WHERE NEW.id < 0 DO INSTEAD NOTHING;`,
    check: async (t, topo) => {
      // In upsert mode the rules fire on what ibex applies, like the users' triggers: a row made
      // on the first source and applied elsewhere (by INSERT, never COPY) is logged there too.
      const other = topo.on.find((i) => i !== topo.sources[0])!;
      const log = await env.query(other, `SELECT what FROM ${t.slice(0, -1)}_log" ORDER BY n`);
      assert.ok(log.some((x) => x.what === 'ins 1'), `the insert rule did not fire on cluster ${other}: ${JSON.stringify(log.slice(0, 5))}`);
      assert.ok(log.some((x) => String(x.what).startsWith('upd 1000 bulk')), 'the update rule did not fire on an applied update');
    },
  });

  it('rules: rows refused as a set go in row by row (a unique value swapped between two rows)', async () => {
    for (const i of [0, 1]) {
      await env.query(i, `CREATE TABLE rules_swap (id int PRIMARY KEY, email text NOT NULL UNIQUE, v text);
        CREATE TABLE rules_swap_log (n bigserial PRIMARY KEY, what text);
        CREATE RULE rules_swap_upd AS ON UPDATE TO rules_swap DO ALSO INSERT INTO rules_swap_log (what) VALUES ('upd ' || NEW.id);`);
    }
    await addSync(env, 'rules_swap', { dbs: { A: 'source', B: 'source' }, tables: ['public.rules_swap'] });
    const r = runner(env, 'rules_swap');
    await env.query(0, `INSERT INTO rules_swap VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two'), (3, 'c@x', 'three')`);
    await runOk(r);
    // A swap in one transaction, and a plain update the row-by-row pass applies first.
    await env.query(0, `BEGIN; UPDATE rules_swap SET email = 'tmp' WHERE id = 1; UPDATE rules_swap SET email = 'a@x' WHERE id = 2;
      UPDATE rules_swap SET email = 'b@x' WHERE id = 1; UPDATE rules_swap SET v = 'three!' WHERE id = 3; COMMIT;`);
    const res = await runOk(r);
    assert.equal(res.conflicts, 0, JSON.stringify(res));
    assert.deepEqual((await same('rules_swap', [0, 1])).length, 3);
    assert.equal((await env.query(1, `SELECT 1 FROM rules_swap_log WHERE what = 'upd 3'`)).length, 1, 'the update rule fired once on B for row 3');
    await validateEqual('rules_swap');
  });

  // Rules on one db only (the plan comes from another), and replica mode, which silences rules.
  kindCase({
    name: 'rules_b',
    ddl: (t, i) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text);
      CREATE TABLE ${t}_log (n bigserial PRIMARY KEY, what text);
      ${i === 1 ? `CREATE RULE ${t}_ins AS ON INSERT TO ${t} DO ALSO INSERT INTO ${t}_log (what) VALUES ('ins ' || NEW.id);
      CREATE RULE ${t}_upd AS ON UPDATE TO ${t} DO ALSO INSERT INTO ${t}_log (what) VALUES ('upd ' || NEW.id);` : ''}`,
    options: { apply_mode: 'replica' },
    check: async (t) => {
      // session_replication_role=replica skips rules as it skips triggers: B logs only its own writes.
      const log = await env.query(1, `SELECT what FROM ${t.slice(0, -1)}_log" WHERE what = 'ins 1'`);
      assert.equal(log.length, 0, 'a rule fired on a row ibex applied in replica mode');
    },
  });

  // 2. Generated columns and identity columns.
  kindCase({
    name: 'generated',
    ddl: (t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text, vlen int GENERATED ALWAYS AS (length(v)) STORED,
      w text, wu text GENERATED ALWAYS AS (upper(w)) STORED);`,
    set: `w = 'w' || id`,
    check: async (t, topo) => {
      for (const i of topo.on) {
        const bad = await env.query(i, `SELECT id FROM ${t} WHERE vlen IS DISTINCT FROM length(v) OR wu IS DISTINCT FROM upper(w)`);
        assert.equal(bad.length, 0, `generated columns not computed on cluster ${i}`);
      }
    },
  });
  kindCase({
    name: 'identity',
    // Each db's sequences start elsewhere, so rows made on different dbs never take the same id.
    ddl: (t, i) => `CREATE TABLE ${t} (id int GENERATED ALWAYS AS IDENTITY (START WITH ${100_000 * (i + 1)}) PRIMARY KEY, v text,
      n bigint GENERATED BY DEFAULT AS IDENTITY (START WITH ${100_000 * (i + 1)}) UNIQUE NOT NULL);`,
    noKeyUpdate: true,
    set: `n = id + 7`,
  });

  // 3. Row-level security (ibex's role here is a superuser, which bypasses it), and user triggers
  // that write another table.
  kindCase({
    name: 'rls',
    ddl: (t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text);
      ALTER TABLE ${t} ENABLE ROW LEVEL SECURITY; ALTER TABLE ${t} FORCE ROW LEVEL SECURITY;
      CREATE POLICY ${t}_none ON ${t} USING (false);`,
  });
  const auditDdl = (guarded: boolean) => (t: string, i: number): string => `
      CREATE TABLE ${t} (id int PRIMARY KEY, v text);
      CREATE TABLE ${t}_audit (db text, n bigint, what text, PRIMARY KEY (db, n));
      CREATE SEQUENCE ${t}_audit_n;
      CREATE FUNCTION ${t}_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        ${guarded ? `-- Rows ibex applies were audited where they were written: skip them here.
        IF coalesce(current_setting('ibex.by', true), '') <> '' THEN RETURN NULL; END IF;` : ''}
        INSERT INTO ${t}_audit VALUES ('db${i}', nextval('${t}_audit_n'), TG_OP || ' ' || CASE TG_OP WHEN 'DELETE' THEN OLD.id ELSE NEW.id END);
        RETURN NULL;
      END $$;
      CREATE TRIGGER ${t}_audit AFTER INSERT OR UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION ${t}_audit();`;
  // The audit table replicated too: in replica mode the trigger does not fire on applied rows.
  kindCase({ name: 'audit_replica', ddl: auditDdl(false), extra: (t) => [`${t}_audit`], options: { apply_mode: 'replica' } });
  // In upsert mode user triggers fire on applied rows; a trigger that skips ibex's apply keeps
  // every audit row once.
  kindCase({ name: 'audit_guard', ddl: auditDdl(true), extra: (t) => [`${t}_audit`] });
  // The audit table not replicated: each db audits its own writes and what ibex applied there.
  kindCase({
    name: 'audit_local',
    ddl: auditDdl(false),
    check: async (t, topo) => {
      for (const i of topo.on) {
        const a = await env.query(i, `SELECT count(*)::int AS n FROM ${t.slice(0, -1)}_audit" WHERE what = 'INSERT 1'`);
        assert.equal(Number(a[0]!.n), 1, `cluster ${i} did not audit the insert of row 1 exactly once`);
      }
    },
  });

  // 4. Columns in another order, dropped columns, columns added in another order.
  kindCase({
    name: 'colorder',
    ddl: (t, i) => [
      `CREATE TABLE ${t} (id int PRIMARY KEY, a text, b int, v text);`,
      `CREATE TABLE ${t} (v text, b int, id int PRIMARY KEY, a text);`,
      `CREATE TABLE ${t} (gone1 text, id int PRIMARY KEY, gone2 int, a text, b int, v text); ALTER TABLE ${t} DROP COLUMN gone1, DROP COLUMN gone2;`,
    ][i]!,
    set: `a = 'a' || id, b = id * 2`,
  });
  kindCase({
    name: 'colsadded',
    ddl: (t, i) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text, tmp text);
      ALTER TABLE ${t} DROP COLUMN tmp;
      ${i % 2 === 0 ? `ALTER TABLE ${t} ADD COLUMN a text; ALTER TABLE ${t} ADD COLUMN b int;` : `ALTER TABLE ${t} ADD COLUMN b int; ALTER TABLE ${t} ADD COLUMN a text;`}`,
    set: `a = 'a' || id, b = id * 2`,
  });

  // 5. Partitioned tables (a key update moves a row to another partition), awkward names, unlogged.
  kindCase({
    name: 'parted',
    ddl: (t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
      CREATE TABLE ${t}_low PARTITION OF ${t} FOR VALUES FROM (MINVALUE) TO (1000);
      CREATE TABLE ${t}_mid PARTITION OF ${t} FOR VALUES FROM (1000) TO (5000);
      CREATE TABLE ${t}_high PARTITION OF ${t} FOR VALUES FROM (5000) TO (MAXVALUE);`,
    check: async (t, topo) => {
      for (const i of topo.on) {
        const moved = await env.query(i, `SELECT tableoid::regclass::text AS part FROM ${t} WHERE id IN (5003, 6200)`);
        assert.deepEqual(moved.map((x) => String(x.part).replace(/^.*_/, '')), ['high', 'high'], `rows did not move partition on cluster ${i}`);
      }
    },
  });
  // Mixed case, a space, quotes and a dot, 63 bytes long (the most PostgreSQL keeps).
  const odd = `Odd "Sch.ema" ${'x'.repeat(49)}`;
  kindCase({
    name: 'awkward',
    schema: odd,
    ddl: (t) => `CREATE SCHEMA IF NOT EXISTS ${ident(odd).text};
      CREATE TABLE ${q(odd, t)} (id int PRIMARY KEY, v text, "Mixed ""Col"". x" text);`,
    set: `"Mixed ""Col"". x" = 'm' || id`,
  });
  kindCase({
    name: 'unlogged',
    ddl: (t) => `CREATE UNLOGGED TABLE ${t} (id int PRIMARY KEY, v text);`,
  });
  it('a table name of 63 bytes in an awkward schema', async () => {
    const name = `Long ${'n'.repeat(53)} "é"`;
    assert.equal(Buffer.byteLength(name), 63);
    assert.equal(Buffer.byteLength(odd), 63);
    for (const i of [0, 1]) await env.query(i, `CREATE TABLE ${q(odd, name)} (id int PRIMARY KEY, v text)`);
    await addSync(env, 'long63', { dbs: { A: 'source', B: 'source' }, tables: [[odd, name]] });
    const r = runner(env, 'long63');
    await writes(q(odd, name), TOPOLOGIES[1]!, r, { name: 'long63', ddl: () => '' });
    await same(q(odd, name), [0, 1]);
    await validateEqual('long63');
  });

  it('ibex validate --repair mends rows changed behind ibex\'s back on tables with rules, identity and generated columns', async () => {
    for (const name of ['rules_m2', 'identity_m2', 'generated_m2']) {
      await env.query(1, `BEGIN; SET LOCAL session_replication_role = replica;
        UPDATE ${name} SET v = 'changed behind ibex' WHERE id = 1; DELETE FROM ${name} WHERE id = 2;
        INSERT INTO ${name} (id, v) OVERRIDING SYSTEM VALUE VALUES (77777, 'extra'); COMMIT;`);
      const bad = await env.cli('validate', name);
      assert.notEqual(bad.code, 0, `validate ${name} saw no difference: ${bad.out}`);
      const res = await env.cli('validate', name, '--repair', '--from=A');
      assert.equal(res.code, 0, `${res.out} ${res.err}`);
      await same(name, [0, 1]);
      await validateEqual(name);
    }
  });

  describe('ibex add sync accepts what ibex replicates and refuses the rest in one line', () => {
    it('accepts the kinds it replicates (rules, identity key, generated, column order, partitioned, RLS it bypasses, unlogged)', async () => {
      for (const i of [0, 1, 2]) {
        await env.query(i, `
          CREATE TABLE cli_rules (id int PRIMARY KEY, v text);
          CREATE RULE cli_rules_r AS ON UPDATE TO cli_rules DO ALSO NOTIFY cli_rules;
          CREATE TABLE cli_ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, g int GENERATED ALWAYS AS (id * 2) STORED);
          ${i === 1 ? 'CREATE TABLE cli_order (v text, gone int, id int PRIMARY KEY); ALTER TABLE cli_order DROP COLUMN gone;' : 'CREATE TABLE cli_order (id int PRIMARY KEY, v text);'}
          CREATE TABLE cli_parted (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
          CREATE TABLE cli_parted_0 PARTITION OF cli_parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
          CREATE TABLE cli_parted_1 PARTITION OF cli_parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);
          CREATE TABLE cli_rls (id int PRIMARY KEY, v text); ALTER TABLE cli_rls ENABLE ROW LEVEL SECURITY; ALTER TABLE cli_rls FORCE ROW LEVEL SECURITY;
          CREATE UNLOGGED TABLE cli_unlogged (id int PRIMARY KEY, v text);`);
      }
      ok(await env.cli('add', 'sync', 'cli_kinds', 'tables=public.cli_rules,public.cli_ident,public.cli_order,public.cli_parted,public.cli_rls,public.cli_unlogged',
        'dbs=A:source,B:source,C:source'));
      ok(await env.cli('remove', 'sync', 'cli_kinds'));
    });

    it('a GENERATED ALWAYS identity column outside the key (ibex could never update it)', async () => {
      for (const i of [0, 1]) await env.query(i, `CREATE TABLE ident_out (code text PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, v text)`);
      fails(await env.cli('add', 'sync', 'ident_out', 'tables=public.ident_out', 'dbs=A:source,B:source'), 2,
        /column n of table public\.ident_out on db [AB] is GENERATED ALWAYS AS IDENTITY outside the key.*SET GENERATED BY DEFAULT/);
      fails(await env.cli('add', 'sync', 'ident_out', 'tables=public.ident_out', 'dbs=A:source,B:target'), 2, /on db B is GENERATED ALWAYS AS IDENTITY/);
      // Written nowhere but on the source: nothing to refuse.
      await env.query(1, `ALTER TABLE ident_out ALTER COLUMN n SET GENERATED BY DEFAULT`);
      ok(await env.cli('add', 'sync', 'ident_out', 'tables=public.ident_out', 'dbs=A:source,B:target'));
      ok(await env.cli('remove', 'sync', 'ident_out'));
    });

    it('row-level security that applies to ibex\'s role (it would see only some rows)', async () => {
      for (const i of [0, 1]) {
        await env.query(i, `CREATE TABLE rls_x (id int PRIMARY KEY, v text); ALTER TABLE rls_x ENABLE ROW LEVEL SECURITY;
          DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plain_ibex') THEN CREATE ROLE plain_ibex LOGIN; END IF; END $$;
          GRANT ALL ON rls_x TO plain_ibex; GRANT USAGE ON SCHEMA public TO plain_ibex;`);
      }
      const p = env.params(1);
      ok(await env.cli('add', 'db', 'Bplain', `host=${p.host}`, `port=${p.port}`, `dbname=${p.dbname}`, 'user=plain_ibex'));
      fails(await env.cli('add', 'sync', 'rls_x', 'tables=public.rls_x', 'dbs=A:source,Bplain:target'), 2,
        /table public\.rls_x on db Bplain has row-level security that applies to role plain_ibex.*ALTER ROLE plain_ibex BYPASSRLS/);
      // The table's owner is exempt, unless the security is forced on the owner too.
      await env.query(1, `ALTER TABLE rls_x OWNER TO plain_ibex`);
      const c = await connect({ ...p, user: 'plain_ibex' });
      try {
        assert.equal((await tableInfo(c, 'public', 'rls_x'))!.rowSecurityBlocks, false);
        await env.query(1, `ALTER TABLE rls_x FORCE ROW LEVEL SECURITY`);
        assert.equal((await tableInfo(c, 'public', 'rls_x'))!.rowSecurityBlocks, true);
      } finally {
        await c.end();
      }
      fails(await env.cli('add', 'sync', 'rls_x', 'tables=public.rls_x', 'dbs=A:source,Bplain:target'), 2, /forced on its owner.*BYPASSRLS/);
      // Turned on after the sync was made: the runner refuses at load, in one line, for any db.
      const rel: SyncRelation = { id: 1, schema: 'public', name: 'rls_x', reltype: 'table', keyColumns: ['id'], keyTypes: ['integer'], conflictStrategy: null, priority: 0 };
      const c3 = await connect({ ...p, user: 'plain_ibex' });
      try {
        await assert.rejects(buildPlans(await env.client(0), [rel], 'A', [{ db: 'Bplain', client: c3 }]),
          /^IbexError: table public\.rls_x on db Bplain has row-level security that applies to role plain_ibex, and ibex reads and writes with row_security=off: ALTER ROLE plain_ibex BYPASSRLS there, or connect as a superuser$/);
        await assert.rejects(buildPlans(c3, [rel], 'Bplain'), /on db Bplain has row-level security/);
      } finally {
        await c3.end();
      }
      await env.query(1, `ALTER ROLE plain_ibex BYPASSRLS`);
      const c2 = await connect({ ...p, user: 'plain_ibex' });
      try {
        assert.equal((await tableInfo(c2, 'public', 'rls_x'))!.rowSecurityBlocks, false, 'BYPASSRLS lifts it');
      } finally {
        await c2.end();
      }
    });
  });
});

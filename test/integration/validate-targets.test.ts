import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { useClusters } from '../helpers/env.js';
import { setupControl, addSync, closeRunners } from '../helpers/sync.js';
import { openControl } from '../../src/control/connection.js';
import { connectTarget } from '../../src/targets/registry.js';
import { tableSpec } from '../../src/targets/spec.js';
import { tableInfo } from '../../src/db/catalog.js';
import type { Target, TableSpec, TextRow } from '../../src/targets/target.js';

// validate and --repair on a target of another kind (a real SQLite file), compared through
// canonical values against the source: the rows are written into the target directly here, so
// the test does not depend on the engine.
const env = useClusters(1);
const dir = mkdtempSync(join(tmpdir(), 'ibex-vt-'));
const file = join(dir, 'shop.sqlite');
let target: Target;
let spec: TableSpec;
after(async () => {
  await target?.close();
  await closeRunners();
  rmSync(dir, { recursive: true, force: true });
});

async function sourceRows(): Promise<TextRow[]> {
  const rows = await env.query(0, `SELECT to_json(ARRAY[id::text, name, price::text, at::text, tags::text, blob::text])::text AS r FROM item ORDER BY id`);
  return rows.map((x) => JSON.parse(String(x.r)) as TextRow);
}

describe('validate on a target of another kind', () => {
  it('set up: a source table and its twin in SQLite', async () => {
    await env.query(0, `CREATE TABLE item (id int PRIMARY KEY, name text, price numeric(10,2), at timestamptz, tags text[], blob bytea);
      INSERT INTO item SELECT g, 'item ' || g || E' \\t tab', g * 1.5, '2024-05-06 07:08:09.123456+02'::timestamptz + g * interval '1 hour',
                              ARRAY['a', NULL, 'q"uote'], decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex') FROM generate_series(1, 500) g;
      UPDATE item SET name = NULL WHERE id = 7`);
    await setupControl(env, { A: 0 });
    const control = await openControl(env.controlUrl);
    try {
      await control.query(`INSERT INTO ibex.db (name, dbtype, dbname) VALUES ('S', 'sqlite', $1)`, [file]);
    } finally {
      await control.end();
    }
    await addSync(env, 'tosql', { dbs: { A: 'source', S: 'target' }, tables: ['public.item'] });
    const c = await env.client(0);
    spec = tableSpec((await tableInfo(c, 'public', 'item'))!, ['id']);
    target = await connectTarget({ name: 'S', dbtype: 'sqlite', params: { dbname: file } });
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(file);
    for (const stmt of target.createTableSql(spec)) db.exec(stmt);
    db.close();
    await target.begin();
    const out = await target.upsertRows(spec, await sourceRows());
    assert.equal(out.refused.length, 0);
    await target.commit();
  });

  it('says equal when the target holds the same values (in its own types)', async () => {
    const r = await env.cli('validate', 'tosql', '--json');
    assert.equal(r.code, 0, r.out + r.err);
    const doc = JSON.parse(r.out) as { syncs: { dbs: string[]; tables: { rows: Record<string, number>; status: string }[] }[] };
    assert.deepEqual(doc.syncs[0]!.dbs, ['A', 'S']);
    assert.equal(doc.syncs[0]!.tables[0]!.status, 'equal');
    assert.deepEqual(doc.syncs[0]!.tables[0]!.rows, { A: 500, S: 500 });
  });

  it('lists a changed, a missing and an extra row (exit 6), and --repair makes them equal', async () => {
    await target.begin();
    await target.upsertRows(spec, [['3', 'changed on the target', '4.50', '2024-05-06 08:08:09.123456+00', '{a,NULL,"q\\"uote"}', '\\x00ff0003']]);
    await target.deleteKeys(spec, [['4']]);
    await target.upsertRows(spec, [['9999', 'only on the target', null, null, null, null]]);
    await target.commit();
    const r = await env.cli('validate', 'tosql', '--json');
    assert.equal(r.code, 6, r.out + r.err);
    const doc = JSON.parse(r.out) as { differences: number; syncs: { tables: { keys: { key: Record<string, string>; versions: { db: string; row: Record<string, string | null> | null }[] }[] }[] }[] };
    assert.equal(doc.differences, 3);
    const keys = doc.syncs[0]!.tables[0]!.keys;
    assert.deepEqual(keys.map((k) => k.key.id).sort(), ['3', '4', '9999']);
    const three = keys.find((k) => k.key.id === '3')!;
    assert.equal(three.versions.find((v) => v.db === 'S')!.row!.name, 'changed on the target');
    assert.equal(three.versions.find((v) => v.db === 'A')!.row!.name, 'item 3 \t tab');
    const fixed = await env.cli('validate', 'tosql', '--repair', '--from=A');
    assert.equal(fixed.code, 0, fixed.out + fixed.err);
    assert.match(fixed.out, /repaired 3 key\(s\) from A/);
    const again = await env.cli('validate', 'tosql');
    assert.equal(again.code, 0, again.out + again.err);
  });
});

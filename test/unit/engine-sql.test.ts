/**
 * The SQL builders of a run and of the PostgreSQL target, compared as whole texts (whitespace
 * runs collapsed to one space, so indentation may change but nothing else).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TablePlan } from '../../src/engine/plan.js';
import { deleteSql, inlineLoadSql, lazyCopyOutSql, stagedUpsertSql, textSizeSql, truncateKeepingSql, wonCopyOutSql, deletesCopyOutSql } from '../../src/engine/sql/apply.js';
import { classifySql, gatherSql, windowSql } from '../../src/engine/sql/gather.js';
import { fingerprintSql, openSql, textArraySql } from '../../src/engine/sql/open.js';
import { inlineKeysSql, mineSql, wonKeysSql } from '../../src/engine/sql/resolve.js';
import { tempTablesSql } from '../../src/engine/sql/temp.js';
import { onConflictSql, readProgressSql, stampSql, truncateSql, upsertSql, writeProgressSql } from '../../src/targets/postgres/postgres-dialect.js';
import { fenceEntry } from '../../src/targets/target.js';

const flat = (s: string): string => s.replace(/\s+/g, ' ').trim();
const same = (got: string, want: string): void => assert.equal(flat(got), flat(want));

function plan(keys: string[], cols: string[]): TablePlan {
  const q = (n: string): string => `"${n.replaceAll('"', '""')}"`;
  return {
    rel: { id: 1, schema: 'public', name: 't', reltype: 'table', keyColumns: keys, keyTypes: keys.map(() => 'integer'), conflictStrategy: null, priority: 0 },
    label: 'public.t', idx: 3, oid: 1, q: '"public"."t"', delta: '"ibex"."delta_public_t"',
    keys, keyList: keys.map(q).join(', '), cols, colList: cols.map(q).join(', '), nonKeyCols: cols.filter((c) => !keys.includes(c)),
    keyJoin: (a, b) => keys.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(' AND '), fingerprint: '', hasRules: false, inForeignKey: false,
  };
}
const one = plan(['id'], ['id', 'v']);
const two = plan(['a', 'b'], ['a', 'b', 'Va"l']);
const keysOnly = plan(['id'], ['id']);

describe('PostgreSQL dialect', () => {
  it('stamps origin, sync and capture, quoting values', () => {
    same(stampSql({ origin: "it's", sync: 's1', capture: false }),
      `SELECT set_config('ibex.origin', 'it''s', true), set_config('ibex.by', 's1', true), set_config('ibex.nocapture', 'on', true)`);
    same(stampSql({ origin: null, sync: 's1', capture: true }),
      `SELECT set_config('ibex.origin', '', true), set_config('ibex.by', 's1', true), set_config('ibex.nocapture', 'off', true)`);
  });

  it('builds one upsert clause, DO NOTHING for a table of key columns only', () => {
    same(onConflictSql(two), `ON CONFLICT ("a", "b") DO UPDATE SET "Va""l" = EXCLUDED."Va""l"`);
    same(onConflictSql(keysOnly), `ON CONFLICT ("id") DO NOTHING`);
    same(upsertSql(one, 'SELECT "id", "v" FROM x'), `INSERT INTO "public"."t" ("id", "v") OVERRIDING SYSTEM VALUE SELECT "id", "v" FROM x ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`);
  });

  it('truncates with a savepoint and a DELETE fallback', () => {
    assert.deepEqual(truncateSql(one, true), {
      savepoint: 'SAVEPOINT ibex_trunc', truncate: 'TRUNCATE "public"."t" CASCADE', release: 'RELEASE SAVEPOINT ibex_trunc',
      rollback: 'ROLLBACK TO SAVEPOINT ibex_trunc', fallback: 'DELETE FROM "public"."t"',
    });
  });

  it('writes progress rows with quoted values, nothing for no source', () => {
    same(writeProgressSql("s'1", [{ source: 'A', snapshot: '10:20:', run: 7 }]),
      `INSERT INTO ibex.progress (sync, source, snapshot, run) VALUES ('s''1', 'A', '10:20:', 7) ON CONFLICT (sync, source) DO UPDATE SET snapshot = EXCLUDED.snapshot, run = EXCLUDED.run, applied = now();`);
    assert.equal(writeProgressSql('s', []), '');
  });

  it('fences progress rows with the lease epoch: refused when a newer one committed here', () => {
    const sql = writeProgressSql('s', [{ source: 'A', snapshot: '1:2:', run: 3, epoch: 4 }]);
    assert.match(sql, /IF EXISTS \(SELECT 1 FROM ibex\.progress WHERE sync = 's' AND epoch > 4\) THEN\s+RAISE EXCEPTION 'ibex fencing:/);
    assert.match(sql, /\(sync, source, snapshot, run, epoch\)\s+VALUES \('s', 'A', '1:2:', 3, 4\)/);
    assert.match(sql, /epoch = EXCLUDED\.epoch/);
    // Written only over rows of an epoch no newer (a new owner's row committed meanwhile), and refused when not every row was.
    assert.match(sql, /WHERE ibex\.progress\.epoch IS NULL OR ibex\.progress\.epoch <= EXCLUDED\.epoch;\s+GET DIAGNOSTICS n = ROW_COUNT;\s+IF n < 1 THEN\s+RAISE EXCEPTION 'ibex fencing:/);
  });

  it('writes the fence record of a copy with its epoch, and leaves it out when reading progress', () => {
    const sql = writeProgressSql('s', [fenceEntry(9, 5)]);
    assert.match(sql, /VALUES \('s', '\*', '', 9, 5\)/);
    assert.match(sql, /epoch > 5/);
    same(readProgressSql("s'"), `SELECT source, snapshot, run FROM ibex.progress WHERE sync = 's''' AND source <> '*'`);
  });
});

describe('run SQL', () => {
  it('takes the cursor as a parameter or as a quoted literal', () => {
    same(windowSql('s', ['A', "B'"], { param: 1 }),
      `ibex_txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(ibex_txid, $1::pg_snapshot) AND ibex_by IS DISTINCT FROM 's' AND (ibex_origin IS NULL OR ibex_origin NOT IN ('A', 'B'''))`);
    same(windowSql('s', ['A'], { text: "1:2:'" }),
      `ibex_txid >= pg_snapshot_xmin('1:2:'''::pg_snapshot) AND NOT pg_visible_in_snapshot(ibex_txid, '1:2:'''::pg_snapshot) AND ibex_by IS DISTINCT FROM 's' AND (ibex_origin IS NULL OR ibex_origin NOT IN ('A'))`);
  });

  it('inlines the fingerprint values through the literal helper', () => {
    assert.equal(textArraySql(['a', "b'c"]), `ARRAY['a', 'b''c']::text[]`);
    const fp = flat(fingerprintSql([{ schema: 'public', name: "o'k", keyColumns: ['b', 'a'] }]));
    assert.ok(fp.includes(`FROM unnest(ARRAY['public']::text[], ARRAY['o''k']::text[], ARRAY['a,b']::text[]) AS w(s, t, k)`), fp);
    assert.ok(!/\$\d/.test(fp), fp);
  });

  it('opens a run in one text: BEGIN, snapshot and clock, schema check, progress', () => {
    const text = flat(openSql({ serializable: false, replica: true, sync: 's', rels: [] }));
    assert.ok(text.startsWith(`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT set_config('work_mem', '64MB', true), set_config('session_replication_role', 'replica', true), pg_current_snapshot()::text AS snap, extract(epoch FROM clock_timestamp()) * 1000 AS now_ms;`), text);
    assert.ok(text.endsWith(`; SELECT source, snapshot, run FROM ibex.progress WHERE sync = 's' AND source <> '*'`), text);
  });

  it('creates temp tables only the first time, truncates big ones', () => {
    same(tempTablesSql([{ p: keysOnly, step: { create: false, truncate: false, analyze: false } }]),
      `SET LOCAL client_min_messages = warning; DELETE FROM pg_temp.ibex_pend_3; DELETE FROM pg_temp.ibex_all_3; DELETE FROM pg_temp.ibex_mine_3; DELETE FROM pg_temp.ibex_del_3; DELETE FROM pg_temp.ibex_stage_3;`);
    const first = flat(tempTablesSql([{ p: keysOnly, step: { create: true, truncate: true, analyze: true } }]));
    assert.ok(first.includes(`CREATE TEMP TABLE IF NOT EXISTS ibex_stage_3 AS SELECT "id", NULL::text AS ibex_origin FROM "public"."t" WITH NO DATA;`), first);
    assert.ok(first.endsWith(`TRUNCATE pg_temp.ibex_pend_3, pg_temp.ibex_all_3, pg_temp.ibex_mine_3, pg_temp.ibex_del_3, pg_temp.ibex_stage_3; ANALYZE pg_temp.ibex_pend_3, pg_temp.ibex_all_3, pg_temp.ibex_mine_3, pg_temp.ibex_del_3, pg_temp.ibex_stage_3;`), first);
  });

  it('classifies and gathers pending keys with their origin', () => {
    same(classifySql([], 'W', 'A'), `SELECT schemaname || '.' || relname AS label, max(ibex_ts)::text AS ts FROM ibex.truncates WHERE W GROUP BY 1; SELECT 1 WHERE false`);
    same(gatherSql(one, 'W', 'A', { ts: 'ibex_ts', fillAll: false }),
      `WITH ins AS ( INSERT INTO pg_temp.ibex_pend_3 ("id", ibex_ts, ibex_insonly, ibex_origin) SELECT "id", max(ibex_ts), bool_and(ibex_op = 'I'), CASE WHEN min(coalesce(ibex_origin, 'A')) = max(coalesce(ibex_origin, 'A')) THEN min(coalesce(ibex_origin, 'A')) ELSE (array_agg(coalesce(ibex_origin, 'A') ORDER BY ibex_ts DESC))[1] END FROM "ibex"."delta_public_t" WHERE W GROUP BY "id" RETURNING *) SELECT count(*) AS n, bool_and(ibex_insonly) AS insonly, count(DISTINCT ibex_origin) AS origins, min(ibex_origin) AS origin FROM ins`);
  });

  it('files won keys and reads them back per winner', () => {
    same(mineSql(one, 'SELECT 1'),
      `WITH ins AS (INSERT INTO pg_temp.ibex_mine_3 ("id", ibex_origin) SELECT 1 RETURNING "id", ibex_origin) SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM "public"."t" t WHERE t."id" = ins."id")) AS absent, count(*) AS won, to_jsonb(array_agg(DISTINCT ibex_origin))::text AS origins FROM ins`);
    same(wonKeysSql(one, 'B', 'ibex_ts DESC', false),
      `SELECT "id", ibex_origin FROM ( SELECT DISTINCT ON ("id") * FROM pg_temp.ibex_all_3 AS a ORDER BY "id", ibex_ts DESC) w WHERE w.ibex_src = 'B'`);
    same(inlineKeysSql(one, 'A', ['integer'], `[["1","x'"]]`),
      `INSERT INTO pg_temp.ibex_all_3 (ibex_src, "id", ibex_ts, ibex_insonly, ibex_origin) SELECT 'A', (r->>0)::integer, (r->>1)::timestamptz, (r->>2)::boolean, r->>3 FROM json_array_elements('[["1","x''"]]'::json) r`);
  });

  it('deletes by ANY(array) for a small batch on one key, by join otherwise', () => {
    same(deleteSql(one, true, '', `'A'`),
      `DELETE FROM "public"."t" t WHERE t."id" = ANY (ARRAY( SELECT s."id" FROM pg_temp.ibex_del_3 s WHERE s.ibex_origin IS NOT DISTINCT FROM 'A' ))`);
    same(deleteSql(two, true, 'AND s.ctid = $2::tid', '$1'),
      `DELETE FROM "public"."t" t USING pg_temp.ibex_del_3 s WHERE t."a" = s."a" AND t."b" = s."b" AND s.ibex_origin IS NOT DISTINCT FROM $1 AND s.ctid = $2::tid`);
    same(deletesCopyOutSql(one, { small: true }),
      `COPY (SELECT m."id", m.ibex_origin FROM pg_temp.ibex_mine_3 m WHERE NOT EXISTS (SELECT 1 FROM "public"."t" t WHERE t."id" = m."id" OFFSET 0)) TO STDOUT`);
    same(deletesCopyOutSql(one, null), `COPY (SELECT m."id", m.ibex_origin FROM pg_temp.ibex_mine_3 m) TO STDOUT`);
  });

  it('upserts staged rows per origin and loads inline rows through their types', () => {
    const [upsert, ...more] = stagedUpsertSql(one, '', 'NULL::text');
    assert.equal(more.length, 0);
    same(upsert!,
      `INSERT INTO "public"."t" ("id", "v") OVERRIDING SYSTEM VALUE SELECT s."id", s."v" FROM pg_temp.ibex_stage_3 s WHERE s.ibex_origin IS NOT DISTINCT FROM NULL::text ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`);
    // A table with rules takes no ON CONFLICT: update, drop the applied rows from staging, insert the rest.
    assert.deepEqual(stagedUpsertSql({ ...one, hasRules: true }, 'AND s.ctid = $2::tid', '$1').map(flat), [
      `UPDATE "public"."t" t SET "v" = s."v" FROM pg_temp.ibex_stage_3 s WHERE (s.ibex_origin IS NOT DISTINCT FROM $1 AND s.ctid = $2::tid) AND t."id" = s."id"`,
      `WITH applied AS (DELETE FROM pg_temp.ibex_stage_3 s USING "public"."t" t WHERE (s.ibex_origin IS NOT DISTINCT FROM $1 AND s.ctid = $2::tid) AND t."id" = s."id") SELECT WHERE false`,
      `INSERT INTO "public"."t" ("id", "v") OVERRIDING SYSTEM VALUE SELECT s."id", s."v" FROM pg_temp.ibex_stage_3 s WHERE s.ibex_origin IS NOT DISTINCT FROM $1 AND s.ctid = $2::tid`,
    ]);
    same(inlineLoadSql(one, ['integer', 'text'], `[["1","a\\\\b"]]`),
      `INSERT INTO pg_temp.ibex_stage_3 ("id", "v", ibex_origin) SELECT (r->>0)::integer, (r->>1)::text, r->>2 FROM json_array_elements('[["1","a\\\\b"]]'::json) r`);
  });

  it('copies won rows by join or by index probes, and lazy rows from the delta window', () => {
    same(wonCopyOutSql(one, false, true), `COPY (SELECT t."id", t."v", m.ibex_origin FROM "public"."t" t JOIN pg_temp.ibex_mine_3 m ON t."id" = m."id") TO STDOUT`);
    same(wonCopyOutSql(one, true, false), `COPY (SELECT t."id", t."v" FROM pg_temp.ibex_mine_3 m CROSS JOIN LATERAL (SELECT * FROM "public"."t" t WHERE t."id" = m."id" OFFSET 0) t) TO STDOUT`);
    same(lazyCopyOutSql(two, 'W'), `COPY (SELECT t."a", t."b", t."Va""l" FROM "public"."t" t WHERE (t."a", t."b") IN ( SELECT "a", "b" FROM "ibex"."delta_public_t" WHERE W)) TO STDOUT`);
  });

  it('keeps pending and held rows when applying a truncate', () => {
    same(truncateKeepingSql(one, true, false), `DELETE FROM "public"."t" t WHERE true AND NOT EXISTS (SELECT 1 FROM pg_temp.ibex_pend_3 m WHERE t."id" = m."id")`);
  });
});

describe('the size of a value\'s COPY text', () => {
  it('reads text-like values\' length without building their text, and arrays of them by their stored size', () => {
    for (const t of ['text', 'character varying', 'character varying(20)', 'character(3)', 'json']) assert.equal(textSizeSql('c', t, 'stored'), 'coalesce(octet_length(c::text), 0)', t);
    // Turning a text[] of 600 MB into its text would itself pass the 1 GB limit.
    for (const t of ['text[]', 'character varying(20)[]', 'json[]', 'jsonb', 'integer']) assert.equal(textSizeSql('c', t, 'stored'), 'coalesce(pg_column_size(c), 0)', t);
    assert.equal(textSizeSql('c', 'bytea', 'stored'), 'coalesce(2 * octet_length(c) + 2, 0)');
  });
});

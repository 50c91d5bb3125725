/** Which keys a local write raced: visibility of a 32-bit xid in a snapshot, and the raced-key rule. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { racedKeys, visibleIn } from '../../src/engine/run/raced.js';
import { committedHoldersSql, committedVersionsSql, leaveOutSql, requeueSql, stagedClaimSql } from '../../src/engine/sql/raced.js';
import type { TablePlan } from '../../src/engine/plan.js';

describe('visibleIn', () => {
  it('sees ids below xmin, not those at or past xmax, nor those in progress', () => {
    const snap = '1000:1010:1003,1007';
    assert.equal(visibleIn(snap, '999'), true);
    assert.equal(visibleIn(snap, '1002'), true);
    assert.equal(visibleIn(snap, '1003'), false);
    assert.equal(visibleIn(snap, '1010'), false);
    assert.equal(visibleIn(snap, '1500'), false);
    assert.equal(visibleIn(snap, '2'), true);
  });
  it('places a 32-bit id in the snapshot\'s epoch', () => {
    // Epoch 1: xmax is 2^32 + 5; an id of 4294967290 is from epoch 0, just before (visible).
    const snap = `${2 ** 32 + 1}:${2 ** 32 + 5}:`;
    assert.equal(visibleIn(snap, '4294967290'), true);
    assert.equal(visibleIn(snap, '7'), false);
    assert.equal(visibleIn(snap, '2'), true);
  });
});

describe('racedKeys', () => {
  const snap = '100:110:';
  it('finds rows written, inserted or deleted after the snapshot, and nothing else', () => {
    const seen: [...string[], string | null][] = [
      ['1', '50'], // unchanged
      ['2', '60'], // updated after the snapshot (now 120)
      ['3', null], // inserted after the snapshot
      ['4', '70'], // deleted after the snapshot
      ['5', '130'], // written by the run itself, not committed (absent outside)
      ['6', null], // absent in both
    ];
    const now: [...string[], string | null][] = [['1', '50'], ['2', '120'], ['3', '125']];
    assert.deepEqual(racedKeys(seen, now, snap), [['2'], ['3'], ['4']]);
  });
  it('keeps composite keys whole', () => {
    assert.deepEqual(racedKeys([['1', 'a', '50'], ['1', 'b', '50']], [['1', 'a', '50'], ['1', 'b', '111']], snap), [['1', 'b']]);
  });
});

describe('raced SQL', () => {
  const flat = (s: string): string => s.replace(/\s+/g, ' ').trim();
  const p = {
    keys: ['a', 'b'], keyList: '"a", "b"', q: '"public"."t"', delta: '"ibex"."delta_public_t"', idx: 3,
    keyJoin: (x: string, y: string) => `${x}."a" = ${y}."a" AND ${x}."b" = ${y}."b"`,
  } as unknown as TablePlan;
  it('looks committed rows up by the typed key (its index), or as text when a type is unknown', () => {
    assert.equal(flat(committedVersionsSql(p, ['integer', 'text'])),
      `SELECT coalesce(json_agg(json_build_array(t."a"::text, t."b"::text, t.xmin::text)), '[]')::text AS v FROM "public"."t" t WHERE ("t"."a", "t"."b") IN (SELECT (x->>0)::integer, (x->>1)::text FROM json_array_elements($1::json) x)`
        .replace('("t"."a", "t"."b")', '(t."a", t."b")'));
    assert.match(flat(committedVersionsSql(p, ['integer', undefined])), /WHERE \(t\."a"::text, t\."b"::text\) IN \(SELECT \(x->>0\), \(x->>1\) FROM/);
  });
  it('leaves keys out of staged work and queues changes again as op R with their time and origin', () => {
    assert.equal(flat(leaveOutSql(p, 'del')),
      `DELETE FROM pg_temp.ibex_del_3 s WHERE (s."a"::text, s."b"::text) IN (SELECT (x->>0), (x->>1) FROM json_array_elements($1::json) x)`);
    assert.equal(flat(requeueSql(p)),
      `INSERT INTO "ibex"."delta_public_t" ("a", "b", ibex_op, ibex_origin, ibex_by, ibex_ts) SELECT m."a", m."b", 'R', nullif(m.ibex_origin, $2::text), NULL, m.ibex_ts FROM pg_temp.ibex_pend_3 m WHERE (m."a"::text, m."b"::text) IN (SELECT (x->>0), (x->>1) FROM json_array_elements($1::json) x)`);
  });
  it('reads a staged claim as text and looks for its committed holders by the typed values, NULLs equal under NULLS NOT DISTINCT', () => {
    assert.equal(flat(stagedClaimSql(p, ['e'])),
      `SELECT json_build_array(s."a"::text, s."b"::text)::text AS key, json_build_array(s."e"::text)::text AS vals FROM pg_temp.ibex_stage_3 s WHERE s.ctid = $1::tid`);
    assert.equal(flat(committedHoldersSql(p, ['e', 'f'], ['text', undefined], false)),
      `SELECT t.xmin::text AS x FROM "public"."t" t WHERE t."e" = ($1::json->>0)::text AND t."f"::text = ($1::json->>1) AND (t."a"::text, t."b"::text) IS DISTINCT FROM (($2::json->>0), ($2::json->>1))`);
    assert.match(flat(committedHoldersSql(p, ['e'], ['text'], true)), /WHERE t\."e" IS NOT DISTINCT FROM \(\$1::json->>0\)::text AND/);
  });
});

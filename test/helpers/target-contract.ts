/**
 * The one contract every target kind passes (STYLE, "Layout"): a test file per kind calls
 * `targetContract` with a factory for a fresh, connected-or-not target and gets the same cases.
 *
 * Rows go in as PostgreSQL text (what the engine hands a target) and come back through `scan`
 * as canonical text; the contract compares them with `canonicalText` of the input, so a target
 * passes only if it stores every value exactly.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { canonicalText } from '../../src/targets/codec.js';
import { fenceEntry, type ColumnSpec, type KeyRow, type ProgressEntry, type Target, type TableSpec, type TextRow } from '../../src/targets/target.js';

/** What a kind's factory returns: a target (not yet connected) and how to remove what the fixture made. */
export interface ContractFixture {
  target: Target;
  cleanup(): Promise<void>;
}

/**
 * Makes a fresh target whose database holds these tables, empty (created by the fixture, e.g.
 * from `target.createTableSql`; schemaless kinds ignore them). Called once per case.
 */
export type MakeTarget = (tables: readonly TableSpec[]) => Promise<ContractFixture>;

/** The cases of the contract; a kind may skip one with a reason. */
export type ContractCase =
  | 'check'
  | 'roundTrip'
  | 'updateByKey'
  | 'deleteKeys'
  | 'truncate'
  | 'progress'
  | 'fencing'
  | 'replay'
  | 'rollback'
  | 'awkward'
  | 'specials'
  | 'bulk';

/** A value a kind cannot hold: the contract expects it back as a RefusedRow naming the column. */
export interface RefusedValue {
  type: string;
  value: string;
}

export interface ContractOptions {
  /** Cases that do not apply to this kind, each with the reason (printed as the skip message). */
  skip?: Partial<Record<ContractCase, string>>;
  /** Rows in the bulk case: more than the kind's parameter limit allows in one statement. */
  bulkRows?: number;
  /** Special values (±infinity, NaN, out-of-range) this kind refuses; every other special must round-trip. */
  refused?: readonly RefusedValue[];
  /** Column types this kind does not take in the typed round trip, each with the reason. */
  omitTypes?: Readonly<Record<string, string>>;
}

let tableSeq = 0;
function table(prefix: string, columns: [string, string][], keys: string[]): TableSpec {
  tableSeq += 1;
  const name = `${prefix}_${process.pid}_${tableSeq}`;
  const cols: ColumnSpec[] = columns.map(([n, type]) => ({ name: n, type, notNull: keys.includes(n) }));
  return { label: `public.${name}`, schema: 'public', name, targetName: name, columns: cols, keys };
}

const TYPED_COLUMNS: [string, string][] = [
  ['id', 'bigint'],
  ['i4', 'integer'],
  ['i2', 'smallint'],
  ['n', 'numeric(30,9)'],
  ['nu', 'numeric'],
  ['f8', 'double precision'],
  ['f4', 'real'],
  ['b', 'boolean'],
  ['by', 'bytea'],
  ['j', 'json'],
  ['jb', 'jsonb'],
  ['u', 'uuid'],
  ['d', 'date'],
  ['ts', 'timestamp without time zone'],
  ['tz', 'timestamp with time zone'],
  ['t', 'time without time zone'],
  ['iv', 'interval'],
  ['vc', 'character varying(20)'],
  ['ch', 'character(3)'],
  ['tx', 'text'],
  ['ia', 'integer[]'],
  ['ta', 'text[]'],
  ['en', 'public.mood'],
];

const TYPED_ROWS: TextRow[] = [
  ['1', '2147483647', '-32768', '1.500000000', '12345678901234567890.123456789', '0.1', '0.1', 't', '\\x00ff', '{"b": 1, "a": [1, 2]}', '{"a": [1, 2], "b": 1}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-12-04', '2026-12-04 20:26:00.123456', '2026-12-04 20:26:00.123456+00', '23:59:59.999999',
    '1 year 2 mons -3 days +04:05:06.789', 'hello', 'ab ', 'plain', '{1,2,NULL}', '{"a b","c\\"d",NULL}', 'happy'],
  ['2', '-2147483648', '32767', '-0.000000001', '-1', '-1.7976931348623157e+308', '3.4028235e+38', 'f', '\\x', '[]', '{}',
    '00000000-0000-0000-0000-000000000000', '1000-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '00:00:00',
    '00:00:00', '', '   ', '', '{}', '{}', 'sad'],
  ['9223372036854775807', null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
  ['-9223372036854775808', '0', '0', '0', '0.5', '5e-324', '1e-45', 't', '\\xdeadbeef', '"x"', 'null',
    'ffffffff-ffff-ffff-ffff-ffffffffffff', '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:08+00', '12:00:00',
    '-100:00:00.5', 'ünïcødé 😀', 'x', 'tab\there', '{{1,2},{3,4}}', '{NULL}', 'ok'],
];

const canon = (t: TableSpec, rows: readonly TextRow[]): TextRow[] =>
  rows.map((r) => r.map((v, i) => canonicalText((t.columns[i] as ColumnSpec).type, v)));

function keyOf(t: TableSpec, row: TextRow): KeyRow {
  return t.keys.map((k) => row[t.columns.findIndex((c) => c.name === k)] ?? null);
}

const sortRows = (rows: TextRow[]): TextRow[] => [...rows].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

async function scanAll(target: Target, t: TableSpec): Promise<TextRow[]> {
  const out: TextRow[] = [];
  for await (const r of target.scan(t)) out.push(r);
  return out;
}

async function assertTable(target: Target, t: TableSpec, rows: readonly TextRow[]): Promise<void> {
  const got = sortRows(await scanAll(target, t));
  const want = sortRows(canon(t, rows));
  assert.equal(got.length, want.length, `${t.targetName}: row count`);
  for (let i = 0; i < want.length; i++) assert.deepEqual(got[i], want[i], `${t.targetName}: row ${i}`);
}

const sortProgress = (e: ProgressEntry[]): ProgressEntry[] => [...e].sort((a, b) => (a.source < b.source ? -1 : 1));

/** Apply one run: begin, deletes, upserts, progress, commit (rollback on failure, as the engine does). */
async function run(target: Target, sync: string, progress: ProgressEntry[], work: (t: Target) => Promise<void>): Promise<void> {
  await target.begin();
  try {
    await target.readProgress(sync);
    await work(target);
    await target.writeProgress(sync, progress);
    await target.commit();
  } catch (e) {
    await target.rollback();
    throw e;
  }
}

async function progressOf(target: Target, sync: string): Promise<ProgressEntry[] | 'missing'> {
  await target.begin();
  try {
    const p = await target.readProgress(sync);
    return p === 'missing' ? p : sortProgress(p);
  } finally {
    await target.rollback();
  }
}

/** Register the contract's cases for one target kind under `describe(name)`. */
export function targetContract(name: string, makeTarget: MakeTarget, opts: ContractOptions = {}): void {
  const skip = opts.skip ?? {};
  const omit = opts.omitTypes ?? {};

  describe(`${name}: target contract`, () => {
    const fixtures: ContractFixture[] = [];
    const open = async (tables: TableSpec[]): Promise<Target> => {
      const f = await makeTarget(tables);
      fixtures.push(f);
      await f.target.connect();
      return f.target;
    };
    after(async () => {
      for (const f of fixtures) {
        await f.target.close().catch(() => undefined);
        await f.cleanup();
      }
    });
    const caseIt = (c: ContractCase, title: string, fn: () => Promise<void>): void => {
      const reason = skip[c];
      if (reason !== undefined) it(title, { skip: reason }, () => undefined);
      else it(title, fn);
    };

    const typedIdx = TYPED_COLUMNS.map((c, i) => [c, i] as const).filter(([[, type]]) => omit[type] === undefined);
    const typedTable = (): TableSpec => table('typed', typedIdx.map(([c]) => c), ['id']);
    const typedRows = (rows: TextRow[]): TextRow[] => rows.map((r) => typedIdx.map(([, i]) => r[i] ?? null));

    caseIt('check', 'check() finds no problem in tables laid out as the fixture made them', async () => {
      const t = typedTable();
      const pair = table('chk', [['a', 'integer'], ['b', 'text'], ['v', 'jsonb']], ['a', 'b']);
      const target = await open([t, pair]);
      assert.deepEqual(await target.check([t, pair]), []);
      assert.ok((await target.probe()).version.length > 0);
    });

    caseIt('roundTrip', 'stores every column type so that scan gives back the canonical text of the input', async () => {
      const t = typedTable();
      const target = await open([t]);
      const rows = typedRows(TYPED_ROWS);
      await run(target, 's1', [{ source: 'A', snapshot: '10:10:', run: 1 }], async (x) => {
        const out = await x.upsertRows(t, rows);
        assert.deepEqual(out.refused, []);
        assert.equal(out.applied, rows.length);
      });
      await assertTable(target, t, rows);
    });

    caseIt('updateByKey', 'replaces a row by its key, including setting a column to NULL and back', async () => {
      const t = table('upd', [['k', 'integer'], ['a', 'text'], ['b', 'numeric(10,2)']], ['k']);
      const target = await open([t]);
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        await x.upsertRows(t, [['1', 'one', '1.50'], ['2', 'two', '2.00']]);
      });
      await run(target, 's1', [{ source: 'A', snapshot: '2:2:', run: 2 }], async (x) => {
        const out = await x.upsertRows(t, [['1', null, '3.25'], ['3', 'three', null]]);
        assert.equal(out.applied, 2);
      });
      await assertTable(target, t, [['1', null, '3.25'], ['2', 'two', '2.00'], ['3', 'three', null]]);
      await run(target, 's1', [{ source: 'A', snapshot: '3:3:', run: 3 }], async (x) => {
        await x.upsertRows(t, [['1', 'back', '0.01']]);
      });
      await assertTable(target, t, [['1', 'back', '0.01'], ['2', 'two', '2.00'], ['3', 'three', null]]);
    });

    caseIt('deleteKeys', 'deletes by composite key, counts only rows that were there, and ignores absent keys', async () => {
      const t = table('del', [['a', 'integer'], ['b', 'text'], ['v', 'text']], ['a', 'b']);
      const target = await open([t]);
      const rows: TextRow[] = [['1', 'x', 'p'], ['1', 'y', 'q'], ['2', 'x', 'r'], ['2', 'y:\\', 's']];
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        await x.upsertRows(t, rows);
      });
      let deleted = -1;
      await run(target, 's1', [{ source: 'A', snapshot: '2:2:', run: 2 }], async (x) => {
        deleted = await x.deleteKeys(t, [['1', 'y'], ['2', 'y:\\'], ['3', 'x'], ['1', 'z']]);
      });
      assert.equal(deleted, 2);
      await assertTable(target, t, [['1', 'x', 'p'], ['2', 'x', 'r']]);
      await run(target, 's1', [{ source: 'A', snapshot: '3:3:', run: 3 }], async (x) => {
        assert.equal(await x.deleteKeys(t, []), 0);
        assert.equal(await x.deleteKeys(t, [['9', 'none']]), 0);
      });
      await assertTable(target, t, [['1', 'x', 'p'], ['2', 'x', 'r']]);
    });

    caseIt('truncate', 'truncate removes every row of that table and no other', async () => {
      const t = table('trn', [['k', 'integer'], ['v', 'text']], ['k']);
      const other = table('keep', [['k', 'integer'], ['v', 'text']], ['k']);
      const target = await open([t, other]);
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        await x.upsertRows(t, [['1', 'a'], ['2', 'b']]);
        await x.upsertRows(other, [['1', 'kept']]);
      });
      await run(target, 's1', [{ source: 'A', snapshot: '2:2:', run: 2 }], async (x) => {
        await x.truncate(t);
        await x.upsertRows(t, [['3', 'after']]);
      });
      await assertTable(target, t, [['3', 'after']]);
      await assertTable(target, other, [['1', 'kept']]);
    });

    caseIt('progress', 'keeps progress per sync and per source, the newest write winning', async () => {
      const t = table('prg', [['k', 'integer']], ['k']);
      const target = await open([t]);
      assert.deepEqual(await progressOf(target, 'alpha'), []);
      await run(target, 'alpha', [{ source: 'A', snapshot: '100:105:101,103', run: 7 }, { source: 'B', snapshot: '5:5:', run: 7 }], async () => undefined);
      await run(target, 'beta', [{ source: 'A', snapshot: '1:1:', run: 1 }], async () => undefined);
      assert.deepEqual(await progressOf(target, 'alpha'), [
        { source: 'A', snapshot: '100:105:101,103', run: 7 },
        { source: 'B', snapshot: '5:5:', run: 7 },
      ]);
      assert.deepEqual(await progressOf(target, 'beta'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      await run(target, 'alpha', [{ source: 'A', snapshot: '200:200:', run: 8 }], async () => undefined);
      assert.deepEqual(await progressOf(target, 'alpha'), [
        { source: 'A', snapshot: '200:200:', run: 8 },
        { source: 'B', snapshot: '5:5:', run: 7 },
      ]);
      assert.deepEqual(await progressOf(target, 'gamma'), []);
    });

    caseIt('fencing', 'refuses progress of an older lease epoch than any recorded for the sync, leaves the fence record out of progress', async () => {
      const t = table('fnc', [['k', 'integer'], ['v', 'text']], ['k']);
      const target = await open([t]);
      await run(target, 'f', [{ source: 'A', snapshot: '1:1:', run: 1, epoch: 2 }], async (x) => {
        await x.upsertRows(t, [['1', 'epoch 2']]);
      });
      // A daemon that lost the lease (epoch 1) commits nothing where epoch 2 committed.
      await assert.rejects(run(target, 'f', [{ source: 'A', snapshot: '2:2:', run: 2, epoch: 1 }], async () => undefined), /ibex fencing:/);
      assert.deepEqual(await progressOf(target, 'f'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      // A copy of the new owner (epoch 3) writes only the fence record; epoch 2 is refused after it.
      await run(target, 'f', [fenceEntry(3, 3)], async (x) => {
        await x.upsertRows(t, [['1', 'epoch 3']]);
      });
      await assert.rejects(run(target, 'f', [fenceEntry(4, 2)], async () => undefined), /ibex fencing:/);
      await assert.rejects(run(target, 'f', [{ source: 'A', snapshot: '3:3:', run: 4, epoch: 2 }], async () => undefined), /ibex fencing:/);
      assert.deepEqual(await progressOf(target, 'f'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      // The same epoch, a newer one, and a run outside any lease go through; other syncs are not fenced by this one.
      await run(target, 'f', [{ source: 'A', snapshot: '5:5:', run: 5, epoch: 3 }], async () => undefined);
      await run(target, 'f', [{ source: 'A', snapshot: '6:6:', run: 6, epoch: 7 }], async () => undefined);
      await run(target, 'f', [{ source: 'A', snapshot: '7:7:', run: 7 }], async () => undefined);
      await run(target, 'g', [{ source: 'A', snapshot: '1:1:', run: 8, epoch: 1 }], async () => undefined);
      assert.deepEqual(await progressOf(target, 'f'), [{ source: 'A', snapshot: '7:7:', run: 7 }]);
      await assert.rejects(run(target, 'f', [{ source: 'A', snapshot: '8:8:', run: 9, epoch: 6 }], async () => undefined), /ibex fencing:/);
      await assertTable(target, t, [['1', 'epoch 3']]);
    });

    caseIt('replay', 'replaying the same run (same rows, same progress) leaves the same data and progress', async () => {
      const t = table('rpl', [['k', 'text'], ['v', 'integer']], ['k']);
      const target = await open([t]);
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        await x.upsertRows(t, [['a', '1'], ['b', '2'], ['c', '3']]);
      });
      const second = async (x: Target): Promise<void> => {
        await x.deleteKeys(t, [['b']]);
        await x.upsertRows(t, [['a', '10'], ['d', '4']]);
      };
      const prog = [{ source: 'A', snapshot: '2:3:2', run: 2 }];
      await run(target, 's1', prog, second);
      await run(target, 's1', prog, second);
      await assertTable(target, t, [['a', '10'], ['c', '3'], ['d', '4']]);
      assert.deepEqual(await progressOf(target, 's1'), prog);
    });

    caseIt('rollback', 'rollback undoes the data and the progress of the run', async () => {
      const t = table('rbk', [['k', 'integer'], ['v', 'text']], ['k']);
      const target = await open([t]);
      assert.ok(target.caps.transactional, 'a kind without transactions must skip this case');
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        await x.upsertRows(t, [['1', 'a'], ['2', 'b']]);
      });
      await target.begin();
      await target.readProgress('s1');
      await target.upsertRows(t, [['1', 'changed'], ['3', 'new']]);
      await target.deleteKeys(t, [['2']]);
      await target.truncate(t);
      await target.writeProgress('s1', [{ source: 'A', snapshot: '9:9:', run: 9 }]);
      await target.rollback();
      await target.rollback();
      await assertTable(target, t, [['1', 'a'], ['2', 'b']]);
      assert.deepEqual(await progressOf(target, 's1'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
    });

    caseIt('awkward', 'stores awkward text and bytes exactly: quotes, backslashes, \\N, control characters, emoji, empty vs NULL, 1 MB', async () => {
      const t = table('awk', [['k', 'text'], ['s', 'text'], ['by', 'bytea'], ['n', 'numeric'], ['tz', 'timestamp with time zone']], ['k']);
      const target = await open([t]);
      const mb = 'x'.repeat(1 << 20);
      const bytes = Buffer.alloc(1 << 20);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
      const rows: TextRow[] = [
        ["quote'\"", "it's a \"test\"", '\\x27', '1.50', '2026-12-04 20:26:00.000001+00'],
        ['back\\slash', 'C:\\path\\', '\\x5c', '12345678901234567890.123456789', '1999-12-31 23:59:59.999999+00'],
        ['\\N', '\\N', '\\x5c4e', '-0.000001', '2000-01-01 00:00:00+00'],
        ['tab\tnl\n', 'a\tb\nc\r\nd', '\\x090a0d', '0', '1970-01-01 00:00:00.5+00'],
        ['emoji😀', 'ünïcødé 😀 日本', '\\xf09f9880', '100', '2262-04-11 23:47:16.854775+00'],
        ['empty', '', '\\x', '1', '1000-01-01 00:00:00+00'],
        ['null', null, null, null, null],
        ['a:b\\c', 'key with colon and backslash', '\\x00', '7', '2038-01-19 03:14:08+00'],
        ['big', mb, byteaOf(bytes), '99999999999999999999999999999.999999999', '2026-06-30 12:00:00.999999+00'],
      ];
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        const out = await x.upsertRows(t, rows);
        assert.deepEqual(out.refused, []);
      });
      await assertTable(target, t, rows);
      const nulled: TextRow[] = [['emoji😀', null, null, null, null], ['empty', null, '\\x', null, null]];
      await run(target, 's1', [{ source: 'A', snapshot: '2:2:', run: 2 }], async (x) => {
        await x.upsertRows(t, nulled);
      });
      const after = rows.map((r) => nulled.find((n) => n[0] === r[0]) ?? r);
      await assertTable(target, t, after);
      await run(target, 's1', [{ source: 'A', snapshot: '3:3:', run: 3 }], async (x) => {
        assert.equal(await x.deleteKeys(t, [["quote'\""], ['back\\slash'], ['\\N'], ['a:b\\c'], ['emoji😀']]), 5);
      });
      await assertTable(target, t, after.filter((r) => !["quote'\"", 'back\\slash', '\\N', 'a:b\\c', 'emoji😀'].includes(r[0] as string)));
    });

    caseIt('specials', 'special values either round-trip or come back as RefusedRow naming the column, while the other rows apply', async () => {
      const specials: [string, string][] = [
        ['numeric', 'NaN'],
        ['numeric', 'Infinity'],
        ['numeric', '-Infinity'],
        ['numeric', '1' + '0'.repeat(69)],
        ['double precision', 'NaN'],
        ['double precision', 'Infinity'],
        ['double precision', '-Infinity'],
        ['real', 'NaN'],
        ['timestamp with time zone', 'infinity'],
        ['timestamp with time zone', '-infinity'],
        ['timestamp with time zone', '0044-03-15 12:00:00+00 BC'],
        ['timestamp with time zone', '20000-01-01 00:00:00+00'],
        ['timestamp without time zone', 'infinity'],
        ['date', '-infinity'],
        ['date', '0001-01-01 BC'],
      ];
      const refused = opts.refused ?? [];
      for (const r of refused) {
        assert.ok(specials.some(([ty, v]) => ty === r.type && v === r.value), `refused value ${r.type} ${r.value} is not one the contract tries`);
      }
      const tables = specials.map(([type]) => table('spc', [['k', 'integer'], ['v', type]], ['k']));
      const target = await open(tables);
      for (let i = 0; i < specials.length; i++) {
        const [type, value] = specials[i] as [string, string];
        const t = tables[i] as TableSpec;
        const expectRefused = refused.some((r) => r.type === type && r.value === value);
        const rows: TextRow[] = [['1', null], ['2', value], ['3', null]];
        let out: Awaited<ReturnType<Target['upsertRows']>> = { applied: 0, refused: [] };
        await run(target, 's1', [{ source: 'A', snapshot: `${i + 1}:${i + 1}:`, run: i + 1 }], async (x) => {
          out = await x.upsertRows(t, rows);
        });
        if (expectRefused) {
          assert.equal(out.applied, 2, `${type} ${value}: the other rows apply`);
          assert.equal(out.refused.length, 1, `${type} ${value}: refused`);
          assert.deepEqual(out.refused[0]?.key, ['2']);
          assert.match(out.refused[0]?.reason ?? '', /\bv\b/, `${type} ${value}: the reason names the column`);
          assert.ok(!(out.refused[0]?.reason ?? '').includes('\n'), 'the reason is one line');
          await assertTable(target, t, [['1', null], ['3', null]]);
        } else {
          assert.deepEqual(out.refused, [], `${type} ${value}: stored`);
          await assertTable(target, t, rows);
        }
      }
    });

    caseIt('bulk', 'batches upserts and deletes above the server parameter limit', async () => {
      const n = opts.bulkRows ?? 70_000;
      const t = table('blk', [['k', 'bigint']], ['k']);
      const w = table('blkw', [['k', 'integer'], ['v', 'text']], ['k']);
      const target = await open([t, w]);
      const rows: TextRow[] = Array.from({ length: n }, (_, i) => [String(i)]);
      const wide: TextRow[] = Array.from({ length: n }, (_, i) => [String(i), `v${i}`]);
      await run(target, 's1', [{ source: 'A', snapshot: '1:1:', run: 1 }], async (x) => {
        assert.equal((await x.upsertRows(t, rows)).applied, n);
        assert.equal((await x.upsertRows(w, wide)).applied, n);
      });
      await run(target, 's1', [{ source: 'A', snapshot: '2:2:', run: 2 }], async (x) => {
        assert.equal((await x.upsertRows(t, rows)).applied, n);
        assert.equal(await x.deleteKeys(w, wide.filter((_, i) => i % 2 === 0).map((r) => keyOf(w, r))), Math.ceil(n / 2));
      });
      await assertTable(target, t, rows);
      await assertTable(target, w, wide.filter((_, i) => i % 2 === 1));
    });
  });
}

function byteaOf(b: Buffer): string {
  return '\\x' + b.toString('hex');
}

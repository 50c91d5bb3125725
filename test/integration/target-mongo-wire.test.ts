/**
 * The MongoDB target against a scripted wire peer (no MongoDB server can run here): the exact
 * commands and documents the official driver sends for ibex, and how ibex reacts to the replies.
 * This checks what ibex sends, not how a real server behaves.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Binary, Decimal128, Long } from 'mongodb';
import { IbexError } from '../../src/errors.js';
import type { TableSpec, Target } from '../../src/targets/target.js';
import { createTarget } from '../../src/targets/mongo/mongo-target.js';
import { peerBson, startMongoWire, type MongoWire } from '../helpers/mongo-wire.js';
import { freePort } from '../../src/cluster/ports.js';
import { targetContract } from '../helpers/target-contract.js';

function table(targetName: string, columns: [string, string][], keys: string[]): TableSpec {
  return {
    label: `public.${targetName}`,
    schema: 'public',
    name: targetName,
    targetName,
    columns: columns.map(([name, type]) => ({ name, type, notNull: keys.includes(name) })),
    keys,
  };
}

const ITEMS = table(
  'items',
  [
    ['id', 'bigint'],
    ['price', 'numeric(12,2)'],
    ['huge', 'numeric'],
    ['at', 'timestamp with time zone'],
    ['fine', 'timestamp with time zone'],
    ['blob', 'bytea'],
    ['u', 'uuid'],
    ['doc', 'jsonb'],
    ['nums', 'integer[]'],
    ['ok', 'boolean'],
    ['n', 'integer'],
    ['note', 'text'],
  ],
  ['id'],
);

const PAIRS = table('pairs', [['a', 'integer'], ['b', 'text'], ['v', 'text']], ['b', 'a']);

describe('mongo target on the wire', () => {
  let wire: MongoWire;
  let target: Target;

  before(async () => {
    wire = await startMongoWire();
    target = createTarget({ name: 'm1', kind: 'mongo', conn: wire.url, dbname: 'app' });
    await target.connect();
  });
  after(async () => {
    await target?.close();
    await wire?.close();
  });
  beforeEach(() => {
    wire.reset();
  });

  it('reports the server version', async () => {
    assert.deepEqual(await target.probe(), { version: 'MongoDB 7.0.99-wire-peer' });
  });

  it('sends one unordered update of upserting replaces with typed values, under {w: majority, j: true}', async () => {
    const huge = '1234567890123456789012345678901234567890.5';
    const out = await target.upsertRows(ITEMS, [
      ['9007199254740993', '12.50', huge, '2024-03-01 10:20:30.123+00', '2024-03-01 10:20:30.123456+00', '\\x00ff', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": [1, 2.5], "a": "x"}', '{1,NULL,3}', 't', '7', null],
    ]);
    assert.deepEqual(out, { applied: 1, refused: [] });
    const writes = wire.writes();
    assert.deepEqual(writes.map((c) => c.name), ['update']);
    const cmd = writes[0]!;
    assert.equal(cmd.doc.update, 'items');
    assert.equal(cmd.db, 'app');
    assert.equal(cmd.doc.ordered, false);
    assert.deepEqual(cmd.doc.writeConcern, { w: 'majority', j: true });
    assert.equal(cmd.items.length, 1);
    const op = cmd.items[0]!;
    assert.equal(op.upsert, true);
    assert.notEqual(op.multi, true);
    assert.ok(op.q._id instanceof Long);
    assert.equal(op.q._id.toString(), '9007199254740993');
    const u = op.u;
    assert.deepEqual(Object.keys(u), ['_id', 'id', 'price', 'huge', 'at', 'fine', 'blob', 'u', 'doc', 'nums', 'ok', 'n']);
    assert.ok(u._id instanceof Long && u.id instanceof Long);
    assert.equal(u.id.toString(), '9007199254740993');
    assert.ok(u.price instanceof Decimal128);
    assert.equal(u.price.toString(), '12.5');
    assert.equal(u.huge, huge, 'a numeric beyond 34 digits stays exact text');
    assert.ok(u.at instanceof Date);
    assert.equal(u.at.toISOString(), '2024-03-01T10:20:30.123Z');
    assert.equal(u.fine, '2024-03-01T10:20:30.123456Z', 'sub-millisecond time is kept as exact text');
    assert.ok(u.blob instanceof Binary);
    assert.equal(u.blob.sub_type, 0);
    assert.equal(Buffer.from(u.blob.buffer).toString('hex'), '00ff');
    assert.ok(u.u instanceof Binary);
    assert.equal(u.u.sub_type, 4);
    assert.equal(Buffer.from(u.u.buffer).toString('hex'), 'a0eebc999c0b4ef8bb6d6bb9bd380a11');
    assert.deepEqual(u.doc, { a: 'x', b: [1, 2.5] });
    assert.deepEqual(u.nums, [1, null, 3]);
    assert.equal(u.ok, true);
    assert.equal(u.n, 7);
    assert.equal('note' in u, false, 'a NULL column is left out');
  });

  it('keys a composite key as a sub-document in key order, for replaces and deletes', async () => {
    await target.upsertRows(PAIRS, [['1', 'x', 'v1']]);
    await target.deleteKeys(PAIRS, [['y', '2']]);
    const [upd, del] = wire.writes();
    assert.equal(upd!.name, 'update');
    const id = upd!.items[0]!.q._id;
    assert.deepEqual(Object.keys(id), ['b', 'a']);
    assert.deepEqual(id, { b: 'x', a: 1 });
    assert.deepEqual(Object.keys(upd!.items[0]!.u), ['_id', 'a', 'b', 'v']);
    assert.equal(del!.name, 'delete');
    assert.equal(del!.doc.delete, 'pairs');
    assert.equal(del!.doc.ordered, false);
    assert.deepEqual(del!.doc.writeConcern, { w: 'majority', j: true });
    assert.deepEqual(del!.items, [{ q: { _id: { b: 'y', a: 2 } }, limit: 1 }]);
    assert.deepEqual(Object.keys(del!.items[0]!.q._id), ['b', 'a']);
  });

  it('writes the progress record after the data writes were acknowledged', async () => {
    // The data's acknowledgement is held back: progress must not be sent before it arrives.
    wire.script = (cmd) => (cmd.name === 'update' && cmd.doc.update === 'pairs' ? { ok: 1, n: 1, $delayMs: 150 } : undefined);
    await target.begin();
    await target.deleteKeys(ITEMS, [['5']]);
    await target.upsertRows(PAIRS, [['1', 'x', 'v']]);
    await target.writeProgress('s1', [{ source: 'A', snapshot: '10:12:11', run: 4 }]);
    await target.commit();
    const w = wire.writes();
    assert.deepEqual(w.map((c) => `${c.name} ${String(c.doc[c.name])}`), ['delete items', 'update pairs', 'update ibex_progress']);
    assert.deepEqual(w[2]!.items, [
      { q: { _id: { sync: 's1', source: 'A' } }, u: { _id: { sync: 's1', source: 'A' }, snapshot: '10:12:11', run: 4 }, upsert: true },
    ]);
    assert.deepEqual(w[2]!.doc.writeConcern, { w: 'majority', j: true });
    const ev = wire.events.filter((e) => !e.includes('endSessions'));
    assert.ok(ev.indexOf('reply update pairs') < ev.indexOf('recv update ibex_progress'), ev.join(', '));
  });

  it('reads progress records of its sync only', async () => {
    wire.script = (cmd) =>
      cmd.name === 'find'
        ? { ok: 1, cursor: { id: peerBson.Long.ZERO, ns: 'app.ibex_progress', firstBatch: [{ _id: { sync: 's1', source: 'B' }, snapshot: '1:2:', run: 3 }, { _id: { sync: 's1', source: 'A' }, snapshot: '5:5:', run: 2 }] } }
        : undefined;
    assert.deepEqual(await target.readProgress('s1'), [
      { source: 'A', snapshot: '5:5:', run: 2 },
      { source: 'B', snapshot: '1:2:', run: 3 },
    ]);
    const find = wire.writes().find((c) => c.name === 'find')!;
    assert.equal(find.doc.find, 'ibex_progress');
    assert.deepEqual(find.doc.filter, { '_id.sync': 's1' });
  });

  it('sends the operations that hit a duplicate key once more, and only those', async () => {
    wire.script = (cmd, nth) =>
      cmd.name === 'update' && nth === 0
        ? { ok: 1, n: 1, nModified: 0, writeErrors: [{ index: 1, code: 11000, errmsg: 'E11000 duplicate key error collection: app.pairs index: _id_' }] }
        : undefined;
    const out = await target.upsertRows(PAIRS, [['1', 'a', 'x'], ['2', 'b', 'y']]);
    assert.deepEqual(out, { applied: 2, refused: [] });
    const ups = wire.writes().filter((c) => c.name === 'update');
    assert.equal(ups.length, 2);
    assert.equal(ups[0]!.items.length, 2);
    assert.deepEqual(ups[1]!.items.map((i) => i.q._id), [{ b: 'b', a: 2 }]);
  });

  it('refuses the row when the duplicate key comes back on the retry (another unique index)', async () => {
    wire.script = (cmd) =>
      cmd.name === 'update' ? { ok: 1, n: 0, writeErrors: [{ index: 0, code: 11000, errmsg: 'E11000 duplicate key error collection: app.pairs index: v_1' }] } : undefined;
    const out = await target.upsertRows(PAIRS, [['1', 'a', 'x']]);
    assert.deepEqual(out, { applied: 0, refused: [{ key: ['a', '1'], reason: 'MongoDB refused the document (code 11000): E11000 duplicate key error collection: app.pairs index: v_1' }] });
    assert.equal(wire.writes().filter((c) => c.name === 'update').length, 2);
  });

  it('refuses the rows whose documents the server rejects one by one, with their keys, and applies the rest', async () => {
    const T = table('docs', [['id', 'integer'], ['doc', 'jsonb']], ['id']);
    const rows = Array.from({ length: 1500 }, (_, i) => [String(i), '{"a": 1}']);
    // Indexes are per bulkWrite call: 1000 operations each, so index 7 of the second call is row 1007.
    wire.script = (cmd, nth) =>
      cmd.name !== 'update' ? undefined
        : nth === 0 ? { ok: 1, n: 998, writeErrors: [{ index: 2, code: 15, errmsg: 'BSONObj exceeds maximum nested object depth: 180' }, { index: 999, code: 121, errmsg: 'Document failed validation\nmore' }] }
          : { ok: 1, n: 499, writeErrors: [{ index: 7, code: 52, errmsg: "The dollar ($) prefixed field '$x' in 'doc.$x' is not valid for storage." }] };
    const out = await target.upsertRows(T, rows);
    assert.equal(out.applied, 1497);
    assert.deepEqual(out.refused, [
      { key: ['2'], reason: 'MongoDB refused the document (code 15): BSONObj exceeds maximum nested object depth: 180' },
      { key: ['999'], reason: 'MongoDB refused the document (code 121): Document failed validation' },
      { key: ['1007'], reason: "MongoDB refused the document (code 52): The dollar ($) prefixed field '$x' in 'doc.$x' is not valid for storage." },
    ]);
    // Nothing is sent again: a rejected document would be rejected again.
    assert.deepEqual(wire.writes().map((c) => c.items.length), [1000, 500]);
  });

  it('fails the run for write errors that are not about the document (a primary stepping down)', async () => {
    wire.script = (cmd) =>
      cmd.name === 'update' ? { ok: 1, n: 1, writeErrors: [{ index: 1, code: 121, errmsg: 'Document failed validation' }, { index: 0, code: 11602, errmsg: 'operation was interrupted because of a replication state change' }] } : undefined;
    await assert.rejects(target.upsertRows(PAIRS, [['1', 'a', 'x'], ['2', 'b', 'y']]), /mongo target "m1": writing public.pairs: 2 write\(s\) failed, first not about the document \(code 11602\): operation was interrupted/);
    assert.equal(wire.writes().filter((c) => c.name === 'update').length, 1);
  });

  it('skips a delete of a key MongoDB cannot hold, and deletes the others', async () => {
    const T = table('events', [['at', 'timestamp with time zone'], ['v', 'text']], ['at']);
    assert.equal(await target.deleteKeys(T, [['infinity'], ['2020-01-01 00:00:00+00'], ['-infinity']]), 1);
    const dels = wire.writes().filter((c) => c.name === 'delete');
    assert.equal(dels.length, 1);
    assert.deepEqual(dels[0]!.items.map((i) => (i.q._id as Date).toISOString()), ['2020-01-01T00:00:00.000Z']);
    wire.reset();
    assert.equal(await target.deleteKeys(T, [['infinity']]), 0);
    assert.deepEqual(wire.writes(), [], 'nothing to send');
  });

  it('fails a delete the server rejects', async () => {
    wire.script = (cmd) => (cmd.name === 'delete' ? { ok: 1, n: 0, writeErrors: [{ index: 0, code: 2, errmsg: 'bad delete' }] } : undefined);
    await assert.rejects(target.deleteKeys(PAIRS, [['a', '1']]), /mongo target "m1": deleting from public.pairs: 1 write\(s\) failed, first \(code 2\): bad delete/);
  });

  it('surfaces a write concern error instead of counting the write as done', async () => {
    wire.script = (cmd) =>
      cmd.name === 'update' ? { ok: 1, n: 1, nModified: 1, writeConcernError: { code: 64, errmsg: 'waiting for replication timed out' } } : undefined;
    await assert.rejects(target.upsertRows(PAIRS, [['1', 'a', 'x']]), (err: unknown) => {
      assert.ok(err instanceof IbexError);
      assert.match(err.message, /write concern \{w: majority, j: true\} was not satisfied \(code 64\): waiting for replication timed out/);
      return true;
    });
  });

  it('refuses a row over 16 MB and an infinite timestamp, and sends the others', async () => {
    const T = table('big', [['id', 'integer'], ['body', 'text'], ['at', 'timestamp with time zone']], ['id']);
    const out = await target.upsertRows(T, [
      ['1', 'x'.repeat(17 * 1024 * 1024), null],
      ['2', 'small', 'infinity'],
      ['3', 'fine', '2020-01-01 00:00:00+00'],
    ]);
    assert.equal(out.applied, 1);
    assert.deepEqual(out.refused.map((r) => r.key), [['1'], ['2']]);
    assert.match(out.refused[0]!.reason, /over MongoDB's 16777216-byte limit/);
    assert.match(out.refused[1]!.reason, /column at is infinity/);
    const ups = wire.writes().filter((c) => c.name === 'update');
    assert.equal(ups.length, 1);
    assert.deepEqual(ups[0]!.items.map((i) => i.q._id), [3]);
  });

  it('splits large batches into bulk writes of at most 1000 operations', async () => {
    const T = table('many', [['id', 'integer'], ['v', 'text']], ['id']);
    await target.upsertRows(T, Array.from({ length: 2500 }, (_, i) => [String(i), 'v']));
    assert.deepEqual(wire.writes().map((c) => c.items.length), [1000, 1000, 500]);
  });

  it('truncates with one delete of every document', async () => {
    await target.truncate(PAIRS);
    const [del] = wire.writes();
    assert.equal(del!.doc.delete, 'pairs');
    assert.deepEqual(del!.items, [{ q: {}, limit: 0 }]);
    assert.deepEqual(del!.doc.writeConcern, { w: 'majority', j: true });
  });

  it('scans documents back to canonical text', async () => {
    wire.script = (cmd) =>
      cmd.name === 'find'
        ? {
            ok: 1,
            cursor: {
              id: peerBson.Long.ZERO,
              ns: 'app.items',
              firstBatch: [
                {
                  _id: peerBson.Long.fromString('9007199254740993'),
                  id: peerBson.Long.fromString('9007199254740993'),
                  price: peerBson.Decimal128.fromString('12.50'),
                  huge: '1234567890123456789012345678901234567890.5',
                  at: new Date('2024-03-01T10:20:30.123Z'),
                  fine: '2024-03-01T10:20:30.123456Z',
                  blob: new peerBson.Binary(Buffer.from('00ff', 'hex'), 0),
                  u: new peerBson.Binary(Buffer.from('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex'), 4),
                  doc: { b: [1, 2.5], a: 'x' },
                  nums: [1, null, 3],
                  ok: true,
                  n: 7,
                },
              ],
            },
          }
        : undefined;
    const rows = [];
    for await (const r of target.scan(ITEMS)) rows.push(r);
    assert.deepEqual(rows, [
      ['9007199254740993', '12.5', '1234567890123456789012345678901234567890.5', '2024-03-01T10:20:30.123000Z', '2024-03-01T10:20:30.123456Z', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a":"x","b":[1,2.5]}', '[1,null,3]', 't', '7', null],
    ]);
  });

  it('reports column names MongoDB cannot hold as fields', async () => {
    const bad = table('bad', [['id', 'integer'], ['$set', 'text'], ['a.b', 'text']], ['id']);
    const problems = await target.check([bad, ITEMS]);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!.message, /column \$set starts with '\$'/);
    await assert.rejects(target.upsertRows(bad, [['1', 'x', 'y']]), /starts with '\$'/);
    assert.deepEqual(target.createTableSql(ITEMS), []);
  });
});

describe('mongo target connection', () => {
  it('fails an unreachable server in one line that holds no password', async () => {
    const port = await freePort();
    const t = createTarget({ name: 'gone', kind: 'mongo', conn: `mongodb://ibex:s3cret-pw@127.0.0.1:${port}/?serverSelectionTimeoutMS=300`, dbname: 'app' });
    await assert.rejects(t.connect(), (err: unknown) => {
      assert.ok(err instanceof IbexError);
      assert.equal(err.code, 'unreachable');
      assert.match(err.message, new RegExp(`^mongo target "gone": cannot connect to mongodb://ibex:\\*\\*\\*@127\\.0\\.0\\.1:${port}/`));
      assert.equal(err.message.includes('s3cret-pw'), false);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  });

  it('needs a database name', () => {
    assert.throws(() => createTarget({ name: 'x', kind: 'mongo', host: 'h' }), /needs dbname=/);
  });
});

// The shared contract against a live server, only when one is given (none can run here).
const liveMongo = process.env.IBEX_TEST_MONGO_URL;
if (liveMongo) {
  let seq = 0;
  targetContract(
    'mongo (live server)',
    async () => {
      seq += 1;
      const dbname = `ibex_t_${process.pid}_${seq}`;
      const target = createTarget({ name: 'live', kind: 'mongo', conn: liveMongo, dbname });
      const cleanup = async (): Promise<void> => {
        const { MongoClient } = await import('mongodb');
        const c = new MongoClient(liveMongo);
        try {
          await c.db(dbname).dropDatabase();
        } finally {
          await c.close();
        }
      };
      return { target, cleanup };
    },
    {
      skip: { rollback: 'MongoDB without a replica set has no transactions (caps.transactional is false)' },
      refused: [
        { type: 'timestamp with time zone', value: 'infinity' },
        { type: 'timestamp with time zone', value: '-infinity' },
      ],
    },
  );
} else {
  describe('mongo: target contract', { skip: 'IBEX_TEST_MONGO_URL is not set (no MongoDB server runs here)' }, () => {
    it('runs the shared contract against a live server', () => undefined);
  });
}

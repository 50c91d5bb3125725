/**
 * The Redis target against a private redis-server (its own port and temp dir, nothing on disk).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { IbexError } from '../../src/errors.js';
import type { TableSpec, Target, TextRow } from '../../src/targets/target.js';
import { createTarget, forgetSeenServers, REPLACE_ARGS } from '../../src/targets/redis/redis-target.js';
import { privateRedis, type RedisServer } from '../helpers/redis-server.js';
import { freePort } from '../../src/cluster/ports.js';
import { targetContract } from '../helpers/target-contract.js';

// The shared contract on one private server, each case in a logical database of its own (so
// what one case leaves does not meet the next, and nothing needs flushing).
let contractServer: RedisServer | undefined;
let contractDb = 0;
after(async () => {
  await contractServer?.destroy();
});
targetContract(
  'redis',
  async () => {
    if (contractServer === undefined) {
      contractServer = await privateRedis();
      await contractServer.start(['--databases', '64']);
    }
    contractDb += 1;
    const target = createTarget({ name: 'rc', kind: 'redis', host: '127.0.0.1', port: contractServer.port, dbname: String(contractDb) });
    return { target, cleanup: async () => undefined };
  },
  { skip: { rollback: 'Redis has no rollback: a run is not transactional (caps.transactional is false)' } },
);

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

const T = table('items', [['id', 'text'], ['a', 'text'], ['n', 'integer']], ['id']);
const C = table('pairs', [['k1', 'text'], ['v', 'text'], ['k2', 'text']], ['k1', 'k2']);

async function rowsOf(t: Target, spec: TableSpec): Promise<TextRow[]> {
  const out: TextRow[] = [];
  for await (const r of t.scan(spec)) out.push(r);
  return out.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
}

function sorted(rows: TextRow[]): TextRow[] {
  return [...rows].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
}

describe('redis target', () => {
  let server: RedisServer;
  let raw: Redis;
  let target: Target;

  before(async () => {
    server = await privateRedis();
    await server.start();
    raw = new Redis({ port: server.port, host: '127.0.0.1', lazyConnect: true });
    await raw.connect();
    target = createTarget({ name: 'r1', kind: 'redis', host: '127.0.0.1', port: server.port, dbname: '0' });
    await target.connect();
  });
  after(async () => {
    await target?.close();
    raw?.disconnect();
    await server?.destroy();
  });

  it('reports the server version', async () => {
    const { version } = await target.probe();
    assert.match(version, /^Redis \d+\.\d+/);
  });

  it('round-trips key values holding colons and backslashes without collisions', async () => {
    const rows: TextRow[] = [
      ['a:b', 'colon', '1'],
      ['a\\:b', 'backslash colon', '2'],
      ['a\\', 'trailing backslash', '3'],
      ['a', 'plain', '4'],
      ['a:b:c', 'two colons', '5'],
      ['\\N', 'looks like null', '6'],
      ['*[x]?', 'glob chars', '7'],
    ];
    await target.begin();
    const out = await target.upsertRows(T, rows);
    await target.commit();
    assert.deepEqual(out, { applied: 7, refused: [] });
    assert.equal((await raw.keys('items:*')).length, 7);
    assert.deepEqual(await raw.hgetall('items:a\\:b'), { a: 'colon', n: '1' });
    assert.deepEqual(await raw.hgetall('items:a\\\\\\:b'), { a: 'backslash colon', n: '2' });
    assert.deepEqual(await rowsOf(target, T), sorted(rows));
  });

  it('keeps composite keys apart whatever separators their values hold', async () => {
    const rows: TextRow[] = [
      ['a:b', 'first', 'c'],
      ['a', 'second', 'b:c'],
      ['a\\', 'third', ':c'],
    ];
    await target.upsertRows(C, rows);
    assert.deepEqual((await raw.keys('pairs:*')).sort(), ['pairs:a:b\\:c', 'pairs:a\\:b:c', 'pairs:a\\\\:\\:c']);
    assert.deepEqual(await rowsOf(target, C), sorted(rows));
    assert.equal(await target.deleteKeys(C, [['a', 'b:c'], ['nope', 'x']]), 1);
    assert.deepEqual(await rowsOf(target, C), sorted([rows[0]!, rows[2]!]));
  });

  it('drops the field of a column that became NULL, and keeps a row whose other columns are all NULL', async () => {
    await target.upsertRows(T, [['null-me', 'x', '9']]);
    assert.deepEqual(await raw.hgetall('items:null-me'), { a: 'x', n: '9' });
    await target.upsertRows(T, [['null-me', null, '9']]);
    assert.deepEqual(await raw.hgetall('items:null-me'), { n: '9' });
    await target.upsertRows(T, [['null-me', null, null]]);
    assert.equal(await raw.exists('items:null-me'), 1);
    const back = (await rowsOf(target, T)).find((r) => r[0] === 'null-me');
    assert.deepEqual(back, ['null-me', null, null]);
  });

  it('stores a table whose columns are all key columns', async () => {
    const K = table('tags', [['a', 'integer'], ['b', 'text']], ['a', 'b']);
    await target.upsertRows(K, [['1', 'x'], ['2', 'y']]);
    assert.deepEqual(await rowsOf(target, K), [['1', 'x'], ['2', 'y']]);
    await target.truncate(K);
    assert.deepEqual(await rowsOf(target, K), []);
  });

  it('gives the same keyspace when a run is replayed', async () => {
    const R = table('replay', [['id', 'integer'], ['v', 'text']], ['id']);
    const run = async (): Promise<void> => {
      await target.begin();
      assert.equal((await target.readProgress('s1')) !== 'missing', true);
      await target.deleteKeys(R, [['3']]);
      await target.upsertRows(R, [['1', 'one'], ['2', 'two']]);
      await target.writeProgress('s1', [{ source: 'A', snapshot: '100:100:', run: 7 }]);
      await target.commit();
    };
    await target.upsertRows(R, [['3', 'three']]);
    await run();
    const first = await rowsOf(target, R);
    const dump1 = await raw.hgetall('ibex:progress:s1');
    await run();
    assert.deepEqual(await rowsOf(target, R), first);
    assert.deepEqual(first, [['1', 'one'], ['2', 'two']]);
    assert.deepEqual(await raw.hgetall('ibex:progress:s1'), dump1);
    assert.deepEqual(await target.readProgress('s1'), [{ source: 'A', snapshot: '100:100:', run: 7 }]);
  });

  it('truncates 10,000 rows in batches and leaves other tables alone, glob characters included', async () => {
    const big = table('big', [['id', 'integer'], ['v', 'text']], ['id']);
    const big2 = table('big2', [['id', 'integer'], ['v', 'text']], ['id']);
    const glob = table('b?g', [['id', 'integer'], ['v', 'text']], ['id']);
    const colon = table('big:x', [['id', 'integer'], ['v', 'text']], ['id']);
    const rows: TextRow[] = Array.from({ length: 10_000 }, (_, i) => [String(i), `v${i}`]);
    await target.upsertRows(big, rows);
    await target.upsertRows(big2, [['1', 'stay']]);
    await target.upsertRows(colon, [['1', 'stay too']]);
    await target.upsertRows(glob, [['1', 'glob']]);
    await raw.set('bigfoot', 'not ours');
    assert.equal((await rowsOf(target, big)).length, 10_000);
    assert.equal(await raw.dbsize() >= 10_004, true);

    await target.truncate(glob);
    assert.equal((await rowsOf(target, big)).length, 10_000, 'b?g must not match big');
    await target.truncate(big);
    assert.deepEqual(await rowsOf(target, big), []);
    assert.deepEqual(await rowsOf(target, big2), [['1', 'stay']]);
    assert.deepEqual(await rowsOf(target, colon), [['1', 'stay too']]);
    assert.equal(await raw.get('bigfoot'), 'not ours');
  });

  it('writes a wide table (80 non-key columns × 3,000 rows) and rewrites it with the new values', async () => {
    // 3,000 rows of 160 field and value arguments each: one call per 1,000 rows would pass
    // ~161k arguments, which overflows Node's stack when spread into one call.
    const cols: [string, string][] = [['id', 'integer'], ...Array.from({ length: 80 }, (_, c): [string, string] => [`c${c}`, 'text'])];
    const wide = table('wide', cols, ['id']);
    const rowsOfRound = (round: string): TextRow[] =>
      Array.from({ length: 3_000 }, (_, i) => [String(i), ...Array.from({ length: 80 }, (_, c) => (c === 7 && i % 3 === 0 ? null : `${round}${i}.${c}`))]);
    const scriptCalls = async (): Promise<number> => {
      const stats = await raw.info('commandstats');
      return [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    for (const round of ['a', 'b']) {
      const rows = rowsOfRound(round);
      const before = await scriptCalls();
      assert.deepEqual(await target.upsertRows(wide, rows), { applied: 3_000, refused: [] });
      // ~483k arguments in all: cut by the argument bound, not only every 1,000 rows.
      const calls = (await scriptCalls()) - before;
      assert.ok(calls >= Math.ceil((3_000 * 162) / REPLACE_ARGS), `${calls} calls of the replace script`);
      const back = await rowsOf(target, wide);
      assert.equal(back.length, 3_000);
      assert.deepEqual(back, sorted(rows));
    }
    assert.deepEqual(await raw.hgetall('wide:3'), Object.fromEntries(Array.from({ length: 80 }, (_, c) => [`c${c}`, `b3.${c}`]).filter(([f]) => f !== 'c7')));
    await target.truncate(wide);
    assert.deepEqual(await rowsOf(target, wide), []);
  });

  it('reports keys under a table prefix that are not its hashes', async () => {
    const odd = table('odd', [['id', 'integer'], ['v', 'text']], ['id']);
    await raw.set('odd:1', 'a string');
    const mine = table('ibex', [['id', 'text'], ['v', 'text']], ['id']);
    const problems = await target.check([odd, T, mine]);
    assert.deepEqual(problems.map((p) => p.table), ['public.odd', 'public.ibex']);
    assert.match(problems[0]!.message, /not hashes/);
    assert.match(problems[1]!.message, /would start with "ibex:", where ibex keeps its progress/);
    await assert.rejects(target.upsertRows(mine, [['marker', 'x']]), /would start with "ibex:"/);
    assert.deepEqual(target.createTableSql(odd), []);
  });
});

describe('redis target losing its data', () => {
  let server: RedisServer;

  before(async () => {
    server = await privateRedis();
    await server.start();
  });
  after(async () => {
    await server?.destroy();
  });

  it('says progress is missing after the server was killed and restarted empty', async () => {
    forgetSeenServers();
    const params = { name: 'r2', kind: 'redis' as const, host: '127.0.0.1', port: server.port };
    const t1 = createTarget(params);
    await t1.connect();
    assert.deepEqual(await t1.readProgress('s'), []);
    await t1.upsertRows(T, [['1', 'x', '1']]);
    await t1.writeProgress('s', [{ source: 'A', snapshot: '5:5:', run: 1 }]);
    await t1.commit();
    assert.deepEqual(await t1.readProgress('s'), [{ source: 'A', snapshot: '5:5:', run: 1 }]);
    await t1.close();

    await server.kill();
    await server.start();

    const t2 = createTarget(params);
    await t2.connect();
    assert.equal(await t2.readProgress('s'), 'missing');
    // Another sync this process never saw there: the marker it did see is gone, so it is lost too.
    assert.equal(await t2.readProgress('other'), 'missing');
    await t2.close();
  });
});

describe('redis target connection', () => {
  const secret = 'pw-Zq8v!secret';
  let server: RedisServer;

  before(async () => {
    server = await privateRedis();
    await server.start(['--requirepass', secret]);
  });
  after(async () => {
    await server?.destroy();
  });

  it('authenticates with pass= and selects dbname=', async () => {
    const t = createTarget({ name: 'auth', kind: 'redis', host: '127.0.0.1', port: server.port, dbname: '3', password: secret });
    await t.connect();
    await t.upsertRows(T, [['k', 'v', null]]);
    await t.close();
    const raw = new Redis({ port: server.port, password: secret, db: 3, lazyConnect: true });
    await raw.connect();
    assert.deepEqual(await raw.hgetall('items:k'), { a: 'v' });
    raw.disconnect();
  });

  it('fails a wrong password in one line that does not hold it', async () => {
    const wrong = `${secret}-wrong`;
    const t = createTarget({ name: 'auth', kind: 'redis', host: '127.0.0.1', port: server.port, password: wrong });
    await assert.rejects(t.connect(), (err: unknown) => {
      assert.ok(err instanceof IbexError);
      assert.equal(err.code, 'unreachable');
      assert.doesNotMatch(err.message, /\n/);
      assert.equal(err.message.includes(wrong), false);
      assert.equal(err.message.includes(secret), false);
      assert.match(err.message, /WRONGPASS|invalid/i);
      return true;
    });
  });

  it('fails an unreachable server in one line', async () => {
    const port = await freePort();
    const t = createTarget({ name: 'gone', kind: 'redis', host: '127.0.0.1', port });
    await assert.rejects(t.connect(), (err: unknown) => {
      assert.ok(err instanceof IbexError);
      assert.equal(err.code, 'unreachable');
      assert.match(err.message, new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}/0: .*ECONNREFUSED`));
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  });

  it('fails at connect, in one line, on a db number the server lacks, rather than writing to db 0', async () => {
    // The server has 16 databases: ioredis's own SELECT at connect fails only as an event, and
    // the session stayed on db 0.
    const t = createTarget({ name: 'far', kind: 'redis', host: '127.0.0.1', port: server.port, dbname: '16', password: secret });
    const connected = await t.connect().then(() => true, (err: unknown) => {
      assert.ok(err instanceof IbexError);
      assert.equal(err.code, 'unreachable');
      assert.match(err.message, new RegExp(`^redis target "far": cannot connect to 127\\.0\\.0\\.1:${server.port}/16: .*DB index is out of range`));
      assert.doesNotMatch(err.message, /\n/);
      return false;
    });
    if (connected) {
      await t.upsertRows(T, [['far', 'x', null]]).catch(() => undefined);
      await t.close();
    }
    const raw = new Redis({ port: server.port, password: secret, db: 0, lazyConnect: true });
    await raw.connect();
    const leaked = await raw.exists('items:far');
    raw.disconnect();
    assert.equal(connected, false, `connect succeeded${leaked ? ' and the row went to db 0' : ''}`);
  });

  it('refuses a dbname that is not a number', () => {
    assert.throws(() => createTarget({ name: 'x', kind: 'redis', dbname: 'app' }), /dbname=app is not a Redis database number/);
  });
});

/**
 * The Oracle target with the real node-oracledb driver (thin mode). No Oracle server runs here:
 * only the unreachable path is checked locally; the round trip needs IBEX_TEST_ORACLE_URL
 * (`user/password@host:port/service`).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IbexError } from '../../src/errors.js';
import type { TableSpec } from '../../src/targets/target.js';
import { createTarget } from '../../src/targets/oracle/oracle-target.js';
import { freePort } from '../helpers/redis-server.js';

describe('oracle target with node-oracledb', () => {
  it('fails a closed port in one line that holds no password', async () => {
    const port = await freePort();
    const t = createTarget({ name: 'ora', kind: 'oracle', host: '127.0.0.1', port, dbname: 'FREEPDB1', user: 'ibex', password: 'tiger-Secret9' });
    await assert.rejects(t.connect(), (err: unknown) => {
      assert.ok(err instanceof IbexError);
      assert.equal(err.code, 'unreachable');
      assert.match(err.message, new RegExp(`^oracle target "ora": cannot connect to 127\\.0\\.0\\.1:${port}/FREEPDB1: NJS-503: .*ECONNREFUSED`));
      assert.doesNotMatch(err.message, /\n/);
      assert.equal(err.message.includes('tiger-Secret9'), false);
      return true;
    });
  });
});

const url = process.env.IBEX_TEST_ORACLE_URL;
describe('oracle target against a real server', { skip: url ? false : 'IBEX_TEST_ORACLE_URL is not set (no Oracle server runs here)' }, () => {
  it('round-trips rows through a live server in one transaction', async () => {
    const m = /^([^/]+)\/([^@]*)@(.+)$/.exec(url ?? '');
    assert.ok(m, 'IBEX_TEST_ORACLE_URL must be user/password@connect-string');
    const t = createTarget({ name: 'live', kind: 'oracle', user: m[1], password: m[2], conn: m[3] });
    const T: TableSpec = {
      label: 'public.ibex_t', schema: 'public', name: 'ibex_t', targetName: `ibex_t_${process.pid}`,
      columns: [{ name: 'id', type: 'bigint', notNull: true }, { name: 'v', type: 'text', notNull: false }, { name: 'at', type: 'timestamp with time zone', notNull: false }],
      keys: ['id'],
    };
    await t.connect();
    const raw = (t as unknown as { conn: { execute(sql: string): Promise<unknown> } }).conn;
    await raw.execute(t.createTableSql(T)[0]!);
    try {
      await t.begin();
      await t.readProgress('s');
      await t.upsertRows(T, [['1', 'one', '2024-01-02 03:04:05.123456+00'], ['2', 'two', null]]);
      await t.upsertRows(T, [['1', 'uno', null]]);
      assert.equal(await t.deleteKeys(T, [['2']]), 1);
      await t.writeProgress('s', [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      await t.commit();
      const rows = [];
      for await (const r of t.scan(T)) rows.push(r);
      assert.deepEqual(rows, [['1', 'uno', null]]);
      assert.deepEqual(await t.readProgress('s'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
    } finally {
      await raw.execute(`DROP TABLE "${T.targetName}" PURGE`);
      await t.close();
    }
  });
});

/**
 * The Oracle target's control flow and the exact statements and values it hands the driver, on a
 * fake connection that records calls (no Oracle server can run here).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TableSpec } from '../../src/targets/target.js';
import { IbexError } from '../../src/errors.js';
import { OracleTarget, isOracleSessionLost, type OracleConnection, type OracleDriver, type OracleResult } from '../../src/targets/oracle/oracle-target.js';
import { CREATE_PROGRESS_SQL, PROGRESS_ADD_EPOCH_SQL, PROGRESS_FENCE_SQL, PROGRESS_HAS_EPOCH_SQL, READ_PROGRESS_SQL, WRITE_PROGRESS_SQL } from '../../src/targets/oracle/oracle-dialect.js';

interface Call { op: string; sql?: string; binds?: unknown; options?: Record<string, unknown> }

function fake(answer: (call: Call) => OracleResult | Error | undefined = () => undefined) {
  const calls: Call[] = [];
  const reply = async (call: Call): Promise<OracleResult> => {
    calls.push(call);
    const a = answer(call);
    if (a instanceof Error) throw a;
    return a ?? {};
  };
  const conn: OracleConnection = {
    execute: (sql, binds, options) => reply({ op: 'execute', sql, binds, ...(options ? { options } : {}) }),
    executeMany: (sql, binds, options) => reply({ op: 'executeMany', sql, binds, ...(options ? { options } : {}) }),
    commit: async () => void calls.push({ op: 'commit' }),
    rollback: async () => void calls.push({ op: 'rollback' }),
    close: async () => void calls.push({ op: 'close' }),
    oracleServerVersionString: '23.4.0.24.5',
  };
  const driver: OracleDriver = {
    getConnection: async (attrs) => {
      calls.push({ op: 'getConnection', binds: attrs });
      return conn;
    },
    DB_TYPE_VARCHAR: 'VARCHAR', DB_TYPE_NUMBER: 'NUMBER', DB_TYPE_BINARY_DOUBLE: 'BINARY_DOUBLE', DB_TYPE_BLOB: 'BLOB',
    DB_TYPE_CLOB: 'CLOB', DB_TYPE_RAW: 'RAW', STRING: 'STRING', BUFFER: 'BUFFER', OUT_FORMAT_ARRAY: 4001,
  };
  return { calls, driver };
}

const params = { name: 'ora', kind: 'oracle' as const, host: 'db.example', port: 1522, dbname: 'FREEPDB1', user: 'ibex', password: 'tiger-pw' };
const T: TableSpec = {
  label: 'public.t', schema: 'public', name: 't', targetName: 't',
  columns: [{ name: 'id', type: 'integer', notNull: true }, { name: 'v', type: 'text', notNull: false }, { name: 'u', type: 'uuid', notNull: false }],
  keys: ['id'],
};

describe('oracle target on a fake connection', () => {
  it('connects in thin mode with host:port/service and pins the session', async () => {
    const { calls, driver } = fake();
    const t = new OracleTarget(params, driver);
    await t.connect();
    assert.deepEqual(calls[0], { op: 'getConnection', binds: { user: 'ibex', password: 'tiger-pw', connectString: 'db.example:1522/FREEPDB1', connectTimeout: 10, transportConnectTimeout: 10 } });
    assert.deepEqual(calls.slice(1).map((c) => c.sql), ["ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'", "ALTER SESSION SET TIME_ZONE = '+00:00'"]);
    assert.deepEqual(await t.probe(), { version: 'Oracle 23.4.0.24.5' });
    assert.equal(t.caps.transactional, true);
    assert.equal(t.caps.progressInTxn, true);
  });

  it('runs a whole run in one transaction: merge, delete, progress, then commit', async () => {
    const { calls, driver } = fake((c) => (c.op === 'executeMany' && c.sql?.startsWith('DELETE') ? { rowsAffected: 1 } : c.sql?.startsWith('SELECT "SOURCE"') ? { rows: [['A', '1:2:', 7]] } : c.sql?.includes('USER_TAB_COLUMNS') ? { rows: [[1]] } : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    calls.length = 0;
    await t.begin();
    assert.deepEqual(await t.readProgress('s1'), [{ source: 'A', snapshot: '1:2:', run: 7 }]);
    assert.equal(await t.deleteKeys(T, [['5']]), 1);
    const out = await t.upsertRows(T, [['1', 'one', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'], ['2', null, null]]);
    assert.deepEqual(out, { applied: 2, refused: [] });
    await t.writeProgress('s1', [{ source: 'A', snapshot: '3:4:', run: 8 }]);
    await t.commit();
    // The epoch column is checked once per session, before the run's first write.
    assert.equal(calls.shift()!.sql, PROGRESS_HAS_EPOCH_SQL);
    assert.deepEqual(calls.map((c) => c.op), ['execute', 'executeMany', 'executeMany', 'executeMany', 'commit']);
    assert.deepEqual(calls[0]!.binds, ['s1']);
    assert.deepEqual(calls[1], {
      op: 'executeMany', sql: 'DELETE FROM "t" WHERE "id" = TO_NUMBER(:1)', binds: [['5']],
      options: { autoCommit: false, bindDefs: [{ type: 'VARCHAR', maxSize: 1 }] },
    });
    assert.equal(calls[2]!.sql, 'MERGE INTO "t" d USING (SELECT TO_NUMBER(:1) AS "id", :2 AS "v", :3 AS "u" FROM dual) s ON (d."id" = s."id") WHEN MATCHED THEN UPDATE SET d."v" = s."v", d."u" = s."u" WHEN NOT MATCHED THEN INSERT ("id", "v", "u") VALUES (s."id", s."v", s."u")');
    assert.deepEqual(calls[2]!.binds, [['1', 'one', Buffer.from('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex')], ['2', null, null]]);
    assert.deepEqual(calls[2]!.options, { autoCommit: false, batchErrors: true, bindDefs: [{ type: 'VARCHAR', maxSize: 1 }, { type: 'CLOB' }, { type: 'RAW', maxSize: 16 }] });
    assert.match(calls[3]!.sql!, /^MERGE INTO "IBEX_PROGRESS"/);
    assert.deepEqual(calls[3]!.binds, [['s1', 'A', '3:4:', '8', null]]);
    assert.equal(calls[3]!.options!.autoCommit, false);
  });

  it('fences progress with the lease epoch: locks the sync\'s rows, refuses a newer epoch, writes its own', async () => {
    let newest = 3;
    const { calls, driver } = fake((c) => (c.sql?.includes('USER_TAB_COLUMNS') ? { rows: [[1]] } : c.sql === PROGRESS_FENCE_SQL ? { rows: [[2], [newest], [null]] } : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    calls.length = 0;
    await t.begin();
    await t.writeProgress('s1', [{ source: 'A', snapshot: '3:4:', run: 8, epoch: 3 }]);
    assert.deepEqual(calls.slice(1).map((c) => [c.op, c.sql, c.binds]), [
      ['execute', PROGRESS_FENCE_SQL, ['s1']],
      ['executeMany', WRITE_PROGRESS_SQL, [['s1', 'A', '3:4:', '8', '3']]],
    ]);
    assert.equal(calls[1]!.options!.autoCommit, false);
    newest = 4;
    calls.length = 0;
    await assert.rejects(t.writeProgress('s1', [{ source: '*', snapshot: '', run: 9, epoch: 3 }]), /ibex fencing: oracle target "ora": a daemon with a newer lease of sync s1 \(epoch 4, this run's 3\)/);
    assert.deepEqual(calls.map((c) => c.sql), [PROGRESS_FENCE_SQL], 'nothing written after the refusal');
  });

  it('refuses rows Oracle cannot hold and rows it rejects one by one, and applies the rest', async () => {
    const { calls, driver } = fake((c) => (c.op === 'executeMany' ? { batchErrors: [{ offset: 1, errorNum: 12899, message: 'ORA-12899: value too large for column "t"."v"\nHelp: …' }] } : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    calls.length = 0;
    const out = await t.upsertRows(T, [['1', '', null], ['2', 'ok', null], ['3', 'too long', null], ['4', 'fine', null]]);
    assert.equal(out.applied, 2);
    assert.deepEqual(out.refused.map((r) => r.key), [['1'], ['3']]);
    assert.match(out.refused[0]!.reason, /empty string, which Oracle stores as NULL/);
    assert.equal(out.refused[1]!.reason, 'Oracle refused the row: ORA-12899: value too large for column "t"."v"');
    assert.deepEqual(calls[0]!.binds, [['2', 'ok', null], ['3', 'too long', null], ['4', 'fine', null]]);
  });

  it('sends batches of at most 1000 rows', async () => {
    const { calls, driver } = fake();
    const t = new OracleTarget(params, driver);
    await t.connect();
    calls.length = 0;
    await t.upsertRows(T, Array.from({ length: 2001 }, (_, i) => [String(i), 'v', null]));
    assert.deepEqual(calls.map((c) => (c.binds as unknown[]).length), [1000, 1000, 1]);
  });

  it('creates IBEX_PROGRESS when it is missing, or adds EPOCH to an older one, before any write', async () => {
    let tables = 0;
    const { calls, driver } = fake((c) => (c.sql?.includes('USER_TAB_COLUMNS') ? { rows: [[0]] } : c.sql?.includes('USER_TABLES') ? { rows: [[tables]] } : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    calls.length = 0;
    assert.deepEqual(await t.readProgress('s1'), []);
    assert.deepEqual(calls.map((c) => c.sql?.slice(0, 36)), [PROGRESS_HAS_EPOCH_SQL.slice(0, 36), `SELECT COUNT(*) FROM USER_TABLES WHE`, CREATE_PROGRESS_SQL.slice(0, 36), READ_PROGRESS_SQL.slice(0, 36)]);
    tables = 1;
    const old = new OracleTarget(params, driver);
    await old.connect();
    calls.length = 0;
    await old.readProgress('s1');
    assert.equal(calls[2]!.sql, PROGRESS_ADD_EPOCH_SQL);
  });

  it('rolls back on failure and never throws from rollback', async () => {
    const { calls, driver } = fake((c) => (c.op === 'executeMany' ? new Error('ORA-01653: unable to extend table IBEX.T by 128 in tablespace USERS') : c.op === 'rollback' ? new Error('gone') : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    await assert.rejects(t.upsertRows(T, [['1', 'x', null]]), /oracle target "ora": writing public.t: ORA-01653/);
    await t.rollback();
    assert.equal(calls.at(-1)!.op, 'rollback');
    await t.close();
    await t.rollback();
  });

  it('reconnects at the next begin() after losing its session, and says so as unreachable', async () => {
    // node-oracledb's errors carry the code (NJS-500, ORA-03113) and the message; a dead session answers every call alike.
    const lost = (code: string, text: string) => Object.assign(new Error(`${code}: ${text}`), { code });
    let dead: Error | undefined;
    const { calls, driver } = fake((c) => (dead !== undefined && c.op !== 'getConnection' ? dead : c.sql?.includes('USER_TAB_COLUMNS') ? { rows: [[1]] } : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    for (const [code, text] of [['NJS-500', 'connection to the Oracle Database was broken'], ['ORA-03113', 'end-of-file on communication channel'], ['NJS-003', 'invalid or closed connection']] as const) {
      await t.begin();
      dead = lost(code, text);
      const err = await t.upsertRows(T, [['1', 'x', null]]).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof IbexError, `${code}: an IbexError`);
      // 'unreachable' is what the runner and the daemon retry with backoff (a transient failure).
      assert.equal(err.code, 'unreachable', code);
      assert.equal(err.message, `oracle target "ora": lost the connection to db.example:1522/FREEPDB1 while writing public.t: ${code}: ${text}`);
      await t.rollback();
      dead = undefined;
      calls.length = 0;
      await t.begin();
      assert.deepEqual(calls.map((c) => c.op).slice(0, 3), ['close', 'getConnection', 'execute'], `${code}: a new session`);
      assert.deepEqual(await t.upsertRows(T, [['1', 'x', null]]), { applied: 1, refused: [] });
      await t.writeProgress('s1', [{ source: 'A', snapshot: '3:4:', run: 8 }]);
      await t.commit();
    }
  });

  it('stays unreachable, without the password, while the server refuses new sessions', async () => {
    let refuse = false;
    const { driver } = fake((c) => (refuse && c.op !== 'getConnection' ? Object.assign(new Error('NJS-500: connection to the Oracle Database was broken'), { code: 'NJS-500' }) : undefined));
    const flaky: OracleDriver = { ...driver, getConnection: async (a) => { if (refuse) throw Object.assign(new Error('ORA-12541: Cannot connect. No listener at host db.example port 1522 (password tiger-pw)'), { code: 'ORA-12541' }); return driver.getConnection(a); } };
    const t = new OracleTarget(params, flaky);
    await t.connect();
    await t.begin();
    refuse = true;
    await assert.rejects(t.truncate(T), { code: 'unreachable' });
    await t.rollback();
    await assert.rejects(t.begin(), (e: unknown) => e instanceof IbexError && e.code === 'unreachable' && !e.message.includes('tiger-pw') && /cannot connect to db\.example:1522\/FREEPDB1: ORA-12541/.test(e.message));
    refuse = false;
    await t.begin();
    assert.deepEqual(await t.upsertRows(T, [['1', 'x', null]]), { applied: 1, refused: [] });
  });

  it('knows the errors of a lost or refused session from other errors', () => {
    for (const code of ['NJS-500', 'NJS-003', 'NJS-501', 'NJS-503', 'ORA-03113', 'ORA-03114', 'ORA-03135', 'ORA-12170', 'ORA-12541', 'ORA-12514', 'ORA-00028', 'ORA-01012', 'ORA-01089', 'ORA-01033', 'ORA-01034', 'ORA-02396']) {
      assert.equal(isOracleSessionLost(Object.assign(new Error(`${code}: x`), { code })), true, code);
      assert.equal(isOracleSessionLost(new Error(`${code}: x`)), true, `${code} in the message only`);
    }
    for (const code of ['ORA-00001', 'ORA-12899', 'ORA-00942', 'NJS-004']) assert.equal(isOracleSessionLost(Object.assign(new Error(`${code}: x`), { code })), false, code);
    assert.equal(isOracleSessionLost('ORA-03113'), false);
  });

  it('truncates with DELETE inside the transaction', async () => {
    const { calls, driver } = fake();
    const t = new OracleTarget(params, driver);
    await t.connect();
    calls.length = 0;
    await t.truncate(T);
    assert.deepEqual(calls, [{ op: 'execute', sql: 'DELETE FROM "t"', binds: [], options: { autoCommit: false } }]);
  });

  it('checks tables, columns and the primary key by exact name', async () => {
    const { driver } = fake((c) => {
      if (c.sql?.includes('USER_TAB_COLUMNS')) {
        const name = (c.binds as string[])[0];
        return { rows: name === 't' ? [['id', 'NUMBER'], ['V', 'VARCHAR2'], ['u', 'RAW']] : [] };
      }
      if (c.sql?.includes('USER_CONSTRAINTS')) return { rows: [['id']] };
      return undefined;
    });
    const t = new OracleTarget(params, driver);
    await t.connect();
    const problems = await t.check([T, { ...T, label: 'public.gone', targetName: 'gone' }, { ...T, label: 'public.long', targetName: 'x'.repeat(129) }]);
    assert.deepEqual(problems.map((p) => p.table), ['public.t', 'public.gone', 'public.long']);
    assert.match(problems[0]!.message, /lacks column\(s\) "v"/);
    assert.match(problems[1]!.message, /table "gone" does not exist/);
    assert.match(problems[2]!.message, /129 bytes, over Oracle's 128-byte identifier limit/);
  });

  it('scans rows through a result set back to canonical text', async () => {
    let left = [[ '7', 'seven', Buffer.from('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex')], ['8', null, null]];
    const rs = { getRows: async () => { const r = left; left = []; return r; }, close: async () => undefined };
    const { calls, driver } = fake((c) => (c.sql?.startsWith('SELECT') ? { resultSet: rs } : undefined));
    const t = new OracleTarget(params, driver);
    await t.connect();
    const rows = [];
    for await (const r of t.scan(T)) rows.push(r);
    assert.deepEqual(rows, [['7', 'seven', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'], ['8', null, null]]);
    const scan = calls.find((c) => c.sql?.startsWith('SELECT'))!;
    assert.equal(scan.sql, `SELECT TO_CHAR("id", 'TM9') AS "id", "v" AS "v", "u" AS "u" FROM "t"`);
    assert.deepEqual(scan.options, { resultSet: true, outFormat: 4001, fetchInfo: { v: { type: 'STRING' } } });
  });

  it('needs a connect string or host and service, and a user', () => {
    assert.throws(() => new OracleTarget({ name: 'o', kind: 'oracle', user: 'u' }), /needs conn=<connect string>, or host= and dbname=<service name>/);
    assert.throws(() => new OracleTarget({ name: 'o', kind: 'oracle', conn: 'h/svc' }), /needs user=/);
  });
});

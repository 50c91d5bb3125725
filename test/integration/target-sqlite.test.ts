import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createTarget } from '../../src/targets/sqlite/sqlite-target.js';
import type { TableSpec, Target } from '../../src/targets/target.js';
import { ROOT } from '../helpers/env.js';
import { targetContract } from '../helpers/target-contract.js';

function tempFile(): { file: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ibex-sqlite-'));
  return { dir, file: join(dir, 'target.db') };
}

function withTables(file: string, sql: string[]): void {
  const db = new Database(file);
  for (const s of sql) db.exec(s);
  db.close();
}

targetContract(
  'sqlite',
  async (tables) => {
    const { dir, file } = tempFile();
    const target = createTarget({ name: 'lite', kind: 'sqlite', dbname: file });
    withTables(file, tables.flatMap((t) => target.createTableSql(t)));
    return { target, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  },
  {
    bulkRows: 70_000,
    refused: [
      { type: 'double precision', value: 'NaN' },
      { type: 'real', value: 'NaN' },
    ],
  },
);

const spec = (name: string, columns: [string, string][], keys: string[]): TableSpec => ({
  label: `public.${name}`, schema: 'public', name, targetName: name,
  columns: columns.map(([n, type]) => ({ name: n, type, notNull: keys.includes(n) })), keys,
});

describe('sqlite target: check()', () => {
  it('accepts the table createTableSql makes and refuses missing tables, columns, keys and lossy affinities', async () => {
    const { dir, file } = tempFile();
    const good = spec('good', [['id', 'bigint'], ['code', 'text'], ['amount', 'numeric(10,2)'], ['raw', 'bytea']], ['id']);
    const target: Target = createTarget({ name: 'lite', kind: 'sqlite', dbname: file });
    try {
      withTables(file, [
        ...target.createTableSql(good),
        'CREATE TABLE nokey (id INTEGER, v TEXT)',
        'CREATE TABLE lossy (id TEXT PRIMARY KEY, n NUMERIC, code INTEGER, raw TEXT, big REAL)',
        'CREATE TABLE nocase (id TEXT COLLATE NOCASE PRIMARY KEY)',
        'CREATE TABLE composite (a INTEGER, b TEXT, extra TEXT NOT NULL, UNIQUE (b, a))',
      ]);
      await target.connect();
      assert.deepEqual(await target.check([good]), []);
      const problems = await target.check([
        spec('absent', [['id', 'integer']], ['id']),
        spec('good', [['id', 'bigint'], ['code', 'text'], ['gone', 'text']], ['id']),
        spec('nokey', [['id', 'integer'], ['v', 'text']], ['id']),
        spec('lossy', [['id', 'text'], ['n', 'numeric'], ['code', 'character varying(5)'], ['raw', 'bytea'], ['big', 'bigint']], ['id']),
        spec('nocase', [['id', 'text']], ['id']),
        spec('composite', [['a', 'integer'], ['b', 'text']], ['a', 'b']),
      ]);
      const text = problems.map((p) => `${p.table}: ${p.message}`);
      const expect = [
        /public\.absent: table absent is missing/,
        /public\.good: column gone is missing/,
        /public\.nokey: table nokey has no PRIMARY KEY/,
        /public\.lossy: column lossy\.n \(NUMERIC\) cannot hold numeric exactly/,
        /public\.lossy: column lossy\.code \(INTEGER\) cannot hold character varying\(5\)/,
        /public\.lossy: column lossy\.raw \(TEXT\) cannot hold bytea/,
        /public\.lossy: column lossy\.big \(REAL\) cannot hold bigint/,
        /public\.nocase: table nocase has no PRIMARY KEY .* binary collation/,
        /public\.composite: column composite\.extra is NOT NULL without a default/,
      ];
      for (const re of expect) assert.ok(text.some((t) => re.test(t)), `expected ${re} in:\n${text.join('\n')}`);
      assert.equal(text.length, expect.length, text.join('\n'));
      for (const t of text) assert.ok(!t.includes('\n'));
      assert.match((await target.probe()).version, /^SQLite 3\.\d+/);
    } finally {
      await target.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite target: check() of unique indexes', () => {
  it('refuses every unique index besides the key, since ON CONFLICT (key) does not cover it and a collision fails the run', async () => {
    const { dir, file } = tempFile();
    const target: Target = createTarget({ name: 'lite', kind: 'sqlite', dbname: file });
    try {
      withTables(file, [
        'CREATE TABLE uq (id INTEGER PRIMARY KEY, email TEXT UNIQUE, v TEXT)',
        'CREATE TABLE uqix (id TEXT PRIMARY KEY, code TEXT, v TEXT)',
        'CREATE UNIQUE INDEX uqix_code ON uqix (code)',
        'CREATE UNIQUE INDEX uqix_part ON uqix (v) WHERE v IS NOT NULL',
        'CREATE UNIQUE INDEX uqix_nocase ON uqix (id COLLATE NOCASE)',
        'CREATE UNIQUE INDEX uqix_expr ON uqix (lower(code))',
        // The key's columns again, binary: it conflicts exactly when the key does.
        'CREATE UNIQUE INDEX uqix_same ON uqix (id)',
        'CREATE INDEX uqix_plain ON uqix (v)',
      ]);
      const uq = spec('uq', [['id', 'bigint'], ['email', 'text'], ['v', 'text']], ['id']);
      const uqix = spec('uqix', [['id', 'text'], ['code', 'text'], ['v', 'text']], ['id']);
      await target.connect();
      const text = (await target.check([uq, uqix])).map((p) => `${p.table}: ${p.message}`);
      const risk = "besides the key; ON CONFLICT \\(key\\) covers only the key, so a row colliding on it would fail the whole run: drop it or make it a plain index$";
      const expect = [
        new RegExp(`^public\\.uq: table uq has unique index sqlite_autoindex_uq_1 \\(email\\) ${risk}`),
        new RegExp(`^public\\.uqix: table uqix has unique index uqix_code \\(code\\) ${risk}`),
        new RegExp(`^public\\.uqix: table uqix has unique index uqix_part \\(v\\) ${risk}`),
        new RegExp(`^public\\.uqix: table uqix has unique index uqix_nocase \\(id\\) ${risk}`),
        new RegExp(`^public\\.uqix: table uqix has unique index uqix_expr \\(\\(expression\\)\\) ${risk}`),
      ];
      for (const re of expect) assert.ok(text.some((t) => re.test(t)), `expected ${re} in:\n${text.join('\n')}`);
      assert.equal(text.length, expect.length, text.join('\n'));
    } finally {
      await target.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite target: crash', () => {
  it('a process killed mid-transaction leaves neither data nor progress of that run, and the next run applies', async () => {
    const { dir, file } = tempFile();
    const t = spec('crashy', [['k', 'integer'], ['v', 'text']], ['k']);
    const target = createTarget({ name: 'lite', kind: 'sqlite', dbname: file });
    try {
      withTables(file, target.createTableSql(t));
      await target.connect();
      await target.begin();
      await target.upsertRows(t, [['1', 'one'], ['2', 'two']]);
      await target.writeProgress('s1', [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      await target.commit();
      await target.close();

      const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/integration/fixtures/sqlite-crash-child.ts'), file, JSON.stringify(t)], {
        cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
      });
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');

      await target.connect();
      const rows: string[][] = [];
      for await (const r of target.scan(t)) rows.push(r as string[]);
      assert.deepEqual(rows, [['1', 'one'], ['2', 'two']]);
      await target.begin();
      assert.deepEqual(await target.readProgress('s1'), [{ source: 'A', snapshot: '1:1:', run: 1 }]);
      await target.upsertRows(t, [['3', 'three']]);
      await target.writeProgress('s1', [{ source: 'A', snapshot: '2:2:', run: 2 }]);
      await target.commit();
      const after: string[][] = [];
      for await (const r of target.scan(t)) after.push(r as string[]);
      assert.deepEqual(after, [['1', 'one'], ['2', 'two'], ['3', 'three']]);
    } finally {
      await target.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite target: a file locked by another writer', () => {
  it('waits for the lock without stopping the process, so other work (and the writer in it) goes on', async () => {
    const { dir, file } = tempFile();
    const target = createTarget({ name: 'lite', kind: 'sqlite', dbname: file });
    withTables(file, ['CREATE TABLE t (id INTEGER PRIMARY KEY)']);
    const holder = new Database(file);
    try {
      await target.connect();
      holder.exec('BEGIN IMMEDIATE');
      // The holder lives in this process: its COMMIT can only run if waiting for the lock leaves the event loop free.
      setTimeout(() => holder.exec('COMMIT'), 300);
      let ticks = 0;
      const tick = setInterval(() => ticks++, 10);
      const t0 = Date.now();
      try {
        await target.begin();
      } finally {
        clearInterval(tick);
      }
      const waited = Date.now() - t0;
      assert.ok(waited >= 250 && waited < 3000, `begin() waited ${waited} ms for a lock released after 300 ms`);
      assert.ok(ticks >= 10, `the event loop ran while begin() waited (${ticks} ticks of 10 ms)`);
      await target.rollback();
    } finally {
      if (holder.inTransaction) holder.exec('ROLLBACK');
      holder.close();
      await target.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

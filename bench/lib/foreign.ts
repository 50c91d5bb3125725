/**
 * Non-PostgreSQL targets for the bench: a fresh store per scenario run (a MariaDB database on the
 * machine's server, a SQLite file, a private redis-server), the `ibex add db` words that reach it,
 * a row count to wait on, and the store's own floor: the fastest way that store itself loads the
 * same rows (MariaDB: LOAD DATA LOCAL INFILE; SQLite: one transaction of prepared multi-row
 * inserts; Redis: a pipeline of the same HSETs), timed on the same machine in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { freePort } from '../../src/cluster/ports.js';
import { sleep } from './proc.js';

/** The kinds the bench can run here (each has a live server on this machine). */
export type ForeignKind = 'mariadb' | 'sqlite' | 'redis';

/** One row of bench_item as text: id, grp, payload, amount, updated_at (UTC, `YYYY-MM-DD HH:MM:SS.ffffff`). */
export type BenchRow = [string, string, string, string, string];

export interface ForeignStore {
  kind: ForeignKind;
  /** `ibex add db <name> …` words. */
  addDbArgs: string[];
  /** Rows of bench_item on the store (for Redis: keys of the table). */
  count(): Promise<number>;
  /** Does the row with this id exist? */
  has(id: number): Promise<boolean>;
  /** The ids of every bench_item row on the store (the stream-lag poll). */
  ids(): Promise<string[]>;
  /** Seconds the store itself takes to load these rows into an empty twin of bench_item. */
  floor(rows: BenchRow[], dir: string): Promise<number>;
  close(): Promise<void>;
}

const require = createRequire(import.meta.url);

/** A fresh store of a kind, with the bench's tables created (DDL written here, as a user would). */
export async function createStore(kind: ForeignKind, dir: string): Promise<ForeignStore> {
  if (kind === 'mariadb') return mariadbStore();
  if (kind === 'sqlite') return sqliteStore(join(dir, 'target.sqlite'));
  return redisStore(dir);
}

async function mariadbStore(): Promise<ForeignStore> {
  const mysql = (await import('mysql2/promise')).default;
  const db = `ibex_bench_${process.pid}_${Date.now() % 1e6}`;
  const admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  await admin.query(`CREATE DATABASE \`${db}\``);
  const c = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root', database: db, timezone: 'Z', infileStreamFactory: undefined });
  const ddl = (t: string): string => `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, grp INT, payload TEXT, amount DECIMAL(12,2), updated_at DATETIME(6)) ENGINE=InnoDB`;
  await c.query(ddl('bench_item'));
  await c.query(ddl('bench_floor'));
  await c.query('CREATE TABLE bench_pair (a INT, b INT, val TEXT, updated_at DATETIME(6), PRIMARY KEY (a, b)) ENGINE=InnoDB');
  return {
    kind: 'mariadb',
    addDbArgs: ['type=mariadb', `dbname=${db}`, 'host=127.0.0.1', 'port=3306', 'user=root'],
    async count() {
      const [r] = await c.query('SELECT count(*) AS n FROM bench_item');
      return Number((r as { n: number }[])[0]!.n);
    },
    async has(id) {
      const [r] = await c.query('SELECT 1 FROM bench_item WHERE id = ?', [id]);
      return (r as unknown[]).length > 0;
    },
    async ids() {
      const [r] = await c.query({ sql: 'SELECT CAST(id AS CHAR) AS id FROM bench_item', rowsAsArray: true });
      return (r as string[][]).map((x) => x[0]!);
    },
    async floor(rows, d) {
      const file = join(d, 'floor.tsv');
      writeFileSync(file, rows.map((r) => r.join('\t')).join('\n') + '\n');
      const { createReadStream } = await import('node:fs');
      const lc = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root', database: db, timezone: 'Z', infileStreamFactory: () => createReadStream(file) });
      const t0 = performance.now();
      await lc.query('BEGIN');
      await lc.query(`LOAD DATA LOCAL INFILE 'floor.tsv' INTO TABLE bench_floor FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' (id, grp, payload, amount, updated_at)`);
      await lc.query('COMMIT');
      const s = (performance.now() - t0) / 1000;
      await lc.end();
      return s;
    },
    async close() {
      await c.end().catch(() => {});
      await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
      await admin.end();
    },
  };
}

interface SqliteDb {
  prepare(sql: string): { get(...a: unknown[]): unknown; all(...a: unknown[]): unknown[]; run(...a: unknown[]): unknown };
  exec(sql: string): void;
  pragma(s: string): unknown;
  close(): void;
}

async function sqliteStore(file: string): Promise<ForeignStore> {
  const Database = require('better-sqlite3') as new (f: string) => SqliteDb;
  const ddl = (t: string): string => `CREATE TABLE ${t} (id INTEGER PRIMARY KEY, grp INTEGER, payload TEXT, amount TEXT, updated_at TEXT)`;
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 10000');
  db.exec(`${ddl('bench_item')}; ${ddl('bench_floor')};
    CREATE TABLE bench_pair (a INTEGER, b INTEGER, val TEXT, updated_at TEXT, PRIMARY KEY (a, b));`);
  return {
    kind: 'sqlite',
    addDbArgs: ['type=sqlite', `dbname=${file}`],
    async count() {
      return Number((db.prepare('SELECT count(*) AS n FROM bench_item').get() as { n: number }).n);
    },
    async has(id) {
      return db.prepare('SELECT 1 FROM bench_item WHERE id = ?').get(id) !== undefined;
    },
    async ids() {
      return (db.prepare('SELECT CAST(id AS TEXT) AS id FROM bench_item').all() as { id: string }[]).map((r) => r.id);
    },
    async floor(rows) {
      // The same durability as ibex's target connection (src/targets/sqlite): its commit syncs the
      // WAL. better-sqlite3's build would otherwise run a WAL file at NORMAL, whose commit does not.
      db.pragma('synchronous = FULL');
      const per = 200;
      const stmt = db.prepare(`INSERT INTO bench_floor VALUES ${Array.from({ length: per }, () => '(?, ?, ?, ?, ?)').join(', ')}`);
      const t0 = performance.now();
      db.exec('BEGIN IMMEDIATE');
      let i = 0;
      for (; i + per <= rows.length; i += per) stmt.run(...rows.slice(i, i + per).flat());
      for (; i < rows.length; i++) db.prepare('INSERT INTO bench_floor VALUES (?, ?, ?, ?, ?)').run(...rows[i]!);
      db.exec('COMMIT');
      return (performance.now() - t0) / 1000;
    },
    async close() {
      db.close();
    },
  };
}

async function redisStore(dir: string): Promise<ForeignStore> {
  const port = await freePort();
  const proc: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const { Redis } = await import('ioredis');
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
  for (let i = 0; ; i++) {
    try {
      await r.connect();
      break;
    } catch (err) {
      if (i > 100) throw err;
      await sleep(50);
    }
  }
  const keysOf = async (pattern: string): Promise<string[]> => {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
    return out;
  };
  return {
    kind: 'redis',
    addDbArgs: ['type=redis', 'host=127.0.0.1', `port=${port}`, 'dbname=0'],
    count: async () => (await keysOf('bench_item:*')).length,
    async has(id) {
      return (await r.exists(`bench_item:${id}`)) === 1;
    },
    async ids() {
      return (await keysOf('bench_item:*')).map((k) => k.slice('bench_item:'.length));
    },
    async floor(rows) {
      const t0 = performance.now();
      for (let i = 0; i < rows.length; i += 1000) {
        const p = r.pipeline();
        for (const [id, grp, payload, amount, ts] of rows.slice(i, i + 1000)) {
          p.hset(`bench_floor:${id}`, 'grp', grp, 'payload', payload, 'amount', amount, 'updated_at', ts);
        }
        await p.exec();
      }
      return (performance.now() - t0) / 1000;
    },
    async close() {
      r.disconnect();
      proc.kill('SIGTERM');
    },
  };
}

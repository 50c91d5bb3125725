/**
 * Throwaway MariaDB for tests: a fresh database on the shared server (127.0.0.1:3306, root, no
 * password), or a private mariadbd in a temp dir that a test may SIGKILL and restart.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import type { RefusedValue } from './target-contract.js';
import { freePort } from '../../src/cluster/ports.js';


const run = promisify(execFile);

/** Host and port of the shared MariaDB. */
export const SHARED_MARIADB = { host: '127.0.0.1', port: 3306, user: 'root' };

/** Connect as root to a MariaDB (optionally to one database). */
export async function adminConnection(port = SHARED_MARIADB.port, database?: string): Promise<mysql.Connection> {
  return mysql.createConnection({ host: '127.0.0.1', port, user: 'root', password: '', database, charset: 'utf8mb4', multipleStatements: false });
}

/** Create `ibex_t_<random>` on a server; returns its name and a function that drops it. */
export async function freshDatabase(port = SHARED_MARIADB.port): Promise<{ dbname: string; drop(): Promise<void> }> {
  const dbname = `ibex_t_${randomBytes(6).toString('hex')}`;
  const c = await adminConnection(port);
  try {
    await c.query(`CREATE DATABASE \`${dbname}\` CHARACTER SET utf8mb4`);
  } finally {
    await c.end();
  }
  return {
    dbname,
    drop: async () => {
      const d = await adminConnection(port);
      try {
        await d.query(`DROP DATABASE IF EXISTS \`${dbname}\``);
      } finally {
        await d.end();
      }
    },
  };
}


/** A private mariadbd on its own data directory. */
export interface PrivateMariadb {
  port: number;
  dir: string;
  /** Start (or restart) the server and wait until it accepts connections. */
  start(): Promise<void>;
  /** SIGKILL the server (no shutdown, no flush) and wait for it to be gone. */
  kill(): Promise<void>;
  /** Stop the server and remove its directory. */
  destroy(): Promise<void>;
}

/** Install a private MariaDB data directory (~4 s) on a free port; not started yet. */
export async function privateMariadb(): Promise<PrivateMariadb> {
  const dir = mkdtempSync(join(tmpdir(), 'ibex-mariadb-'));
  const data = join(dir, 'data');
  // --no-defaults: the system my.cnf names user=mysql and a shared log file.
  await run('mariadb-install-db', ['--no-defaults', '--user=root', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db'], { timeout: 120_000 });
  const port = await freePort();
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const c = await adminConnection(port);
        await c.end();
        return;
      } catch (e) {
        if (proc === null || proc.exitCode !== null) throw new Error(`private mariadbd exited early; see ${join(dir, 'err.log')}`, { cause: e });
        if (Date.now() > deadline) throw new Error(`private mariadbd on port ${port} not ready after 60 s`, { cause: e });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };

  const srv: PrivateMariadb = {
    port,
    dir,
    async start() {
      const p = spawn('/usr/sbin/mariadbd', [
        '--no-defaults', '--user=root', `--datadir=${data}`, `--port=${port}`, '--bind-address=127.0.0.1',
        `--socket=${join(dir, 's')}`, `--pid-file=${join(dir, 'pid')}`, `--log-error=${join(dir, 'err.log')}`,
        '--innodb-buffer-pool-size=32M', '--skip-grant-tables', '--innodb-flush-log-at-trx-commit=1',
      ], { stdio: 'ignore' });
      proc = p;
      exited = new Promise((resolve) => p.once('exit', () => resolve()));
      await waitReady();
    },
    async kill() {
      if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
      proc = null;
    },
    async destroy() {
      if (proc !== null && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc?.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      proc = null;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return srv;
}

/** The contract's special values MariaDB and MySQL refuse: no NaN/Infinity, no infinite dates, years 1-9999, 65 digits. */
export const MYSQL_FAMILY_REFUSED: RefusedValue[] = [
  ['numeric', 'NaN'], ['numeric', 'Infinity'], ['numeric', '-Infinity'], ['numeric', '1' + '0'.repeat(69)],
  ['double precision', 'NaN'], ['double precision', 'Infinity'], ['double precision', '-Infinity'], ['real', 'NaN'],
  ['timestamp with time zone', 'infinity'], ['timestamp with time zone', '-infinity'],
  ['timestamp with time zone', '0044-03-15 12:00:00+00 BC'], ['timestamp with time zone', '20000-01-01 00:00:00+00'],
  ['timestamp without time zone', 'infinity'], ['date', '-infinity'], ['date', '0001-01-01 BC'],
].map(([type, value]) => ({ type: type as string, value: value as string }));
